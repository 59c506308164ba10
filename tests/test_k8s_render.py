"""Rendering trials into Kubernetes objects: every variant passes kubernetes-validate --strict for the
versions docs/kubernetes.md claims, plus the checks the OpenAPI schemas cannot make; nothing from a
spec can change the YAML's structure; `--dry-run` needs no cluster."""
from __future__ import annotations

import json
import os

import kubernetes_validate
import pytest
import yaml
from typer.testing import CliRunner

from hpt.cli import app
from hpt.executor.backend import Submission
from hpt.executor.backends.kubernetes import render as k8s
from hpt.schemas.errors import UserError
from hpt.schemas.manifest import TrialManifest, trial_id
from hpt.store import store_id
from executor_support import write_plan
from trial_factory import make_manifest

# The versions docs/kubernetes.md claims: every minor from 1.29 to the newest the validator ships.
CLAIMED = [v for v in kubernetes_validate.utils.all_versions()
           if tuple(map(int, v.split(".")[:2])) >= (1, 29)]

FULL_SETTINGS = {
    "namespace": "ml-team",
    "nodeSelector": {"cloud.google.com/gke-accelerator": "nvidia-l4", "pool": "gpu"},
    "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "ml", "effect": "NoSchedule"},
                    {"key": "spot", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}],
    "serviceAccountName": "hpt-trainer",
    "imagePullSecrets": ["regcred", "other-registry"],
    "priorityClassName": "batch-low",
    "env_from_secrets": [{"name": "WANDB_API_KEY", "secret": "wandb", "key": "api-key"},
                         {"name": "HF_TOKEN", "secret": "hf.tokens", "key": "token_1"}],
}

VARIANTS = {
    "cpu-plain": ({"gpus": 0, "cpus": 1, "memory": "2Gi"}, {}, "env", None),
    "cpu-fraction-timeout": ({"gpus": 0, "cpus": 0.5, "memory": "512Mi"}, {}, "env", 90.5),
    "gpu-plain": ({"gpus": 1, "cpus": 4, "memory": "16Gi"}, {}, "env", 3600),
    "gpu-share": ({"gpus": 0.25, "cpus": 2, "memory": "8Gi"}, {}, "env", None),
    "gpu-everything": ({"gpus": 2, "cpus": 8, "memory": "32Gi"}, FULL_SETTINGS, "env", 7200),
    "gpu-everything-configmap": ({"gpus": 1, "cpus": 4, "memory": "15.5Gi"}, FULL_SETTINGS, "configmap", 600),
    "tolerations-only": ({"gpus": 0, "cpus": 2, "memory": "4G"}, {"tolerations": FULL_SETTINGS["tolerations"]}, "env", None),
    "secrets-only": ({"gpus": 0, "cpus": 2, "memory": "4Gi"}, {"env_from_secrets": FULL_SETTINGS["env_from_secrets"]}, "configmap", None),
    "pull-secrets-sa-priority": ({"gpus": 0, "cpus": 1, "memory": "1Gi"},
                                 {k: FULL_SETTINGS[k] for k in ("imagePullSecrets", "serviceAccountName", "priorityClassName")}, "env", None),
}


def _manifest(resources=None, kubernetes=None, **kw) -> TrialManifest:
    m = make_manifest("gs://bucket/data", "bag-of-words", resources=resources,
                      image="europe-docker.pkg.dev/proj/hpt/trainer:0.1.0", **kw)
    if kubernetes:
        doc = m.to_dict()
        doc["kubernetes"] = kubernetes
        doc["id"] = trial_id(doc)
        m = TrialManifest.from_dict(doc)
    return m


def _render(m: TrialManifest, via="env", timeout=None, results="gs://bucket/results", attempt=1, **opts):
    return k8s.render_trial(Submission.of(m, results, timeout, attempt), k8s.RenderOptions(manifest_via=via, **opts))


def _env(job) -> dict:
    return {e["name"]: e for e in job["spec"]["template"]["spec"]["containers"][0]["env"]}


def test_claimed_versions_are_shipped_by_the_validator():
    assert CLAIMED[0] == "1.29.0" and len(CLAIMED) >= 6


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_every_variant_passes_strict_schema_validation_and_our_checks(variant):
    resources, settings, via, timeout = VARIANTS[variant]
    docs = _render(_manifest(resources, settings), via=via, timeout=timeout, attempt=2 if "configmap" in variant else 1)
    assert [d["kind"] for d in docs] == (["ConfigMap", "Job"] if via == "configmap" else ["Job"])
    for doc in docs:
        for version in CLAIMED:
            kubernetes_validate.validate(doc, version, strict=True)   # raises on any schema error
        assert k8s.check_object(doc) == []


def test_job_fields_follow_the_manifest_and_settings():
    m = _manifest({"gpus": 2, "cpus": 0.5, "memory": "32Gi"}, FULL_SETTINGS)
    (job,) = _render(m, timeout=90.2, backoff_limit=3)
    meta, spec = job["metadata"], job["spec"]
    pod = spec["template"]["spec"]
    container = pod["containers"][0]
    store = store_id("gs://bucket/results")
    assert meta["name"] == f"hpt-{m.experiment[2:]}-{m.id[2:]}-{store[2:]}" and len(meta["name"]) <= 63
    assert meta["labels"][k8s.STORE_LABEL] == store
    assert meta["namespace"] == "ml-team"
    assert meta["labels"] == spec["template"]["metadata"]["labels"]
    assert meta["labels"][k8s.APP_LABEL] == "hpt" and meta["labels"][k8s.TRIAL_LABEL] == m.id
    assert meta["labels"][k8s.EXPERIMENT_LABEL] == m.experiment and meta["labels"][k8s.VERSION_LABEL] == m.hpt_version
    assert spec["backoffLimit"] == 3 and spec["activeDeadlineSeconds"] == 91 and spec["ttlSecondsAfterFinished"] > 0
    assert pod["restartPolicy"] == "Never"
    assert container["command"] == ["hpt-trial"] and "args" not in container
    assert container["resources"] == {"requests": {"cpu": "500m", "memory": "32Gi", "nvidia.com/gpu": "2"},
                                      "limits": {"memory": "32Gi", "nvidia.com/gpu": "2"}}
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod["tolerations"]
    assert pod["nodeSelector"] == FULL_SETTINGS["nodeSelector"]
    assert pod["serviceAccountName"] == "hpt-trainer" and pod["priorityClassName"] == "batch-low"
    assert pod["imagePullSecrets"] == [{"name": "regcred"}, {"name": "other-registry"}]
    sc = container["securityContext"]
    assert sc["allowPrivilegeEscalation"] is False and sc["readOnlyRootFilesystem"] is True and sc["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsNonRoot"] is True
    mounts = {v["mountPath"]: v["name"] for v in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert "emptyDir" in volumes[mounts["/tmp"]] and "emptyDir" in volumes[mounts["/scratch"]]
    env = _env(job)
    assert env["HOME"]["value"].startswith("/scratch") and env["XDG_CACHE_HOME"]["value"].startswith("/scratch")
    assert env["HPT_RESULTS"]["value"] == "gs://bucket/results"
    # Secrets by reference only: a name and a key, never a value.
    assert env["WANDB_API_KEY"] == {"name": "WANDB_API_KEY", "valueFrom": {"secretKeyRef": {"name": "wandb", "key": "api-key"}}}
    assert "value" not in env["HF_TOKEN"]


def test_a_gpu_share_asks_for_one_time_sliced_gpu():
    (job,) = _render(_manifest({"gpus": 0.25, "cpus": 2, "memory": "8Gi"}))
    pod = job["spec"]["template"]["spec"]
    resources = pod["containers"][0]["resources"]
    assert resources["requests"]["nvidia.com/gpu"] == resources["limits"]["nvidia.com/gpu"] == "1"
    assert any(t["key"] == "nvidia.com/gpu" for t in pod["tolerations"])


def test_no_gpu_means_no_gpu_request_and_no_gpu_toleration():
    (job,) = _render(_manifest({"gpus": 0, "cpus": 2, "memory": "4Gi"}))
    pod = job["spec"]["template"]["spec"]
    assert "nvidia.com/gpu" not in json.dumps(pod)
    assert "activeDeadlineSeconds" not in job["spec"] and "namespace" not in job["metadata"]


def test_manifest_is_delivered_unchanged_by_env_and_by_configmap():
    m = _manifest()
    (job,) = _render(m)
    assert _env(job)["HPT_MANIFEST"]["value"] == m.to_json()
    configmap, job = _render(m, via="configmap")
    assert configmap["data"][k8s.MANIFEST_KEY] == m.to_json() and configmap["immutable"] is True
    assert _env(job)["HPT_MANIFEST"]["value"] == f"{k8s.MANIFEST_DIR}/{k8s.MANIFEST_KEY}"
    mount = next(v for v in job["spec"]["template"]["spec"]["containers"][0]["volumeMounts"] if v["name"] == "manifest")
    assert mount["readOnly"] is True and mount["mountPath"] == k8s.MANIFEST_DIR
    volume = next(v for v in job["spec"]["template"]["spec"]["volumes"] if v["name"] == "manifest")
    assert volume["configMap"]["name"] == configmap["metadata"]["name"] == job["metadata"]["name"]
    assert configmap["metadata"]["labels"][k8s.STORE_LABEL] == job["metadata"]["labels"][k8s.STORE_LABEL] == store_id("gs://bucket/results")


HOSTILE = [
    "x\nkind: Secret\nmetadata: {name: pwned}",
    '"; rm -rf / #', "{{ 7*7 }}", "{% raw %}", "- item\n- item", "key: value", "&anchor *alias !!python/object",
    "tab\there", "nul?\u0085next\u2028line\u2029\ufeff\x7f", "emoji 😀 and ünïcödé", "---\n...", "'single' \"double\" \\back",
]


@pytest.mark.parametrize("text", HOSTILE)
def test_values_from_a_spec_cannot_inject_yaml_or_reach_a_shell(text):
    m = _manifest()
    doc = m.to_dict()
    doc["data"] = {"uri": "gs://bucket/" + text}   # any string field of the manifest
    doc["image"] = "reg.example/hpt:" + text
    doc["id"] = trial_id(doc)
    hostile = TrialManifest.from_dict(doc)
    docs = _render(hostile, results="gs://bucket/" + text)
    (job,) = docs
    assert list(job) == ["apiVersion", "kind", "metadata", "spec"]
    container = job["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "reg.example/hpt:" + text
    assert container["command"] == ["hpt-trial"]
    assert _env(job)["HPT_MANIFEST"]["value"] == hostile.to_json()
    assert _env(job)["HPT_RESULTS"]["value"] == "gs://bucket/" + text
    # The printed YAML reads back as the same objects.
    assert list(yaml.safe_load_all(k8s.to_yaml(docs))) == docs


def test_the_template_environment_is_sandboxed_and_strict():
    from jinja2 import UndefinedError
    from jinja2.sandbox import SandboxedEnvironment

    env = k8s._environment()
    assert isinstance(env, SandboxedEnvironment)
    with pytest.raises(UndefinedError):
        k8s._template("job.yaml.j2").render(name="x")


@pytest.mark.parametrize("settings, where", [
    ({"namespace": "ML_Team"}, "kubernetes.namespace"),
    ({"nodeSelector": {"pool": "has space"}}, "kubernetes.nodeSelector.pool"),
    ({"tolerations": [{"key": "a", "operator": "Sometimes"}]}, "kubernetes.tolerations[0].operator"),
    ({"tolerations": [{"key": "a", "operator": "Exists", "effect": "NoRun"}]}, "kubernetes.tolerations[0].effect"),
    ({"tolerations": [{"key": "a", "operator": "Exists", "value": "v"}]}, "kubernetes.tolerations[0].value"),
    ({"serviceAccountName": "Bad_Name"}, "kubernetes.serviceAccountName"),
    ({"imagePullSecrets": ["ok", "not ok"]}, "kubernetes.imagePullSecrets[1]"),
    ({"priorityClassName": "UPPER"}, "kubernetes.priorityClassName"),
    ({"env_from_secrets": [{"name": "K", "secret": "s", "key": "k", "value": "leak"}]}, "kubernetes.env_from_secrets[0]"),
    ({"env_from_secrets": [{"name": "HPT_RESULTS", "secret": "s", "key": "k"}]}, "kubernetes.env_from_secrets[0].name"),
    ({"env_from_secrets": [{"name": "K", "secret": "s", "key": "a/b"}]}, "kubernetes.env_from_secrets[0].key"),
    ({"nodeselector": {}}, "kubernetes"),
])
def test_bad_cluster_settings_are_user_errors_naming_the_field(settings, where):
    with pytest.raises(UserError) as info:
        k8s.ClusterSettings.parse(settings)
    assert info.value.where == where


def test_our_checks_catch_what_the_schema_validator_misses():
    (job,) = _render(_manifest({"gpus": 1, "cpus": 1, "memory": "2Gi"}))
    pod = job["spec"]["template"]["spec"]
    container = pod["containers"][0]
    broken = json.loads(json.dumps(job))
    broken["metadata"]["name"] = "Trial_1." + "x" * 70
    broken["metadata"]["labels"]["hpt.dev/version"] = "0.1.0+dirty"
    broken["spec"]["template"]["spec"]["restartPolicy"] = "Always"
    broken["spec"]["template"]["spec"]["containers"][0]["resources"]["requests"]["memory"] = "4 GB"
    broken["spec"]["template"]["spec"]["containers"][0]["resources"]["requests"]["nvidia.com/gpu"] = "2"
    broken["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"] = "Sometimes"
    # kubernetes-validate accepts all of it (these are not schema errors)...
    kubernetes_validate.validate(broken, CLAIMED[-1], strict=True)
    problems = "\n".join(k8s.check_object(broken))
    # ...our checks do not.
    for needle in ("DNS-1123", "0.1.0+dirty", "restartPolicy", "'4 GB' is not a quantity", "nvidia.com/gpu", "imagePullPolicy"):
        assert needle in problems, needle
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "1"


@pytest.mark.parametrize("value, ok", [("4Gi", True), ("500m", True), ("1.5", True), ("2e3", True), ("15.5Gi", True),
                                       ("4 Gi", False), ("4GB", False), ("-1", False), ("Gi", False), ("", False)])
def test_quantities(value, ok):
    assert k8s.is_quantity(value) is ok


def test_names_and_label_values():
    store = store_id("gs://bucket/results")
    assert k8s.job_name("e-0123456789ab", "t-0123456789abcdef", store, 1) == f"hpt-0123456789ab-0123456789abcdef-{store[2:]}"
    assert k8s.job_name("e-0123456789ab", "t-0123456789abcdef", store, 12).endswith(f"{store[2:]}-12")
    assert k8s.is_dns1123_label(k8s.job_name("e-" + "f" * 12, "t-" + "f" * 16, store, 999))
    # Another store's apply of the same trial gets a Job of its own; spellings of one store do not.
    assert k8s.job_name("e-0123456789ab", "t-0123456789abcdef", store_id("gs://bucket/other")) != k8s.job_name(
        "e-0123456789ab", "t-0123456789abcdef", store)
    assert store_id("gs://bucket/results/") == store == store_id("gs://bucket//results")
    assert k8s.label_value("0.1.0+dirty") == "0.1.0_dirty" and k8s.is_label_value(k8s.label_value("+" * 80 + "a"))
    assert not k8s.is_label_value("x" * 64) and k8s.is_label_value("")
    assert k8s.cpu_quantity(2) == "2" and k8s.cpu_quantity(0.25) == "250m" and k8s.cpu_quantity(1.0) == "1"


# -- the CLI's --dry-run: no cluster, no kubeconfig ---------------------------------------------------
@pytest.fixture
def no_kubeconfig(tmp_path, monkeypatch):
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "absent-kubeconfig"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)


def test_dry_run_prints_every_object_as_yaml_without_a_cluster(tmp_path, no_kubeconfig, gcs_bucket):
    manifests = [_manifest({"gpus": 1, "cpus": 2, "memory": "8Gi"}, FULL_SETTINGS, seed=s) for s in range(3)]
    plan = write_plan(tmp_path / "plan", manifests)
    result = CliRunner().invoke(app, ["apply", str(plan), "--backend", "k8s", "--results", gcs_bucket, "--dry-run",
                                      "--namespace", "override"])
    assert result.exit_code == 0, result.output
    docs = list(yaml.safe_load_all(result.stdout))
    assert [d["kind"] for d in docs] == ["Job"] * 3
    assert {d["metadata"]["labels"][k8s.TRIAL_LABEL] for d in docs} == {m.id for m in manifests}
    assert {d["metadata"]["namespace"] for d in docs} == {"override"}
    for doc in docs:
        kubernetes_validate.validate(doc, CLAIMED[-1], strict=True)
    assert "3 of 3 trial(s) would run" in result.stderr and "3 of 3" not in result.stdout


def test_dry_run_with_a_local_results_folder_is_a_user_error(tmp_path, no_kubeconfig):
    plan = write_plan(tmp_path / "plan", [_manifest()])
    result = CliRunner().invoke(app, ["apply", str(plan), "--backend", "k8s", "--results", str(tmp_path / "res"), "--dry-run"])
    assert result.exit_code == 2
    assert "gs://" in result.stderr and "Traceback" not in result.output


def test_apply_without_any_cluster_config_is_one_clear_error(tmp_path, no_kubeconfig, gcs_bucket):
    plan = write_plan(tmp_path / "plan", [_manifest()])
    result = CliRunner().invoke(app, ["apply", str(plan), "--backend", "k8s", "--results", gcs_bucket])
    assert result.exit_code == 2, result.output
    assert "no Kubernetes cluster configured" in result.stderr and "--dry-run" in result.stderr
    assert "Traceback" not in result.output


def test_dry_run_yaml_pipes_to_kubectl_shape():
    """Every document is a complete object: apiVersion, kind, metadata.name (what `kubectl apply -f -` needs)."""
    m = _manifest()
    sub = Submission.of(m, "gs://b/r")
    from hpt.executor.backends.kubernetes import KubernetesBackend

    text = KubernetesBackend.with_options(manifest_via="configmap").dry_run([sub])
    assert text.startswith("---\n")
    docs = list(yaml.safe_load_all(text))
    assert [(d["apiVersion"], d["kind"]) for d in docs] == [("v1", "ConfigMap"), ("batch/v1", "Job")]
    assert all(d["metadata"]["name"] for d in docs)


def test_a_compiled_specs_kubernetes_section_reaches_the_jobs(tmp_path, no_kubeconfig, gcs_bucket, small_dataset):
    spec = {"architecture": "bag-of-words", "date-range": [["2010-09-01", "2010-12-01"]],
            "parameters": {"learning_rate": [0.001, 0.01]}, "image": "europe-docker.pkg.dev/proj/hpt/trainer:0.1.0",
            "resources": {"gpus": 1, "cpus": 4, "memory": "16Gi"}, "kubernetes": FULL_SETTINGS}
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    runner = CliRunner()
    compiled = runner.invoke(app, ["compile", str(tmp_path / "spec.json"), "-o", str(tmp_path / "plan"),
                                   "--data", str(small_dataset), "--today", "2011-01-15"])
    assert compiled.exit_code == 0, compiled.output
    result = runner.invoke(app, ["apply", str(tmp_path / "plan"), "--backend", "k8s", "--results", gcs_bucket, "--dry-run"])
    assert result.exit_code == 0, result.output
    jobs = list(yaml.safe_load_all(result.stdout))
    assert len(jobs) >= 2
    for job in jobs:
        pod = job["spec"]["template"]["spec"]
        assert job["metadata"]["namespace"] == "ml-team"
        assert pod["serviceAccountName"] == "hpt-trainer" and pod["nodeSelector"] == FULL_SETTINGS["nodeSelector"]
        assert pod["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "1"
        manifest = json.loads(_env(job)["HPT_MANIFEST"]["value"])
        assert manifest["kubernetes"] == FULL_SETTINGS
        kubernetes_validate.validate(job, CLAIMED[0], strict=True)
        assert k8s.check_object(job) == []
