"""The peers' ways of ending a search early, through the CLI with a script that knows nothing of hpt:
W&B's `early_terminate` hyperband stops runs at its brackets (search.stopping, the stops the pure rule
gives for the order the trials ran in), and W&B's `metric.target` / Katib's `objective.goal` (search.target)
end the search once a finished trial reaches it: no new trial starts, apply says so, a re-apply starts
none either, and `hpt status` shows the rest as skipped."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from executor_support import kill_leftovers
from hpt.compiler.stopping import STOPPING

HPT = [sys.executable, "-m", "hpt.cli"]
# val_loss = lr + 1/epoch: a smaller lr is better at every step (each rule's decisions are known in advance)
SCRIPT = textwrap.dedent("""\
    import argparse, os, time
    p = argparse.ArgumentParser()
    p.add_argument("--lr", type=float)
    a = p.parse_args()
    for epoch in range(1, 6):
        print(f"epoch={epoch} val_loss={a.lr + 1 / epoch:.6f}", flush=True)
        time.sleep(float(os.environ.get("STEP_S", "0.4")))
""")
LRS = [0.3, 0.1, 0.4, 0.2, 0.5]


@pytest.fixture(autouse=True)
def _isolated(monkeypatch, tmp_path):
    monkeypatch.setenv("HPT_DEMO_DATA", str(tmp_path / "demo-not-built"))
    yield
    kill_leftovers(tmp_path)


def hpt(*args: str, cwd: Path, step_s: float = 0.4) -> subprocess.CompletedProcess:
    return subprocess.run(HPT + list(args), cwd=cwd, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "STEP_S": str(step_s)})


def sweep(tmp: Path, extra: str) -> Path:
    src = tmp / "src"
    src.mkdir()
    (src / "train.py").write_text(SCRIPT)
    (src / "sweep.yaml").write_text(textwrap.dedent(f"""\
        program: train.py
        command: ["${{env}}", "${{interpreter}}", "${{program}}", "${{args}}"]
        method: grid
        metric: {{name: val_loss, goal: minimize{extra.split('|')[0]}}}
        parameters:
          lr: {{values: {LRS}}}
        """) + extra.split("|")[1])
    return src / "sweep.yaml"


def rows(results: Path) -> dict[str, dict[str, str]]:
    out = {}
    for path in (results / "rows").rglob("*.csv"):
        header, line = path.read_text().splitlines()
        row = dict(zip(header.split(","), line.split(",")))
        out[row["trial_id"]] = row
    return out


def test_wandb_early_terminate_stops_runs_at_its_brackets(tmp_path):
    sweep(tmp_path, "|early_terminate: {type: hyperband, min_iter: 2, eta: 2, strict: true}\n")
    dry = hpt("compile", "src/sweep.yaml", "--out", "plan", cwd=tmp_path)
    assert dry.returncode == 0, dry.stderr
    assert "in-trial stopping: hyperband (min_iter 2, eta 2, strict True)" in dry.stdout
    assert "not applied" not in dry.stderr
    run = hpt("apply", "plan", "--results", "results", "--parallel", "1", "--format", "json", cwd=tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr
    got = rows(tmp_path / "results")
    plan = json.loads((tmp_path / "plan" / "plan.json").read_text())
    lr_of = {tid: json.loads((tmp_path / "plan" / "trials" / f"{tid}.json").read_text())["params"]["lr"]
             for tid in plan["trials"]}
    stopped = {lr_of[t]: int(r["reason"].split("stopped at step ")[1].split()[0]) for t, r in got.items()
               if r["status"] == "stopped"}
    # the pure rule over the trials in the order they ran gives exactly these stops
    rule, settings = STOPPING.get("hyperband"), plan["spec"]["search"]["stopping"]
    finished, expect = {}, {}
    for tid in plan["trials"]:
        curve = [(e, lr_of[tid] + 1 / e) for e in range(1, 6)]
        stop = rule.first_stop(settings, curve, finished, {})
        if stop is not None:
            expect[lr_of[tid]] = stop.step
            curve = curve[:stop.step]
        finished[tid] = curve
    assert expect and stopped == expect
    assert got[min(lr_of, key=lr_of.get)]["status"] == "done"        # never the best
    for tid, row in got.items():                                      # a stopped row: its values at the step
        step = stopped.get(lr_of[tid], 5)
        assert float(row["val_loss"]) == pytest.approx(lr_of[tid] + 1 / step, abs=1e-5)


@pytest.mark.parametrize("origin", ["wandb", "katib"])
def test_a_reached_target_starts_no_new_trial_and_says_so(tmp_path, origin):
    if origin == "wandb":
        sweep(tmp_path, ", target: 0.35|")           # only lr 0.1 reaches it: val_loss 0.3 at its last epoch
        spec = "src/sweep.yaml"
    else:
        src = tmp_path / "src"
        src.mkdir()
        (src / "train.py").write_text(SCRIPT)
        doc = (Path(__file__).parent / "data" / "katib" / "random.yaml").read_text()
        (src / "experiment.yaml").write_text(katib_experiment(doc))
        spec = "src/experiment.yaml"
    assert hpt("compile", spec, "--out", "plan", cwd=tmp_path).returncode == 0
    plan = json.loads((tmp_path / "plan" / "plan.json").read_text())
    assert plan["spec"]["search"]["target"] == (0.35 if origin == "wandb" else -0.35)
    lr_of = {tid: json.loads((tmp_path / "plan" / "trials" / f"{tid}.json").read_text())["params"]["lr"]
             for tid in plan["trials"]}
    reaches = (lambda lr: lr + 0.2 <= 0.35) if origin == "wandb" else (lambda lr: -(lr + 0.2) >= -0.35)
    first = next(i for i, tid in enumerate(plan["trials"]) if reaches(lr_of[tid]))
    assert first < len(plan["trials"]) - 1, "the seed puts the first to reach it last: nothing to skip"

    run = hpt("apply", "plan", "--results", "results", "--parallel", "1", "--format", "json", cwd=tmp_path, step_s=0)
    assert run.returncode == 0, run.stdout + run.stderr
    events = [json.loads(line) for line in run.stdout.splitlines()]
    reached = [e for e in events if e["event"] == "target-reached"]
    assert len(reached) == 1 and reached[0]["trial_id"] == plan["trials"][first]
    assert reached[0]["skipped"] == len(plan["trials"]) - first - 1
    started = [e["trial_id"] for e in events if e["event"] == "trial-started"]
    assert started == plan["trials"][:first + 1]                     # none after it
    assert set(rows(tmp_path / "results")) == set(started)
    end = events[-1]
    assert end["target_reached"].startswith(f"target reached: {plan['trials'][first]}'s")
    assert end["skipped"] == reached[0]["skipped"] and "not started: target reached" in end["summary"]

    again = hpt("apply", "plan", "--results", "results", "--parallel", "1", cwd=tmp_path, step_s=0)   # a re-apply: still over
    assert again.returncode == 0 and "(in an earlier run): no new trial starts" in again.stdout + again.stderr
    assert set(rows(tmp_path / "results")) == set(started)
    status = hpt("status", "plan", "--results", "results", "--format", "json", cwd=tmp_path)
    states = {t["trial_id"]: t["state"] for t in json.loads(status.stdout)["trials"]}
    assert [states[t] for t in plan["trials"][first + 1:]] == ["skipped"] * reached[0]["skipped"]
    text = hpt("status", "plan", "--results", "results", cwd=tmp_path).stdout
    assert "the search is over (no new trial starts)" in text


def katib_experiment(doc: str) -> str:
    """Katib's published random example, its trial the script above: maximise -val_loss with goal -0.35."""
    import yaml

    exp = yaml.safe_load(doc.split("---", 1)[1])
    spec = exp["spec"]
    spec["objective"] = {"type": "maximize", "goal": -0.35, "objectiveMetricName": "neg_loss"}
    spec["algorithm"] = {"algorithmName": "grid"}
    spec["parameters"] = [{"name": "lr", "parameterType": "discrete", "feasibleSpace": {"list": [str(v) for v in LRS]}}]
    spec["maxTrialCount"] = len(LRS)
    spec["metricsCollectorSpec"] = {"collector": {"kind": "StdOut"},
                                    "source": {"filter": {"metricsFormat": [r"(neg_loss)=([-+]?\d*\.?\d+)"]}}}
    template = spec["trialTemplate"]
    template["trialParameters"] = [{"name": "learningRate", "reference": "lr"}]
    container = template["trialSpec"]["spec"]["template"]["spec"]["containers"][0]
    container["command"] = ["sh", "-c", "python3 train.py --lr=${trialParameters.learningRate} | "
                                        "sed -u 's/val_loss=\\([0-9.]*\\)/neg_loss=-\\1/'"]
    return yaml.safe_dump(exp)
