"""examples/unchanged-script end to end through the CLI, locally and in Docker: an argparse training script that
imports nothing of hpt (flags in through W&B's ${args_no_boolean_flags}, name=value lines and TensorBoard
scalars out), tuned on WAPE on the real I-94 traffic data, without dated windows; results, report, fidelity."""
from __future__ import annotations

import csv
import io
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from executor_support import hpt_exe

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "unchanged-script"


def hpt(*args, timeout=900) -> subprocess.CompletedProcess:
    return subprocess.run([hpt_exe(), *map(str, args)], capture_output=True, text=True, timeout=timeout)


def small_example(tmp_path: Path, metrics_from: str = "stdout") -> Path:
    """The example with its data imported, and a smaller spec: 2 widths × layer norm on and off (tanh) at 1 and 2
    epochs on 1 month: 8 trials."""
    example = tmp_path / "unchanged-script"
    shutil.copytree(EXAMPLE, example, ignore=shutil.ignore_patterns("data", "__pycache__", "plan", "results"))
    shutil.copytree(ROOT / "examples" / "own-model", tmp_path / "own-model", ignore=shutil.ignore_patterns("data", "src"))
    imported = subprocess.run([example / "import-data.sh"], capture_output=True, text=True,
                              env={"HPT": hpt_exe(), "PYTHON": sys.executable, "PATH": "/usr/bin:/bin"})
    assert imported.returncode == 0, imported.stderr
    spec = json.loads((example / "spec.json").read_text())
    spec["parameters"] |= {"hidden": [8, 32], "activation": "tanh", "months": 1}
    spec["trainer"]["metrics_from"] = metrics_from
    spec["fidelities"] = [{"name": "e1", "epochs": 1}, {"name": "e2", "epochs": 2}]
    (example / "small.json").write_text(json.dumps(spec))
    return example


def test_the_script_imports_nothing_of_hpt():
    for path in (EXAMPLE / "src").rglob("*.py"):
        text = path.read_text()
        assert not re.search(r"^\s*(import hpt|from hpt)", text, re.M) and "HPT_" not in text, path
    spec = json.loads((EXAMPLE / "spec.json").read_text())
    assert spec["trainer"]["windows"] is False and "${args_no_boolean_flags}" in spec["trainer"]["command"]


def _check_store(results: Path, tmp_path: Path, n: int) -> list[dict[str, str]]:
    rows = list(csv.DictReader(io.StringIO((results / "results.csv").read_text())))
    assert len(rows) == n and {r["status"] for r in rows} == {"done"}, [r["reason"] for r in rows]
    assert {r["objective"] for r in rows} == {"val_wape"} and {r["train_start"] for r in rows} == {""}
    assert all(0 < float(r["val_wape"]) < 1 and float(r["val_smape"]) > 0 for r in rows)
    by_config = hpt("results", results, "--by", "config", "--format", "json")
    assert by_config.returncode == 0, by_config.stderr
    doc = json.loads(by_config.stdout)["by_config"]
    assert doc["objective"] == {"metric": "val_wape", "goal": "minimize"} and len(doc["configs"]) == n // 2
    means = [c["mean"] for c in doc["configs"]]
    assert means == sorted(means)                       # best (lowest WAPE) first, with no --objective
    fidelity = hpt("fidelity", results, "--format", "json")
    assert fidelity.returncode == 0 and "spearman" in fidelity.stdout.lower(), fidelity.stderr
    report = hpt("report", results, "--out", tmp_path / "report.html")
    assert report.returncode == 0, report.stderr
    page = (tmp_path / "report.html").read_text()
    assert "val_wape (lower is better)" in page and "layer_norm=" in page and "tags: val_wape" in page
    return rows


def test_the_unchanged_script_runs_locally_and_is_analysed(tmp_path):
    example = small_example(tmp_path)
    plan, results = tmp_path / "plan", tmp_path / "results"
    compiled = hpt("compile", example / "small.json", "--out", plan, "--format", "json")
    assert compiled.returncode == 0, compiled.stderr
    assert json.loads(compiled.stdout)["trials"] == 8 and "passes no hyperparameter" not in compiled.stderr
    manifest = json.loads(next((plan / "trials").iterdir()).read_text())
    assert "window" not in manifest and any(w.startswith("--hidden=") for w in manifest["trainer"]["argv"])
    applied = hpt("apply", plan, "--results", results, "--parallel", "2")
    assert applied.returncode == 0, applied.stderr
    rows = _check_store(results, tmp_path, 8)
    # the flags reached the script: its log says what it trained, and a boolean flag appears only when true
    some = next(r for r in rows if r["param.layer_norm"] == "true")
    log = (results / "logs" / f"{some['trial_id']}.log").read_text()
    assert "--layer_norm" in log and "--activation=tanh" in log and "training hours" in log


@pytest.mark.docker
def test_the_unchanged_script_runs_in_docker_with_tensorboard_metrics(tmp_path, docker_client):
    built = subprocess.run([str(ROOT / "images" / "build-offline.sh")], capture_output=True, text=True, timeout=900)
    assert built.returncode == 0, built.stderr[-3000:]
    example = small_example(tmp_path, metrics_from="tensorboard")
    assert hpt("image", "build", "--spec", example / "small.json").returncode == 0
    plan, results = tmp_path / "plan", tmp_path / "results"
    assert hpt("compile", example / "small.json", "--out", plan).returncode == 0
    applied = hpt("apply", plan, "--results", results, "--backend", "docker", "--parallel", "2")
    assert applied.returncode == 0, applied.stderr
    rows = _check_store(results, tmp_path, 8)
    assert (results / "models" / rows[0]["trial_id"] / "tb").is_dir()   # the script's own TensorBoard files
