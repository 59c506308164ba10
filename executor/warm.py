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
USER_CONTAINER = ("a user trainer in a container (a container per trial gives the program a fresh filesystem; a "
                  "slot container would carry one trial's files into the next)")


def fresh_reason(manifest: TrialManifest, containers: bool = False) -> str | None:
    """Why this trial starts fresh by default rather than warm, or None when a warm fork serves it.
    `containers`: the docker backend's slot containers, where only hpt's own trainer runs warm."""
    if manifest.resources.gpus:
        return GPU
    trainer = manifest.trainer   # a user's trainer section (schemas/trainer.py); empty: hpt's own trainer
    if trainer and containers:
        return USER_CONTAINER
    if trainer and not trainer.get("entrypoint"):
        return COMMAND
    return None


def warm_choice(option: bool | None, manifest: TrialManifest, backend_reason: str | None = None,
                containers: bool = False) -> bool:
    """`--warm` (True): every trial; `--no-warm` (False): none; the default (None): where it is safe."""
    if option is not None:
        return option
    return backend_reason is None and fresh_reason(manifest, containers) is None


def fresh_note(reasons: Iterable[str | None], where: str) -> str | None:
    """The one stderr line that says which trials start fresh by default, and why; None if none does."""
    counted = Counter(r for r in reasons if r)
    if not counted:
        return None
    why = "; ".join(f"{n}× {reason}" for reason, n in counted.items())
    return f"note: {sum(counted.values())} trial(s) start fresh on {where}, not warm: {why}"
