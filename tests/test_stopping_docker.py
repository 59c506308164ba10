"""In-trial stopping through the Docker backend: the built-in trainer in the offline-built trainer image, a
median rule; `hpt apply --backend docker --parallel 1` reads each container's reports from its log, records the
stops, and the stopped trials end with rows `stopped` at the recorded step (the rule, replayed over the stored
curves in plan order, fires exactly there), the best config never stopped, no container left behind."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from hpt.compiler.stopping import STOPPING
from hpt.schemas.row import parse_row_csv
from hpt.store import open_store
from test_docker_backend import containers, shared_dataset, trainer_image  # noqa: F401 — the session fixtures

LRS = [0.01, 0.003, 0.00001]   # the last barely learns: the median rule stops it wherever it runs after another
STOPPING_RULE = {"rule": "median", "min_trials_required": 1, "start_step": 1}


def _compile(base: Path, dataset: Path, seed: int) -> Path:
    spec = {"architecture": "bag-of-words", "date-range": [["2010-11-01", "2010-12-01"]], "epochs": 3,
            "parameters": {"learning_rate": LRS, "batch_size": [512], "vocab_size": [1000], "embedding_dim": [16],
                           "hidden_size": [16]},
            "search": {"seed": seed, "stopping": STOPPING_RULE}, "image": "hpt-trainer:latest"}
    (base / f"spec-{seed}.json").write_text(json.dumps(spec))
    subprocess.run([sys.executable, "-m", "hpt.cli", "compile", str(base / f"spec-{seed}.json"), "--out",
                    str(base / f"plan-{seed}"), "--data", str(dataset), "--today", "2026-11-26"],
                   check=True, capture_output=True, timeout=120)
    return base / f"plan-{seed}"


def _lr(plan: Path, tid: str) -> float:
    return json.loads((plan / "trials" / f"{tid}.json").read_text())["params"]["learning_rate"]


@pytest.mark.docker
def test_stopping_through_the_docker_backend(docker_client, trainer_image, shared_dataset):  # noqa: F811
    base = Path(tempfile.mkdtemp(prefix="hpt-docker-stopping-"))
    try:
        base.chmod(0o755)
        for seed in range(8):   # a plan order where the slow learner runs after another config: it must stop
            plan = _compile(base, shared_dataset, seed)
            order = json.loads((plan / "plan.json").read_text())["trials"]
            if _lr(plan, order[0]) != LRS[-1]:
                break
        results = base / "results"
        proc = subprocess.run([sys.executable, "-m", "hpt.cli", "apply", str(plan), "--backend", "docker", "--results",
                               str(results), "--parallel", "1", "-f", "json"], capture_output=True, text=True,
                              timeout=900, env={**os.environ})
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        store = open_store(str(results))
        rows = {tid: parse_row_csv(store.get(f"rows/{tid}.csv").decode()) for tid in order}
        settings = json.loads((plan / "plan.json").read_text())["spec"]["search"]["stopping"]
        rule, finished = STOPPING.get("median"), {}
        for tid in order:   # replay the pure rule over what the trials stored, in the order they ran
            curve = [(r["epoch"], r["mse"]) for r in json.loads(store.get(f"curves/{tid}.json"))]
            stop = rule.first_stop(settings, curve, finished, {})
            row = rows[tid]
            if row["status"] == "stopped":
                record = json.loads(store.get(f"stops/{tid}.json"))
                assert stop is not None and stop.step == record["step"] == len(curve), (tid, curve, record)
                assert f"stopped at step {record['step']}" in row["reason"]
                assert float(row["mse"]) == pytest.approx(min(v for _, v in curve))   # its best up to the step
            else:
                assert row["status"] == "done" and stop is None, (tid, row["status"], curve)
                assert store.exists(f"verdicts/{tid}.json")   # judged to its end in the container's log
            finished[tid] = curve
        statuses = {_lr(plan, t): rows[t]["status"] for t in order}
        assert statuses[LRS[-1]] == "stopped" and "done" in statuses.values(), statuses
        assert containers(docker_client, json.loads((plan / "plan.json").read_text())["experiment"]) == []
    finally:
        shutil.rmtree(base, ignore_errors=True)
