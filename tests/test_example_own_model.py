"""examples/own-model end to end through the CLI on the local backend: a user's forecaster on the real
Metro Interstate traffic data (imported with `hpt data import`), rotating ranges and fidelities, and
every analysis command on its store."""
from __future__ import annotations

import csv
import io
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from executor_support import hpt_exe

pytestmark = pytest.mark.slow

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "own-model"


def hpt(*args, timeout=900) -> subprocess.CompletedProcess:
    return subprocess.run([hpt_exe(), *map(str, args)], capture_output=True, text=True, timeout=timeout)


def test_own_model_example_runs_and_is_analysed(tmp_path):
    example = tmp_path / "own-model"
    shutil.copytree(EXAMPLE, example, ignore=shutil.ignore_patterns("data", "__pycache__"))
    imported = subprocess.run([example / "import-data.sh", "--format", "json"], capture_output=True, text=True,
                              env={"HPT": hpt_exe(), "PYTHON": sys.executable, "PATH": "/usr/bin:/bin"})
    assert imported.returncode == 0, imported.stderr
    assert json.loads(imported.stdout)["rows"] > 40000

    plan, results = tmp_path / "plan", tmp_path / "results"
    compiled = hpt("compile", example / "spec.json", "--out", plan, "--format", "json")
    assert compiled.returncode == 0, compiled.stderr
    summary = json.loads(compiled.stdout)
    assert summary["architecture"] == "forecast" and summary["trials"] == 16 and len(summary["windows"]) == 2

    applied = hpt("apply", plan, "--results", results, "--parallel", "2")
    assert applied.returncode == 0, applied.stderr
    rows = list(csv.DictReader(io.StringIO((results / "results.csv").read_text())))
    assert len(rows) == 16 and {r["status"] for r in rows} == {"done"}
    assert {r["fidelity"] for r in rows} == {"1m-3e", "full"}
    full = [r for r in rows if r["fidelity"] == "full"]
    # The model learns: every full-budget trial beats the seasonal-naive forecast (same hour a day earlier).
    assert all(float(r["mse"]) < float(r["baseline_mse"]) for r in full)
    assert all(r["param.layers"] == "2" and r["param.lags"] == "24" and r["param.lr"] == "0.003" for r in rows)   # catalog defaults, resolved
    models = results / "models" / full[0]["trial_id"]
    assert {"model.pt", "scaling.json", "metrics.json", "manifest.json", "trial.log"} <= {p.name for p in models.iterdir()}

    by_config = hpt("results", results, "--by", "config", "--format", "json")
    assert by_config.returncode == 0, by_config.stderr
    configs = json.loads(by_config.stdout)["by_config"]["configs"]
    assert len(configs) == 4 and all(c["n_ranges"] == 2 for c in configs)
    trends = hpt("results", results, "--trends", "--format", "json")
    assert trends.returncode == 0 and "hidden" in trends.stdout and "tanh" in trends.stdout, trends.stderr
    fidelity = hpt("fidelity", results, "--format", "json")
    assert fidelity.returncode == 0, fidelity.stderr
    assert "1m-3e" in fidelity.stdout and "spearman" in fidelity.stdout.lower()
    report = hpt("report", results, "--out", tmp_path / "report.html")
    assert report.returncode == 0, report.stderr
    page = (tmp_path / "report.html").read_text()
    assert "hidden=64" in page and "tags: mse" in page   # the configs, and learning curves from the hpt:epoch reports
