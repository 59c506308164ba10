"""In-trial stopping through the CLI, one test per rule (median, asha, hyperband): a user trainer reports
its objective per epoch; `hpt apply --parallel 1` stops the trials the rule must stop (rows `stopped`,
the step recorded in the row's reason and in stops/<id>.json), never the best; a kill -9 + re-apply
makes the same stops; a re-apply never retries a stopped trial. The pure rules are tested beside."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import textwrap
import time
from pathlib import Path

import pytest

from executor_support import hpt_exe, kill_leftovers
from hpt.compiler.stopping import STOPPING
from hpt.store import open_store

# Reports mse = 100·(lr − 0.05)² + 1/epoch for 6 epochs, one every STEP_S seconds: lr 0.05 is the best at
# every step, and a worse lr is worse at every step (so each rule's decisions are known in advance).
TRAINER = textwrap.dedent("""\
    #!/bin/sh
    set -eu
    lr=$(sed 's/.*"lr":\\([0-9.e-]*\\).*/\\1/' "$HPT_TRIAL_MANIFEST")
    for epoch in 1 2 3 4 5 6; do
      v=$(awk "BEGIN{print 100*($lr-0.05)^2 + 1/$epoch}")
      echo "hpt:epoch {\\"epoch\\": $epoch, \\"mse\\": $v}"
      sleep "${STEP_S:-0.4}"
    done
    printf '{"mse": %s}\\n' "$v" > "$HPT_TRIAL_METRICS"
    """)
# Grid order (seed 0) decides which trials finish first; the rules below are set so that some must stop.
LRS = [0.05, 0.1, 0.2, 0.02, 0.3]
RULES = {
    "median": {"rule": "median", "min_trials_required": 2, "start_step": 2},
    "asha": {"rule": "asha", "grace_period": 1, "reduction_factor": 2, "max_t": 6},
    "hyperband": {"rule": "hyperband", "min_iter": 2, "eta": 2, "strict": True},
}


@pytest.fixture(autouse=True)
def _isolated(monkeypatch, tmp_path):
    monkeypatch.setenv("HPT_DEMO_DATA", str(tmp_path / "demo-not-built"))
    yield
    kill_leftovers(tmp_path)


def project(tmp: Path, stopping: dict) -> Path:
    (tmp / "src").mkdir(parents=True)
    (tmp / "src" / "train.sh").write_text(TRAINER)
    os.chmod(tmp / "src" / "train.sh", 0o755)
    spec = {"trainer": {"command": ["./train.sh"], "source": "src"}, "date-range": [["2010-06-01", "2010-08-01"]],
            "parameters": {"lr": LRS}, "search": {"seed": 0, "stopping": stopping}}
    (tmp / "spec.json").write_text(json.dumps(spec))
    compiled = subprocess.run([hpt_exe(), "compile", str(tmp / "spec.json"), "--out", str(tmp / "plan"), "--today", "2026-11-26"],
                              capture_output=True, text=True, timeout=120)
    assert compiled.returncode == 0, compiled.stderr
    return tmp / "plan"


def apply(plan: Path, results: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([hpt_exe(), "apply", str(plan), "--results", str(results), "--parallel", "1", "--format", "json",
                           *extra], capture_output=True, text=True, timeout=300)


def outcome(plan: Path, results: Path) -> dict[float, tuple]:
    """lr → (status, the step in the reason or None, mse, the stop record's step or None)."""
    store = open_store(str(results))
    out = {}
    for key in store.list("rows/"):
        header, line = store.get(key).decode().splitlines()
        row = dict(zip(header.split(","), line.split(",")))
        manifest = json.loads((plan / "trials" / f"{row['trial_id']}.json").read_text())
        try:
            record = json.loads(store.get(f"stops/{row['trial_id']}.json"))["step"]
        except KeyError:
            record = None
        step = int(row["reason"].split("stopped at step ")[1].split()[0]) if row["status"] == "stopped" else None
        out[manifest["params"]["lr"]] = (row["status"], step, float(row["mse"]), record)
    return out


@pytest.mark.parametrize("rule", sorted(RULES))
def test_a_stopping_rule_stops_the_bad_trials_never_the_best_and_kill_9_makes_the_same_stops(tmp_path, rule):
    plan = project(tmp_path / "a", RULES[rule])
    proc = apply(plan, tmp_path / "a" / "results")
    assert proc.returncode == 0, proc.stderr
    got = outcome(plan, tmp_path / "a" / "results")
    assert len(got) == len(LRS)
    stopped = {lr: step for lr, (status, step, _, _) in got.items() if status == "stopped"}
    assert stopped, got                                                     # the rule stopped some
    assert got[0.05][0] == "done"                                          # never the best
    for lr, (status, step, mse, record) in got.items():
        if status == "stopped":                                             # the row is the report at the stop's step
            assert record == step and mse == pytest.approx(100 * (lr - 0.05) ** 2 + 1 / step, abs=1e-5)
        else:
            assert record is None and mse == pytest.approx(100 * (lr - 0.05) ** 2 + 1 / 6, abs=1e-5)
    # the order trials ran in (plan order) and the pure rule give exactly these stops
    order = json.loads((plan / "plan.json").read_text())["trials"]
    rule_obj = STOPPING.get(rule)
    settings = json.loads((plan / "plan.json").read_text())["spec"]["search"]["stopping"]
    finished, expect = {}, {}
    for tid in order:
        lr = json.loads((plan / "trials" / f"{tid}.json").read_text())["params"]["lr"]
        curve = [(e, 100 * (lr - 0.05) ** 2 + 1 / e) for e in range(1, 7)]
        stop = rule_obj.first_stop(settings, curve, finished, {})
        if stop is not None:
            expect[lr] = stop.step
            curve = curve[:stop.step]
        finished[tid] = curve
    assert stopped == expect
    events = [json.loads(line) for line in proc.stdout.splitlines()]
    assert sorted(e["trial_id"] for e in events if e.get("event") == "trial-stopping") == \
        sorted(e["trial_id"] for e in events if e.get("event") == "trial-finished" and e["status"] == "stopped")
    assert json.loads(proc.stdout.splitlines()[-1])["early_stopped"] == len(stopped)

    # a re-apply runs nothing: a stopped trial is a result, never retried
    again = apply(plan, tmp_path / "a" / "results")
    assert again.returncode == 0 and outcome(plan, tmp_path / "a" / "results") == got
    assert "nothing to run" in again.stdout + again.stderr

    # kill -9 apply after the first stop is recorded, re-apply: the same stops, the same rows
    plan_b = project(tmp_path / "b", RULES[rule])
    results = tmp_path / "b" / "results"
    killed = subprocess.Popen([hpt_exe(), "apply", str(plan_b), "--results", str(results), "--parallel", "1"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not ((results / "stops").is_dir() and any(p.suffix == ".json" and not p.name.startswith(".")
                                                    for p in (results / "stops").iterdir())):   # not a temp file
        assert killed.poll() is None and time.monotonic() < deadline, "apply ended before the first stop"
        time.sleep(0.02)
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    resumed = apply(plan_b, results)
    assert resumed.returncode == 0, resumed.stderr
    assert outcome(plan_b, results) == got


def test_status_and_results_show_stopped_trials_apart(tmp_path):
    plan = project(tmp_path, RULES["median"])
    assert apply(plan, tmp_path / "results").returncode == 0
    status = subprocess.run([hpt_exe(), "status", str(plan), "--results", str(tmp_path / "results"), "--format", "json"],
                            capture_output=True, text=True, timeout=120)
    states = [t["state"] for t in json.loads(status.stdout)["trials"]]
    assert "stopped" in states and "failed" not in states, status.stdout
    results = subprocess.run([hpt_exe(), "results", str(tmp_path / "results")], capture_output=True, text=True, timeout=120)
    assert results.returncode == 0 and "stopped early" in results.stdout + results.stderr, results.stdout + results.stderr


# --- the pure rules --------------------------------------------------------------------------

def test_median_is_katib_s_rule():
    rule = STOPPING.get("median")
    settings = rule.resolve({"rule": "median"}, "search.stopping")
    assert (settings["min_trials_required"], settings["start_step"]) == (3, 4)      # Katib's defaults
    finished = {"a": [(s, 1.0) for s in range(1, 9)], "b": [(s, 2.0) for s in range(1, 9)], "c": [(s, 3.0) for s in range(1, 9)]}
    worse = [(s, 2.5) for s in range(1, 9)]
    stop = rule.first_stop(settings, worse, finished, {})
    assert stop is not None and stop.step == 4                                      # not before start_step
    assert rule.first_stop(settings, [(s, 2.0) for s in range(1, 9)], finished, {}) is None   # equal is not worse
    assert rule.first_stop(settings, worse, dict(list(finished.items())[:2]), {}) is None      # too few finished


def test_asha_is_ray_s_cutoff_and_hyperband_is_w_and_b_s_threshold():
    asha = STOPPING.get("asha")
    settings = asha.resolve({"rule": "asha", "grace_period": 1, "reduction_factor": 2, "max_t": 4}, "s")
    others = {"a": [(1, 1.0), (2, 1.0)], "b": [(1, 3.0), (2, 3.0)]}
    assert asha.first_stop(settings, [(1, 2.5)], others, {}).step == 1            # above the median of 1 and 3
    assert asha.first_stop(settings, [(1, 1.5), (2, 1.9)], others, {}) is None
    hyper = STOPPING.get("hyperband")
    band = hyper.resolve({"rule": "hyperband", "max_iter": 8, "s": 2, "eta": 2}, "s")
    from hpt.compiler.stopping.hyperband import brackets
    assert brackets(band) == [2, 4]                                                 # 8/2, 8/4
    runs = {x: [(2, float(x))] for x in range(4)}                                   # values 0, 1, 2, 3 at step 2
    assert hyper.first_stop(band, [(2, 2.0)], runs, {}) is None                     # 5 values: the best 5//2+1 = 3 go on
    assert hyper.first_stop(band, [(2, 2.5)], runs, {}).step == 2
    strict = dict(band, strict=True)
    assert hyper.first_stop(strict, [(2, 1.5)], runs, {}) is not None              # strict: only the best 2


@pytest.mark.parametrize("stopping, where", [
    ({"rule": "medain"}, "search.stopping.rule"), ({"rule": "median", "start": 2}, "search.stopping.start"),
    ({"rule": "asha", "reduction_factor": 1}, "search.stopping.reduction_factor"),
    ({"rule": "hyperband"}, "search.stopping"), ({"rule": "hyperband", "min_iter": 1, "strict": "yes"}, "search.stopping.strict")])
def test_bad_stopping_settings_exit_2_naming_the_key(tmp_path, stopping, where):
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "train.sh").write_text(TRAINER)
    spec = {"trainer": {"command": ["./train.sh"], "source": "src"}, "date-range": [["2010-06-01", "2010-08-01"]],
            "parameters": {"lr": LRS}, "search": {"stopping": stopping}}
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    proc = subprocess.run([hpt_exe(), "compile", str(tmp_path / "spec.json"), "--out", str(tmp_path / "plan")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and where in proc.stderr and "Traceback" not in proc.stderr, proc.stderr


def test_a_built_in_trial_stopped_late_is_the_run_truncated_at_the_step_bit_for_bit(small_dataset, tmp_path, monkeypatch):
    """A stop record for step 2 first seen after epoch 3: the result is exactly a 2-epoch run's — metrics and
    weights — so a stopped row does not depend on when the trial saw the record."""
    import torch

    from hpt.trainer.data import prepare
    from hpt.trainer.train import fit
    from trial_factory import make_manifest

    monkeypatch.setenv("HPT_CACHE", str(tmp_path / "cache"))
    manifest = make_manifest(small_dataset, "bag-of-words", epochs=4, learning_rate=0.01, early_stopping_patience=10)
    prepared = prepare(manifest.data["uri"], manifest.window, manifest.params["vocab_size"], manifest.params["max_tokens"])
    short = fit(manifest.architecture, manifest.params, prepared, seed=manifest.seed, max_epochs=2)
    stopped = fit(manifest.architecture, manifest.params, prepared, seed=manifest.seed, max_epochs=4,
                  stop_after=lambda epoch: 2 if epoch >= 3 else None)
    assert stopped.stopped_at == 2 and short.stopped_at is None
    timing = {"train_time_s", "samples_per_s"}
    assert {k: v for k, v in stopped.metrics.items() if k not in timing} == \
        {k: v for k, v in short.metrics.items() if k not in timing}
    for (name, a), (_, b) in zip(short.model.state_dict().items(), stopped.model.state_dict().items()):
        assert torch.equal(a, b), name
