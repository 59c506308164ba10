"""hpt — hyperparameter tuning for PyTorch models on time-stamped data."""
from __future__ import annotations

from hpt.schemas.version import __version__

__all__ = ["__version__"]
