"""The scheduling loop and the local backend, with a scripted stand-in trainer (fast edge cases).

Real subprocesses, a real store (folder), real signals; only the training itself is skipped.
End-to-end runs with the real trainer live in test_apply_*.py.
"""
from __future__ import annotations

import csv
import io
import json
import os
import time
from pathlib import Path

import pytest

from executor_support import attempts, kill_leftovers, fake_env, write_plan
from hpt.executor.backends.local import LocalBackend
from hpt.executor.events import Collect
from hpt.executor.loop import RunOptions, run_plan
from hpt.executor.plan import load_plan
from hpt.executor.status import trial_states
from hpt.store import open_store
from hpt.schemas.errors import UserError
from trial_factory import make_manifest


@pytest.fixture(autouse=True)
def _no_leftover_trials(tmp_path):
    yield
    kill_leftovers(tmp_path)


def manifests(n: int, experiment: str = "e-0123456789ab"):
    return [make_manifest("/data/none", "bag-of-words", epochs=1, seed=i, experiment=experiment) for i in range(n)]


@pytest.fixture
def setup(tmp_path, monkeypatch):
    def make(n: int, behaviour: dict[str, str] | None = None, **plan_kw):
        ms = manifests(n)
        ids = [m.id for m in ms]
        resolved = {ids[int(k)] if k.isdigit() else k: v for k, v in (behaviour or {}).items()}
        for key, value in fake_env(tmp_path, resolved).items():
            monkeypatch.setenv(key, value)
        plan_dir = write_plan(tmp_path / "plan", ms, **plan_kw)
        return plan_dir, ids
    return make


def run(tmp_path: Path, plan_dir: Path, warm: bool = False, **opts):
    plan = load_plan(plan_dir)
    store = open_store(str(tmp_path / "results"))
    plan = plan.with_results(store.uri, opts.get("timeout_s"))
    backend = LocalBackend.with_options(state_dir=plan_dir / ".hpt" / "local", plan_dir=plan_dir, warm=warm)
    events = Collect()
    opts.setdefault("backoff_s", 0.0)
    result = run_plan(plan, backend, store, RunOptions(**opts), events)
    return result, events.events, store


def table(store) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(store.get("results.csv").decode())))


def kinds(events, kind):
    return [e for e in events if e["event"] == kind]


@pytest.mark.parametrize("warm", [False, True], ids=["process", "warm"])  # warm: forked from hpt.trainer.warm
def test_runs_every_trial_then_resume_runs_nothing(tmp_path, setup, warm):
    plan_dir, ids = setup(4)
    result, events, store = run(tmp_path, plan_dir, warm=warm, parallel=2)
    assert result.exit_code == 0 and result.done == 4
    assert sorted(r["trial_id"] for r in table(store)) == sorted(ids)
    assert all(store.exists(f"logs/{t}.log") for t in ids)
    assert "fake trial" in store.get(f"logs/{ids[0]}.log").decode()
    assert "cpus 1" in store.get(f"logs/{ids[0]}.log").decode()  # HPT_CPUS from resources.cpus
    assert len(kinds(events, "trial-finished")) == 4
    # the state folder is clean: no pid records left behind
    assert not list((plan_dir / ".hpt" / "local").rglob("*.pid.json"))

    again, events2, _ = run(tmp_path, plan_dir, warm=warm)
    assert again.exit_code == 0 and again.already_done == 4 and again.done == 0
    assert not kinds(events2, "trial-started")
    assert "nothing to run" in kinds(events2, "message")[0]["text"]
    assert all(attempts(tmp_path, t) == 1 for t in ids)


def test_failed_trial_is_recorded_then_retried_on_reapply_or_kept(tmp_path, setup):
    plan_dir, ids = setup(2, {"0": "failfirst"})
    result, events, store = run(tmp_path, plan_dir)
    assert result.exit_code == 1 and result.failed == 1 and result.done == 1
    assert kinds(events, "trial-failed")[0]["reason"] == "loss became NaN"
    rows = {r["trial_id"]: r for r in table(store)}
    assert rows[ids[0]]["status"] == "failed" and rows[ids[0]]["reason"] == "loss became NaN"

    kept, events_kept, _ = run(tmp_path, plan_dir, skip_failed=True)
    assert kept.exit_code == 1 and kept.kept_failed == 1 and not kinds(events_kept, "trial-started")
    assert attempts(tmp_path, ids[0]) == 1

    retried, events3, _ = run(tmp_path, plan_dir)
    assert retried.exit_code == 0 and retried.done == 1 and retried.already_done == 1
    assert [e["trial_id"] for e in kinds(events3, "trial-started")] == [ids[0]]
    # the failed row was moved aside, never lost; the new row replaced it
    assert store.list("rows-failed/") == [f"rows-failed/{ids[0]}.1.csv"]
    assert b"loss became NaN" in store.get(f"rows-failed/{ids[0]}.1.csv")
    assert {r["trial_id"]: r["status"] for r in table(store)} == {ids[0]: "done", ids[1]: "done"}


@pytest.mark.parametrize("warm", [False, True], ids=["process", "warm"])  # warm: forked from hpt.trainer.warm
def test_transient_failures_are_retried_with_backoff_then_recorded(tmp_path, setup, warm):
    plan_dir, ids = setup(2, {"0": "flaky:1", "1": "die"})
    result, events, store = run(tmp_path, plan_dir, warm=warm, retries=1, parallel=2)
    assert attempts(tmp_path, ids[0]) == 2 and attempts(tmp_path, ids[1]) == 2
    assert result.done == 1 and result.failed == 1 and result.retried == 2
    reason = {r["trial_id"]: r for r in table(store)}[ids[1]]["reason"]
    assert reason == "killed by SIGKILL (after 2 attempts)"
    log = store.get(f"logs/{ids[1]}.log").decode()
    assert "attempt 1" in log and "attempt 2" in log  # both attempts' output kept


@pytest.mark.parametrize("warm", [False, True], ids=["process", "warm"])  # warm: forked from hpt.trainer.warm
def test_exit_without_row_is_recorded_with_the_log_tail(tmp_path, setup, warm):
    plan_dir, ids = setup(1, {"0": "exit:2"})
    result, _, store = run(tmp_path, plan_dir, warm=warm, retries=3)
    assert result.failed == 1 and attempts(tmp_path, ids[0]) == 1  # not transient: no retry
    row = table(store)[0]
    assert row["status"] == "failed" and row["reason"].startswith("exit code 2: ") and "boom" in row["reason"]
    assert row["architecture"] == "bag-of-words" and row["param.learning_rate"] != ""


@pytest.mark.parametrize("warm", [False, True], ids=["process", "warm"])  # warm: forked from hpt.trainer.warm
def test_timeout_cancels_the_trial(tmp_path, setup, warm):
    plan_dir, ids = setup(1, {"0": "hang"})
    result, _, store = run(tmp_path, plan_dir, warm=warm, timeout_s=2.0)   # the trial counts its pid well before
    assert result.exit_code == 1
    assert table(store)[0]["reason"] == "timed out after 2 s"
    pid = int((tmp_path / "counts" / ids[0]).read_text().split()[0])
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_max_failures_stops_the_run(tmp_path, setup):
    plan_dir, ids = setup(4, {"*": "fail"})
    result, events, store = run(tmp_path, plan_dir, parallel=1, max_failures=2)
    assert result.failed == 2 and result.not_run == 2 and result.exit_code == 1
    assert "--max-failures 2" in kinds(events, "run-finished")[0]["summary"]
    assert sum(attempts(tmp_path, t) for t in ids) == 2


def test_status_shows_each_state(tmp_path, setup):
    plan_dir, ids = setup(3, {"0": "fail"})
    plan = load_plan(plan_dir)
    store = open_store(str(tmp_path / "results"))
    assert {s.state for s in trial_states(plan, store)} == {"pending"}
    run(tmp_path, plan_dir, max_failures=1, parallel=1)
    states = {s.trial_id: s for s in trial_states(plan, store)}
    assert states[ids[0]].state == "failed" and states[ids[0]].detail == "loss became NaN"
    assert states[ids[1]].state == "pending"


def test_status_rounds_the_objective(tmp_path, setup):
    plan_dir, ids = setup(8)
    plan = load_plan(plan_dir)
    store = open_store(str(tmp_path / "results"))
    run(tmp_path, plan_dir, parallel=4)
    assert {r["trial_id"]: r["mse"] for r in table(store)}[ids[7]] == "0.5700000000000001"  # the row keeps every digit
    assert {s.trial_id: s.detail for s in trial_states(plan, store)}[ids[7]] == "mse=0.57"  # status shows 4 significant


def test_dry_run_prints_exact_commands(tmp_path, setup):
    plan_dir, ids = setup(2)
    plan = load_plan(plan_dir).with_results(str(tmp_path / "results"))
    backend = LocalBackend.with_options(state_dir=plan_dir / ".hpt" / "local", plan_dir=plan_dir)
    text = backend.dry_run(plan.submissions)
    lines = text.splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("HPT_CPUS=1 ") and f"trials/{ids[0]}.json --results {tmp_path / 'results'}" in lines[0]
    assert not (plan_dir / ".hpt").exists()


def test_plan_errors_are_user_errors(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        load_plan(tmp_path / "nope")
    (tmp_path / "p").mkdir()
    with pytest.raises(UserError, match="no plan.json"):
        load_plan(tmp_path / "p")
    (tmp_path / "p" / "plan.json").write_text("{oops")
    with pytest.raises(UserError, match="not valid JSON"):
        load_plan(tmp_path / "p")
    write_plan(tmp_path / "q", manifests(2))
    first = sorted((tmp_path / "q" / "trials").iterdir())[0]
    first.rename(first.with_name("t-ffffffffffffffff.json"))
    with pytest.raises(UserError):
        load_plan(tmp_path / "q")


def test_capacity_follows_cores_and_cpus(tmp_path, setup):
    plan_dir, _ = setup(1)
    backend = LocalBackend.with_options(state_dir=tmp_path / "s")
    plan = load_plan(plan_dir)
    backend.preflight(plan.submissions)
    assert backend.capacity() == max(1, len(os.sched_getaffinity(0)))


def test_interrupt_leaves_trials_running_when_the_backend_says_so(tmp_path, setup):
    """A backend whose trials outlive apply (k8s without --cancel-on-exit) is not cancelled on Ctrl-C."""
    import signal
    import threading

    class Outliving(LocalBackend):
        cancel_on_interrupt = False

        def follow_hint(self, experiment_id):
            return f"follow {experiment_id}"

    plan_dir, ids = setup(2, {"*": "hang"})
    plan = load_plan(plan_dir)
    store = open_store(str(tmp_path / "results"))
    backend = Outliving.with_options(state_dir=plan_dir / ".hpt" / "local", plan_dir=plan_dir)
    events = Collect()

    def interrupt_when_started():
        deadline = time.monotonic() + 60
        while sum(attempts(tmp_path, t) for t in ids) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        os.kill(os.getpid(), signal.SIGINT)

    threading.Thread(target=interrupt_when_started, daemon=True).start()
    result = run_plan(plan.with_results(store.uri), backend, store, RunOptions(parallel=2), events)
    assert result.interrupted and result.exit_code == 130 and result.left_running == 2
    assert "2 trial(s) left running: follow e-0123456789ab" in kinds(events.events, "run-finished")[0]["summary"]
    survivors = backend.adopt(plan.experiment_id, store.uri)
    assert sorted(survivors) == sorted(ids)  # still running, adoptable by the next apply
    for handle in survivors.values():
        backend.cancel(handle)
        backend.release(handle)


def test_a_trial_runs_only_once_its_pid_record_exists(tmp_path):
    """The local backend's start gate: a process whose apply died before recording it gives up."""
    import subprocess
    import threading

    from hpt.executor.backends.local import GATE

    record, marker = tmp_path / "t.pid.json", tmp_path / "ran"
    gated = ["/bin/sh", "-c", GATE, "gate", str(record), "/bin/sh", "-c", f"echo ran > {marker}"]
    process = subprocess.Popen(gated)
    threading.Timer(0.3, record.write_text, args=(json.dumps({"pid": process.pid, "ticks": "1"}),)).start()
    assert process.wait(timeout=30) == 0 and marker.exists()   # recorded late: runs
    record.unlink()
    marker.unlink()
    assert subprocess.run(gated, timeout=30).returncode == 75 and not marker.exists()  # never recorded: never runs
    # A record the next apply wrote for its own copy of the trial opens no other copy's gate.
    record.write_text(json.dumps({"pid": os.getpid(), "ticks": "1"}))
    assert subprocess.run(gated, timeout=30).returncode == 75 and not marker.exists()
