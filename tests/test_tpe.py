"""TPE in rounds: Optuna's sampler asked for a batch per round, told every finished config; the same
rounds after kill -9 and re-apply; exit 2 naming the key without the `hpt[search]` extra."""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import pytest
from typer.testing import CliRunner

from executor_support import hpt_exe, kill_leftovers
from hpt.cli import app
from test_halving import TODAY, apply, compile_plan, outcome, stand_in_env

pytest.importorskip("optuna")   # the `search` extra; CI installs it with `test`

SPEC = {
    "architecture": "bag-of-words", "date-range": [["2010-09-01", "2010-12-01"], ["2011-03-01", "2011-06-01"]],
    "parameters": {"learning_rate": {"distribution": "log-uniform", "min": 0.0001, "max": 0.1},
                   "hidden_size": [16, 32, 64], "dropout": {"distribution": "q-uniform", "min": 0, "max": 0.5, "q": 0.1}},
    "search": {"method": "tpe", "trials": 10, "batch": 3, "seed": 2},
}


@pytest.fixture(autouse=True)
def _isolated(monkeypatch, tmp_path):
    monkeypatch.setenv("HPT_DEMO_DATA", str(tmp_path / "demo-not-built"))
    yield
    kill_leftovers(tmp_path)


def test_tpe_asks_batches_told_every_result_up_to_trials(tmp_path):
    plan = compile_plan(tmp_path, "plan", SPEC)
    doc = json.loads((plan / "plan.json").read_text())
    assert len(doc["rounds"]) == 1 and len(doc["rounds"][0]["configs"]) == 3 and len(doc["trials"]) == 6
    proc = apply(plan, tmp_path / "results", stand_in_env(tmp_path), "--parallel", "3")
    assert proc.returncode == 0, proc.stderr
    rounds, trials, manifests, rows = outcome(plan, tmp_path / "results")
    assert [len(r["configs"]) for r in rounds] == [3, 3, 3, 1]          # batches of 3, 10 configs in all
    assert [r.get("told") for r in rounds] == [None, 3, 6, 9]           # each round told every earlier config
    assert [r.get("batch") for r in rounds] == [None, 3, 3, 3]         # the spec's batch, whatever --parallel
    configs = [c for r in rounds for c in r["configs"]]
    assert len(set(configs)) == 10 and len(rows) == 20 == len(trials)
    events = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [e["round"] for e in events if e.get("event") == "round"] == [2, 3, 4]
    status = subprocess.run([hpt_exe(), "status", str(plan), "--results", str(tmp_path / "results"), "--format", "json"],
                            env=stand_in_env(tmp_path), capture_output=True, text=True, timeout=120)
    assert [(r["round"], r["configs"], r["told"], r["states"]) for r in json.loads(status.stdout)["rounds"]] == \
        [(1, 3, None, {"done": 6}), (2, 3, 3, {"done": 6}), (3, 3, 6, {"done": 6}), (4, 1, 9, {"done": 2})]
    table = subprocess.run([hpt_exe(), "status", str(plan), "--results", str(tmp_path / "results")],
                           env=stand_in_env(tmp_path), capture_output=True, text=True, timeout=120)
    assert "tpe: up to 10 configs, round 1 of 3" in table.stdout and "9 results" in table.stdout, table.stdout
    # every value a trial got is one the spec allows
    for text in manifests.values():
        params = json.loads(text)["params"]
        assert 0.0001 <= params["learning_rate"] <= 0.1 and params["hidden_size"] in (16, 32, 64)
        assert round(params["dropout"] * 10) == pytest.approx(params["dropout"] * 10)


def test_without_a_batch_rounds_after_the_first_are_apply_s_parallelism(tmp_path):
    """No `batch` in the spec: round 1 (written at compile, before any apply) has 4 configs, each later round
    as many as apply runs at once, recorded in the round; the same --parallel on another plan copy decides
    the same rounds."""
    spec = {**SPEC, "search": {"method": "tpe", "trials": 9, "seed": 2}}
    plan = compile_plan(tmp_path, "plan", spec)
    doc = json.loads((plan / "plan.json").read_text())
    assert len(doc["rounds"][0]["configs"]) == 4 and doc["spec"]["search"]["batch"] is None and doc["tpe"]["batch"] == 4
    proc = apply(plan, tmp_path / "results", stand_in_env(tmp_path), "--parallel", "2")
    assert proc.returncode == 0, proc.stderr
    rounds, trials, manifests, rows = outcome(plan, tmp_path / "results")
    assert [(len(r["configs"]), r.get("batch")) for r in rounds] == [(4, None), (2, 2), (2, 2), (1, 2)]
    again = compile_plan(tmp_path, "again", spec)
    assert apply(again, tmp_path / "results-again", stand_in_env(tmp_path), "--parallel", "2").returncode == 0
    assert outcome(again, tmp_path / "results-again") == (rounds, trials, manifests, rows)
    other = compile_plan(tmp_path, "other", spec)
    assert apply(other, tmp_path / "results-3", stand_in_env(tmp_path), "--parallel", "3").returncode == 0
    assert [(len(r["configs"]), r.get("batch")) for r in outcome(other, tmp_path / "results-3")[0]] == \
        [(4, None), (3, 3), (2, 3)]


def test_tpe_kill_9_then_reapply_gives_the_same_rounds(tmp_path):
    reference = compile_plan(tmp_path, "reference", SPEC)
    assert apply(reference, tmp_path / "ref", stand_in_env(tmp_path), "--parallel", "3").returncode == 0
    expected = outcome(reference, tmp_path / "ref")
    plan = compile_plan(tmp_path, "plan", SPEC)
    results = tmp_path / "results"
    proc = subprocess.Popen([hpt_exe(), "apply", str(plan), "--results", str(results), "--parallel", "3"],
                            env=stand_in_env(tmp_path, sleep=0.05), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not ((results / "rows").is_dir() and len(list((results / "rows").glob("*.csv"))) >= 9):   # mid round 2
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert apply(plan, results, stand_in_env(tmp_path), "--parallel", "3").returncode == 0
    assert outcome(plan, results) == expected


@pytest.mark.parametrize("spec, where", [
    (SPEC, "search.method"),
    ({k: v for k, v in SPEC.items() if k != "search"} | {"method": "bayes"}, "method"),   # W&B's spelling
])
def test_without_the_extra_exit_2_naming_the_key(tmp_path, monkeypatch, spec, where):
    monkeypatch.setitem(sys.modules, "optuna", None)   # import optuna → ImportError, as when not installed
    (tmp_path / "s.json").write_text(json.dumps(spec), encoding="utf-8")
    result = CliRunner().invoke(app, ["compile", str(tmp_path / "s.json"), "--out", str(tmp_path / "p"), "--today", TODAY])
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith(f"error: {where}: tpe needs Optuna"), result.stderr
    assert "pip install 'hpt[search]'" in result.stderr


@pytest.mark.parametrize("extra, where", [
    ({"fidelities": [{"months": 1}, {"months": 2}]}, "fidelities"),
    ({"search": {"method": "random", "batch": 3}}, "search.batch"),
])
def test_bad_tpe_input(tmp_path, extra, where):
    (tmp_path / "s.json").write_text(json.dumps(SPEC | extra), encoding="utf-8")
    result = CliRunner().invoke(app, ["compile", str(tmp_path / "s.json"), "--out", str(tmp_path / "p"), "--today", TODAY])
    assert result.exit_code == 2 and result.stderr.startswith(f"error: {where}: "), result.stderr
