"""hpt.schemas — the contract between the stages.

The spec and trial-manifest JSON Schemas, the manifest's Python type, the architectures catalog,
the metrics vocabulary and the result-row columns. Imports nothing else of hpt, so every stage
(compiler, executor, trainer, results) can depend on it.
"""
from __future__ import annotations

from hpt.schemas.errors import UserError
from hpt.schemas.version import __version__

__all__ = ["UserError", "__version__"]
