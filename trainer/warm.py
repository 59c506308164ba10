"""`python -m hpt.trainer.warm`: a warm worker — the trainer's imports paid once, each trial a fresh forked child.

A trial process spends most of its fixed cost importing torch (bench/bench_trial_overhead.py). The local
backend's `--warm` mode starts one worker per `hpt apply`; the worker imports the trainer and then, per
trial, forks a child that is exactly what `hpt-trial` would be: its own session (so cancel kills its
group, and a killed apply leaves it running), its output in the trial's log, its environment, the same
pid-record gate, and the same exit codes. Nothing of a trial outlives its child.

Protocol, one JSON document per line:
  stdin   {"command": [...], "args": [...], "env": {...}, "log": PATH, "record": PATH}
  stdout  {"started": PID} for each request, in order; {"exited": PID, "code": N} when a child ends
          (N < 0: killed by signal -N, as subprocess reports it)
The worker exits when stdin closes (its apply ended or died); children still running keep running and
are adopted by the next `hpt apply` through their pid records, as with process-per-trial.

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


def is_trainer(command: list[str]) -> bool:
    """`hpt-trial` or `python -m hpt.trainer`: run in-process through hpt.trainer.__main__.main."""
    return Path(command[0]).name == "hpt-trial" or command[1:] == ["-m", "hpt.trainer"]


def run_command(command: list[str], args: list[str]) -> int:
    """Run the trial command in this (forked) process; returns its exit code."""
    try:
        if is_trainer(command):
            from hpt.trainer.__main__ import main

            main(args)
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


def _child(request: dict[str, Any]) -> None:
    """In the forked child: become the trial process, run it, and never return to the worker's loop."""
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
        deadline = time.monotonic() + GATE_TIMEOUT_S
        while not os.path.exists(request["record"]):
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
            sys.stdout.flush()
            sys.stderr.flush()
            pid = os.fork()
            if pid == 0:
                _child(request)
            children.add(pid)
            _say({"started": pid})


if __name__ == "__main__":
    serve()
