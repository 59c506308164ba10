"""The k8s backend against a Kubernetes API emulator (kmock, served on localhost) through the official
client: Jobs created and driven to success and failure by status updates as a cluster would write
them, adoption on 409, the watch resuming after a disconnect and relisting on 410, logs, cancel,
`hpt apply --backend k8s` end to end with rows in a (fake-gcs) bucket, and `hpt delete`."""
from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path

import pytest
from kubernetes.client import BatchV1Api, CoreV1Api
from typer.testing import CliRunner

from hpt.cli import app
from hpt.executor.backend import Backend, Phase, Submission
from hpt.executor.backends import get_backend
from hpt.executor.backends.kubernetes import KubernetesBackend
from hpt.executor.backends.kubernetes import render as k8s
from k8s_emulator import (EmulatedCluster, FakeJobController, add_pod, api_client, condition, set_job_status,
                              terminated)
from hpt.store import open_store, row_key, store_id
from hpt.schemas.errors import UserError
from hpt.schemas.row import parse_row_csv
from executor_support import write_plan
from trial_factory import make_manifest

NS = "default"


@pytest.fixture(scope="module")
def cluster():
    with EmulatedCluster() as c:
        yield c


@pytest.fixture
def kubeconfig(cluster, tmp_path, monkeypatch):
    path = cluster.write_kubeconfig(tmp_path / "kubeconfig")
    monkeypatch.setenv("KUBECONFIG", str(path))
    return path


@pytest.fixture
def api(kubeconfig):
    return api_client(kubeconfig)


_experiments = iter(range(1, 10_000))


def _subs(n=2, results="gs://bucket/results", timeout=None, **kw) -> list[Submission]:
    """Trials of a fresh experiment (so tests sharing the module's emulator never see each other's Jobs)."""
    exp = f"e-{next(_experiments):012x}"
    out = []
    for seed in range(n):
        m = make_manifest("gs://bucket/data", "bag-of-words", seed=seed, experiment=exp,
                          image="reg.example/hpt/trainer:1", **kw)
        out.append(Submission.of(m, results, timeout))
    return out


def _backend(**options) -> KubernetesBackend:
    options.setdefault("watch_read_timeout_s", 5)
    options.setdefault("pod_check_interval_s", 0)
    return KubernetesBackend.with_options(**options)


def wait_for(fn, timeout=15.0, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = fn()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def _watches(cluster, experiment: str) -> int:
    """Watches on this plan's Jobs (of any store: a watch's selector narrows the plan's to one store)."""
    selector = k8s.plan_selector(experiment)
    return sum(p.get("labelSelector", "").startswith(selector) for p in cluster.watch_params())


def watching(cluster, backend, before: int = 0):
    """Wait until the backend's watch is connected. Unlike an API server, kmock loses the events between
    a list and the moment a watch connects (it replays objects, not events), so tests that change
    Jobs wait for the watch first; a real watch resumes from the list's resourceVersion."""
    wait_for(lambda: _watches(cluster, backend._experiment) > before, what="the watch")
    time.sleep(0.2)


def _job(cluster, name):
    return next((j for j in cluster.objects("jobs") if j["metadata"]["name"] == name), None)


def _phase(backend, handle, phase, timeout=15.0):
    return wait_for(lambda: (s := backend.poll(handle)).phase == phase and s, timeout, f"{handle.name} {phase}")


# -- the protocol -------------------------------------------------------------------------------------
def test_the_backend_implements_the_protocol_and_is_registered(kubeconfig):
    backend = get_backend("k8s", context="emulator", namespace=None, cancel_on_exit=True)
    assert isinstance(backend, KubernetesBackend) and isinstance(backend, Backend)
    assert backend.cancel_on_interrupt is True and _backend().cancel_on_interrupt is False
    with pytest.raises(UserError, match="unknown option 'some_future_option' for the k8s backend") as info:
        get_backend("k8s", context="emulator", some_future_option=1)
    assert info.value.where == "some_future_option"


def test_preflight_needs_gs_results_a_config_and_a_reachable_cluster(cluster, kubeconfig, tmp_path, monkeypatch):
    with pytest.raises(UserError, match="gs://"):
        _backend().preflight(_subs(1, results=str(tmp_path / "results")))
    with pytest.raises(UserError, match="cannot use the kubeconfig"):
        _backend(context="no-such-context").preflight(_subs(1))
    dead = json.loads(Path(kubeconfig).read_text())
    dead["clusters"][0]["cluster"]["server"] = "http://127.0.0.1:9"   # nothing listens there
    (tmp_path / "dead").write_text(json.dumps(dead))
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "dead"))
    with pytest.raises(UserError, match="cannot reach the Kubernetes API server at http://127.0.0.1:9"):
        _backend().preflight(_subs(1))


def test_a_job_runs_to_success_through_status_updates(cluster, api):
    backend = _backend()
    subs = _subs(1, timeout=120)
    watches_before = _watches(cluster, subs[0].experiment_id)
    backend.preflight(subs)
    watching(cluster, backend, watches_before)
    handle = backend.submit(subs[0])
    job = wait_for(lambda: _job(cluster, handle.name), what="the Job in the cluster")
    assert job["metadata"]["labels"][k8s.TRIAL_LABEL] == subs[0].trial_id
    assert job["spec"]["activeDeadlineSeconds"] == 120
    env = {e["name"]: e.get("value") for e in job["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["HPT_MANIFEST"] == subs[0].manifest_json and env["HPT_RESULTS"] == "gs://bucket/results"
    assert backend.poll(handle).phase == Phase.PENDING

    set_job_status(api, handle.name, NS, {"active": 1, "ready": 0})
    assert _phase(backend, handle, Phase.PENDING)
    set_job_status(api, handle.name, NS, {"active": 1, "ready": 1})
    _phase(backend, handle, Phase.RUNNING)
    set_job_status(api, handle.name, NS, {"active": 0, "ready": 0, "succeeded": 1, "conditions": [condition("Complete")]})
    status = _phase(backend, handle, Phase.SUCCEEDED)
    assert status.exit_code == 0
    backend.release(handle)
    backend.close()


def _fail(cluster, api, backend, handle, pod_status, reason="BackoffLimitExceeded"):
    job = wait_for(lambda: _job(cluster, handle.name))
    add_pod(api, job, pod_status)
    set_job_status(api, handle.name, NS, {"active": 0, "failed": 1, "conditions": [condition("Failed", reason, "msg")]})
    return _phase(backend, handle, Phase.FAILED)


def test_failure_reasons_come_from_the_pod_and_the_job(cluster, api):
    backend = _backend()
    subs = _subs(4, resources={"gpus": 0, "cpus": 1, "memory": "3Gi"})
    watches_before = _watches(cluster, subs[0].experiment_id)
    backend.preflight(subs)
    watching(cluster, backend, watches_before)
    handles = [backend.submit(s) for s in subs]

    oom = _fail(cluster, api, backend, handles[0], terminated(137, "OOMKilled"))
    assert oom.reason == "OOM-killed (memory limit 3Gi)" and oom.exit_code == 137 and not oom.transient

    code = _fail(cluster, api, backend, handles[1], terminated(3))
    assert code.reason == "exit code 3" and code.exit_code == 3

    deadline = _fail(cluster, api, backend, handles[2], {"phase": "Failed"}, reason="DeadlineExceeded")
    assert deadline.reason.startswith("timed out") and "DeadlineExceeded" in deadline.reason

    evicted = _fail(cluster, api, backend, handles[3], {"phase": "Failed", "reason": "Evicted", "message": "node low on memory"})
    assert evicted.reason == "pod Evicted: node low on memory" and evicted.transient
    backend.close()


def test_pods_stuck_on_an_image_or_a_node_fail_after_the_grace_period(cluster, api):
    backend = _backend(image_pull_timeout_s=0.3, unschedulable_timeout_s=0.3)
    subs = _subs(2)
    watches_before = _watches(cluster, subs[0].experiment_id)
    backend.preflight(subs)
    watching(cluster, backend, watches_before)
    image, node = (backend.submit(s) for s in subs)
    waiting = {"phase": "Pending", "containerStatuses": [{"name": "trial", "ready": False, "restartCount": 0, "image": "x", "imageID": "",
                                                          "state": {"waiting": {"reason": "ImagePullBackOff", "message": "Back-off pulling image \"reg.example/hpt/trainer:1\""}}}]}
    add_pod(api, wait_for(lambda: _job(cluster, image.name)), waiting)
    unschedulable = {"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                                                         "message": "0/3 nodes are available: 3 Insufficient nvidia.com/gpu."}]}
    add_pod(api, wait_for(lambda: _job(cluster, node.name)), unschedulable)
    for h in (image, node):
        set_job_status(api, h.name, NS, {"active": 1, "ready": 0})
    first = _phase(backend, image, Phase.PENDING)
    assert "ImagePullBackOff" in wait_for(lambda: backend.poll(image).reason)
    failed = _phase(backend, image, Phase.FAILED)
    assert failed.reason.startswith("could not start its container for") and "ImagePullBackOff" in failed.reason
    failed = _phase(backend, node, Phase.FAILED)
    assert failed.reason.startswith("unschedulable for") and "Insufficient nvidia.com/gpu" in failed.reason
    # hpt gave up on them, so their Jobs are gone (they would hold quota and never run).
    wait_for(lambda: _job(cluster, image.name) is None and _job(cluster, node.name) is None, what="Jobs deleted")
    assert first.phase == Phase.PENDING
    backend.close()


def test_a_job_that_never_gets_a_pod_fails_after_the_grace_period(cluster, api):
    """A ResourceQuota refusing the pod leaves a Job with no pod at all (only the Job's FailedCreate events say
    why): hpt must not wait on it forever. A Job whose pod exists (awaiting a retry) is not such a Job."""
    backend = _backend(no_pod_timeout_s=0.3)
    stuck, retrying = _subs(2)
    watches_before = _watches(cluster, stuck.experiment_id)
    backend.preflight([stuck, retrying])
    watching(cluster, backend, watches_before)
    handle, other = backend.submit(stuck), backend.submit(retrying)
    add_pod(api, wait_for(lambda: _job(cluster, other.name)), terminated(3))   # failed once, between retries
    set_job_status(api, other.name, NS, {"active": 0, "failed": 1})
    assert _phase(backend, handle, Phase.PENDING).phase == Phase.PENDING      # at first: only not yet
    failed = _phase(backend, handle, Phase.FAILED)
    assert failed.reason.startswith("no pod for ") and "ResourceQuota" in failed.reason, failed.reason
    assert f"kubectl -n {NS} describe job {handle.name}" in failed.reason and not failed.transient
    wait_for(lambda: _job(cluster, handle.name) is None, what="the Job deleted")   # it would hold its quota
    time.sleep(0.5)
    assert backend.poll(other).phase == Phase.PENDING and _job(cluster, other.name) is not None
    backend.close()


def test_a_job_deleted_from_outside_is_a_transient_failure(cluster, api):
    backend = _backend()
    subs = _subs(1)
    watches_before = _watches(cluster, subs[0].experiment_id)
    backend.preflight(subs)
    watching(cluster, backend, watches_before)
    handle = backend.submit(subs[0])
    wait_for(lambda: _job(cluster, handle.name))
    BatchV1Api(api).delete_namespaced_job(handle.name, NS)
    status = _phase(backend, handle, Phase.FAILED)
    assert status.transient and "deleted" in status.reason
    backend.close()


# -- re-applying: 409 and adopt -----------------------------------------------------------------------
def test_an_existing_running_job_is_adopted_not_duplicated(cluster, api):
    subs = _subs(2)
    first = _backend()
    watches_before = _watches(cluster, subs[0].experiment_id)
    first.preflight(subs)
    watching(cluster, first, watches_before)
    running = first.submit(subs[0])
    done = first.submit(subs[1])
    set_job_status(api, running.name, NS, {"active": 1, "ready": 1})
    set_job_status(api, done.name, NS, {"succeeded": 1, "conditions": [condition("Complete")]})
    first.close()   # `hpt apply` crashed

    again = _backend()
    watches_before = _watches(cluster, subs[0].experiment_id)
    again.preflight(subs)
    watching(cluster, again, watches_before)
    adopted = again.adopt(subs[0].experiment_id, subs[0].results_uri)
    assert set(adopted) == {subs[0].trial_id}           # the finished one is not "still running"
    assert adopted[subs[0].trial_id].name == running.name and adopted[subs[0].trial_id].attempt == 1
    creates = len(cluster.requests("CREATE", "jobs"))
    handle = again.submit(subs[0])                       # 409 → adopt
    assert handle.adopted and handle.name == running.name
    assert len(cluster.requests("CREATE", "jobs")) == creates + 1
    assert [j["metadata"]["name"] for j in cluster.objects("jobs")].count(running.name) == 1
    assert again.poll(handle).phase == Phase.RUNNING
    again.close()


@pytest.mark.parametrize("via", ["env", "configmap"])
def test_a_finished_job_of_an_earlier_attempt_is_replaced(cluster, api, via):
    subs = _subs(1)
    backend = _backend(manifest_via=via)
    watches_before = _watches(cluster, subs[0].experiment_id)
    backend.preflight(subs)
    watching(cluster, backend, watches_before)
    old = backend.submit(subs[0])
    set_job_status(api, old.name, NS, {"failed": 1, "conditions": [condition("Failed", "BackoffLimitExceeded")]})
    _phase(backend, old, Phase.FAILED)
    backend.release(old)
    new = backend.submit(subs[0])                        # the same trial, re-applied: a fresh Job
    assert not new.adopted
    job = wait_for(lambda: _job(cluster, new.name))
    assert "status" not in job or not job.get("status")
    assert backend.poll(new).phase == Phase.PENDING
    if via == "configmap":   # replaced with the Job (the old one owned it), and there again for the new pod
        assert any(r[2].endswith("/configmaps/" + new.name) for r in cluster.requests("DELETE", "configmaps"))
        assert [c["metadata"]["name"] for c in cluster.objects("configmaps")].count(new.name) == 1
    backend.close()


def test_a_name_clash_with_a_foreign_job_is_a_user_error(cluster, api):
    subs = _subs(1)
    name = k8s.job_name(subs[0].experiment_id, subs[0].trial_id, store_id(subs[0].results_uri))
    BatchV1Api(api).create_namespaced_job(NS, {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name, "labels": {"team": "other"}},
                                               "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "i"}]}}}})
    backend = _backend()
    watches_before = _watches(cluster, subs[0].experiment_id)
    backend.preflight(subs)
    watching(cluster, backend, watches_before)
    with pytest.raises(UserError, match="exists for another trial"):
        backend.submit(subs[0])
    backend.close()


def test_retries_get_their_own_job_name(cluster, kubeconfig):
    backend = _backend()
    subs = _subs(1)
    watches_before = _watches(cluster, subs[0].experiment_id)
    backend.preflight(subs)
    watching(cluster, backend, watches_before)
    s = subs[0]
    retry = replace(s, timeout_s=None, attempt=2)
    handle = backend.submit(retry)
    job = wait_for(lambda: _job(cluster, handle.name))
    assert handle.name.endswith("-2") and job["metadata"]["labels"][k8s.ATTEMPT_LABEL] == "2"
    backend.close()


def test_an_apply_into_another_store_neither_adopts_nor_replaces_the_first_stores_jobs(cluster, api, kubeconfig, tmp_path):
    """One plan applied into store A, then into store B, in one namespace: B's apply starts its own Jobs,
    reads its own pods' logs, and leaves A's Jobs (running or finished) alone; `hpt delete PLAN --results A`
    removes only A's, `hpt delete PLAN` every store's."""
    plan, manifests = _plan(tmp_path, 2)
    store_a, store_b = "gs://bucket/store-a", "gs://bucket/store-b"
    subs_a = [Submission.of(m, store_a) for m in manifests]
    subs_b = [Submission.of(m, store_b) for m in manifests]
    first = _backend()
    watches_before = _watches(cluster, subs_a[0].experiment_id)
    first.preflight(subs_a)
    watching(cluster, first, watches_before)
    running_a, done_a = first.submit(subs_a[0]), first.submit(subs_a[1])
    set_job_status(api, running_a.name, NS, {"active": 1, "ready": 1})
    set_job_status(api, done_a.name, NS, {"succeeded": 1, "conditions": [condition("Complete")]})
    pod_a = add_pod(api, wait_for(lambda: _job(cluster, running_a.name)), {"phase": "Running"})
    cluster.set_pod_log(pod_a, "store A's trial\n")
    first.close()

    second = _backend()
    watches_before = _watches(cluster, subs_b[0].experiment_id)
    second.preflight(subs_b)
    watching(cluster, second, watches_before)
    assert second.adopt(subs_b[0].experiment_id, store_b) == {}         # A's running Job is not B's
    creates = len(cluster.requests("CREATE", "jobs"))
    running_b, done_b = second.submit(subs_b[0]), second.submit(subs_b[1])
    assert not running_b.adopted and not done_b.adopted
    assert len(cluster.requests("CREATE", "jobs")) == creates + 2
    assert {running_b.name, done_b.name}.isdisjoint({running_a.name, done_a.name})
    assert _job(cluster, running_a.name) is not None and _job(cluster, done_a.name) is not None
    assert not any(r[2].endswith(("/" + running_a.name, "/" + done_a.name)) for r in cluster.requests("DELETE", "jobs"))
    assert {s.name for s in second._watch.states()} == {running_b.name, done_b.name}
    job_b = wait_for(lambda: _job(cluster, running_b.name))
    assert job_b["metadata"]["labels"][k8s.STORE_LABEL] != _job(cluster, running_a.name)["metadata"]["labels"][k8s.STORE_LABEL]
    assert all(len(n) <= 63 and k8s.is_dns1123_label(n) for n in (running_a.name, running_b.name))
    pod_b = add_pod(api, job_b, {"phase": "Running"}, suffix="y1")
    cluster.set_pod_log(pod_b, "store B's trial\n")
    assert second.logs(running_b) == "store B's trial\n"              # not A's pod of the same trial
    assert second.poll(running_b).phase == Phase.PENDING                # A's Job is running; B's is not yet
    second.close()

    # The same apply into A again adopts A's running Job (and only it).
    again = _backend()
    watches_before = _watches(cluster, subs_a[0].experiment_id)
    again.preflight(subs_a)
    watching(cluster, again, watches_before)
    adopted = again.adopt(subs_a[0].experiment_id, store_a)
    assert {tid: h.name for tid, h in adopted.items()} == {subs_a[0].trial_id: running_a.name}
    again.close()

    only_a = CliRunner().invoke(app, ["delete", str(plan), "--results", store_a, "--format", "json"])
    assert only_a.exit_code == 0, only_a.output
    assert sorted(json.loads(only_a.stdout)["jobs"]) == sorted([running_a.name, done_a.name])
    assert _job(cluster, running_a.name) is None and _job(cluster, running_b.name) is not None
    every = CliRunner().invoke(app, ["delete", str(plan), "--format", "json"])
    assert every.exit_code == 0, every.output
    assert sorted(json.loads(every.stdout)["jobs"]) == sorted([running_b.name, done_b.name])
    assert _job(cluster, running_b.name) is None and _job(cluster, done_b.name) is None


# -- the watch ----------------------------------------------------------------------------------------
def test_the_watch_resumes_after_a_disconnect_and_relists_on_410(cluster, api):
    backend = _backend(watch_read_timeout_s=120)          # no reconnects but the ones this test causes
    subs = _subs(2)
    watches_before = _watches(cluster, subs[0].experiment_id)
    backend.preflight(subs)
    watching(cluster, backend, watches_before)
    a = backend.submit(subs[0])
    watch = backend._watch
    lists = watch.lists
    selector = k8s.plan_selector(subs[0].experiment_id, store_id(subs[0].results_uri))

    # A disconnect: the next watch asks for the last resourceVersion it saw (no new list).
    set_job_status(api, a.name, NS, {"active": 1, "ready": 1})
    _phase(backend, a, Phase.RUNNING)
    seen = wait_for(lambda: watch.resource_version == str(cluster.call(lambda: cluster.handler.rv)) and watch.resource_version)
    before = len(cluster.watch_params())
    cluster.drop_watches()
    wait_for(lambda: any(p.get("labelSelector") == selector and p.get("resourceVersion") == seen
                         for p in cluster.watch_params()[before:]), what="a watch resumed from the last resourceVersion")
    assert watch.lists == lists

    # 410 Gone: it lists again and carries on; events after that still arrive.
    before = len(cluster.watch_params())
    cluster.expire_watches(1)
    cluster.drop_watches()
    wait_for(lambda: watch.lists == lists + 1, what="a relist after 410")
    # the expired watch, then the one after the list (kmock drops events until a watch is connected)
    wait_for(lambda: sum(p.get("labelSelector") == selector for p in cluster.watch_params()[before:]) >= 2)
    time.sleep(0.2)
    b = backend.submit(subs[1])
    set_job_status(api, b.name, NS, {"succeeded": 1, "conditions": [condition("Complete")]})
    _phase(backend, b, Phase.SUCCEEDED)
    backend.close()


def test_the_watch_keeps_only_this_plans_jobs_although_the_emulator_ignores_selectors(cluster, api):
    mine, theirs = _subs(1), _subs(1)
    other = _backend()
    watches_before = _watches(cluster, theirs[0].experiment_id)
    other.preflight(theirs)
    watching(cluster, other, watches_before)
    other.submit(theirs[0])
    backend = _backend()
    watches_before = _watches(cluster, mine[0].experiment_id)
    backend.preflight(mine)
    watching(cluster, backend, watches_before)
    backend.submit(mine[0])
    wait_for(lambda: backend._watch.synced.is_set())
    time.sleep(0.3)
    assert {s.trial_id for s in backend._watch.states()} == {mine[0].trial_id}
    assert len(cluster.objects("jobs")) > 1
    other.close()
    backend.close()


# -- logs, cancel -------------------------------------------------------------------------------------
def test_logs_come_from_the_jobs_pod_and_cancel_deletes_the_job(cluster, api):
    backend = _backend(manifest_via="configmap")
    subs = _subs(1)
    watches_before = _watches(cluster, subs[0].experiment_id)
    backend.preflight(subs)
    watching(cluster, backend, watches_before)
    handle = backend.submit(subs[0])
    assert [c["metadata"]["name"] for c in cluster.objects("configmaps")].count(handle.name) == 1
    job = wait_for(lambda: _job(cluster, handle.name))
    assert backend.logs(handle) == ""                    # no pod yet
    pod = add_pod(api, job, {"phase": "Running"})
    cluster.set_pod_log(pod, "epoch 1 mse 0.9\nepoch 2 mse 0.8\n")
    assert backend.logs(handle) == "epoch 1 mse 0.9\nepoch 2 mse 0.8\n"
    backend.cancel(handle)
    wait_for(lambda: _job(cluster, handle.name) is None, what="the Job deleted")
    assert handle.name not in [c["metadata"]["name"] for c in cluster.objects("configmaps")]
    deletes = [r for r in cluster.requests("DELETE", "jobs") if r[2].endswith("/" + handle.name)]
    assert deletes
    backend.close()


# -- the CLI, end to end ------------------------------------------------------------------------------
def _plan(tmp_path, n, exp=None, **kw):
    exp = exp or f"e-{next(_experiments):012x}"
    manifests = [make_manifest("gs://bucket/data", "bag-of-words", seed=s, experiment=exp,
                               image="reg.example/hpt/trainer:1", **kw) for s in range(n)]
    return write_plan(tmp_path / "plan", manifests), manifests


def test_hpt_apply_backend_k8s_runs_a_plan_to_rows_in_the_bucket(cluster, kubeconfig, tmp_path, gcs_bucket):
    plan, manifests = _plan(tmp_path, 4)
    failing = manifests[1].id
    controller = FakeJobController(kubeconfig, outcome=lambda m: 3 if m["id"] == failing else 0,
                                   experiment=manifests[0].experiment).start()
    try:
        result = CliRunner().invoke(app, ["apply", str(plan), "--backend", "k8s", "--results", gcs_bucket, "--parallel", "2",
                                          "--context", "emulator", "--format", "json", "--retries", "0"])
    finally:
        controller.stop()
    assert result.exit_code == 1, result.output          # one trial failed
    store = open_store(gcs_bucket)
    rows = {m.id: parse_row_csv(store.get(row_key(m.id)).decode()) for m in manifests}
    assert {tid for tid, r in rows.items() if r["status"] == "done"} == {m.id for m in manifests} - {failing}
    assert rows[failing]["status"] == "failed" and rows[failing]["reason"].startswith("exit code 3")
    events = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    started = [e for e in events if e["event"] == "run-started"]
    assert started and started[0]["parallel"] == 2

    # Re-applying changes nothing: every trial has its row.
    again = CliRunner().invoke(app, ["apply", str(plan), "--backend", "k8s", "--results", gcs_bucket, "--skip-failed",
                                     "--context", "emulator"])
    assert again.exit_code == 1 and "nothing to run" in again.stderr


def test_hpt_delete_removes_the_plans_jobs_and_configmaps_only(cluster, api, kubeconfig, tmp_path):
    plan, manifests = _plan(tmp_path, 2)
    subs = [Submission.of(m, "gs://bucket/r") for m in manifests]
    backend = _backend(manifest_via="configmap")
    watches_before = _watches(cluster, subs[0].experiment_id)
    backend.preflight(subs)
    watching(cluster, backend, watches_before)
    names = [backend.submit(s).name for s in subs]
    backend.close()
    bystander = _backend()
    other = _subs(1)
    watches_before = _watches(cluster, other[0].experiment_id)
    bystander.preflight(other)
    watching(cluster, bystander, watches_before)
    kept = bystander.submit(other[0]).name
    bystander.close()

    listed = CliRunner().invoke(app, ["delete", str(plan), "--dry-run"])
    assert listed.exit_code == 0, listed.output
    assert sorted(listed.stdout.split()) == sorted([f"job/{n}" for n in names] + [f"configmap/{n}" for n in names])
    assert all(_job(cluster, n) for n in names)

    result = CliRunner().invoke(app, ["delete", str(plan), "--context", "emulator", "--format", "json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert sorted(out["jobs"]) == sorted(names) and out["namespace"] == NS
    assert all(_job(cluster, n) is None for n in names)
    assert not set(names) & {c["metadata"]["name"] for c in cluster.objects("configmaps")}
    assert _job(cluster, kept) is not None              # another plan's Job is untouched

    nothing = CliRunner().invoke(app, ["delete", str(plan)])
    assert nothing.exit_code == 0 and "deleted 0 Job(s)" in nothing.stderr


def test_hpt_delete_without_a_cluster_is_one_clear_error(tmp_path, monkeypatch):
    plan, _ = _plan(tmp_path, 1)
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "absent"))
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    result = CliRunner().invoke(app, ["delete", str(plan)])
    assert result.exit_code == 2 and "no Kubernetes cluster configured" in result.stderr


@pytest.mark.parametrize("cancel", [False, True])
def test_ctrl_c_leaves_jobs_running_unless_cancel_on_exit(cluster, kubeconfig, tmp_path, gcs_bucket, cancel):
    import os
    import signal
    import subprocess
    import sys

    plan, manifests = _plan(tmp_path, 3)
    names = [k8s.job_name(m.experiment, m.id, store_id(gcs_bucket)) for m in manifests]
    cmd = [sys.executable, "-m", "hpt.cli", "apply", str(plan), "--backend", "k8s", "--results", gcs_bucket,
           "--parallel", "2", "--format", "json"] + (["--cancel-on-exit"] if cancel else [])
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ})
    try:
        wait_for(lambda: sum(_job(cluster, n) is not None for n in names) == 2, timeout=60, what="two Jobs")
        time.sleep(0.5)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    finished = [json.loads(line) for line in out.splitlines() if '"run-finished"' in line][-1]
    running = [n for n in names if _job(cluster, n) is not None]
    if cancel:
        assert running == [] and "cancelled" in finished["summary"]
    else:
        assert len(running) == 2
        assert "left running" in finished["summary"] and "kubectl" in finished["summary"]
        assert "hpt.dev/experiment=" + manifests[0].experiment in finished["summary"]
