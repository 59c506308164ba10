"""hpt.schemas — the contract between the stages.

The spec, trial-manifest and plan JSON Schemas with their Python types (manifest.py, resources.py,
plan.py), the one rule set for the spec's `kubernetes` section (kubernetes.py), the architectures catalog,
the metrics vocabulary and the result-row columns. Imports nothing else of hpt, so every stage
(compiler, executor, trainer, results) can depend on it.
"""
from __future__ import annotations

from hpt.schemas.errors import UserError
from hpt.schemas.version import __version__

__all__ = ["UserError", "__version__"]
