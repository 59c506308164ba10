"""k8s/: what a cluster admin applies once, and hpt run from inside the cluster.

- every object in k8s/ passes `kubernetes-validate --strict` (each Kubernetes minor docs/kubernetes.md claims);
- the Role grants exactly what the backend calls: the API emulator authorizes every request with RBAC over
  k8s/rbac.yaml (403 for anything else) while `hpt apply`/`hpt delete` and the backend's logs/cancel run
  as the hpt-runner service account, and the test fails on a refused request or on a grant never used;
- the CronJob's own shell command (read from k8s/runner/cronjob.yaml) runs a small plan to completion with
  in-cluster configuration, as the official client's in-cluster loader reads it: $KUBERNETES_SERVICE_HOST
  and _PORT (https) and the service account's token and CA files; run again (a restarted pod), it resumes.
No real cluster: the Job controller's part is played by FakeJobController (tests/k8s_emulator.py).
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import kubernetes_validate
import pytest
import yaml
from typer.testing import CliRunner

from executor_support import write_plan
from hpt.cli import app
from hpt.schemas.row import parse_row_csv
from hpt.store import open_store, row_key
from k8s_emulator import EmulatedCluster, FakeJobController, Rbac
from trial_factory import make_manifest

ROOT = Path(__file__).resolve().parent.parent
K8S = ROOT / "k8s"
NS = "hpt"
RUNNER = f"system:serviceaccount:{NS}:hpt-runner"   # the subject the API server authenticates the runner's token as
ADMIN = "emulator"                                    # the cluster's own part (FakeJobController)
CLAIMED = [v for v in kubernetes_validate.utils.all_versions() if tuple(map(int, v.split(".")[:2])) >= (1, 29)]
BACKEND_SOURCES = sorted((ROOT / "executor" / "backends" / "kubernetes").glob("*.py"))


def _objects() -> list[tuple[Path, dict]]:
    out = []
    for path in sorted(K8S.rglob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        out += [(path, doc) for doc in yaml.safe_load_all(path.read_text()) if doc]
    return out


def _rbac_docs() -> list[dict]:
    return [doc for path, doc in _objects() if path.name == "rbac.yaml"]


def _grants() -> set[tuple[str, str, str]]:
    """(verb, API group, resource) granted to the runner by k8s/rbac.yaml."""
    return {(verb, group, resource) for _where, rule in Rbac(_rbac_docs()).rules_for(RUNNER)
            for verb in rule["verbs"] for group in rule["apiGroups"] for resource in rule["resources"]}


# -- the objects ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("version", CLAIMED)
def test_every_object_in_k8s_passes_strict_schema_validation(version):
    objects = _objects()
    kinds = {doc["kind"] for _, doc in objects}
    assert {"Namespace", "ServiceAccount", "Role", "RoleBinding", "PriorityClass", "ResourceQuota", "CronJob",
            "PersistentVolumeClaim", "ConfigMap"} <= kinds
    for path, doc in objects:
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as err:
            raise AssertionError(f"{path.relative_to(ROOT)} {doc['kind']}/{doc['metadata']['name']}: {err}") from None


def test_the_kustomization_lists_every_file_and_every_object_is_in_the_namespace_its_users_expect():
    listed = yaml.safe_load((K8S / "kustomization.yaml").read_text())["resources"]
    files = sorted(str(p.relative_to(K8S)) for p in K8S.rglob("*.yaml") if p.name != "kustomization.yaml")
    assert sorted(listed) == files
    for path, doc in _objects():
        if doc["kind"] not in ("Namespace", "PriorityClass", "ClusterRole", "ClusterRoleBinding"):
            assert doc["metadata"]["namespace"] == NS, f"{path}: {doc['kind']}"
    trainer = next(d for _, d in _objects() if d["kind"] == "ServiceAccount" and d["metadata"]["name"] == "hpt-trainer")
    assert "iam.gke.io/gcp-service-account" in trainer["metadata"]["annotations"]
    assert trainer["automountServiceAccountToken"] is False       # trials never talk to the API
    # The spec the runner compiles names the objects k8s/ creates.
    spec = yaml.safe_load(next(d for _, d in _objects() if d["kind"] == "ConfigMap")["data"]["spec.yaml"])
    priority = next(d for _, d in _objects() if d["kind"] == "PriorityClass")
    assert spec["kubernetes"]["namespace"] == NS
    assert spec["kubernetes"]["serviceAccountName"] == "hpt-trainer"
    assert spec["kubernetes"]["priorityClassName"] == priority["metadata"]["name"]
    assert priority["value"] < 0 and priority["preemptionPolicy"] == "Never"


def test_the_runners_spec_compiles(tmp_path, small_dataset):
    spec = next(d for _, d in _objects() if d["kind"] == "ConfigMap")["data"]["spec.yaml"]
    (tmp_path / "spec.yaml").write_text(spec)
    # Rotating windows need the data's coverage: the demo slice stands in for the bucket's dataset.
    result = CliRunner().invoke(app, ["compile", str(tmp_path / "spec.yaml"), "--out", str(tmp_path / "plan"),
                                      "--today", "2011-09-01", "--data", str(small_dataset), "--format", "json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["trials"] == 9     # 3 learning rates × 3 rotating windows


def test_the_role_covers_every_api_call_in_the_backends_source():
    """Static: each method of the official client's API classes the backend calls, read by its name
    (VERB[_namespaced]_KIND[_SUBRESOURCE]), is granted; the recorded test below checks what is sent."""
    from kubernetes.client import BatchV1Api, CoreV1Api

    verbs = {"create": "create", "read": "get", "list": "list", "patch": "patch", "delete": "delete", "replace": "update"}
    resources = {"job": ("batch", "jobs"), "config_map": ("", "configmaps"), "pod": ("", "pods"),
                 "pod_log": ("", "pods/log"), "node": ("", "nodes")}
    methods = {n for api in (BatchV1Api, CoreV1Api) for n in dir(api) if not n.startswith("_")}
    called = set()
    for path in BACKEND_SOURCES:
        text = path.read_text()
        for name in sorted(m for m in methods if re.search(rf"\.{m}\(", text)):
            verb, _, kind = re.fullmatch(r"(create|read|list|patch|delete|replace)_(namespaced_)?(\w+)", name).groups()
            assert kind in resources, f"{path.name}: {name} is an API call this test does not know"
            group, resource = resources[kind]
            called.add((verbs[verb], group, resource))
            if verb == "list" and path.name == "watch.py":
                called.add(("watch", group, resource))
    assert len(called) >= 8 and called <= _grants(), f"called but not granted: {sorted(called - _grants())}"


# -- the Role, against what the backend really sends -------------------------------------------------------
@pytest.fixture
def rbac_cluster(tmp_path):
    rbac = Rbac(_rbac_docs())
    with EmulatedCluster(tls=tmp_path / "tls") as cluster:
        cluster.set_authorizer(lambda token, request: token == ADMIN or rbac.allows(token, request))
        yield cluster


def _plan(tmp_path: Path, n: int, experiment: str, folder: str = "plan", **kw):
    manifests = [make_manifest("gs://bucket/data", "bag-of-words", seed=s, experiment=experiment,
                               image="reg.example/hpt/trainer:1", **kw) for s in range(n)]
    return write_plan(tmp_path / folder, manifests), manifests


def test_the_backend_uses_exactly_what_the_role_grants(rbac_cluster, tmp_path, gcs_bucket, monkeypatch):
    from hpt import api

    cluster = rbac_cluster
    admin = cluster.write_kubeconfig(tmp_path / "admin.kubeconfig", namespace=NS, token=ADMIN)
    runner = cluster.write_kubeconfig(tmp_path / "runner.kubeconfig", namespace=NS, context="runner", token=RUNNER)
    monkeypatch.setenv("KUBECONFIG", str(runner))
    # GPU trials (the default --parallel lists the nodes), one that fails (its pod's log is read).
    plan, manifests = _plan(tmp_path, 3, "e-0000000000a1", resources={"gpus": 1, "cpus": 1, "memory": "2Gi"})
    failing = manifests[1].id
    controller = FakeJobController(admin, namespace=NS, outcome=lambda m: 3 if m["id"] == failing else 0).start()
    try:
        first = CliRunner().invoke(app, ["apply", str(plan), "--backend", "k8s", "--results", gcs_bucket,
                                         "--retries", "0", "--format", "json"])
        assert first.exit_code == 1, first.output
        # Re-applying retries the failed trial: its Job from the first run exists (409), finished: read, deleted, created.
        controller.outcome = lambda m: 0
        again = CliRunner().invoke(app, ["apply", str(plan), "--backend", "k8s", "--results", gcs_bucket, "--format", "json"])
        assert again.exit_code == 0, again.output
        # ConfigMap delivery (the Python API's backend option): created, then owned by its Job.
        cm_plan, cm_manifests = _plan(tmp_path, 1, "e-0000000000a2", folder="plan-cm")
        outcome = api.apply(cm_plan, backend="k8s", results=gcs_bucket + "/cm", backend_options={"manifest_via": "configmap"})
        assert outcome.exit_code == 0
    finally:
        controller.stop()
    store = open_store(gcs_bucket)
    assert all(parse_row_csv(store.get(row_key(m.id)).decode())["status"] == "done" for m in manifests)
    deleted = CliRunner().invoke(app, ["delete", str(cm_plan), "--format", "json"])
    assert deleted.exit_code == 0, deleted.output
    assert json.loads(deleted.stdout)["configmaps"] or json.loads(deleted.stdout)["jobs"]

    requests = cluster.audit(RUNNER)
    denied = [r for r in requests if r.get("denied")]
    assert not denied, f"the backend called what k8s/rbac.yaml does not grant: {denied}"
    used = {(r["verb"], r["group"], r["resource"]) for r in requests}
    assert used == _grants(), (f"granted but never used: {sorted(_grants() - used)}; "
                               f"used: {sorted(used)}")
    assert {r["namespace"] for r in requests if r["resource"] != "nodes"} == {NS}


def test_a_call_outside_the_role_is_refused_and_fails_the_test(rbac_cluster, tmp_path, gcs_bucket, monkeypatch):
    """The guard itself: a Role without `watch` on jobs makes apply's watch fail with a 403 the audit records."""
    cluster = rbac_cluster
    docs = _rbac_docs()
    for doc in docs:
        for rule in doc.get("rules", []):
            if rule["resources"] == ["jobs"]:
                rule["verbs"] = [v for v in rule["verbs"] if v != "watch"]
    rbac = Rbac(docs)
    cluster.set_authorizer(lambda token, request: token == ADMIN or rbac.allows(token, request))
    monkeypatch.setenv("KUBECONFIG", str(cluster.write_kubeconfig(tmp_path / "k", namespace=NS, token=RUNNER)))
    plan, _ = _plan(tmp_path, 1, "e-0000000000a3")
    result = CliRunner().invoke(app, ["apply", str(plan), "--backend", "k8s", "--results", gcs_bucket, "--timeout", "5",
                                      "--retries", "0"])
    assert result.exit_code != 0
    denied = [r for r in cluster.audit(RUNNER) if r.get("denied")]
    assert denied and {r["verb"] for r in denied} == {"watch"} and "Traceback" not in result.output


# -- the in-cluster runner ------------------------------------------------------------------------------
def _cronjob() -> dict:
    return next(d for _, d in _objects() if d["kind"] == "CronJob")


def _in_cluster_hpt(folder: Path, token_file: Path, ca_file: Path) -> Path:
    """`hpt` on PATH for the CronJob's command: hpt itself, with the client's in-cluster token and CA paths
    (/var/run/secrets/kubernetes.io/serviceaccount/…, fixed in kubernetes.config.incluster_config) pointing
    at the files this test wrote, as a pod's projected service account volume would provide them."""
    folder.mkdir(parents=True, exist_ok=True)
    shim = folder / "hpt"
    shim.write_text(f"#!{sys.executable}\n"
                    "import sys\n"
                    "import kubernetes.config.incluster_config as incluster\n"
                    f"incluster.SERVICE_TOKEN_FILENAME = {json.dumps(str(token_file))}\n"
                    f"incluster.SERVICE_CERT_FILENAME = {json.dumps(str(ca_file))}\n"
                    "from hpt.cli import main\n"
                    "sys.exit(main())\n")
    shim.chmod(0o755)
    return folder


def test_the_cronjobs_command_runs_a_plan_to_completion_in_cluster_and_resumes(rbac_cluster, tmp_path, gcs_bucket,
                                                                               small_dataset):
    cluster = rbac_cluster
    job = _cronjob()
    spec = job["spec"]
    assert spec["concurrencyPolicy"] == "Forbid" and spec["schedule"].split()[2:] == ["1", "*", "*"]   # monthly
    pod = spec["jobTemplate"]["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "hpt-runner"
    container = pod["containers"][0]
    command = container["command"] + container.get("args", [])
    env = {e["name"]: e["value"] for e in container["env"] if "value" in e}
    assert env["HPT_RESULTS"].startswith("gs://")

    # What the kubelet provides: the service account's token and CA, the API server's address, the
    # downward API's namespace and Job name (CronJob Jobs are named <cronjob>-<scheduled minutes since 1970>).
    secrets = tmp_path / "serviceaccount"
    secrets.mkdir()
    (secrets / "token").write_text(RUNNER)
    scheduled = 1296518400 // 60                               # 2011-02-01T00:00Z
    spec_file = tmp_path / "etc-hpt" / "spec.yaml"
    spec_file.parent.mkdir()
    spec_file.write_text(yaml.safe_dump({
        "architecture": "bag-of-words", "data": str(small_dataset), "epochs": 1,
        "date-range": [["2010-09-01", "2010-12-01"]], "validation-days": 28,
        "parameters": {"learning_rate": [0.001, 0.01, 0.1]},
        "image": "reg.example/hpt/trainer:1", "kubernetes": {"namespace": NS, "serviceAccountName": "hpt-trainer"}}))
    state = tmp_path / "state"
    state.mkdir()
    bin_dir = _in_cluster_hpt(tmp_path / "bin", secrets / "token", cluster.ca_file)
    run_env = {k: v for k, v in os.environ.items() if not k.startswith("KUBE")}
    run_env.update(env)
    run_env.update({"HPT_SPEC": str(spec_file), "HPT_STATE": str(state), "HPT_RESULTS": gcs_bucket + "/monthly",
                    "HOME": str(tmp_path), "POD_NAMESPACE": NS, "JOB_NAME": f"hpt-monthly-{scheduled}",
                    "KUBERNETES_SERVICE_HOST": "127.0.0.1", "KUBERNETES_SERVICE_PORT": str(cluster.https_port),
                    "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"})
    admin = cluster.write_kubeconfig(tmp_path / "admin.kubeconfig", namespace=NS, token=ADMIN)
    controller = FakeJobController(admin, namespace=NS).start()
    try:
        first = subprocess.run(command, env=run_env, capture_output=True, text=True, timeout=300, cwd=tmp_path)
        assert first.returncode == 0, first.stderr
        # A restarted pod of the same Job: the same month's plan, nothing run twice.
        second = subprocess.run(command, env=run_env, capture_output=True, text=True, timeout=300, cwd=tmp_path)
        assert second.returncode == 0, second.stderr
    finally:
        controller.stop()
    plans = sorted(p.name for p in state.iterdir())
    assert plans == ["plan-2011-02"]                               # the month of the Job's scheduled time
    trials = json.loads((state / "plan-2011-02" / "plan.json").read_text())["trials"]
    store = open_store(gcs_bucket + "/monthly")
    assert len(trials) == 3 and all(parse_row_csv(store.get(row_key(t)).decode())["status"] == "done" for t in trials)
    assert controller.finished == 3                                 # each trial's Job ran once
    assert "nothing to run" in second.stderr
    # Progress in the pod's log: timestamped lines (no terminal), one per finished trial.
    assert sum(" finished " in line for line in first.stderr.splitlines()) == 3, first.stderr
    requests = cluster.audit(RUNNER)
    assert requests and not [r for r in requests if r.get("denied")]
    assert {r["verb"] for r in requests} >= {"create", "list", "watch"}


RUNNER_IMAGE = "hpt-runner:latest"


@pytest.mark.docker
def test_the_runner_image_runs_the_cronjobs_command_against_the_cluster(rbac_cluster, tmp_path, gcs_bucket,
                                                                        small_dataset, docker_client):
    """images/runner, built offline (images/build-offline.sh --recipe runner: seconds when up to date), runs the
    CronJob's own command as its pod would: as uid 10001, the service account's token and CA at the in-cluster
    paths, the spec mounted at /etc/hpt, on the host's network (where the API emulator and fake-gcs-server
    listen). The plan runs to completion, each trial's Job once."""
    import shutil

    build = subprocess.run([str(ROOT / "images" / "build-offline.sh"), "--recipe", "runner"], capture_output=True,
                           text=True, timeout=900)
    assert build.returncode == 0, build.stderr[-3000:]
    cluster = rbac_cluster
    container = _cronjob()["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]
    command = container["command"] + container.get("args", [])
    shared = tmp_path / "shared"                     # what the pod sees; readable by the image's uid 10001
    secrets, etc, state, data = (shared / n for n in ("serviceaccount", "etc-hpt", "state", "data"))
    shutil.copytree(small_dataset, data)
    for folder in (secrets, etc, state):
        folder.mkdir(parents=True)
    (secrets / "token").write_text(RUNNER)
    shutil.copy(cluster.ca_file, secrets / "ca.crt")
    (etc / "spec.yaml").write_text(yaml.safe_dump({
        "architecture": "bag-of-words", "data": str(data), "epochs": 1,
        "date-range": [["2010-09-01", "2010-12-01"]], "validation-days": 28,
        "parameters": {"learning_rate": [0.001, 0.01]},
        "image": "reg.example/hpt/trainer:1", "kubernetes": {"namespace": NS, "serviceAccountName": "hpt-trainer"}}))
    for path in [shared, *shared.rglob("*")]:
        path.chmod(0o777 if path.is_dir() else 0o644)
    scheduled = 1296518400 // 60                     # 2011-02-01T00:00Z
    env = {e["name"]: e["value"] for e in container["env"] if "value" in e}
    env.update({"HPT_SPEC": "/etc/hpt/spec.yaml", "HPT_STATE": str(state), "HPT_RESULTS": gcs_bucket + "/image",
                "POD_NAMESPACE": NS, "JOB_NAME": f"hpt-monthly-{scheduled}", "KUBERNETES_SERVICE_HOST": "127.0.0.1",
                "KUBERNETES_SERVICE_PORT": str(cluster.https_port),
                "STORAGE_EMULATOR_HOST": os.environ["STORAGE_EMULATOR_HOST"]})
    admin = cluster.write_kubeconfig(tmp_path / "admin.kubeconfig", namespace=NS, token=ADMIN)
    controller = FakeJobController(admin, namespace=NS).start()
    try:
        out = docker_client.containers.run(
            RUNNER_IMAGE, command, environment=env, network_mode="host", remove=True, stdout=True, stderr=True,
            volumes={str(secrets): {"bind": "/var/run/secrets/kubernetes.io/serviceaccount", "mode": "ro"},
                     str(etc): {"bind": "/etc/hpt", "mode": "ro"}, str(state): {"bind": str(state), "mode": "rw"},
                     str(data): {"bind": str(data), "mode": "ro"}}).decode()
    finally:
        controller.stop()
    trials = json.loads((state / "plan-2011-02" / "plan.json").read_text())["trials"]
    store = open_store(gcs_bucket + "/image")
    assert len(trials) == 2 and all(parse_row_csv(store.get(row_key(t)).decode())["status"] == "done" for t in trials), out
    assert controller.finished == 2 and sum(" finished " in line for line in out.splitlines()) == 2, out
    assert not [r for r in cluster.audit(RUNNER) if r.get("denied")]
