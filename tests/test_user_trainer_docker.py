"""User trainers in real Docker containers: `hpt image build --spec` (offline: the trainer image plus the
user's source and requirements), `hpt apply --backend docker` on examples/own-model's trainer and on a
shell-script trainer, analysed from the store; the k8s dry run shows the user image."""
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
from test_user_trainer import SHELL_TRAINER

pytestmark = [pytest.mark.docker, pytest.mark.slow]

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "own-model"


def hpt(*args, timeout=900, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([hpt_exe(), *map(str, args)], capture_output=True, text=True, timeout=timeout, cwd=cwd)


@pytest.fixture(scope="module")
def base_image(docker_client) -> str:
    """The trainer image user images build on, built offline if missing or out of date."""
    proc = subprocess.run([str(ROOT / "images" / "build-offline.sh")], capture_output=True, text=True, timeout=900)
    if proc.returncode != 0:
        pytest.fail(f"images/build-offline.sh failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return "hpt-trainer:latest"


def rows(results: Path) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO((results / "results.csv").read_text())))


def test_own_model_example_in_docker_containers(tmp_path, base_image, docker_client):
    example = tmp_path / "own-model"
    shutil.copytree(EXAMPLE, example, ignore=shutil.ignore_patterns("data", "__pycache__"))
    imported = subprocess.run([example / "import-data.sh"], capture_output=True, text=True,
                              env={"HPT": hpt_exe(), "PYTHON": sys.executable, "PATH": "/usr/bin:/bin"})
    assert imported.returncode == 0, imported.stderr
    spec = json.loads((example / "spec.json").read_text())
    spec |= {"date-range": {"count": 1, "months": 2}, "parameters": {"hidden": [16, 32, 64], "lags": 24}, "epochs": 4,
             "fidelities": [{"months": 1, "epochs": 2}, {"epochs": 4}]}
    (example / "small.json").write_text(json.dumps(spec))

    built = hpt("image", "build", "--spec", example / "small.json")
    assert built.returncode == 0, built.stderr
    plan, results = tmp_path / "plan", tmp_path / "results"
    compiled = hpt("compile", example / "small.json", "--out", plan, "--format", "json")
    assert compiled.returncode == 0, compiled.stderr
    manifest = json.loads((plan / "trials" / f"{json.loads((plan / 'plan.json').read_text())['trials'][0]}.json").read_text())
    image = manifest["image"]
    assert image.startswith("hpt-user-forecast:") and image.split(":")[1] == manifest["trainer"]["digest"][7:19]
    labels = docker_client.images.get(image).labels
    assert labels["hpt.trainer-digest"] == manifest["trainer"]["digest"]
    again = hpt("image", "build", "--spec", example / "small.json")
    assert again.returncode == 0 and "up to date" in again.stderr

    applied = hpt("apply", plan, "--results", results, "--backend", "docker", "--parallel", "2")
    assert applied.returncode == 0, applied.stderr
    table = rows(results)
    assert len(table) == 6 and {r["status"] for r in table} == {"done"}
    assert all(float(r["mse"]) < float(r["baseline_mse"]) for r in table if r["max_epochs"] == "4")
    assert (results / "models" / table[0]["trial_id"] / "model.pt").is_file()
    assert "running " in (results / "logs" / f"{table[0]['trial_id']}.log").read_text()   # the user program, in the container
    assert hpt("results", results, "--by", "config").returncode == 0
    assert hpt("fidelity", results).returncode == 0

    dry = hpt("apply", plan, "--backend", "k8s", "--dry-run", "--results", "gs://bucket/own")
    assert dry.returncode == 0, dry.stderr
    assert f"image: {image}" in dry.stdout


def test_a_shell_script_trainer_in_docker(tmp_path, base_image):
    project = tmp_path / "project"
    (project / "src").mkdir(parents=True)
    (project / "src" / "train.sh").write_text(SHELL_TRAINER)
    (project / "src" / "train.sh").chmod(0o755)
    data = tmp_path / "data"   # a dataset the script never reads: only its descriptor, for the compiler
    data.mkdir()
    (data / "dataset.json").write_text(json.dumps({"name": "none", "timestamp": "t", "target": "y",
                                                   "coverage": {"start": "2010-01-01", "end": "2010-12-31"}}))
    (project / "spec.json").write_text(json.dumps({
        "trainer": {"command": ["./train.sh"], "source": "src", "name": "shell"}, "data": str(data),
        "date-range": [["2010-06-01", "2010-08-01"]], "parameters": {"lr": [0.01, 0.05], "depth": 1}}))
    assert hpt("image", "build", "--spec", project / "spec.json").returncode == 0
    plan, results = tmp_path / "plan", tmp_path / "results"
    assert hpt("compile", project / "spec.json", "--out", plan).returncode == 0
    applied = hpt("apply", plan, "--results", results, "--backend", "docker", "--parallel", "2")
    assert applied.returncode == 0, applied.stderr
    table = {r["param.lr"]: r for r in rows(results)}
    assert float(table["0.05"]["mse"]) == pytest.approx(0.001) and float(table["0.01"]["mse"]) == pytest.approx(0.0026)
