"""hpt's version: the one place it is written (pyproject.toml reads it from here, [tool.setuptools.dynamic]).

A literal, not importlib.metadata: every `hpt-trial` and every user trainer importing hpt.trial loads
this module, and the metadata machinery cost them ~15 ms each (bench/bench_user_trial.py).
"""
from __future__ import annotations

__version__ = "0.1.0"
