"""`python -m hpt.trainer.warm`: a warm worker — the trainer's imports paid once, each trial a fresh forked child.

A trial process spends most of its fixed cost importing torch (bench/bench_trial_overhead.py). The local
backend's `--warm` mode starts one worker per `hpt apply`; the worker imports the trainer and then, per
trial, forks a child that is exactly what `hpt-trial` would be: its own session (so cancel kills its
group, and a killed apply leaves it running), its output in the trial's log, its environment, the same
pid-record gate (the record must name the child), and the same exit codes. Nothing of a trial outlives its child.

Protocol, one JSON document per line:
  stdin   {"command": [...], "args": [...], "env": {...}, "log": PATH, "record": PATH}
  stdout  {"started": PID} for each request, in order; {"exited": PID, "code": N} when a child ends
          (N < 0: killed by signal -N, as subprocess reports it)
The worker exits when stdin closes (its apply ended or died); children still running keep running and
are adopted by the next `hpt apply` through their pid records, as with process-per-trial. A request read
after its apply died (the worker is no longer its child) is dropped, never forked. Either way a forked
child trains only once it owns the trial (hpt.trainer.trial → hpt.store.ownership).

`--folder DIR` (the docker backend's slot containers): the same worker, the same children, with files in
DIR as the transport instead of pipes, so that an apply can die and another pick up where it left:
  DIR/<trial>.request.json  {"trial_id", "command", "args", "env", "attempt"} (written whole by the apply)
  DIR/<trial>.pid           {"pid", "oom_kills"} once forked; the child's gate waits for it
  DIR/<trial>.log           the child's stdout and stderr
  DIR/<trial>.exit          {"code": N, "oom_killed": bool | null} when it ended (N as above)
  DIR/<trial>.cancel        the apply asks: SIGTERM to the child's group, SIGKILL after CANCEL_GRACE_S
  DIR/heartbeat             touched by the apply while it watches; the worker exits once nothing ran and
                            the heartbeat stayed untouched for $HPT_WARM_IDLE_S (60 s): nothing is left behind
(the names: hpt.schemas.warm)
One trial at a time (the container's cpu, memory and GPUs are that trial's): requests wait in order.

The worker itself never runs torch code: OpenMP and CUDA are not fork-safe once started, so each child
starts them itself, after the fork.
"""
from __future__ import annotations

import json
import os
import select
import signal
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from hpt.schemas.warm import CANCEL, CANCEL_GRACE_S, EXIT, HEARTBEAT, IDLE_ENV, IDLE_EXIT_S, LOG, PID, REQUEST, REQUESTER_ENV

GATE_TIMEOUT_S = 5.0  # as the local backend's shell gate: no pid record by then → exit 75, run nothing
EXIT_NO_RECORD = 75
REAP_EVERY_S = 0.05


def preload() -> None:
    """Everything a trial imports that costs time: torch, the trainer, data reading, the store."""
    import hpt.trainer.__main__  # noqa: F401  (sets OMP_WAIT_POLICY before torch loads OpenMP)
    import hpt.trainer.artifacts  # noqa: F401
    import hpt.trainer.data  # noqa: F401
    import hpt.trainer.trial  # noqa: F401
    import pandas  # noqa: F401
    import pyarrow.parquet  # noqa: F401
    try:
        import torch.utils.tensorboard  # noqa: F401
    except ImportError:  # the trial logs that it writes no curves
        pass


IN_CHILD = False   # True in a trial's forked child: a Python entry point it starts is forked too (fork_command)


def is_trainer(command: list[str]) -> bool:
    """`hpt-trial` or `python -m hpt.trainer`: run in-process through hpt.trainer.__main__.main."""
    return Path(command[0]).name == "hpt-trial" or command[1:] == ["-m", "hpt.trainer"]


def run_command(command: list[str], args: list[str]) -> int:
    """Run the trial command in this (forked) process; returns its exit code."""
    try:
        if is_trainer(command):
            from hpt.trainer.__main__ import main

            main(args)
        elif len(command) >= 3 and Path(command[0]).name.startswith("python") and command[1] == "-m":
            import runpy  # `python -m MODULE ARGS` (a user's entry point: python -m hpt.trial module:function)

            sys.argv = [command[2], *command[3:], *args]
            runpy.run_module(command[2], run_name="__main__", alter_sys=True)
        elif len(command) == 2 and Path(command[0]).name.startswith("python") and command[1].endswith(".py"):
            import runpy  # a Python script (HPT_TRIAL_COMMAND="python script.py"): as `python script.py` runs it

            sys.argv = [command[1], *args]
            runpy.run_path(command[1], run_name="__main__")
        else:  # anything else: no warm start to offer, but the same process and guarantees
            os.execvp(command[0], [*command, *args])
    except SystemExit as stop:
        if stop.code is None or isinstance(stop.code, int):
            return stop.code or 0
        print(stop.code, file=sys.stderr)
        return 1
    except BaseException:  # noqa: BLE001  (a crash of the trial is its exit code, never the worker's)
        traceback.print_exc()
        return 1
    return 0


class ForkedCommand:
    """`python -m MODULE ...` run in a fork of this process instead of a new interpreter: what `subprocess.Popen`
    gives the trial wrapper (stdout+stderr as one pipe, wait(), a context manager), for a user's Python entry
    point inside a warm trial, whose imports (torch, pandas) the worker paid once."""

    def __init__(self, argv: list[str], cwd: str | os.PathLike[str], env: dict[str, str]):
        read, write = os.pipe()
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
        pid = os.fork()
        if pid == 0:   # the program: as `python -m` would start it in `cwd`, then gone
            code = 1
            try:
                os.close(read)
                null = os.open(os.devnull, os.O_RDONLY)
                os.dup2(null, 0)
                os.dup2(write, 1)
                os.dup2(write, 2)
                os.close(write)
                os.chdir(cwd)
                os.environ.clear()
                os.environ.update(env)
                sys.path.insert(0, os.getcwd())   # python -m puts the working folder first
                sys.stdout.reconfigure(line_buffering=True)
                sys.stderr.reconfigure(line_buffering=True)
                code = run_command(list(argv[:3]), list(argv[3:]))
            finally:
                try:
                    sys.stdout.flush()
                    sys.stderr.flush()
                finally:
                    os._exit(code)
        os.close(write)
        self.pid = pid
        self.stdout = os.fdopen(read, "rb")
        self.returncode: int | None = None

    def wait(self) -> int:
        if self.returncode is None:
            _, status = os.waitpid(self.pid, 0)
            self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def __enter__(self) -> "ForkedCommand":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stdout.close()
        self.wait()


def fork_command(argv: list[str], cwd: str | os.PathLike[str], env: dict[str, str]) -> ForkedCommand | None:
    """A forked `python -m ...` when this is a warm trial's child, else None (start a process as usual)."""
    if not IN_CHILD or len(argv) < 3 or argv[0] != sys.executable or argv[1] != "-m":
        return None
    return ForkedCommand(argv, cwd, env)


def _child(request: dict[str, Any]) -> None:
    """In the forked child: become the trial process, run it, and never return to the worker's loop."""
    import hpt.trainer.warm as importable   # this file runs as __main__ (python -m): flag the module others import
    importable.IN_CHILD = True
    code = 1
    try:
        os.setsid()
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGCHLD, signal.SIGPIPE):
            signal.signal(sig, signal.SIG_DFL)
        log = os.open(request["log"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(log, 1)
        os.dup2(log, 2)
        os.close(log)
        os.close(null)
        os.environ.update(request["env"])
        if request.get("oom_first"):  # in a slot container the trial, never the worker, is the OOM killer's pick
            try:
                Path("/proc/self/oom_score_adj").write_text("1000")
            except OSError:
                pass
        deadline = time.monotonic() + GATE_TIMEOUT_S
        while not _names_me(request["record"]):
            if time.monotonic() > deadline:
                os._exit(EXIT_NO_RECORD)
            time.sleep(0.01)
        code = run_command(list(request["command"]), list(request["args"]))
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


def _names_me(record: str) -> bool:
    """The gate: the pid record exists and names this process (a record another copy of the trial got
    opens no gate but its own)."""
    try:
        with open(record, "rb") as fh:
            doc = json.loads(fh.read(65536))
        return isinstance(doc, dict) and doc.get("pid") == os.getpid()
    except (OSError, ValueError):
        return False


def _say(doc: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(doc) + "\n")
    sys.stdout.flush()


def _reap(children: set[int]) -> None:
    for pid in list(children):
        try:
            done, status = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            children.discard(pid)
            continue
        if done:
            children.discard(pid)
            _say({"exited": pid, "code": os.waitstatus_to_exitcode(status)})


def serve() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the apply's to handle (it cancels the trials)
    requester = int(os.environ.get(REQUESTER_ENV) or os.getppid())  # from the apply: it may die before we look
    preload()
    children: set[int] = set()
    pending = b""
    while True:
        readable, _, _ = select.select([0], [], [], REAP_EVERY_S)
        _reap(children)
        if not readable:
            continue
        chunk = os.read(0, 65536)
        if not chunk:
            return  # the apply is gone: running children keep running, in their own sessions
        pending += chunk
        while b"\n" in pending:
            line, pending = pending.split(b"\n", 1)
            request = json.loads(line)
            if os.getppid() != requester:
                return  # the apply that asked is gone (kill -9): what it queued is dropped, never forked
            sys.stdout.flush()
            sys.stderr.flush()
            pid = os.fork()
            if pid == 0:
                _child(request)
            children.add(pid)
            _say({"started": pid})


def _write(path: Path, doc: dict[str, Any]) -> None:
    """Whole or not at all: the apply reads these files at any moment."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(doc))
    os.replace(tmp, path)


def oom_kills() -> int | None:
    """The OOM kills in this container's memory cgroup so far (cgroup v2, then v1); None where unreadable."""
    for path, key in (("/sys/fs/cgroup/memory.events", "oom_kill"), ("/sys/fs/cgroup/memory/memory.oom_control", "oom_kill")):
        try:
            for line in Path(path).read_text().splitlines():
                name, _, value = line.partition(" ")
                if name == key:
                    return int(value)
        except (OSError, ValueError):
            continue
    return None


class Slot:
    """A folder's one running child at a time (the docker backend's slot container)."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.child: tuple[int, str, int | None] | None = None   # pid, trial id, oom kills before it
        self.term_at: float | None = None
        self.active_at = time.time()    # start, or the last trial's end: idle time counts from the later of this and the heartbeat

    def _files(self, tid: str, ext: str) -> Path:
        return self.folder / f"{tid}{ext}"

    def waiting(self) -> list[str]:
        """Requests not started yet, oldest first."""
        found = []
        for path in self.folder.glob(f"*{REQUEST}"):
            tid = path.name[: -len(REQUEST)]
            if not self._files(tid, PID).exists() and not self._files(tid, EXIT).exists():
                try:
                    found.append((path.stat().st_mtime, tid))
                except OSError:
                    continue
        return [tid for _, tid in sorted(found)]

    def start_next(self) -> None:
        for tid in self.waiting():
            if self._files(tid, CANCEL).exists():  # cancelled before it started: it never runs
                _write(self._files(tid, EXIT), {"code": -int(signal.SIGTERM), "oom_killed": False})
                continue
            try:
                request = json.loads(self._files(tid, REQUEST).read_text())
            except (OSError, ValueError):
                continue  # gone meanwhile (released)
            request = {**request, "log": str(self._files(tid, LOG)), "record": str(self._files(tid, PID)),
                       "oom_first": True}
            before = oom_kills()
            sys.stdout.flush()
            sys.stderr.flush()
            pid = os.fork()
            if pid == 0:
                _child(request)
            self.child, self.term_at = (pid, tid, before), None
            _write(self._files(tid, PID), {"pid": pid, "oom_kills": before})
            return

    def watch(self) -> None:
        """Reap the child (its exit file) and act on a cancel request."""
        if self.child is None:
            return
        pid, tid, before = self.child
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            code = os.waitstatus_to_exitcode(status)
            after = oom_kills()
            oom = None if before is None or after is None else after > before
            _write(self._files(tid, EXIT), {"code": code, "oom_killed": oom})
            self.child, self.active_at = None, time.time()
            return
        if self._files(tid, CANCEL).exists():
            now = time.monotonic()
            if self.term_at is None:
                self.term_at = now
                _kill_group(pid, signal.SIGTERM)
            elif now - self.term_at > CANCEL_GRACE_S:
                _kill_group(pid, signal.SIGKILL)

    def idle_for(self) -> float:
        """Seconds since anyone last needed this worker (the apply's heartbeat, the last trial, its start);
        0 while a trial runs or waits."""
        if self.child is not None or self.waiting():
            return 0.0
        try:
            beat = (self.folder / HEARTBEAT).stat().st_mtime
        except OSError:
            beat = 0.0
        return time.time() - max(beat, self.active_at)


def _kill_group(pid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pid, sig)  # its own session: the group id is its pid
    except (ProcessLookupError, PermissionError):
        pass


def serve_folder(folder: Path) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    preload()
    slot = Slot(folder)
    idle_limit = float(os.environ.get(IDLE_ENV, IDLE_EXIT_S))
    while True:
        slot.watch()
        if slot.child is None:
            slot.start_next()
        if slot.child is None and slot.idle_for() > idle_limit:
            return  # nobody has watched for a while and nothing runs: the container ends
        time.sleep(REAP_EVERY_S)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--folder"] and len(sys.argv) == 3:
        serve_folder(Path(sys.argv[2]))
    else:
        serve()
