"""A Katib Experiment's trial Job on the k8s backend: the Job sent to the API server is the trialSpec as
written — its image, command, volumes, env, initContainers and resources, each ${trialParameters.NAME}
rendered — with hpt's name, labels, annotations, backoff/TTL, cluster settings and trial env added; it
passes kubernetes-validate --strict and hpt's own checks. Against the kmock emulator through the official
client, `hpt apply --backend k8s` runs it; the image has no hpt, so nothing in the pod writes a row:
apply reads the metrics from the primary container's log (the pod's log) and writes each row into the
(fake-gcs) bucket."""
from __future__ import annotations

import json
import re
import threading
from pathlib import Path

import kubernetes_validate
import pytest
import yaml
from typer.testing import CliRunner

from hpt.cli import app
from hpt.executor.backends.kubernetes import render as k8s
from hpt.schemas.row import parse_row_csv
from hpt.store import open_store, row_key
from k8s_emulator import EmulatedCluster, FakeJobController, add_pod, api_client, condition, set_job_status

EXAMPLE = Path(__file__).parent / "data" / "katib" / "random.yaml"
CLAIMED = [v for v in kubernetes_validate.utils.all_versions() if tuple(map(int, v.split(".")[:2])) >= (1, 29)]
IMAGE = "reg.example/katib/mxnet-mnist:v0.15.0"


def experiment(tmp: Path) -> Path:
    """Katib's random example with a trialSpec as real Experiments write them: an initContainer, a volume,
    env (a value with a trial parameter, a secret), resources."""
    exp = yaml.safe_load(EXAMPLE.read_text().split("---", 1)[1])
    exp["spec"]["maxTrialCount"] = 3
    pod = exp["spec"]["trialTemplate"]["trialSpec"]["spec"]["template"]["spec"]
    main = pod["containers"][0]
    main["image"] = IMAGE
    main["env"] = [{"name": "OPTIMIZER", "value": "${trialParameters.optimizer}"},
                   {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "mnist-token", "key": "token"}}}]
    main["volumeMounts"] = [{"name": "data", "mountPath": "/data"}]
    main["resources"] = {"requests": {"cpu": "500m", "memory": "1Gi"}, "limits": {"memory": "1Gi"}}
    pod["initContainers"] = [{"name": "fetch", "image": "reg.example/tools/fetch:1", "command": ["sh", "-c", "cp -r /mnist /data"],
                              "volumeMounts": [{"name": "data", "mountPath": "/data"}]}]
    pod["volumes"] = [{"name": "data", "emptyDir": {}}]
    path = tmp / "random.yaml"
    path.write_text(yaml.safe_dump(exp))
    return path


class TrialJobController(FakeJobController):
    """Runs each of the plan's own Jobs as its image would: a pod whose log is what Katib's mnist prints for
    the --lr in its command (Validation-accuracy = 1 − lr), then Complete. It writes no row."""

    def __init__(self, cluster: EmulatedCluster, kubeconfig, experiment: str):
        super().__init__(kubeconfig, experiment=experiment, workers=2)
        self.cluster, self.jobs = cluster, []
        self.lock = threading.Lock()

    def _work(self) -> None:
        api = api_client(self.kubeconfig)
        while True:
            job = self._queue.get()
            if job is None:
                return
            name = job["metadata"]["name"]
            try:
                with self.lock:
                    self.jobs.append(job)
                container = job["spec"]["template"]["spec"]["containers"][0]
                lr = float(next(a for a in container["command"] if a.startswith("--lr=")).split("=", 1)[1])
                pod = add_pod(api, job, {"phase": "Succeeded", "containerStatuses": [
                    {"name": container["name"], "ready": False, "restartCount": 0, "image": container["image"],
                     "imageID": "", "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}]})
                self.cluster.set_pod_log(pod, "".join(f"INFO:root:Epoch[{e}] Train-accuracy={1 - lr / 2:.4f}\n"
                                                      f"INFO:root:Epoch[{e}] Validation-accuracy={1 - lr - 0.01 * (2 - e):.4f}\n"
                                                      for e in (1, 2)))
                set_job_status(api, name, self.namespace, {"active": 0, "ready": 0, "succeeded": 1,
                                                           "conditions": [condition("Complete")]})
                self.finished += 1
            except Exception as err:
                print(f"trial job controller: {name}: {err!r}")


@pytest.fixture(scope="module")
def cluster():
    with EmulatedCluster() as c:
        yield c


def test_the_trials_own_job_is_what_runs_and_the_row_comes_from_its_log(cluster, tmp_path, monkeypatch, gcs_bucket):
    monkeypatch.setenv("HPT_DEMO_DATA", str(tmp_path / "demo-not-built"))
    kubeconfig = cluster.write_kubeconfig(tmp_path / "kubeconfig")
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
    plan = tmp_path / "plan"
    compiled = CliRunner().invoke(app, ["compile", str(experiment(tmp_path)), "--out", str(plan)])
    assert compiled.exit_code == 0, compiled.output
    spec = json.loads((plan / "plan.json").read_text())
    manifests = {tid: json.loads((plan / "trials" / f"{tid}.json").read_text()) for tid in spec["trials"]}

    # the dry run prints the Jobs that will be sent: each one the trialSpec, rendered, with hpt's parts added
    dry = CliRunner().invoke(app, ["apply", str(plan), "--backend", "k8s", "--dry-run", "--results", gcs_bucket])
    assert dry.exit_code == 0, dry.output
    jobs = [d for d in yaml.safe_load_all(dry.stdout) if d]
    assert len(jobs) == 3
    for job in jobs:
        for version in (CLAIMED[0], CLAIMED[-1]):
            kubernetes_validate.validate(job, version, strict=True)
        assert k8s.check_object(job) == []
        manifest = manifests[job["metadata"]["annotations"]["hpt.dev/trial-id"]]
        pod = job["spec"]["template"]["spec"]
        (main,) = pod["containers"]
        assert main["image"] == IMAGE and main["name"] == "training-container"
        assert main["command"] == manifest["trainer"]["argv"]                      # its own command, rendered
        assert f"--lr={manifest['params']['lr']}" in main["command"]
        env = {e["name"]: e for e in main["env"]}
        assert env["OPTIMIZER"]["value"] == manifest["params"]["optimizer"]         # a trial parameter in its env
        assert env["TOKEN"]["valueFrom"] == {"secretKeyRef": {"name": "mnist-token", "key": "token"}}
        assert env["HPT_TRIAL_ID"]["value"] == manifest["id"] and env["HPT_RESULTS"]["value"] == gcs_bucket
        assert "HPT_MANIFEST" not in env and "hpt-trial" not in json.dumps(job)
        assert pod["initContainers"][0]["name"] == "fetch" and pod["volumes"] == [{"name": "data", "emptyDir": {}}]
        assert main["resources"] == {"requests": {"cpu": "500m", "memory": "1Gi"}, "limits": {"memory": "1Gi"}}
        assert main["securityContext"]["allowPrivilegeEscalation"] is False
        labels = job["metadata"]["labels"]
        assert labels["hpt.dev/trial"] == manifest["id"] and labels["app.kubernetes.io/managed-by"] == "hpt"
        assert job["spec"]["template"]["metadata"]["annotations"]["hpt.dev/container"] == "training-container"
        assert job["spec"]["backoffLimit"] == 0 and job["spec"]["template"]["spec"]["restartPolicy"] == "Never"

    controller = TrialJobController(cluster, kubeconfig, spec["experiment"]).start()
    try:
        run = CliRunner().invoke(app, ["apply", str(plan), "--backend", "k8s", "--results", gcs_bucket, "--parallel", "2",
                                       "--context", "emulator", "--format", "json"])
    finally:
        controller.stop()
    assert run.exit_code == 0, run.output
    assert sorted(j["metadata"]["name"] for j in controller.jobs) == sorted(j["metadata"]["name"] for j in jobs)
    sent = {j["metadata"]["name"]: j for j in controller.jobs}
    def same(container):   # the ownership ticket is one launch's own
        return {**container, "env": [e for e in container["env"] if e["name"] != "HPT_TRIAL_TICKET"]}

    for job in jobs:   # what reached the API server is what the dry run printed
        got = sent[job["metadata"]["name"]]["spec"]["template"]["spec"]
        assert [same(c) for c in got["containers"]] == [same(c) for c in job["spec"]["template"]["spec"]["containers"]]
        assert got["initContainers"] == job["spec"]["template"]["spec"]["initContainers"]
    store = open_store(gcs_bucket)
    for tid, manifest in manifests.items():
        row = parse_row_csv(store.get(row_key(tid)).decode())
        lr = manifest["params"]["lr"]
        assert row["status"] == "done"
        assert float(row["Validation-accuracy"]) == pytest.approx(round(1 - lr, 4))   # the last report, from the log
        assert float(row["Train-accuracy"]) == pytest.approx(round(1 - lr / 2, 4))
        assert re.search(r"Validation-accuracy=", store.get(f"logs/{tid}.log").decode())
