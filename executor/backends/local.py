"""The local backend: each trial is an `hpt-trial` subprocess on this machine (no Docker, no cluster).

Each trial starts in its own session (process group), so that
- cancel() stops the trainer and anything it started (killpg), and
- a `kill -9` of `hpt apply` leaves running trials alive: their pid records under the state folder
  (`PLAN/.hpt/local/<experiment>/<trial>.pid.json`) let the next `hpt apply` adopt them instead of
  starting duplicates. Rows are create-only, so even a duplicate run could never write two rows.
"""
from __future__ import annotations

import json
import math
import os
import shlex
import shutil
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from subprocess import DEVNULL, STDOUT, Popen
from typing import Any, Sequence

from hpt.executor.backend import Phase, Submission, TrialStatus
from hpt.schemas.errors import UserError

CANCEL_GRACE_S = 3.0
LOG_TAIL_BYTES = 2_000_000  # what logs() returns at most: the end of the output
# A trial starts behind a gate that waits for its pid record: if `hpt apply` is killed between
# starting the process and recording it, the process gives up (exit 75) instead of running a trial
# that no later apply could find and adopt — which would then run it a second time.
GATE = ('r=$1; shift; i=0; while [ ! -e "$r" ]; do i=$((i+1)); '
        '[ "$i" -gt 500 ] && exit 75; sleep 0.01; done; exec "$@"')


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def default_command() -> list[str]:
    """How to start a trial: $HPT_TRIAL_COMMAND, else the `hpt-trial` beside this Python, else on PATH."""
    override = os.environ.get("HPT_TRIAL_COMMAND")
    if override:
        return shlex.split(override)
    beside = Path(sys.executable).parent / "hpt-trial"
    if beside.is_file() and os.access(beside, os.X_OK):
        return [str(beside)]
    found = shutil.which("hpt-trial")
    if found:
        return [found]
    return [sys.executable, "-m", "hpt.trainer"]


def _start_ticks(pid: int) -> str | None:
    """The process's start time in clock ticks (/proc/PID/stat field 22): guards against pid reuse."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def process_alive(pid: int, ticks: str | None = None) -> bool:
    """Whether `pid` still runs (not a zombie); with `ticks`, also that it is the same process."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    if Path("/proc").is_dir():
        state = Path(f"/proc/{pid}/stat")
        try:
            if state.read_text().rsplit(")", 1)[1].split()[0] == "Z":
                return False  # a zombie has finished; its parent just has not reaped it
        except OSError:
            return False
        return ticks is None or _start_ticks(pid) == ticks
    return True


@dataclass
class LocalHandle:
    trial_id: str
    pid: int
    record: Path
    log: Path
    manifest_copy: Path | None
    ticks: str | None = None
    popen: Popen | None = None          # None for a trial adopted from an earlier `hpt apply`
    attempt: int = 1
    command: list[str] = field(default_factory=list)


class LocalBackend:
    name = "local"
    poll_interval = 0.05  # Popen.poll is a cheap syscall; a short interval keeps per-trial overhead low

    def __init__(self, state_dir: str | Path | None = None, plan_dir: str | Path | None = None,
                 command: Sequence[str] | None = None, **_ignored: Any):
        # The apply command passes PLAN/.hpt/local; elsewhere a per-user folder.
        base = state_dir or os.environ.get("HPT_STATE_DIR") or Path.home() / ".cache" / "hpt" / "local"
        self.state_dir = Path(base).expanduser().resolve()
        self.plan_dir = Path(plan_dir).resolve() if plan_dir else None
        self.command = list(command) if command else default_command()
        self._cpus = 1.0
        self._locks: list[int] = []

    # ---------------------------------------------------------------------------------------------
    def _cpus_of(self, sub: Submission) -> float:
        return float(sub.manifest.resources.cpus)

    def _threads(self, sub: Submission) -> int:
        return max(1, math.ceil(self._cpus_of(sub)))

    def _env(self, sub: Submission) -> dict[str, str]:
        threads = str(self._threads(sub))
        return {"HPT_CPUS": threads, "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads}

    def _dir(self, experiment_id: str) -> Path:
        return self.state_dir / experiment_id

    def _manifest_path(self, sub: Submission) -> tuple[Path, bool]:
        """The plan's own manifest file when it holds exactly the submitted text, else a copy to write."""
        if self.plan_dir is not None:
            own = self.plan_dir / "trials" / f"{sub.trial_id}.json"
            try:
                if own.read_text(encoding="utf-8") == sub.manifest_json:
                    return own, False
            except OSError:
                pass
        return self._dir(sub.experiment_id) / f"{sub.trial_id}.manifest.json", True

    def _argv(self, sub: Submission, manifest: Path) -> list[str]:
        return [*self.command, str(manifest), "--results", sub.results_uri]

    # Backend protocol ------------------------------------------------------------------------------
    def preflight(self, submissions: Sequence[Submission]) -> None:
        exe = self.command[0]
        if os.sep not in exe and shutil.which(exe) is None:
            raise UserError(f"cannot find the trial command {exe!r}", where="local backend",
                            hint="install hpt with its trainer extra (`pip install 'hpt[trainer]'`) or set HPT_TRIAL_COMMAND")
        if os.sep in exe and not os.access(exe, os.X_OK):
            raise UserError(f"trial command {exe!r} is not executable", where="local backend")
        if submissions:
            self._cpus = max(self._cpus_of(s) for s in submissions)
            gpus = max(s.manifest.resources.gpus for s in submissions)
            if gpus and shutil.which("nvidia-smi") is None:
                # Not an error: the trainer falls back to CPU; say so once.
                print(f"note: trials ask for {gpus} GPU(s) but no NVIDIA GPU is visible; they run on CPU",
                      file=sys.stderr)
        probe = self.state_dir
        while not probe.exists():
            probe = probe.parent
        if not os.access(probe, os.W_OK):
            raise UserError("cannot write the local state folder (pid files of running trials)", where=str(self.state_dir))
        for experiment in sorted({s.experiment_id for s in submissions}):
            self._lock(experiment)

    def _lock(self, experiment_id: str) -> None:
        """One `hpt apply` per plan at a time on this machine. The kernel drops the lock when the process
        dies, even by kill -9, so a crashed apply never blocks the next one."""
        import fcntl

        folder = self._dir(experiment_id)
        folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(folder / "apply.lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise UserError(f"another `hpt apply` (pid {holder}) is running this plan on this machine",
                            where=str(self.plan_dir or folder),
                            hint="wait for it, or watch it with `hpt status PLAN`") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        self._locks.append(fd)  # held until this process exits

    def capacity(self) -> int:
        return max(1, int(_cores() // max(self._cpus, 1e-9)))

    def adopt(self, experiment_id: str) -> dict[str, LocalHandle]:
        adopted: dict[str, LocalHandle] = {}
        folder = self._dir(experiment_id)
        for record in sorted(folder.glob("*.pid.json")) if folder.is_dir() else []:
            try:
                info = json.loads(record.read_text())
                pid, tid = int(info["pid"]), str(info["trial_id"])
            except (OSError, ValueError, KeyError, TypeError):
                record.unlink(missing_ok=True)
                continue
            # Trials that ended while nobody watched are returned too: the loop keeps their log and
            # the store's row says how they ended; poll() reports them finished, release() cleans up.
            adopted[tid] = LocalHandle(tid, pid, record, Path(info["log"]),
                                       Path(info["manifest_copy"]) if info.get("manifest_copy") else None,
                                       info.get("ticks"), None, int(info.get("attempt", 1)), list(info.get("command", [])))
        return adopted

    def submit(self, submission: Submission) -> LocalHandle:
        folder = self._dir(submission.experiment_id)
        folder.mkdir(parents=True, exist_ok=True)
        manifest, is_copy = self._manifest_path(submission)
        if is_copy:
            tmp = manifest.with_suffix(".tmp")
            tmp.write_text(submission.manifest_json, encoding="utf-8")
            os.replace(tmp, manifest)
        log = folder / f"{submission.trial_id}.log"
        argv = self._argv(submission, manifest)
        env = {**os.environ, **self._env(submission)}
        record = folder / f"{submission.trial_id}.pid.json"
        record.unlink(missing_ok=True)  # a stale record must not open the gate
        with open(log, "wb") as out:
            try:
                popen = Popen(["/bin/sh", "-c", GATE, "hpt-trial-gate", str(record), *argv], stdout=out, stderr=STDOUT,
                              stdin=DEVNULL, env=env, start_new_session=True,
                              close_fds=True)
            except OSError as err:
                raise UserError(f"cannot start {argv[0]!r}: {err.strerror}", where="local backend") from None
        ticks = _start_ticks(popen.pid)  # exec keeps the pid and the start time: the record stays true
        tmp = record.with_suffix(".tmp")
        tmp.write_text(json.dumps({"pid": popen.pid, "ticks": ticks, "trial_id": submission.trial_id,
                                   "experiment_id": submission.experiment_id, "results": submission.results_uri,
                                   "attempt": submission.attempt, "log": str(log), "command": argv,
                                   "manifest_copy": str(manifest) if is_copy else None, "started_at": time.time()}))
        os.replace(tmp, record)
        return LocalHandle(submission.trial_id, popen.pid, record, log, manifest if is_copy else None, ticks, popen,
                           submission.attempt, argv)

    def poll(self, handle: LocalHandle) -> TrialStatus:
        if handle.popen is not None:
            code = handle.popen.poll()
            if code is None:
                return TrialStatus(Phase.RUNNING)
            if code == 0:
                return TrialStatus(Phase.SUCCEEDED, exit_code=0)
            if code < 0:
                name = signal.Signals(-code).name if -code in signal.valid_signals() else str(-code)
                # Killed from outside (OOM killer, a user): worth another try.
                return TrialStatus(Phase.FAILED, reason=f"killed by {name}", exit_code=code, transient=True)
            return TrialStatus(Phase.FAILED, reason=f"exit code {code}", exit_code=code)
        if process_alive(handle.pid, handle.ticks):
            return TrialStatus(Phase.RUNNING)
        # Adopted: not our child, so its exit status is unknown; the store's row decides.
        return TrialStatus(Phase.FAILED, reason="ended while hpt apply was not watching (exit status unknown)",
                           transient=True)

    def cancel(self, handle: LocalHandle) -> None:
        self._signal(handle, signal.SIGTERM)
        deadline = time.monotonic() + CANCEL_GRACE_S
        while time.monotonic() < deadline:
            if self.poll(handle).finished:
                return
            time.sleep(0.05)
        self._signal(handle, signal.SIGKILL)
        if handle.popen is not None:
            handle.popen.wait()

    def _signal(self, handle: LocalHandle, sig: signal.Signals) -> None:
        if handle.popen is not None and handle.popen.returncode is not None:
            return
        if handle.popen is None and not process_alive(handle.pid, handle.ticks):
            return
        try:
            os.killpg(handle.pid, sig)  # its own session: the group id is its pid
        except (ProcessLookupError, PermissionError):
            try:
                os.kill(handle.pid, sig)
            except (ProcessLookupError, PermissionError):
                pass

    def logs(self, handle: LocalHandle) -> str:
        try:
            with open(handle.log, "rb") as fh:
                size = fh.seek(0, os.SEEK_END)
                fh.seek(max(0, size - LOG_TAIL_BYTES))
                return fh.read().decode("utf-8", errors="replace")
        except OSError:
            return ""

    def release(self, handle: LocalHandle) -> None:
        if handle.popen is not None and handle.popen.returncode is None:
            handle.popen.poll()
        handle.record.unlink(missing_ok=True)
        handle.log.unlink(missing_ok=True)
        if handle.manifest_copy is not None:
            handle.manifest_copy.unlink(missing_ok=True)

    def close(self) -> None:
        """The run is over: let the next `hpt apply` of these plans in."""
        while self._locks:
            os.close(self._locks.pop())

    def dry_run(self, submissions: Sequence[Submission]) -> str:
        lines = []
        for sub in submissions:
            manifest, is_copy = self._manifest_path(sub)
            env = " ".join(f"{k}={v}" for k, v in self._env(sub).items())
            cmd = " ".join(shlex.quote(a) for a in self._argv(sub, manifest))
            note = "  # the manifest text, copied there at start" if is_copy else ""
            lines.append(f"{env} {cmd}{note}")
        return "\n".join(lines) + ("\n" if lines else "")
