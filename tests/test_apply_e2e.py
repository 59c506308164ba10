"""`hpt apply` end to end with the REAL trainer on a small slice of the real demo dataset: rows,
models, logs, results.csv; resume; a real SIGKILL mid-run; continuous results on fake-gcs-server."""
from __future__ import annotations

import csv
import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from executor_support import hpt_exe, write_plan
from hpt.store import open_store
from trial_factory import make_manifest

pytestmark = pytest.mark.slow


def plan(tmp_path: Path, dataset: Path, n: int, broken: int = 0) -> tuple[Path, list[str]]:
    ms = [make_manifest(dataset, "bag-of-words", epochs=1, seed=i, experiment="e-e2e000000000", hidden_size=16)
          for i in range(n)]
    ms += [make_manifest(dataset / "missing", "bag-of-words", epochs=1, seed=i, experiment="e-e2e000000000")
           for i in range(broken)]
    return write_plan(tmp_path / "plan", ms), [m.id for m in ms]


def hpt(*args, timeout=300) -> subprocess.CompletedProcess:
    return subprocess.run([hpt_exe(), *map(str, args)], capture_output=True, text=True, timeout=timeout)


def table(uri: str) -> list[dict[str, str]]:
    try:
        return list(csv.DictReader(io.StringIO(open_store(uri).get("results.csv").decode())))
    except KeyError:
        return []


def row_keys(uri: str) -> list[str]:
    return open_store(uri).list("rows/")


def test_real_trials_rows_models_logs_and_resume(tmp_path, small_dataset):
    plan_dir, ids = plan(tmp_path, small_dataset, 2, broken=1)
    results = str(tmp_path / "results")
    proc = hpt("apply", plan_dir, "--results", results, "--parallel", "2", "--format", "json")
    assert proc.returncode == 1, proc.stderr  # the trial with missing data failed
    end = json.loads(proc.stdout.splitlines()[-1])
    assert end["event"] == "run-finished" and end["done"] == 2 and end["failed"] == 1
    rows = {r["trial_id"]: r for r in table(results)}
    assert sorted(rows) == sorted(ids)
    store = open_store(results)
    for tid in ids[:2]:
        assert rows[tid]["status"] == "done" and float(rows[tid]["mse"]) > 0
        assert store.list(f"models/{tid}/") and store.exists(f"logs/{tid}.log")
    assert rows[ids[2]]["status"] == "failed" and rows[ids[2]]["reason"]

    again = hpt("apply", plan_dir, "--results", results, "--skip-failed")
    assert again.returncode == 1 and "nothing to run" in again.stderr
    status = json.loads(hpt("status", plan_dir, "--results", results, "--format", "json").stdout)
    assert status["counts"] == {"done": 2, "failed": 1}


def test_warm_trials_give_the_same_results_bit_for_bit(tmp_path, small_dataset):
    # The default is warm: a plain `hpt apply` forks its trials from the worker; --no-warm starts each fresh.
    plan_dir, ids = plan(tmp_path, small_dataset, 2, broken=1)
    worker_log = plan_dir / ".hpt" / "local" / "warm-worker.log"
    rows = {}
    for mode in ("--no-warm", "default"):
        results = str(tmp_path / f"results-{mode}")
        proc = hpt("apply", plan_dir, "--results", results, "--parallel", "2", *([mode] if mode != "default" else []))
        assert proc.returncode == 1, proc.stderr  # the trial with missing data failed, both ways
        rows[mode] = {r["trial_id"]: r for r in table(results)}
        assert "epoch 1/1" in open_store(results).get(f"logs/{ids[0]}.log").decode()  # the log is the trial's
        assert worker_log.is_file() == (mode == "default")   # only the default run went through the worker
    for tid in ids[:2]:
        assert rows["default"][tid]["status"] == "done"
        for column in ("mse", "loss", "train_mse", "best_epoch", "device"):
            assert rows["default"][tid][column] == rows["--no-warm"][tid][column]
    assert rows["default"][ids[2]]["reason"] == rows["--no-warm"][ids[2]]["reason"]


SIMULATED_GPU = """
import sys
import torch
torch.cuda.is_available = lambda: True                        # a GPU machine, as the trainer sees it
torch.cuda.get_device_name = lambda device=None: "Simulated GPU"
from hpt.trainer.__main__ import main
main(sys.argv[1:])
"""


def test_gpus_0_trains_on_the_cpu_where_a_gpu_is_visible(tmp_path, small_dataset):
    script = tmp_path / "simulated_gpu.py"
    script.write_text(SIMULATED_GPU)
    ms = [make_manifest(small_dataset, "bag-of-words", epochs=1, experiment="e-e2e000000001", seed=gpus,
                        resources={"gpus": gpus, "cpus": 1, "memory": "2Gi"}) for gpus in (0, 1)]
    plan_dir = write_plan(tmp_path / "plan", ms)
    env = {k: v for k, v in os.environ.items() if k != "HPT_DEVICE"}
    env["HPT_TRIAL_COMMAND"] = f"{sys.executable} {script}"
    results = str(tmp_path / "results")
    proc = subprocess.run([hpt_exe(), "apply", str(plan_dir), "--results", results], env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 1, proc.stderr  # the gpus: 1 trial tried the (simulated) GPU and failed
    rows = {r["trial_id"]: r for r in table(results)}
    cpu, gpu = rows[ms[0].id], rows[ms[1].id]
    assert cpu["status"] == "done" and cpu["device"].startswith("cpu:"), (cpu["reason"], cpu["device"])
    assert gpu["status"] == "failed" and gpu["device"] == "cuda:Simulated GPU" and "CUDA" in gpu["reason"], gpu


def test_real_sigkill_mid_run_then_reapply(tmp_path, small_dataset):
    plan_dir, ids = plan(tmp_path, small_dataset, 3)
    results = str(tmp_path / "results")
    apply = subprocess.Popen([hpt_exe(), "apply", str(plan_dir), "--results", results, "--parallel", "1"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    state = plan_dir / ".hpt" / "local"

    def second_trial_running() -> bool:
        done = {Path(k).stem for k in row_keys(results)}
        return bool(done) and any(p.name.split(".")[0] not in done for p in state.rglob("*.pid.json"))

    deadline = time.monotonic() + 240
    while not second_trial_running():  # kill while a trial is in flight, after one has finished
        assert time.monotonic() < deadline and apply.poll() is None
        time.sleep(0.05)
    apply.send_signal(signal.SIGKILL)
    apply.wait()

    proc = hpt("apply", plan_dir, "--results", results, "--format", "json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.splitlines()[-1])["adopted"] <= 1
    assert row_keys(results) == sorted(f"rows/{t}.csv" for t in ids)  # one row per trial, none lost
    assert sorted(r["trial_id"] for r in table(results)) == sorted(ids)
    assert all(r["status"] == "done" for r in table(results))
    assert open_store(results).list("rows-failed/") == []


def test_real_results_csv_grows_on_gcs(tmp_path, small_dataset, gcs_bucket):
    plan_dir, ids = plan(tmp_path, small_dataset, 2)
    results = gcs_bucket + "/e2e"
    apply = subprocess.Popen([hpt_exe(), "apply", str(plan_dir), "--results", results, "--parallel", "1"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    partial = False
    while apply.poll() is None:
        rows = table(results)
        partial = partial or (len(rows) == 1 and apply.poll() is None)
        time.sleep(0.2)
    assert apply.returncode == 0, apply.stderr.read()
    assert partial, "results.csv never showed the first trial while the second was running"
    assert sorted(r["trial_id"] for r in table(results)) == sorted(ids)
    assert open_store(results).list(f"models/{ids[0]}/")
