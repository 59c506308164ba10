"""hpt — hyperparameter tuning for PyTorch models on time-stamped data.

The CLI (`hpt ...`) and Python share one set of functions (hpt.api, docs/api.md):

    import hpt
    hpt.compile("spec.json", out="plan")
    run = hpt.apply("plan", results="hpt-results")
    hpt.compare("hpt-results").configs[0].label

The API's functions load on first use: `import hpt.trial` (a user's trainer) and `hpt-trial` import
this package too, and must not pay for the compiler and the analysis they never call
(bench/bench_user_trial.py; tests/test_user_trainer.py checks what they import).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from hpt.schemas.errors import UserError
from hpt.schemas.version import __version__
from hpt.store.base import StoreUnavailable

if TYPE_CHECKING:
    from hpt.api import apply, compare, compile, demo_dataset, fidelity, read_results, report, trends
    from hpt.data_import import import_dataset   # hpt.api's, loaded on first use

_API = ("apply", "compare", "compile", "demo_dataset", "fidelity", "import_dataset", "report", "read_results", "trends")

__all__ = ["__version__", *_API, "StoreUnavailable", "UserError"]


def __getattr__(name: str) -> Any:
    """hpt.<api function> → hpt.api's, imported on first use (PEP 562); anything else is not here."""
    if name in _API:
        from hpt import api

        return getattr(api, name)
    raise AttributeError(f"module 'hpt' has no attribute {name!r}")
