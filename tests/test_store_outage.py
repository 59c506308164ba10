"""A gs:// store that goes away: real fake-gcs-server stopped and restarted under a real `hpt apply`
with the real trainer. A store that comes back within the deadline ($HPT_STORE_DEADLINE_S) loses
nothing; one that stays away longer ends apply with one line (exit 2), and the next apply retries the
trials that could not store their work — none is recorded failed. Short deadlines keep this fast;
bench/bench_store_outage.py shows a 150 s outage under the default deadline.
"""
from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest

from executor_support import hpt_exe, write_plan
from gcs_support import RestartableGCS, free_port
from trial_factory import make_manifest

pytestmark = pytest.mark.slow


@pytest.fixture
def gcs(tmp_path):
    server = RestartableGCS(tmp_path / "gcs").start()
    yield server
    server.stop()


def _env(emulator: str, deadline: float | None) -> dict[str, str]:
    env = {**os.environ, "STORAGE_EMULATOR_HOST": emulator}
    env.pop("HPT_STORE_DEADLINE_S", None)
    if deadline is not None:
        env["HPT_STORE_DEADLINE_S"] = str(deadline)
    return env


def _plan(tmp_path: Path, dataset: Path, n: int) -> tuple[Path, list[str]]:
    ms = [make_manifest(dataset, "bag-of-words", epochs=1, seed=i, experiment="e-0a7a9e000000", hidden_size=16)
          for i in range(n)]
    return write_plan(tmp_path / "plan", ms), [m.id for m in ms]


def _start_apply(plan_dir: Path, uri: str, env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen([hpt_exe(), "apply", str(plan_dir), "--results", uri, "--parallel", "2", "--format", "json",
                             "--backoff", "0.5"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for_run_status(store, experiment: str, timeout: float = 60.0) -> None:
    """Until `hpt apply` has submitted its trials (its runs/ status names them running)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if json.loads(store.get(f"runs/{experiment}.json")).get("running"):
                return
        except KeyError:
            pass
        time.sleep(0.1)
    raise AssertionError("apply never started its trials")


def _store(gcs: RestartableGCS, uri: str, monkeypatch):
    from hpt.store import open_store

    monkeypatch.setenv("STORAGE_EMULATOR_HOST", gcs.url)
    monkeypatch.setenv("HPT_STORE_DEADLINE_S", "20")
    return open_store(uri)


def test_a_store_that_is_down_is_one_line_and_exit_2(tmp_path):
    plan_dir, _ = _plan(tmp_path, tmp_path / "no-data", 1)
    env = _env(f"http://127.0.0.1:{free_port()}", 1.5)  # nothing listens there
    uri = "gs://hpt-nowhere/exp"
    for args in (["apply", plan_dir, "--results", uri], ["status", plan_dir, "--results", uri], ["results", uri]):
        proc = subprocess.run([hpt_exe(), *map(str, args)], env=env, capture_output=True, text=True, timeout=120)
        assert proc.returncode == 2, (args, proc.stderr)
        assert "Traceback" not in proc.stderr and "unreachable: no answer within 1.5 s" in proc.stderr, proc.stderr
        assert "HPT_STORE_DEADLINE_S" in proc.stderr


def test_an_outage_shorter_than_the_deadline_loses_nothing(tmp_path, small_dataset, gcs, monkeypatch):
    plan_dir, ids = _plan(tmp_path, small_dataset, 2)
    uri = gcs.bucket() + "/exp"
    store = _store(gcs, uri, monkeypatch)
    apply = _start_apply(plan_dir, uri, _env(gcs.url, 120))
    _wait_for_run_status(store, "e-0a7a9e000000")
    gcs.stop()          # the trials are starting or training: every store call they make now waits
    time.sleep(10)
    gcs.start()
    out, err = apply.communicate(timeout=300)
    assert apply.returncode == 0, err
    events = [json.loads(line) for line in out.splitlines()]
    assert sum(e["event"] == "trial-started" for e in events) == 2          # each trained once
    assert not [e for e in events if e["event"] in ("trial-retrying", "trial-failed")]
    for tid in ids:
        assert store.list(f"models/{tid}/"), tid
    assert sorted(store.list("rows/")) == sorted(f"rows/{t}.csv" for t in ids)


def test_an_outage_past_the_deadline_stops_apply_then_reapply_retries(tmp_path, small_dataset, gcs, monkeypatch):
    plan_dir, ids = _plan(tmp_path, small_dataset, 2)
    uri = gcs.bucket() + "/exp"
    store = _store(gcs, uri, monkeypatch)
    apply = _start_apply(plan_dir, uri, _env(gcs.url, 3))
    _wait_for_run_status(store, "e-0a7a9e000000")
    gcs.stop()
    _, err = apply.communicate(timeout=120)
    assert apply.returncode == 2 and "Traceback" not in err, err
    assert "unreachable: no answer within 3 s" in err and "resume once it is back: hpt apply" in err
    time.sleep(5)       # the trials give up on the store too (exit 75, nothing written)
    gcs.start()

    again = subprocess.run([hpt_exe(), "apply", str(plan_dir), "--results", uri, "--format", "json", "--backoff", "0.5"],
                           env=_env(gcs.url, None), capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    end = json.loads(again.stdout.splitlines()[-1])
    assert end["done"] == 2 and end["failed"] == 0
    assert store.list("rows-failed/") == []    # nothing was ever recorded failed
    for tid in ids:
        assert store.list(f"models/{tid}/"), tid
