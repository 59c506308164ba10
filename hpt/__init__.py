"""hpt — hyperparameter tuning for PyTorch models on time-stamped data.

The CLI (`hpt ...`) and Python share one set of functions (hpt.api, docs/api.md):

    import hpt
    hpt.compile("spec.json", out="plan")
    run = hpt.apply("plan", results="hpt-results")
    hpt.compare("hpt-results").configs[0].label
"""
from __future__ import annotations

from hpt.api import (
    apply,
    compare,
    compile,
    demo_dataset,
    fidelity,
    import_dataset,
    report,
    read_results,
    trends,
)
from hpt.schemas.errors import UserError
from hpt.schemas.version import __version__
from hpt.store import StoreUnavailable

__all__ = ["__version__", "apply", "compare", "compile", "demo_dataset", "fidelity", "import_dataset", "report",
           "read_results", "trends", "StoreUnavailable", "UserError"]
