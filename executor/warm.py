"""Which trials start warm by default: the one rule the local and docker backends share.

A warm trial is a child forked from a worker that imported torch and the trainer once (hpt.trainer.warm),
instead of a fresh `hpt-trial` process or container: the same trial, bit for bit, without the ~1.2 s of
imports (docs/executor.md, "Warm starts"). `hpt apply` starts trials warm unless `--no-warm`, except those
a fork cannot serve as well as a fresh process (`fresh_reason`); `--warm` forks every trial.
"""
from __future__ import annotations

from collections import Counter
from typing import Iterable

from hpt.schemas.manifest import TrialManifest

GPU = "a GPU trial (CUDA must never be initialised in a process that forks)"
COMMAND = ("a user `command` trainer (its program is a process of its own however it starts; only a Python "
           "`entrypoint` is called in the warm fork)")


def fresh_reason(manifest: TrialManifest) -> str | None:
    """Why this trial starts fresh by default rather than warm, or None when a warm fork serves it."""
    if manifest.resources.gpus:
        return GPU
    trainer = manifest.user_trainer
    if trainer is not None and not trainer.entrypoint:
        return COMMAND
    return None


def warm_choice(option: bool | None, manifest: TrialManifest, backend_reason: str | None = None) -> bool:
    """`--warm` (True): every trial; `--no-warm` (False): none; the default (None): where it is safe."""
    if option is not None:
        return option
    return backend_reason is None and fresh_reason(manifest) is None


def fresh_note(reasons: Iterable[str | None], where: str) -> str | None:
    """The one stderr line that says which trials start fresh by default, and why; None if none does."""
    counted = Counter(r for r in reasons if r)
    if not counted:
        return None
    why = "; ".join(f"{n}× {reason}" for reason, n in counted.items())
    return f"note: {sum(counted.values())} trial(s) start fresh on {where}, not warm: {why}"
