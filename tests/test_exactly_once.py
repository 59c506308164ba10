"""Exactly once: no interleaving of kill -9s trains a trial twice (hpt.store.ownership, docs/executor.md).

Each test builds one interleaving with the REAL trainer on the small real dataset, as a killed apply
leaves it behind — a launched process that has not owned its trial yet, one that owns it but has no pid
record, a warm request whose apply is gone, an apply killed while it adopts — then lets the next apply
run, and counts the training runs per trial (each leaves its own TensorBoard event file).
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from executor_support import hpt_exe, owner_fences, training_runs, write_plan
from hpt.store.ownership import TICKET_ENV, Ticket
from trial_factory import make_manifest

pytestmark = pytest.mark.slow


def plan(tmp_path: Path, dataset: Path, n: int, epochs: int = 1) -> tuple[Path, list[str]]:
    ms = [make_manifest(dataset, "bag-of-words", epochs=epochs, seed=i, experiment="e-0ce000000000", hidden_size=16)
          for i in range(n)]
    return write_plan(tmp_path / "plan", ms), [m.id for m in ms]


def apply(plan_dir: Path, results: str, *extra: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([hpt_exe(), "apply", str(plan_dir), "--results", results, "--format", "json", *extra],
                          capture_output=True, text=True, timeout=timeout)


def stale_launch(plan_dir: Path, tid: str, results: str, fence: int = 1) -> subprocess.Popen:
    """What an apply killed right after starting a trial leaves: `hpt-trial` with its ticket, unwatched."""
    env = {**os.environ, TICKET_ENV: str(Ticket.new(fence))}
    return subprocess.Popen([str(Path(sys.executable).parent / "hpt-trial"), str(plan_dir / "trials" / f"{tid}.json"),
                             "--results", results], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)


def wait_for(predicate, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def events(stdout: str) -> list[dict]:
    return [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]


def test_killed_between_launch_and_ownership_the_stale_copy_trains_nothing(tmp_path, small_dataset):
    plan_dir, (tid,) = plan(tmp_path, small_dataset, 1)
    results = str(tmp_path / "results")
    stale = stale_launch(plan_dir, tid, results)
    os.kill(stale.pid, signal.SIGSTOP)          # launched, not yet the owner: the apply that started it is gone
    try:
        done = apply(plan_dir, results)
        assert done.returncode == 0, done.stderr
        assert training_runs(results, tid) == 1 and owner_fences(results, tid) == [1]
    finally:
        os.kill(stale.pid, signal.SIGCONT)
    out, _ = stale.communicate(timeout=120)
    assert stale.returncode == 0 and "already has a row" in out   # it looked, found the row, trained nothing
    assert training_runs(results, tid) == 1


def test_the_loser_of_a_fence_trains_nothing_and_the_apply_waits_for_the_winner(tmp_path, small_dataset):
    """Two launches with one fence (a dead apply's and the next one's): one owns, the other exits 73."""
    plan_dir, (tid,) = plan(tmp_path, small_dataset, 1, epochs=3)
    results = str(tmp_path / "results")
    first = stale_launch(plan_dir, tid, results)
    wait_for(lambda: owner_fences(results, tid) == [1])     # the first copy owns fence 1
    second = stale_launch(plan_dir, tid, results)           # the same fence, as the next apply would give
    out, _ = second.communicate(timeout=120)
    assert second.returncode == 73 and "owned by another process" in out
    first.communicate(timeout=300)
    assert first.returncode == 0 and training_runs(results, tid) == 1


def test_killed_between_ownership_and_pid_record_the_next_apply_waits_for_the_owner(tmp_path, small_dataset):
    plan_dir, (tid,) = plan(tmp_path, small_dataset, 1, epochs=3)
    results = str(tmp_path / "results")
    owner = stale_launch(plan_dir, tid, results)
    wait_for(lambda: owner_fences(results, tid) == [1])     # it owns the trial; no apply recorded it anywhere
    done = apply(plan_dir, results)
    owner.communicate(timeout=300)
    assert done.returncode == 0, done.stderr
    said = " ".join(e.get("text", "") for e in events(done.stdout) if e["event"] == "message")
    assert "still runs it; waiting for its row" in said
    assert not [e for e in events(done.stdout) if e["event"] == "trial-started"]   # it started no copy of its own
    assert training_runs(results, tid) == 1 and owner_fences(results, tid) == [1]


def test_a_warm_request_whose_apply_died_is_never_forked(tmp_path, small_dataset):
    plan_dir, (tid,) = plan(tmp_path, small_dataset, 1)
    results = str(tmp_path / "results")
    state = tmp_path / "state"
    state.mkdir()
    request = {"command": [str(Path(sys.executable).parent / "hpt-trial")],
               "args": [str(plan_dir / "trials" / f"{tid}.json"), "--results", results],
               "env": {TICKET_ENV: str(Ticket.new(1))}, "log": str(state / "t.log"), "record": str(state / "t.pid.json")}
    # The requester: starts its warm worker, queues one trial, and dies before the worker has read it.
    requester = subprocess.run([sys.executable, "-c", (
        "import json, os, subprocess, sys\n"
        "w = subprocess.Popen([sys.executable, '-m', 'hpt.trainer.warm'], stdin=subprocess.PIPE,"
        " stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,"
        " env={**os.environ, 'HPT_WARM_REQUESTER': str(os.getpid())})\n"
        f"w.stdin.write((json.dumps({request!r}) + '\\n').encode()); w.stdin.flush()\n"
        "print(w.pid, flush=True)\n"
        "os._exit(0)\n")], capture_output=True, text=True, timeout=60)
    worker = int(requester.stdout.split()[0])
    wait_for(lambda: not Path(f"/proc/{worker}").exists() or
             Path(f"/proc/{worker}/stat").read_text().split(")")[-1].split()[0] == "Z")
    assert owner_fences(results, tid) == [] and not (state / "t.log").exists()   # never forked
    done = apply(plan_dir, results, "--warm")
    assert done.returncode == 0, done.stderr
    assert training_runs(results, tid) == 1 and owner_fences(results, tid) == [1]


def test_killed_while_adopting_the_trials_still_train_once(tmp_path, small_dataset):
    plan_dir, ids = plan(tmp_path, small_dataset, 2, epochs=3)
    results = str(tmp_path / "results")
    records = plan_dir / ".hpt" / "local" / "e-0ce000000000"

    def start() -> subprocess.Popen:
        # --no-warm: a fresh process's start keeps the trials running until the kill lands mid-adopt (a warm fork
        # ends 3 epochs before the second apply is killed); warm children are adopted alike (test_apply_cli).
        return subprocess.Popen([hpt_exe(), "apply", str(plan_dir), "--results", results, "--parallel", "2",
                                 "--format", "json", "--no-warm"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                text=True)

    first = start()
    wait_for(lambda: all(owner_fences(results, t) for t in ids))   # both trials own their trial and train
    first.kill()
    first.wait()
    second = start()
    assert second.stdout is not None
    for line in second.stdout:                                     # killed as soon as it adopts
        if '"trial-adopted"' in line:
            break
    second.kill()
    second.wait()
    assert sorted(p.name.split(".")[0] for p in records.glob("*.pid.json")) == sorted(ids)
    done = apply(plan_dir, results, "--parallel", "2")
    assert done.returncode == 0, done.stderr
    assert [training_runs(results, t) for t in ids] == [1, 1]
    assert [owner_fences(results, t) for t in ids] == [[1], [1]]
