"""Render a trial into Kubernetes objects: one batch/v1 Job (and, optionally, its ConfigMap).

The templates (job.yaml.j2, configmap.yaml.j2) are rendered in a jinja2 SandboxedEnvironment with
StrictUndefined. Every value enters the YAML through `tojson`: JSON is YAML, so a value from a spec
is always one scalar/list/map, never new YAML structure, and the container runs `hpt-trial` with
no shell. The rendered text is parsed back (so what is sent to the API server and what `--dry-run`
prints are the same objects) and checked by `check_object` for what the OpenAPI schemas miss.

The spec's `kubernetes` section is validated once, at compile time, by hpt.schemas.kubernetes (the one rule
set); rendering trusts the `ClusterSettings` it returns.
"""
from __future__ import annotations

import copy
import json
import math
import re
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Any, Iterable, Mapping

import yaml

from hpt.executor.backend import Submission
from hpt.schemas.errors import UserError
from hpt.schemas.kubernetes import (ENV_NAME, ClusterSettings, check_toleration, is_dns1123_label,
                                    is_dns1123_subdomain, is_label_value, is_qualified_name, is_quantity)
from hpt.schemas.resources import Resources
from hpt.schemas.trainer import log_collected
from hpt.store import store_id

GPU_RESOURCE = "nvidia.com/gpu"
CONTAINER = "trial"
MANIFEST_DIR = "/etc/hpt"
MANIFEST_KEY = "manifest.json"
APP_LABEL = "app.kubernetes.io/name"
EXPERIMENT_LABEL = "hpt.dev/experiment"
TRIAL_LABEL = "hpt.dev/trial"
ATTEMPT_LABEL = "hpt.dev/attempt"
STORE_LABEL = "hpt.dev/store"          # hpt.store.store_id of the results store (the Docker backend's hpt.store)
VERSION_LABEL = "hpt.dev/version"
RESULTS_ANNOTATION = "hpt.dev/results"
CONTAINER_ANNOTATION = "hpt.dev/container"   # a trial's own Job: the container whose log holds its metrics
OWN_JOB_ANNOTATION = "hpt.dev/own-job"       # "true": the trial's own Job spec (a Katib trialSpec), not hpt's template
IMAGE_PULL_POLICIES = {"Always", "IfNotPresent", "Never"}
JOB_RESTART_POLICIES = {"Never", "OnFailure"}


def label_value(text: str) -> str:
    """Any text as a valid label value: invalid characters → '_', trimmed to 63, alphanumeric ends."""
    cleaned = re.sub(r"[^A-Za-z0-9_.-]", "_", text)[:63]
    return cleaned.strip("_.-")


def job_name(experiment_id: str, trial_id: str, store: str, attempt: int = 1) -> str:
    """Stable and unique per plan and store (hpt.store.store_id), so that two stores' applies of one plan in
    one namespace never take each other's Jobs: hpt-<experiment hex>-<trial hex>-<store hex>[-<attempt>]
    (44 characters, 48 with attempt 999; ≤ 63, DNS-1123)."""
    name = f"hpt-{experiment_id.removeprefix('e-')}-{trial_id.removeprefix('t-')}-{store.removeprefix('s-')}"
    if attempt > 1:
        name += f"-{attempt}"
    name = re.sub(r"[^a-z0-9-]", "-", name.lower())[:63].strip("-")
    return name


def plan_labels(experiment_id: str, store: str | None = None) -> dict[str, str]:
    """The labels of a plan's objects: of one store's apply, or (store None) of every store's."""
    labels = {APP_LABEL: "hpt", EXPERIMENT_LABEL: label_value(experiment_id)}
    if store is not None:
        labels[STORE_LABEL] = store
    return labels


def plan_selector(experiment_id: str, store: str | None = None) -> str:
    return ",".join(f"{k}={v}" for k, v in plan_labels(experiment_id, store).items())


# -- rendering ------------------------------------------------------------------------------------
_YAML_UNSAFE = re.compile("[\x7f-\x9f\u2028\u2029\ud800-\udfff\ufeff\ufffe\uffff]")


def tojson(value: Any) -> str:
    """JSON text that YAML reads back as the same value: non-printables and YAML line breaks escaped."""
    text = json.dumps(value, ensure_ascii=False, allow_nan=False)
    return _YAML_UNSAFE.sub(lambda m: "\\u%04x" % ord(m.group()), text)


@lru_cache(maxsize=1)
def _environment():
    from jinja2 import StrictUndefined
    from jinja2.sandbox import SandboxedEnvironment

    env = SandboxedEnvironment(undefined=StrictUndefined, autoescape=False, keep_trailing_newline=True)
    env.filters["tojson"] = tojson
    env.globals.clear()   # no range/namespace/lipsum...: a missing value must fail, not resolve to a builtin
    return env


@lru_cache(maxsize=None)
def _template(name: str):
    source = resources.files(__package__).joinpath(name).read_text(encoding="utf-8")
    return _environment().from_string(source)


@dataclass(frozen=True)
class RenderOptions:
    """How every Job of a run looks, beyond what the manifest says."""
    namespace: str | None = None          # overrides the spec's kubernetes.namespace (CLI --namespace)
    manifest_via: str = "env"             # "env": HPT_MANIFEST holds the JSON; "configmap": mounted read-only
    backoff_limit: int = 0                # pod retries inside the Job (from --retries)
    ttl_seconds_after_finished: int = 86400
    image_pull_policy: str = "IfNotPresent"
    run_as_user: int = 10001              # the trainer image's user (images/trainer/Dockerfile)
    shm_size: str = "1Gi"
    scratch_size: str | None = None       # emptyDir sizeLimit for /scratch (HOME, caches); None = no limit

    def __post_init__(self) -> None:
        if self.manifest_via not in ("env", "configmap"):
            raise UserError(f"manifest delivery must be 'env' or 'configmap', not {self.manifest_via!r}", where="manifest_via")
        if self.namespace is not None and not is_dns1123_label(self.namespace):
            raise UserError(f"{self.namespace!r} is not a valid namespace", where="--namespace")
        if self.image_pull_policy not in IMAGE_PULL_POLICIES:
            raise UserError(f"image pull policy must be one of {', '.join(sorted(IMAGE_PULL_POLICIES))}", where="image_pull_policy")
        if self.backoff_limit < 0:
            raise UserError("retries cannot be negative", where="--retries")


def cpu_quantity(cpus: float) -> str:
    if float(cpus).is_integer():
        return str(int(cpus))
    return f"{max(1, math.ceil(float(cpus) * 1000))}m"


def _resources(res: Resources) -> dict[str, dict[str, str]]:
    # A share of a GPU (0.25) asks for one nvidia.com/gpu: on a node whose device plugin time-slices each
    # GPU into n replicas (docs/kubernetes.md), that is one of n trials on one physical GPU.
    gpus = res.gpu_devices
    requests = {"cpu": cpu_quantity(res.cpus), "memory": res.memory}
    # No CPU limit: throttling a training process only slows it; memory is a hard limit either way.
    limits = {"memory": res.memory}
    if gpus:
        requests[GPU_RESOURCE] = str(gpus)
        limits[GPU_RESOURCE] = str(gpus)
    return {"requests": requests, "limits": limits}


def _tolerations(settings: ClusterSettings, gpus: float) -> list[dict[str, Any]]:
    tolerations = [dict(t) for t in settings.tolerations]
    if gpus and not any(t.get("key") == GPU_RESOURCE for t in tolerations):
        # GPU node pools carry this taint (GKE adds the toleration itself; other clusters may not).
        tolerations.append({"key": GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"})
    return tolerations


def namespace_for(settings: ClusterSettings, options: RenderOptions) -> str | None:
    return options.namespace or settings.namespace


def render_trial(sub: Submission, options: RenderOptions = RenderOptions(),
                 settings: ClusterSettings | None = None) -> list[dict[str, Any]]:
    """The objects for one trial, in creation order: [ConfigMap,] Job. `settings` defaults to the manifest's
    own kubernetes section, checked when the plan was compiled."""
    manifest, manifest_json, results_uri = sub.manifest, sub.manifest_json, sub.results_uri
    trial_id, experiment_id, attempt, timeout_s = sub.trial_id, sub.experiment_id, sub.attempt, sub.timeout_s
    if settings is None:
        settings = manifest.cluster_settings
    name = job_name(experiment_id, trial_id, store_id(results_uri), attempt)
    namespace = namespace_for(settings, options)
    labels = {**plan_labels(experiment_id, store_id(results_uri)), TRIAL_LABEL: label_value(trial_id), ATTEMPT_LABEL: str(attempt),
              VERSION_LABEL: label_value(manifest.hpt_version) or "unknown",
              "app.kubernetes.io/managed-by": "hpt"}
    annotations = {RESULTS_ANNOTATION: results_uri, "hpt.dev/trial-id": trial_id}
    configmap = options.manifest_via == "configmap"
    resources_ = manifest.resources
    gpus = resources_.gpus

    env: list[dict[str, Any]] = [
        {"name": "HPT_MANIFEST", "value": f"{MANIFEST_DIR}/{MANIFEST_KEY}" if configmap else manifest_json},
        {"name": "HPT_RESULTS", "value": results_uri},
        {"name": "HPT_TRIAL_ID", "value": trial_id},
        {"name": "HPT_ATTEMPT", "value": str(attempt)},
        *({"name": k, "value": v} for k, v in sub.ticket_env.items()),   # this launch's ownership ticket
        # The root filesystem is read-only: home and caches live on the scratch emptyDir.
        {"name": "HOME", "value": "/scratch"},
        {"name": "TMPDIR", "value": "/tmp"},
        {"name": "XDG_CACHE_HOME", "value": "/scratch/.cache"},
        {"name": "TORCH_HOME", "value": "/scratch/.cache/torch"},
        {"name": "MPLCONFIGDIR", "value": "/tmp/matplotlib"},
        {"name": "PYTHONDONTWRITEBYTECODE", "value": "1"},
    ]
    env += [{"name": e["name"], "valueFrom": {"secretKeyRef": {"name": e["secret"], "key": e["key"]}}}
            for e in settings.env_from_secrets]

    context = {
        "name": name, "namespace": namespace, "labels": labels, "annotations": annotations,
        "backoff_limit": options.backoff_limit,
        "active_deadline_seconds": max(1, math.ceil(timeout_s)) if timeout_s else None,
        "ttl_seconds_after_finished": options.ttl_seconds_after_finished,
        "service_account_name": settings.service_account_name,
        "priority_class_name": settings.priority_class_name,
        "image_pull_secrets": [{"name": s} for s in settings.image_pull_secrets],
        "node_selector": settings.node_selector,
        "tolerations": _tolerations(settings, gpus),
        "run_as_user": options.run_as_user,
        "image": manifest.image, "image_pull_policy": options.image_pull_policy,
        "env": env, "resources": _resources(resources_),
        "scratch_volume": {"sizeLimit": options.scratch_size} if options.scratch_size else {},
        "shm_size": options.shm_size,
        "configmap_name": name if configmap else None,
    }
    docs: list[dict[str, Any]] = []
    if log_collected(manifest.trainer) and isinstance(manifest.trainer.get("job"), dict):
        return [own_job(sub, name, namespace, labels, annotations, env, context, options, settings)]
    if configmap:
        docs.append(_load(_template("configmap.yaml.j2").render(
            name=name, namespace=namespace, labels=labels, annotations=annotations,
            key=MANIFEST_KEY, manifest_json=manifest_json)))
    docs.append(_load(_template("job.yaml.j2").render(**context)))
    return docs


def own_job(sub: Submission, name: str, namespace: str | None, labels: dict[str, str], annotations: dict[str, str],
            env: list[dict[str, Any]], context: dict[str, Any], options: RenderOptions,
            settings: ClusterSettings) -> dict[str, Any]:
    """The trial's own Job (a Katib trialSpec, rendered for this trial at compile): its image, command,
    volumes, env, initContainers and resources as written, with hpt's name, labels and annotations (the
    backend's watch, adoption and `hpt delete` find it by them), the run's backoff, deadline and TTL, the
    cluster settings it does not set itself (service account, priority class, pull secrets, node selector,
    tolerations, GPU toleration), hpt's trial env on its primary container (trial id, attempt, store,
    ownership ticket; never the store's credentials) and no privilege escalation. The program writes no
    row: hpt apply reads its metrics from the primary container's log."""
    trainer = sub.manifest.trainer
    job = copy.deepcopy(trainer["job"])
    own_meta = job.get("metadata") or {}
    job["apiVersion"], job["kind"] = "batch/v1", "Job"
    job["metadata"] = {"name": name, **({"namespace": namespace} if namespace else {}),
                       "labels": {**(own_meta.get("labels") or {}), **labels},
                       "annotations": {**(own_meta.get("annotations") or {}), **annotations, OWN_JOB_ANNOTATION: "true"}}
    spec = job.setdefault("spec", {})
    spec["backoffLimit"] = options.backoff_limit          # the loop retries, as for hpt's own Jobs
    spec["ttlSecondsAfterFinished"] = options.ttl_seconds_after_finished
    spec["completions"] = spec["parallelism"] = 1         # one trial, one pod
    if context["active_deadline_seconds"] is not None:
        spec["activeDeadlineSeconds"] = context["active_deadline_seconds"]
    template = spec.setdefault("template", {})
    meta = template.setdefault("metadata", {})
    meta["labels"] = {**(meta.get("labels") or {}), **labels}
    meta["annotations"] = {**(meta.get("annotations") or {}), **annotations, CONTAINER_ANNOTATION: trainer["container"]}
    pod = template.setdefault("spec", {})
    pod.setdefault("restartPolicy", "Never")
    if pod["restartPolicy"] == "Never":
        spec.setdefault("podFailurePolicy", {"rules": [{"action": "Ignore", "onPodConditions": [
            {"type": "DisruptionTarget", "status": "True"}]}]})
    for key, value in (("serviceAccountName", settings.service_account_name),
                       ("priorityClassName", settings.priority_class_name)):
        if value and key not in pod:
            pod[key] = value
    secrets = [s for s in context["image_pull_secrets"] if s not in (pod.get("imagePullSecrets") or [])]
    if secrets:
        pod["imagePullSecrets"] = [*(pod.get("imagePullSecrets") or []), *secrets]
    if settings.node_selector:
        pod["nodeSelector"] = {**settings.node_selector, **(pod.get("nodeSelector") or {})}
    containers = pod.get("containers") or []
    primary = next(c for c in containers if c.get("name") == trainer["container"])
    if not primary.get("resources"):
        primary["resources"] = context["resources"]
    gpus = any(GPU_RESOURCE in ((c.get("resources") or {}).get("limits") or {}) for c in containers)
    tolerations = [*(pod.get("tolerations") or []), *[dict(t) for t in settings.tolerations]]
    if gpus and not any(t.get("key") == GPU_RESOURCE for t in tolerations):
        tolerations.append({"key": GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"})
    if tolerations:
        pod["tolerations"] = tolerations
    ours = [e for e in env if e["name"] in ("HPT_TRIAL_ID", "HPT_ATTEMPT", "HPT_RESULTS", *sub.ticket_env)]
    taken = {e["name"] for e in ours}
    primary["env"] = [e for e in primary.get("env") or [] if e.get("name") not in taken] + ours
    for container in containers:
        container.setdefault("securityContext", {}).setdefault("allowPrivilegeEscalation", False)
    return job


def _load(text: str) -> dict[str, Any]:
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    return yaml.load(text, Loader=loader)


def to_yaml(docs: Iterable[Mapping[str, Any]]) -> str:
    """Multi-document YAML for `kubectl apply -f -`."""
    dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
    return yaml.dump_all(list(docs), Dumper=dumper, sort_keys=False, allow_unicode=True,
                         default_flow_style=False, explicit_start=True, width=1 << 30)


# -- checks the OpenAPI schemas cannot express ----------------------------------------------------
def check_object(doc: Mapping[str, Any]) -> list[str]:
    """Problems kubernetes-validate does not see: names, label keys/values, quantities, enums, references."""
    problems: list[str] = []
    kind = doc.get("kind")
    meta = doc.get("metadata") or {}
    name = meta.get("name")
    if kind == "Job" and not is_dns1123_label(name):   # a Job's name becomes its pods' job-name label
        problems.append(f"Job name {name!r} is not a DNS-1123 label (≤ 63)")
    elif not is_dns1123_subdomain(name):
        problems.append(f"{kind} name {name!r} is not a DNS-1123 subdomain")
    if "namespace" in meta and not is_dns1123_label(meta["namespace"]):
        problems.append(f"namespace {meta['namespace']!r} is not a DNS-1123 label")
    problems += _check_meta(meta, "metadata")
    if kind == "Job":
        problems += _check_job(doc)
    return problems


def _check_meta(meta: Mapping[str, Any], where: str) -> list[str]:
    problems = []
    for key, value in (meta.get("labels") or {}).items():
        if not is_qualified_name(key):
            problems.append(f"{where}.labels: key {key!r} is not a qualified name")
        if not is_label_value(value):
            problems.append(f"{where}.labels.{key}: {value!r} is not a valid label value")
    for key in meta.get("annotations") or {}:
        if not is_qualified_name(key):
            problems.append(f"{where}.annotations: key {key!r} is not a qualified name")
    return problems


def _check_job(job: Mapping[str, Any]) -> list[str]:
    problems: list[str] = []
    own = ((job.get("metadata") or {}).get("annotations") or {}).get(OWN_JOB_ANNOTATION) == "true"
    spec = job.get("spec") or {}
    if spec.get("backoffLimit", 0) < 0:
        problems.append("spec.backoffLimit is negative")
    if "activeDeadlineSeconds" in spec and spec["activeDeadlineSeconds"] <= 0:
        problems.append("spec.activeDeadlineSeconds must be positive")
    if spec.get("ttlSecondsAfterFinished", 0) < 0:
        problems.append("spec.ttlSecondsAfterFinished is negative")
    template = spec.get("template") or {}
    problems += _check_meta(template.get("metadata") or {}, "spec.template.metadata")
    pod = template.get("spec") or {}
    restart = pod.get("restartPolicy")
    if restart not in JOB_RESTART_POLICIES:
        problems.append(f"spec.template.spec.restartPolicy {restart!r} is not Never or OnFailure (required for a Job)")
    if spec.get("podFailurePolicy") and restart != "Never":
        problems.append("podFailurePolicy needs restartPolicy Never")
    for i, tol in enumerate(pod.get("tolerations") or []):
        try:
            check_toleration(tol, f"spec.template.spec.tolerations[{i}]")
        except UserError as err:
            problems.append(str(err))
    for key, value in (pod.get("nodeSelector") or {}).items():
        if not is_qualified_name(key) or not is_label_value(value):
            problems.append(f"nodeSelector {key!r}: {value!r} is not a valid label")
    for field_ in ("serviceAccountName", "priorityClassName"):
        if field_ in pod and not is_dns1123_subdomain(pod[field_]):
            problems.append(f"spec.template.spec.{field_} {pod[field_]!r} is not a DNS-1123 subdomain")
    for secret in pod.get("imagePullSecrets") or []:
        if not is_dns1123_subdomain(secret.get("name")):
            problems.append(f"imagePullSecrets name {secret.get('name')!r} is not a DNS-1123 subdomain")
    volumes = {}
    for vol in pod.get("volumes") or []:
        if not is_dns1123_label(vol.get("name")):
            problems.append(f"volume name {vol.get('name')!r} is not a DNS-1123 label")
        volumes[vol.get("name")] = vol
        size = (vol.get("emptyDir") or {}).get("sizeLimit")
        if size is not None and not is_quantity(size):
            problems.append(f"volume {vol.get('name')}: sizeLimit {size!r} is not a quantity")
    for c in pod.get("containers") or []:
        where = f"container {c.get('name')!r}"
        if not is_dns1123_label(c.get("name")):
            problems.append(f"{where}: name is not a DNS-1123 label")
        if c.get("imagePullPolicy", "IfNotPresent") not in IMAGE_PULL_POLICIES:
            problems.append(f"{where}: imagePullPolicy {c.get('imagePullPolicy')!r} is not one of {sorted(IMAGE_PULL_POLICIES)}")
        if not c.get("image"):
            problems.append(f"{where}: no image")
        names = [e.get("name") for e in c.get("env") or []]
        for env_name in names:
            if not (isinstance(env_name, str) and ENV_NAME.match(env_name)):
                problems.append(f"{where}: env name {env_name!r} is invalid")
        if len(names) != len(set(names)):
            problems.append(f"{where}: duplicate env names")
        for e in c.get("env") or []:
            ref = (e.get("valueFrom") or {}).get("secretKeyRef")
            if ref is not None and ("value" in e or not is_dns1123_subdomain(ref.get("name")) or not ref.get("key")):
                problems.append(f"{where}: env {e.get('name')!r} must reference a Secret by name and key only")
        res = c.get("resources") or {}
        for section in ("requests", "limits"):
            for rname, qty in (res.get(section) or {}).items():
                if not is_quantity(qty):
                    problems.append(f"{where}: resources.{section}.{rname} {qty!r} is not a quantity")
        gpu_req = (res.get("requests") or {}).get(GPU_RESOURCE)
        gpu_lim = (res.get("limits") or {}).get(GPU_RESOURCE)
        if gpu_req is not None or gpu_lim is not None:
            if gpu_lim is None or (gpu_req is not None and gpu_req != gpu_lim):
                problems.append(f"{where}: {GPU_RESOURCE} must be set in limits (and requests equal to limits)")
            elif not str(gpu_lim).isdigit():
                problems.append(f"{where}: {GPU_RESOURCE} must be a whole number")
        for mount in c.get("volumeMounts") or []:
            if mount.get("name") not in volumes:
                problems.append(f"{where}: volumeMount {mount.get('name')!r} has no volume")
        sc = c.get("securityContext") or {}
        if sc.get("allowPrivilegeEscalation") is not False:
            problems.append(f"{where}: must not allow privilege escalation")
        elif sc.get("readOnlyRootFilesystem") is not True and not own:   # a trial's own Job keeps its filesystem
            problems.append(f"{where}: must have a read-only root filesystem")
    return problems
