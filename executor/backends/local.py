"""The local backend: each trial is an `hpt-trial` subprocess on this machine (no Docker, no cluster).

Each trial starts in its own session (process group), so that
- cancel() stops the trainer and anything it started (killpg), and
- a `kill -9` of `hpt apply` leaves running trials alive: their pid records under the state folder
  (`PLAN/.hpt/local/<experiment>/<trial>.pid.json`) let the next `hpt apply` adopt them instead of
  starting duplicates. Rows are create-only, so even a duplicate run could never write two rows.

Warm starts, the default (`warm=None`; `True`: `hpt apply --warm`, every trial; `False`: `--no-warm`): instead
of a fresh `hpt-trial` process, a trial is a child forked from one warm worker (hpt.trainer.warm) that has
imported torch and the trainer once. The child is the same trial process in every way the backend relies
on — own session, pid record and gate, log file, exit code — so cancel, timeouts, adoption after a kill -9
and create-only rows work unchanged. By default a trial starts fresh where a fork cannot serve it as well
(hpt.executor.warm.fresh_reason: GPU trials, user `command` trainers) and where the trial command is not
hpt's own trainer of this Python ($HPT_TRIAL_COMMAND, another installation's hpt-trial) or this Python
has no torch (`_fresh_here`).
"""
from __future__ import annotations

import functools
import importlib.util
import json
import math
import os
import shlex
import shutil
import select
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from subprocess import DEVNULL, PIPE, STDOUT, Popen
from typing import Any, Sequence

from hpt.executor.backend import Backend, Phase, Submission, TrialStatus, log_tail
from hpt.executor.shell import shell_quote
from hpt.executor.warm import fresh_note, fresh_reason, warm_choice
from hpt.schemas.errors import UserError
from hpt.schemas.files import read_regular
from hpt.schemas.plan import manifest_path
from hpt.schemas.warm import REQUESTER_ENV
from hpt.store.ownership import check_trial_id, process_alive, start_ticks

CANCEL_GRACE_S = 3.0
# A trial starts behind a gate that waits for its pid record to name it: if `hpt apply` is killed between
# starting the process and recording it, the process gives up (exit 75) instead of running a trial that no
# later apply could find and adopt. The record must name this very process ($$ is the shell's pid, which
# exec keeps): a record the next apply writes for its own copy of the trial opens no other copy's gate.
# (The gate is not what makes a trial run once: its ownership in the store is, hpt.store.ownership.)
GATE = ('r=$1; shift; i=0; while ! grep -q "\\"pid\\": $$," "$r" 2>/dev/null; do i=$((i+1)); '
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


@dataclass
class LocalHandle:
    trial_id: str
    pid: int
    record: Path
    log: Path
    manifest_copy: Path | None
    ticks: str | None = None
    popen: Popen | None = None          # None for a trial adopted from an earlier `hpt apply`, or a warm one
    attempt: int = 1
    command: list[str] = field(default_factory=list)
    worker: WarmWorker | None = None    # the warm worker that forked it (and reports its exit code)


class WarmWorker:
    """This apply's warm worker (hpt.trainer.warm): forks trials, reports their pids and exit codes."""

    def __init__(self, log: Path):
        with open(log, "ab") as err:
            self.process = Popen([sys.executable, "-m", "hpt.trainer.warm"], stdin=PIPE, stdout=PIPE, stderr=err,
                                 close_fds=True, env={**os.environ, REQUESTER_ENV: str(os.getpid())})
        assert self.process.stdin is not None and self.process.stdout is not None
        self._out = self.process.stdout.fileno()
        os.set_blocking(self._out, False)
        self._pending = b""
        self.exits: dict[int, int] = {}

    def start(self, request: dict[str, Any]) -> int:
        """Fork one trial; returns its pid."""
        assert self.process.stdin is not None
        try:
            self.process.stdin.write((json.dumps(request) + "\n").encode())
            self.process.stdin.flush()
        except OSError as err:
            raise UserError(f"the warm worker is gone ({err.strerror})", where="local backend --warm",
                            hint="its log is warm-worker.log in the plan's .hpt/local folder") from None
        while True:
            for doc in self._read(block=True):
                if "started" in doc:
                    return int(doc["started"])

    def drain(self) -> None:
        """Take in the exit codes reported so far (never blocks)."""
        for _ in self._read(block=False):
            pass

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def _read(self, block: bool) -> list[dict[str, Any]]:
        docs: list[dict[str, Any]] = []
        while not docs:
            try:
                chunk = os.read(self._out, 65536)
            except BlockingIOError:
                chunk = None
            if chunk == b"" or (chunk is None and not block):
                if chunk == b"" and block:
                    raise UserError("the warm worker exited", where="local backend --warm",
                                    hint="its log is warm-worker.log in the plan's .hpt/local folder")
                break
            if chunk is None:
                select.select([self._out], [], [], 1.0)
                continue
            self._pending += chunk
            while b"\n" in self._pending:
                line, self._pending = self._pending.split(b"\n", 1)
                doc = json.loads(line)
                if "exited" in doc:
                    self.exits[int(doc["exited"])] = int(doc["code"])
                docs.append(doc)
        return docs

    def close(self, wait: bool = True) -> None:
        assert self.process.stdin is not None
        try:
            self.process.stdin.close()
        except OSError:
            pass
        if not wait:
            self.process.kill()   # it never forked: nothing of a trial is in it
        try:
            self.process.wait(timeout=5)
        except Exception:  # noqa: BLE001  (a stuck worker must not keep apply from ending)
            self.process.kill()


@dataclass(frozen=True)
class LocalOptions:
    state_dir: str | Path | None = None      # pid records; the apply command passes PLAN/.hpt/local
    plan_dir: str | Path | None = None       # run the plan's own manifest files instead of copies
    command: Sequence[str] | None = None     # the trial command (default: hpt-trial, or $HPT_TRIAL_COMMAND)
    warm: bool | None = None                 # fork trials from a worker that imported torch once: None where safe


class LocalBackend(Backend):
    name = "local"
    Options = LocalOptions
    poll_interval = 0.05  # Popen.poll is a cheap syscall; a short interval keeps per-trial overhead low

    def __init__(self, options: LocalOptions = LocalOptions()):
        # Without a state_dir (outside `hpt apply`): a per-user folder.
        base = options.state_dir or os.environ.get("HPT_STATE_DIR") or Path.home() / ".cache" / "hpt" / "local"
        self.state_dir = Path(base).expanduser().resolve()
        self.plan_dir = Path(options.plan_dir).resolve() if options.plan_dir else None
        self.command = list(options.command) if options.command else default_command()
        self._cpus = 1.0
        self._locks: list[int] = []
        self.warm = options.warm
        self._worker: WarmWorker | None = None
        self._forked = 0                         # trials the warm worker started (none: close() need not wait)

    # ---------------------------------------------------------------------------------------------
    def _cpus_of(self, sub: Submission) -> float:
        return float(sub.manifest.resources.cpus)

    def _threads(self, sub: Submission) -> int:
        return max(1, math.ceil(self._cpus_of(sub)))

    def _env(self, sub: Submission) -> dict[str, str]:
        threads = str(self._threads(sub))
        return {"HPT_CPUS": threads, "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads, **sub.ticket_env}

    def _dir(self, experiment_id: str) -> Path:
        return self.state_dir / experiment_id

    def _manifest_path(self, sub: Submission) -> tuple[Path, bool]:
        """The plan's own manifest file when it holds exactly the submitted text, else a copy to write."""
        if self.plan_dir is not None:
            own = manifest_path(self.plan_dir, sub.trial_id)
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
        if self.warm and importlib.util.find_spec("torch") is None:
            raise UserError("--warm runs trials in a worker of this Python, which has no torch",
                            where="local backend --warm", hint="install hpt with its trainer extra here, or drop --warm")
        if self.warm is None:
            note = fresh_note(self._fresh_reasons(submissions), "the local backend")
            if note:
                print(note, file=sys.stderr)
        probe = self.state_dir
        while not probe.exists():
            probe = probe.parent
        if not os.access(probe, os.W_OK):
            raise UserError("cannot write the local state folder (pid files of running trials)", where=str(self.state_dir))
        for experiment in sorted({s.experiment_id for s in submissions}):
            self._lock(experiment)
        if any(self._warm_for(s) for s in submissions):
            self._start_worker()   # now: it imports torch while apply reads the store

    @functools.cached_property
    def _fresh_here(self) -> str | None:
        """Why no trial of this backend starts warm by default, whatever the trial (None: they may)."""
        own = ([str(Path(sys.executable).parent / "hpt-trial")], [sys.executable, "-m", "hpt.trainer"])
        if os.environ.get("HPT_TRIAL_COMMAND") or self.command not in own:
            return "a trial command other than this Python's hpt-trial (the worker could only exec it)"
        if importlib.util.find_spec("torch") is None:
            return "a Python without torch (the trainer extra is not installed here)"
        return None

    def _fresh_reasons(self, submissions: Sequence[Submission]) -> list[str | None]:
        """Per trial, why it starts fresh by default (None: warm). Nothing where no trial could start warm here
        (an own trial command: docs/executor.md says so; a note on every apply would only be noise)."""
        if self._fresh_here is not None:
            return []
        return [fresh_reason(s.manifest) for s in submissions]

    def _warm_for(self, submission: Submission) -> bool:
        return warm_choice(self.warm, submission.manifest, self._fresh_here)

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

    def adopt(self, experiment_id: str, results_uri: str) -> dict[str, LocalHandle]:
        return self._recorded(experiment_id, results_uri)

    def _recorded(self, experiment_id: str, results_uri: str | None) -> dict[str, LocalHandle]:
        """The trials with a pid record: of the store `results_uri`, or of every store (None)."""
        adopted: dict[str, LocalHandle] = {}
        folder = self._dir(experiment_id)
        for record in sorted(folder.glob("*.pid.json")) if folder.is_dir() else []:
            try:  # a damaged record (bytes, another shape, another trial's name) is dropped: its trial is not adopted
                tid = check_trial_id(record.name[:-len(".pid.json")], f"pid record {record}")
                info = json.loads(read_regular(record, limit=1 << 20))
                pid = info["pid"]
                if not isinstance(pid, int) or isinstance(pid, bool) or info["trial_id"] != tid:
                    raise ValueError(f"{record}: not this trial's record")
                if results_uri is not None and info.get("results", results_uri) != results_uri:
                    continue  # a trial of this plan writing to another store: not this apply's
                # Trials that ended while nobody watched are returned too: the loop keeps their log and
                # the store's row says how they ended; poll() reports them finished, release() cleans up.
                # Its files are where this backend puts a trial's files: the record is data, never a path.
                copy = folder / f"{tid}.manifest.json"
                ticks = info.get("ticks")
                adopted[tid] = LocalHandle(tid, pid, record, folder / f"{tid}.log", copy if copy.exists() else None,
                                           ticks if isinstance(ticks, str) else None, None, int(info.get("attempt", 1)),
                                           [str(a) for a in info.get("command", [])])
            except (OSError, ValueError, KeyError, TypeError, AttributeError, UserError):
                record.unlink(missing_ok=True)
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
        if self._warm_for(submission):
            return self._submit_warm(submission, argv, manifest if is_copy else None, log, record)
        with open(log, "wb") as out:
            try:
                popen = Popen(["/bin/sh", "-c", GATE, "hpt-trial-gate", str(record), *argv], stdout=out, stderr=STDOUT,
                              stdin=DEVNULL, env=env, start_new_session=True,
                              close_fds=True)
            except OSError as err:
                raise UserError(f"cannot start {argv[0]!r}: {err.strerror}", where="local backend") from None
        ticks = start_ticks(popen.pid)  # exec keeps the pid and the start time: the record stays true
        self._record(record, submission, popen.pid, ticks, log, argv, manifest if is_copy else None)
        return LocalHandle(submission.trial_id, popen.pid, record, log, manifest if is_copy else None, ticks, popen,
                           submission.attempt, argv)

    def _submit_warm(self, submission: Submission, argv: list[str], copy: Path | None, log: Path,
                     record: Path) -> LocalHandle:
        worker = self._start_worker()
        pid = worker.start({"command": self.command, "args": argv[len(self.command):],
                                  "env": self._env(submission), "log": str(log), "record": str(record)})
        self._forked += 1
        ticks = start_ticks(pid)  # the child waits for the record (the gate) before it runs anything
        self._record(record, submission, pid, ticks, log, argv, copy)
        return LocalHandle(submission.trial_id, pid, record, log, copy, ticks, None, submission.attempt, argv, worker)

    def _start_worker(self) -> WarmWorker:
        if self._worker is None or not self._worker.alive:
            self.state_dir.mkdir(parents=True, exist_ok=True)
            self._worker = WarmWorker(self.state_dir / "warm-worker.log")
        return self._worker

    @staticmethod
    def _record(record: Path, submission: Submission, pid: int, ticks: str | None, log: Path, argv: list[str],
                copy: Path | None) -> None:
        tmp = record.with_suffix(".tmp")
        tmp.write_text(json.dumps({"pid": pid, "ticks": ticks, "trial_id": submission.trial_id,
                                   "experiment_id": submission.experiment_id, "results": submission.results_uri,
                                   "attempt": submission.attempt, "command": argv, "ticket": submission.ticket,
                                   "started_at": time.time()}))  # data only: its files are found from the trial id
        os.replace(tmp, record)

    def _exit_code(self, handle: LocalHandle) -> int | None:
        """The trial's exit code once it ended and this apply knows it (its child, or its warm worker's)."""
        if handle.popen is not None:
            return handle.popen.poll()
        if handle.worker is not None:
            handle.worker.drain()
            return handle.worker.exits.get(handle.pid)
        return None

    def poll(self, handle: LocalHandle) -> TrialStatus:
        code = self._exit_code(handle)
        if code is None and handle.popen is not None:
            return TrialStatus(Phase.RUNNING)
        if code is not None:
            if code == 0:
                return TrialStatus(Phase.SUCCEEDED, exit_code=0)
            if code < 0:
                name = signal.Signals(-code).name if -code in signal.valid_signals() else str(-code)
                # Killed from outside (OOM killer, a user): worth another try.
                return TrialStatus(Phase.FAILED, reason=f"killed by {name}", exit_code=code, transient=True)
            return TrialStatus(Phase.FAILED, reason=f"exit code {code}", exit_code=code)
        if process_alive(handle.pid, handle.ticks):
            return TrialStatus(Phase.RUNNING)
        if handle.worker is not None and handle.worker.alive:
            return TrialStatus(Phase.RUNNING)  # ended; the worker reports its exit code within REAP_EVERY_S
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
        while handle.worker is not None and not self.poll(handle).finished:
            time.sleep(0.02)

    def _signal(self, handle: LocalHandle, sig: signal.Signals) -> None:
        if handle.popen is not None and handle.popen.returncode is not None:
            return
        if handle.worker is not None and self._exit_code(handle) is not None:
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
        return log_tail(handle.log)

    def release(self, handle: LocalHandle) -> None:
        if handle.popen is not None and handle.popen.returncode is None:
            handle.popen.poll()
        handle.record.unlink(missing_ok=True)
        handle.log.unlink(missing_ok=True)
        if handle.manifest_copy is not None:
            handle.manifest_copy.unlink(missing_ok=True)

    def delete_plan(self, submissions: Sequence[Submission], dry_run: bool = False) -> dict[str, list[str]]:
        """Stop the trials a killed `hpt apply` (kill -9: no chance to stop them) left running, by their pid
        records, and drop those records and logs; with dry_run only list them (by trial id). Of every store,
        or only of the submissions' store when they name one. Refused while an apply runs the plan here."""
        if not submissions:
            return {"processes": []}
        experiment, results = submissions[0].experiment_id, submissions[0].results_uri
        self._lock(experiment)   # released by close()
        running = [h for h in self._recorded(experiment, results or None).values() if process_alive(h.pid, h.ticks)]
        if not dry_run:
            for handle in running:
                self.cancel(handle)
                self.release(handle)
        return {"processes": sorted(h.trial_id for h in running)}

    def close(self) -> None:
        """The run is over: let the next `hpt apply` of these plans in."""
        if self._worker is not None:
            self._worker.close(wait=self._forked > 0)   # one that forked nothing may still be importing torch
            self._worker = None
        while self._locks:
            os.close(self._locks.pop())

    def dry_run(self, submissions: Sequence[Submission]) -> str:
        lines = []
        for sub in submissions:
            manifest, is_copy = self._manifest_path(sub)
            env = " ".join(f"{k}={shell_quote(v)}" for k, v in self._env(sub).items())
            cmd = " ".join(shell_quote(a) for a in self._argv(sub, manifest))
            note = "  # the manifest text, copied there at start" if is_copy else ""
            lines.append(f"{env} {cmd}{note}")
        return "\n".join(lines) + ("\n" if lines else "")
