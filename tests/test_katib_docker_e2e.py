"""Katib's published median-stop Experiment, run end to end on the docker backend with a trial image that
contains no hpt: Debian's python3 and a stand-in for Katib's mnist script at the path the Experiment names
(/opt/mxnet-mnist/mnist.py, printing Katib's StdOut `name=value` lines). The container runs its own command
as the trialSpec renders it; `hpt apply` reads the metrics from the container's log (executor-side
collection, hpt.trainer.fromlog) and writes each row; medianstop (search.stopping rule median) stops
trials through the same log."""
from __future__ import annotations

import csv
import io
import json
import subprocess
import textwrap
from pathlib import Path

import pytest
import yaml

from executor_support import hpt_exe
from hpt.compiler.stopping import STOPPING

pytestmark = [pytest.mark.docker]

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "tests" / "data" / "katib" / "median-stop.yaml"
BASE = "hpt-base:bookworm"   # Debian's python3, nothing of hpt (images/build-offline.sh makes it)
# Katib's example trains mxnet on MNIST; this stand-in prints what a Katib StdOut collector reads, per epoch:
# accuracy = 0.9 − |lr − 0.1| − 0.3/epoch, so each row's value is known from its lr and its last step.
SCRIPT = textwrap.dedent("""\
    import argparse, time
    p = argparse.ArgumentParser()
    p.add_argument("--batch-size", type=int)
    p.add_argument("--lr", type=float)
    p.add_argument("--num-epochs", type=int)
    a = p.parse_args()
    for epoch in range(1, a.num_epochs + 1):
        train = 0.95 - abs(a.lr - 0.1) - 0.2 / epoch
        valid = 0.9 - abs(a.lr - 0.1) - 0.3 / epoch
        print(f"epoch={epoch} Train-accuracy={train:.6f} Validation-accuracy={valid:.6f}", flush=True)
        time.sleep(0.3)
""")


def accuracy(lr: float, epoch: int) -> float:
    return 0.9 - abs(lr - 0.1) - 0.3 / epoch


@pytest.fixture(scope="module")
def no_hpt_image(docker_client, tmp_path_factory) -> str:
    try:
        docker_client.images.get(BASE)
    except Exception:
        proc = subprocess.run([str(ROOT / "images" / "build-offline.sh")], capture_output=True, text=True, timeout=900)
        assert proc.returncode == 0, proc.stderr[-3000:]
    context = tmp_path_factory.mktemp("katib-image")
    (context / "mnist.py").write_text(SCRIPT)
    (context / "Dockerfile").write_text(f"FROM {BASE}\nCOPY mnist.py /opt/mxnet-mnist/mnist.py\n")
    image, _ = docker_client.images.build(path=str(context), tag="hpt-test-katib-mnist:1", rm=True)
    import docker.errors

    with pytest.raises(docker.errors.ContainerError) as failed:   # the image has no hpt: importing it fails inside
        docker_client.containers.run(image.id, ["python3", "-c", "import hpt"], remove=True, stderr=True)
    assert b"ModuleNotFoundError" in (failed.value.stderr or b"")
    return "hpt-test-katib-mnist:1"


def test_katib_median_stop_example_runs_on_docker_with_an_image_without_hpt(tmp_path, no_hpt_image, monkeypatch):
    monkeypatch.setenv("HPT_DEMO_DATA", str(tmp_path / "demo-not-built"))
    doc = EXAMPLE.read_text()
    experiment = yaml.safe_load(doc.split("---", 1)[1])
    spec = experiment["spec"]
    spec["maxTrialCount"] = 4       # the published 15 trials, cut to keep the test short
    spec["trialTemplate"]["trialSpec"]["spec"]["template"]["spec"]["containers"][0]["image"] = no_hpt_image
    (tmp_path / "median-stop.yaml").write_text(yaml.safe_dump(experiment))
    plan, results = tmp_path / "plan", tmp_path / "results"
    compiled = subprocess.run([hpt_exe(), "compile", str(tmp_path / "median-stop.yaml"), "--out", str(plan)],
                              capture_output=True, text=True, timeout=120)
    assert compiled.returncode == 0, compiled.stderr
    assert "in-trial stopping: median (min_trials_required 1, start_step 2)" in compiled.stdout
    manifests = {p.stem: json.loads(p.read_text()) for p in (plan / "trials").glob("*.json")}
    assert len(manifests) == 4 and all(m["trainer"]["collect"] == "log" for m in manifests.values())

    dry = subprocess.run([hpt_exe(), "apply", str(plan), "--backend", "docker", "--dry-run", "--results", str(results)],
                         capture_output=True, text=True, timeout=120)
    assert dry.returncode == 0, dry.stderr
    assert "--entrypoint python3 hpt-test-katib-mnist:1 /opt/mxnet-mnist/mnist.py --batch-size=64 --lr=" in dry.stdout
    assert "HPT_MANIFEST" not in dry.stdout and "--mount" not in dry.stdout   # no manifest, no store, no data mount

    # --parallel 1: trials run in plan order, so the stops are the pure rule's (Katib's parallelTrialCount is 2)
    run = subprocess.run([hpt_exe(), "apply", str(plan), "--backend", "docker", "--parallel", "1", "--results",
                          str(results), "--format", "json"], capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    table = list(csv.DictReader(io.StringIO((results / "results.csv").read_text())))
    assert len(table) == 4 and {r["status"] for r in table} <= {"done", "stopped"}, table
    for row in table:
        manifest = manifests[row["trial_id"]]
        lr, epochs = manifest["params"]["lr"], manifest["params"]["num-epochs"]
        step = int(row["reason"].split("stopped at step ")[1].split()[0]) if row["status"] == "stopped" else epochs
        assert float(row["Validation-accuracy"]) == pytest.approx(accuracy(lr, step), abs=1e-5)   # from the log
        assert float(row["Train-accuracy"]) == pytest.approx(0.95 - abs(lr - 0.1) - 0.2 / step, abs=1e-5)
        assert row["objective"] == "Validation-accuracy" and row["goal"] == "maximize"
        log = (results / "logs" / f"{row['trial_id']}.log").read_text()
        assert "Validation-accuracy=" in log and "hpt-trial" not in log
    events = [json.loads(line) for line in run.stdout.splitlines()]
    stops = {e["trial_id"]: e["step"] for e in events if e["event"] == "trial-stopping"}
    assert set(stops) == {r["trial_id"] for r in table if r["status"] == "stopped"}
    order = json.loads((plan / "plan.json").read_text())["trials"]
    settings = json.loads((plan / "plan.json").read_text())["spec"]["search"]["stopping"]
    finished, expect = {}, {}
    for tid in order:   # maximised: the rule reads the negated accuracy
        lr, epochs = manifests[tid]["params"]["lr"], manifests[tid]["params"]["num-epochs"]
        curve = [(e, -accuracy(lr, e)) for e in range(1, epochs + 1)]
        stop = STOPPING.get("median").first_stop(settings, curve, finished, {})
        if stop is not None:
            expect[tid] = stop.step
            curve = curve[:stop.step]
        finished[tid] = curve
    assert expect and stops == expect
    again = subprocess.run([hpt_exe(), "apply", str(plan), "--backend", "docker", "--results", str(results)],
                           capture_output=True, text=True, timeout=120)
    assert again.returncode == 0 and "nothing to run" in again.stdout + again.stderr
