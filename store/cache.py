"""The machine-local cache folder (the trainer's preprocessing cache lives under it, in prep/).

One place decides where it is, so that the trainer writes there and the Docker backend can share the
same folder with its containers: $HPT_CACHE, else ~/.cache/hpt, else a folder in the temp dir (a
container user with no home).
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

CACHE_ENV = "HPT_CACHE"
PREP = "prep"  # the preprocessing cache: one folder per (dataset, windows, settings), renamed into place whole


def cache_root() -> Path:
    configured = os.environ.get(CACHE_ENV)
    if configured:
        return Path(configured).expanduser()
    try:
        return Path.home() / ".cache" / "hpt"
    except (RuntimeError, KeyError):  # a container user with no HOME and no passwd entry
        return Path(tempfile.gettempdir()) / "hpt-cache"
