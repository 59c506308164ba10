"""Writing a plan: DIR/plan.json (the index) and DIR/trials/<trial-id>.json (one manifest each).

Trials stream into a staging folder next to DIR/trials and replace it in one rename, and plan.json
is written last, so a plan folder is never half old, half new. Recompiling the same spec in the same
month finds the same experiment id and leaves everything as it is; a different plan is refused
without `force` (the plan is a reviewed artifact; silently replacing it would run something else).
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable

from hpt.schemas.errors import UserError

if TYPE_CHECKING:
    from hpt.compiler.trials import RenderedTrial

PLAN = "plan.json"
TRIALS = "trials"


@dataclass
class WriteResult:
    written: bool              # False: the identical plan was already there
    trial_ids: list[str]


def plan_json(plan: dict[str, Any]) -> str:
    """Stable bytes: sorted keys, two-space indent (a reviewer reads this file)."""
    return json.dumps(plan, indent=2, sort_keys=True, ensure_ascii=False, allow_nan=False) + "\n"


def existing_plan(out: Path) -> dict[str, Any] | None:
    path = out / PLAN
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}  # unreadable: a different plan as far as we can tell


def check_target(out: Path, experiment: str, version: str, force: bool) -> bool:
    """True when OUT already holds this exact plan, complete (nothing to do). Raises when OUT holds
    something else and `force` is not set."""
    if out.exists() and not out.is_dir():
        raise UserError("exists and is not a directory", where=str(out))
    if not out.exists() or not any(out.iterdir()):
        return False
    previous = existing_plan(out)
    if previous is not None and previous.get("experiment") == experiment and previous.get("hpt_version") == version:
        ids = previous.get("trials", [])
        if all((out / TRIALS / f"{tid}.json").is_file() for tid in ids):
            return True
        return False  # same plan, files missing: write it again
    if force:
        return False
    if previous is None:
        raise UserError("is not empty and holds no plan", where=str(out), hint="choose another --out, or pass --force")
    raise UserError(f"holds a different plan ({previous.get('experiment', 'unreadable')}, this spec compiles to {experiment})",
                    where=str(out), hint="choose another --out, or pass --force to replace it")


def write_plan(out: Path, trials: Iterable[RenderedTrial], make_plan: Callable[[list[str]], dict[str, Any]]) -> WriteResult:
    """Stream `trials` to files, then write plan.json from `make_plan(trial_ids)`."""
    try:
        return _write_plan(out, trials, make_plan)
    except OSError as err:  # read-only folder, full disk: the user's to fix
        raise UserError(f"cannot write the plan: {err.strerror or err}", where=str(err.filename or out)) from None


def _write_plan(out: Path, trials: Iterable[RenderedTrial], make_plan: Callable[[list[str]], dict[str, Any]]) -> WriteResult:
    out.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".trials-", dir=out))
    ids: list[str] = []
    seen: set[str] = set()
    try:
        for trial in trials:
            if trial.id in seen:
                raise AssertionError(f"bug: trial {trial.id} emitted twice")
            seen.add(trial.id)
            ids.append(trial.id)
            _write(staging / f"{trial.id}.json", trial.text)
        plan_text = plan_json(make_plan(ids))
        tmp_plan = out / f".{PLAN}.tmp"
        _write(tmp_plan, plan_text)
        target = out / TRIALS
        old = None
        if target.exists():
            old = Path(tempfile.mkdtemp(prefix=".old-trials-", dir=out))
            os.rename(target, old / TRIALS)
        os.rename(staging, target)
        os.replace(tmp_plan, out / PLAN)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return WriteResult(written=True, trial_ids=ids)


def _write(path: Path, text: str) -> None:
    # os-level calls: a buffered file object costs more than the write itself for a 1 kB manifest.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        data = text.encode("utf-8")
        while data:
            data = data[os.write(fd, data):]
    finally:
        os.close(fd)
