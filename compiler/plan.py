"""Writing a plan: DIR/plan.json (hpt.schemas.plan.Plan) and DIR/trials/<trial-id>.json (one manifest each).

Trials stream into a staging folder next to DIR/trials and replace it in one rename, and plan.json
is written last, so a plan folder is never half old, half new. SIGTERM while writing cleans up like
Ctrl-C does; a staging folder left by a process that died anyway (SIGKILL) carries its pid in its
name, and the next compile into DIR removes it. Recompiling the same spec in the same
month finds the same experiment id and leaves everything as it is; a different plan is refused
without `force` (the plan is a reviewed artifact; silently replacing it would run something else).
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator

from hpt.schemas.errors import UserError
from hpt.schemas.plan import PLAN_FILE, TRIALS_DIR, Plan, manifest_digest, manifest_path

if TYPE_CHECKING:
    from hpt.compiler.trials import RenderedTrial

_STAGING = (".trials-", ".old-trials-")   # + "<pid>-<random>"



@dataclass
class WriteResult:
    written: bool              # False: the identical plan was already there
    trial_ids: list[str]


def existing_plan(out: Path) -> dict[str, Any] | None:
    """OUT's plan.json as a document; None when there is none, {} when it cannot be read."""
    path = out / PLAN_FILE
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}  # unreadable: a different plan as far as we can tell


def _intact(out: Path, previous: dict[str, Any]) -> bool:
    """Every manifest the previous plan lists is there, byte for byte as it recorded."""
    digests = previous.get("digests")
    if not isinstance(digests, dict):
        return False  # compiled by an older hpt: write it again, with digests
    for tid in previous.get("trials", []):
        try:
            if manifest_digest(manifest_path(out, tid).read_bytes()) != digests.get(tid):
                return False
        except OSError:
            return False
    return True


def check_target(out: Path, experiment: str, version: str, force: bool) -> bool:
    """True when OUT already holds this exact plan, complete and unedited (nothing to do). Raises when OUT
    holds something else and `force` is not set."""
    if out.exists() and not out.is_dir():
        raise UserError("exists and is not a directory", where=str(out))
    remove_stale_staging(out)
    if not out.exists() or not any(out.iterdir()):
        return False
    previous = existing_plan(out)
    if previous is not None and previous.get("experiment") == experiment and previous.get("hpt_version") == version:
        return _intact(out, previous)  # same plan; files missing or edited: write it again
    if force:
        return False
    if previous is None:
        raise UserError("is not empty and holds no plan", where=str(out), hint="choose another --out, or pass --force")
    raise UserError(f"holds a different plan ({previous.get('experiment', 'unreadable')}, this spec compiles to {experiment})",
                    where=str(out), hint="choose another --out, or pass --force to replace it")


def remove_stale_staging(out: Path) -> None:
    """Staging folders of compiles that died (their pid is gone) are removed; a live one's are left."""
    if not out.is_dir():
        return
    for entry in out.iterdir():
        prefix = next((p for p in _STAGING if entry.name.startswith(p)), None)
        if prefix is None or not entry.is_dir():
            continue
        pid = entry.name[len(prefix):].split("-", 1)[0]
        if pid.isdigit() and int(pid) != os.getpid() and _alive(int(pid)):
            continue
        shutil.rmtree(entry, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: someone else's process is alive
        return True
    return True


@contextlib.contextmanager
def _terminate_like_interrupt() -> Iterator[None]:
    """SIGTERM unwinds like Ctrl-C (exit 143), so the staging folder is removed on the way out."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum: int, frame: Any) -> None:
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def write_plan(out: Path, trials: Iterable[RenderedTrial], make_plan: Callable[[dict[str, str]], Plan]) -> WriteResult:
    """Stream `trials` to files, then write plan.json from `make_plan(digests)` (trial id → manifest digest,
    in the trials' order)."""
    try:
        with _terminate_like_interrupt():
            return _write_plan(out, trials, make_plan)
    except OSError as err:  # read-only folder, full disk: the user's to fix
        raise UserError(f"cannot write the plan: {err.strerror or err}", where=str(err.filename or out)) from None


def _write_plan(out: Path, trials: Iterable[RenderedTrial], make_plan: Callable[[dict[str, str]], Plan]) -> WriteResult:
    out.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f"{_STAGING[0]}{os.getpid()}-", dir=out))
    digests: dict[str, str] = {}
    try:
        # names relative to the open staging folder: the kernel resolves one component per file, not the whole path
        staging_fd = os.open(staging, os.O_RDONLY | os.O_DIRECTORY)
        try:
            for trial in trials:
                if trial.id in digests:
                    raise AssertionError(f"bug: trial {trial.id} emitted twice")
                data = trial.text.encode("utf-8")
                digests[trial.id] = manifest_digest(data)
                _write(trial.id + ".json", data, staging_fd)
        finally:
            os.close(staging_fd)
        tmp_plan = out / f".{PLAN_FILE}.tmp"
        _write_pieces(tmp_plan, make_plan(digests).json_pieces())
        target = out / TRIALS_DIR
        old = None
        if target.exists():
            old = Path(tempfile.mkdtemp(prefix=f"{_STAGING[1]}{os.getpid()}-", dir=out))
            os.rename(target, old / TRIALS_DIR)
        os.rename(staging, target)
        os.replace(tmp_plan, out / PLAN_FILE)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return WriteResult(written=True, trial_ids=list(digests))


def _write_pieces(path: Path, pieces: Iterable[str]) -> None:
    """plan.json through a buffer, a line at a time: its whole text (10 MiB at 100,000 trials) is never held."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    with open(fd, "w", encoding="utf-8", newline="", buffering=1 << 20) as stream:
        stream.writelines(pieces)


def _write(path: Path | str, data: bytes, dir_fd: int | None = None) -> None:
    # os-level calls: a buffered file object costs more than the write itself for a 1 kB manifest.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644, dir_fd=dir_fd)
    try:
        while data:
            data = data[os.write(fd, data):]
    finally:
        os.close(fd)
