"""In-trial stopping when the apply dies before it judged a trial: kill -9 `hpt apply` while a trial the rule must
stop is still early (no stop decided, none recorded), let the trial run to its end unwatched; it does not write
its row but waits for the verdict on its last step (`hpt:end`), the re-apply adopts it, judges its reports and
the trial ends `stopped` at the same step as in an uninterrupted run. Uses tests/test_stopping.py's trainer."""
from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

from executor_support import hpt_exe, kill_leftovers
from test_stopping import RULES, apply, outcome, project

import pytest


@pytest.fixture(autouse=True)
def _isolated(monkeypatch, tmp_path):
    monkeypatch.setenv("HPT_DEMO_DATA", str(tmp_path / "demo-not-built"))
    yield
    kill_leftovers(tmp_path)


def _log(plan: Path, tid: str) -> str:
    """The running trial's output as the local backend keeps it (the plan's .hpt folder)."""
    return "".join(p.read_text(errors="replace") for p in (plan / ".hpt").glob(f"local/*/{tid}.log"))


def test_kill_9_before_a_stop_is_decided_then_reapply_makes_the_same_stop(tmp_path):
    rule = RULES["median"]
    plan = project(tmp_path / "a", rule)
    first = apply(plan, tmp_path / "a" / "results")
    assert first.returncode == 0, first.stderr
    expected = outcome(plan, tmp_path / "a" / "results")
    order = json.loads((plan / "plan.json").read_text())["trials"]
    lrs = [json.loads((plan / "trials" / f"{t}.json").read_text())["params"]["lr"] for t in order]
    victim = next(t for t, lr in zip(order, lrs) if expected[lr][0] == "stopped")   # the first trial it stops
    assert not (tmp_path / "a" / "results" / "verdicts" / f"{victim}.json").exists()
    assert all((tmp_path / "a" / "results" / "verdicts" / f"{t}.json").exists()
               for t, lr in zip(order, lrs) if expected[lr][0] == "done")       # judged to the end: a verdict of none

    plan_b = project(tmp_path / "b", rule)
    results = tmp_path / "b" / "results"
    killed = subprocess.Popen([hpt_exe(), "apply", str(plan_b), "--results", str(results), "--parallel", "1"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 180
    while '"epoch": 1' not in _log(plan_b, victim):   # its first report: median decides nothing before step 2
        assert killed.poll() is None and time.monotonic() < deadline, "apply ended before the trial reported"
        time.sleep(0.02)
    killed.send_signal(signal.SIGKILL)   # the apply alone: the trial runs on in its own session
    killed.wait()
    while "hpt:end" not in _log(plan_b, victim):    # it ran every step unwatched and now waits for the verdict
        assert time.monotonic() < deadline, "the trial never reached its end"
        time.sleep(0.05)
    time.sleep(0.5)
    assert not (results / "rows" / f"{victim}.csv").exists() and not (results / "stops" / f"{victim}.json").exists()
    resumed = apply(plan_b, results)
    assert resumed.returncode == 0, resumed.stderr
    assert outcome(plan_b, results) == expected
