"""The search's parts composed: tpe proposals + halving promotions (BOHB), written as `method: bohb` or as
`proposer: tpe, scheduler: halving`; it compiles, runs through `hpt apply`, never proposes a config twice
at one fidelity, and a kill -9 + re-apply (--parallel 1) ends exactly as the uninterrupted run."""
from __future__ import annotations

import json
import signal
import subprocess
import time
from collections import Counter

import pytest
from typer.testing import CliRunner

from executor_support import hpt_exe, kill_leftovers
from hpt.cli import app
from test_halving import SPEC as HALVING_SPEC, TODAY, apply, compile_plan, outcome, stand_in_env

pytest.importorskip("optuna")

SPEC = {**HALVING_SPEC,
        "parameters": {"learning_rate": {"distribution": "log-uniform", "min": 0.0001, "max": 0.3}, "hidden_size": [16, 32, 64]},
        "search": {"method": "bohb", "trials": 9, "batch": 3, "seed": 1}}
PARTS = {**SPEC, "search": {"proposer": "tpe", "scheduler": "halving", "trials": 9, "batch": 3, "seed": 1}}


@pytest.fixture(autouse=True)
def _isolated(monkeypatch, tmp_path):
    monkeypatch.setenv("HPT_DEMO_DATA", str(tmp_path / "demo-not-built"))
    yield
    kill_leftovers(tmp_path)


def test_bohb_compiles_to_round_one_at_the_cheapest_rung_with_both_parts_recorded(tmp_path):
    plan = compile_plan(tmp_path, "plan", SPEC)
    doc = json.loads((plan / "plan.json").read_text())
    search = doc["spec"]["search"]
    assert (search["method"], search["proposer"], search["scheduler"]) == ("bohb", "tpe", "halving")
    assert doc["rounds"][0]["rung"] == 0 and len(doc["rounds"][0]["configs"]) == 3
    assert doc["halving"]["rungs"][0]["configs"] == 9            # the budget counts every config tpe may give
    assert doc["tpe"]["trials"] == 9
    other = compile_plan(tmp_path, "parts", PARTS)                  # the explicit form is the same search
    assert json.loads((other / "plan.json").read_text())["rounds"][0]["configs"] == doc["rounds"][0]["configs"]


def test_bohb_runs_tpe_batches_at_the_cheapest_rung_and_promotes_the_best(tmp_path):
    plan = compile_plan(tmp_path, "plan", SPEC)
    proc = apply(plan, tmp_path / "results", stand_in_env(tmp_path), "--parallel", "2")
    assert proc.returncode == 0, proc.stderr
    rounds, trials, _, rows = outcome(plan, tmp_path / "results")
    bottom = [r for r in rounds if r["rung"] == 0]
    assert sum(len(r["configs"]) for r in bottom) == 9                      # tpe's whole budget at rung 0
    assert [r.get("told") for r in bottom] == [None, 3, 6]                  # each batch told every earlier result
    assert {r["rung"] for r in rounds} == {0, 1, 2}                          # promoted to the top fidelity
    per_fidelity = Counter((config, fidelity) for config, fidelity, _, _ in rows.values())
    assert set(per_fidelity.values()) == {2}                                # 2 windows; no config twice at one fidelity
    assert len(rows) == len(trials) and all(status == "done" for *_, status in rows.values())
    top = [r for r in rounds if r["rung"] == 2]
    assert sum(len(r["configs"]) for r in top) == 1


@pytest.mark.parametrize("kill_after", [2, 9])
def test_bohb_kill_9_then_reapply_gives_the_uninterrupted_run(tmp_path, kill_after):
    (tmp_path / "ref").mkdir()
    reference = compile_plan(tmp_path / "ref", "plan", SPEC)
    proc = apply(reference, tmp_path / "ref" / "results", stand_in_env(tmp_path / "ref"), "--parallel", "1")
    assert proc.returncode == 0, proc.stderr
    expected = outcome(reference, tmp_path / "ref" / "results")

    run = tmp_path / "run"
    run.mkdir()
    plan = compile_plan(run, "plan", SPEC)
    results = run / "results"
    killed = subprocess.Popen([hpt_exe(), "apply", str(plan), "--results", str(results), "--parallel", "1"],
                              env=stand_in_env(run, sleep=0.05), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not ((results / "rows").is_dir() and len(list((results / "rows").glob("*.csv"))) >= kill_after):
        assert killed.poll() is None and time.monotonic() < deadline, "apply ended before the kill point"
        time.sleep(0.01)
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    again = apply(plan, results, stand_in_env(run), "--parallel", "1")
    assert again.returncode == 0, again.stderr
    assert outcome(plan, results) == expected


def test_bad_compositions_exit_2_naming_the_key(tmp_path):
    cases = [({"proposer": "tpz"}, "search.proposer"), ({"scheduler": "halvng"}, "search.scheduler"),
             ({"method": "tpe", "scheduler": "halving"}, "search.scheduler"), ({"proposer": "grid", "batch": 2}, "search.batch")]
    for search, where in cases:
        spec = {**SPEC, "parameters": {"hidden_size": [16, 32]}, "search": search}
        (tmp_path / "bad.json").write_text(json.dumps(spec))
        result = CliRunner().invoke(app, ["compile", str(tmp_path / "bad.json"), "--out", str(tmp_path / "p"), "--today", TODAY])
        assert result.exit_code == 2, (search, result.output)
        assert where in result.output and "Traceback" not in result.output, (search, result.output)
