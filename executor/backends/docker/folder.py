"""The host's side of a warm slot container (`hpt apply --backend docker --warm`): its folder.

A slot container runs `python -m hpt.trainer.warm --folder DIR`, a worker that imported torch and the
trainer once and forks one child per trial, one trial at a time. DIR is a host folder
(PLAN/.hpt/docker/<experiment>/<store>/<slot>/) bind-mounted at the same path, and the only channel: the
apply writes a trial's request, the worker answers with its pid, log and exit files (hpt.schemas.warm
names them). Files outlive both sides, so a `kill -9` of the apply loses nothing: the next apply reads
the same folder. Which containers exist, and their limits, is slots.py's business (WarmSlots).
"""
from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

from hpt.executor.backend import log_tail
from hpt.schemas.warm import CANCEL, EXIT, HEARTBEAT, LOG, PID, REQUEST

TRIAL_FILES = (REQUEST, PID, LOG, EXIT, CANCEL)


@dataclass
class Slot:
    """One slot container and its folder."""
    name: str
    container_id: str
    folder: Path
    key: str                                 # what a trial must share with it to run there (limits, mounts, env)
    gpus: tuple[str, ...] = ()
    share: Fraction = Fraction(1)
    memory: str = ""                         # its limit as the manifest says it, for an OOM reason
    reusable: bool = True                    # False: adopted from a dead apply while idle; it may be exiting

    def path(self, trial_id: str, suffix: str) -> Path:
        return self.folder / f"{trial_id}{suffix}"

    def trials(self) -> list[str]:
        """Every trial with a request here, finished or not."""
        return sorted(p.name[: -len(REQUEST)] for p in self.folder.glob(f"*{REQUEST}"))

    def open_trials(self) -> list[str]:
        """Trials asked for and not ended: the slot is busy while there is one."""
        return [t for t in self.trials() if not self.path(t, EXIT).exists()]

    def request(self, trial_id: str, attempt: int, env: dict[str, str], command: list[str]) -> None:
        """Ask the worker for a trial (written whole; a stale attempt's files go first)."""
        self.forget(trial_id)
        doc = {"trial_id": trial_id, "attempt": attempt, "command": command, "args": [], "env": env}
        _write(self.path(trial_id, REQUEST), doc)

    def attempt(self, trial_id: str) -> int:
        try:
            return int(json.loads(self.path(trial_id, REQUEST).read_text()).get("attempt", 1))
        except (OSError, ValueError, TypeError, AttributeError):
            return 1

    def asked(self, trial_id: str) -> bool:
        return self.path(trial_id, REQUEST).exists()

    def started(self, trial_id: str) -> bool:
        return self.path(trial_id, PID).exists()

    def exit(self, trial_id: str) -> dict[str, Any] | None:
        """How the trial ended ({"code", "oom_killed"}), None while it has not."""
        try:
            doc = json.loads(self.path(trial_id, EXIT).read_text())
        except (OSError, ValueError):
            return None
        return doc if isinstance(doc, dict) and isinstance(doc.get("code"), int) else None

    def cancel(self, trial_id: str) -> None:
        self.path(trial_id, CANCEL).touch()

    def withdraw(self, trial_id: str) -> bool:
        """Take back a request the worker has not started; False if it started meanwhile."""
        self.path(trial_id, REQUEST).unlink(missing_ok=True)
        return not self.started(trial_id)

    def log(self, trial_id: str) -> str:
        return log_tail(self.path(trial_id, LOG))

    def forget(self, trial_id: str) -> None:
        for suffix in TRIAL_FILES:
            self.path(trial_id, suffix).unlink(missing_ok=True)

    def beat(self) -> None:
        """Tell the worker an apply watches (it exits once idle and unwatched for a while)."""
        try:
            self.path("", HEARTBEAT).touch()
        except OSError:
            pass

    def heartbeat_age(self) -> float:
        try:
            return time.time() - self.path("", HEARTBEAT).stat().st_mtime
        except OSError:
            return float("inf")

    def remove_folder(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


def _write(path: Path, doc: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")  # not *.request.json: the worker never sees half of it
    tmp.write_text(json.dumps(doc), encoding="utf-8")
    os.replace(tmp, path)
