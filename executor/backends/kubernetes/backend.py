"""The k8s backend: each trial is a batch/v1 Job on a Kubernetes cluster (GPU requests, Secrets by reference).

    hpt apply PLAN --backend k8s --results gs://BUCKET/PREFIX [--context CTX] [--namespace NS] [--parallel N]
    hpt apply PLAN --backend k8s --results gs://... --dry-run | kubectl apply -f -

How it talks to the cluster:
- Config: the kubeconfig (`context`, `kubeconfig` or $KUBECONFIG) or, inside a pod, the in-cluster config.
  Neither → one clear UserError. `dry_run` needs neither: it only renders (render.py).
- Identity includes the store: Jobs (and ConfigMaps) carry the label hpt.dev/store (hpt.store.store_id of
  the results URI) and their names end with its digest, so two applies of one plan into two stores in one
  namespace never adopt, replace or read the logs of each other's Jobs.
- One watch per plan and store (watch.py) keeps a small cache of every Job's state; `poll` reads that cache and
  never calls the API.
- `submit` creates the Job (and its ConfigMap with manifest_via="configmap"). 409 Conflict: a Job of the
  same name exists — still running → adopted (re-applying after a crash continues); finished (an
  earlier failed attempt) → deleted and created again.
- Failure reasons come from the Job's conditions and its pod (pods.py): exit code, OOM-killed, deadline
  exceeded, image pull errors and unschedulable pods (both failed by hpt after a grace period).
- Ctrl-C: with cancel_on_exit=False (the default) the loop should leave Jobs running; the backend says
  so through `cancel_on_interrupt` and `follow_hint(...)`. `cancel` deletes the Job (propagation Background).

Results must go to gs://: a pod cannot write to a folder on the machine running `hpt apply`.
"""
from __future__ import annotations

import json
import logging
import os
import threading
import time
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from hpt.executor.backend import Backend, Phase, Submission, TrialStatus
from hpt.executor.backends.kubernetes import render as k8s
from hpt.executor.backends.kubernetes.pods import pod_failure, waiting_problem
from hpt.executor.backends.kubernetes.watch import JobState, JobWatch, job_state, labels_match
from hpt.schemas.errors import UserError
from hpt.schemas.trainer import log_collected
from hpt.store import store_id

log = logging.getLogger("hpt.k8s")

DEFAULT_CAPACITY = 16


@dataclass
class JobHandle:
    trial_id: str
    name: str
    namespace: str
    attempt: int = 1
    configmap: bool = False
    adopted: bool = False


@dataclass(frozen=True)
class KubernetesOptions:
    context: str | None = None               # the kubeconfig context (default: the current one)
    namespace: str | None = None             # overrides the spec's kubernetes.namespace
    cancel_on_exit: bool | None = None       # delete running Jobs when `hpt apply` is interrupted (default: leave them)
    kubeconfig: str | None = None            # default: $KUBECONFIG, else ~/.kube/config, else in-cluster
    retries: int | None = None               # the Job's backoffLimit (pod retries in the cluster; the loop retries)
    manifest_via: str = "env"                # "env" or "configmap"
    ttl_s: int = 86400                       # ttlSecondsAfterFinished
    image_pull_timeout_s: float = 300.0      # how long a pod may wait on an image pull error before hpt fails it
    unschedulable_timeout_s: float = 900.0   # ... or unschedulable (then its Job is deleted)
    no_pod_timeout_s: float = 900.0          # ... or a Job with no pod at all (a quota refusing it; then deleted too)
    watch_read_timeout_s: float = 60.0       # reconnect the watch after this many quiet seconds
    pod_check_interval_s: float = 15.0       # how often a pending Job's pod is inspected
    capacity: int | None = None              # trials at once (default: GPUs allocatable ÷ GPUs per trial, else 16)


class KubernetesBackend(Backend):
    """Trials as Kubernetes Jobs (options: KubernetesOptions)."""

    name = "k8s"
    Options = KubernetesOptions
    poll_interval = 0.5

    def __init__(self, options: KubernetesOptions = KubernetesOptions()):
        self.context = options.context
        self.kubeconfig = options.kubeconfig
        self.cancel_on_exit = bool(options.cancel_on_exit)
        self.options = k8s.RenderOptions(namespace=options.namespace, manifest_via=options.manifest_via,
                                         backoff_limit=int(options.retries or 0),
                                         ttl_seconds_after_finished=int(options.ttl_s))
        self.image_pull_timeout_s = options.image_pull_timeout_s
        self.unschedulable_timeout_s = options.unschedulable_timeout_s
        self.no_pod_timeout_s = options.no_pod_timeout_s
        self.watch_read_timeout_s = options.watch_read_timeout_s
        self._capacity = options.capacity
        self._settings: k8s.ClusterSettings | None = None
        self._namespace: str | None = None
        self._experiment: str | None = None
        self._store: str | None = None             # store_id of this apply's results store
        self._results: str | None = None           # ... and its URI
        self._gpus_per_trial = 0
        self._config = None
        self._context_namespace: str | None = None   # the kubeconfig context's (or the pod's) namespace
        self._api = None
        self._watch: JobWatch | None = None
        self._waiting_since: dict[str, tuple[str, float]] = {}   # job → (problem kind, since)
        self._verdicts: dict[str, TrialStatus] = {}               # job → failure decided by hpt or read from its pod
        self._pod_checked: dict[str, tuple[float, tuple[str, str] | None]] = {}   # job → (when, problem)
        self.pod_check_interval_s = options.pod_check_interval_s
        self._lock = threading.Lock()

    # -- what the loop may read ---------------------------------------------------------------
    @property
    def cancel_on_interrupt(self) -> bool:
        """Whether an interrupted `hpt apply` should cancel running trials (False: leave the Jobs running)."""
        return self.cancel_on_exit

    def follow_hint(self, experiment_id: str | None = None) -> str:
        """How to follow Jobs left running, for the loop's message on Ctrl-C."""
        exp = experiment_id or self._experiment or "<experiment>"
        ns = self._namespace or self.options.namespace or "<namespace>"
        ctx = f" --context {self.context}" if self.context else ""
        return (f"the Jobs keep running; follow them with `kubectl{ctx} -n {ns} get jobs -l "
                f"{k8s.plan_selector(exp, self._store)} -w`, re-run the same `hpt apply` to collect them, "
                f"or `hpt delete PLAN{ctx} --namespace {ns} --results {self._results or 'STORE'}` to stop them")

    # -- config -------------------------------------------------------------------------------
    def _load_config(self):
        if self._config is not None:
            return self._config
        from kubernetes import client, config
        from kubernetes.config.config_exception import ConfigException

        cfg = client.Configuration()
        namespace = None
        # The client reads $KUBECONFIG once, at import; read it now.
        files = self.kubeconfig or os.environ.get("KUBECONFIG") or os.path.expanduser("~/.kube/config")
        try:
            config.load_kube_config(config_file=files, context=self.context, client_configuration=cfg)
            try:
                _, active = config.list_kube_config_contexts(config_file=files)
                if self.context:
                    contexts, _ = config.list_kube_config_contexts(config_file=files)
                    active = next((c for c in contexts if c.get("name") == self.context), active)
                namespace = (active or {}).get("context", {}).get("namespace")
            except Exception:
                namespace = None
        except (ConfigException, OSError, TypeError) as kube_err:
            if self.context or self.kubeconfig:
                raise UserError(f"cannot use the kubeconfig: {kube_err}", where=f"--context {self.context}" if self.context else self.kubeconfig,
                                hint="check `kubectl config get-contexts`") from None
            try:
                config.load_incluster_config(client_configuration=cfg)
                try:
                    with open("/var/run/secrets/kubernetes.io/serviceaccount/namespace") as f:
                        namespace = f.read().strip() or None
                except OSError:
                    namespace = None
            except ConfigException:
                raise UserError("no Kubernetes cluster configured: no kubeconfig (~/.kube/config or $KUBECONFIG) "
                                "and not running inside a cluster",
                                where="--backend k8s",
                                hint="set up kubectl access (e.g. `gcloud container clusters get-credentials CLUSTER`), "
                                     "pass --context, or use --dry-run to print the Jobs without a cluster") from None
        self._config = cfg
        self._context_namespace = namespace
        return cfg

    def _api_client(self):
        from kubernetes import client

        return client.ApiClient(self._load_config())

    def _batch(self):
        from kubernetes.client import BatchV1Api

        if self._api is None:
            self._api = self._api_client()
        return BatchV1Api(self._api)

    def _core(self):
        from kubernetes.client import CoreV1Api

        if self._api is None:
            self._api = self._api_client()
        return CoreV1Api(self._api)

    def _resolve(self, submissions: Sequence[Submission]) -> None:
        """Cluster settings from the manifests: one plan has one kubernetes section, checked when it was compiled."""
        if not submissions:
            return
        first = submissions[0]
        self._settings = first.manifest.cluster_settings
        self._experiment = first.experiment_id
        # A plan loaded without a store (`hpt delete` without --results) stands for every store's Jobs.
        self._store = store_id(first.results_uri) if first.results_uri else None
        self._gpus_per_trial = max(s.manifest.resources.gpu_devices for s in submissions)  # a share: one replica

    def _settings_for(self, sub: Submission) -> k8s.ClusterSettings:
        if self._settings is None:
            self._resolve([sub])
        assert self._settings is not None
        return self._settings

    @property
    def namespace(self) -> str:
        """Where the Jobs go: --namespace, else the spec's kubernetes.namespace, else the context's, else default."""
        return self._ns()

    def _ns(self) -> str:
        if self._namespace is None:
            explicit = k8s.namespace_for(self._settings or k8s.ClusterSettings(), self.options)
            if explicit is None:
                self._load_config()
            self._namespace = explicit or self._context_namespace or "default"
        return self._namespace

    # -- the protocol -------------------------------------------------------------------------
    def preflight(self, submissions: Sequence[Submission]) -> None:
        self._check_offline(submissions)
        self._resolve(submissions)
        namespace = self._ns()
        self._check_cluster(namespace)
        if submissions:
            self._ensure_watch(submissions[0].experiment_id, submissions[0].results_uri)

    def _check_offline(self, submissions: Sequence[Submission]) -> None:
        """What can be checked without a cluster: the results location, the data and the image (warnings)."""
        for sub in submissions:
            if not sub.results_uri.startswith("gs://"):
                raise UserError(f"results go to {sub.results_uri!r}, a folder on this machine, which pods on a cluster "
                                "cannot write to", where="--results",
                                hint="pass --results gs://BUCKET/PREFIX and give the Job's service account write access "
                                     "(Workload Identity, see docs/kubernetes.md)")
        if not submissions:
            return
        first = submissions[0]
        data_uri = first.manifest.data["uri"]
        if data_uri and not data_uri.startswith("gs://") and not log_collected(first.manifest.trainer):  # reads its own
            log.warning("the dataset %s is a local path: the pods can read it only if the image contains it "
                        "(use a gs:// dataset for a cluster)", data_uri)
        image = first.manifest.image
        registry = image.split("/", 1)[0] if "/" in image else ""
        if not ("." in registry or ":" in registry or registry == "localhost"):
            log.warning("the image %s names no registry: the cluster will look for it on Docker Hub "
                        "(push it to your registry and set `image` in the spec)", image)

    def _check_cluster(self, namespace: str) -> None:
        from kubernetes.client.exceptions import ApiException

        batch = self._batch()
        try:
            batch.list_namespaced_job(namespace, limit=1, _preload_content=False, _request_timeout=(10, 30))
        except ApiException as err:
            raise self._api_error(err, f"list Jobs in namespace {namespace}") from None
        except Exception as err:
            host = getattr(self._config, "host", "?")
            raise UserError(f"cannot reach the Kubernetes API server at {host}: {type(err).__name__}",
                            where=f"--context {self.context}" if self.context else "kubeconfig",
                            hint="check `kubectl cluster-info`, your VPN, or the context") from None

    def _api_error(self, err, doing: str) -> UserError:
        text = err.reason or ""
        try:
            body = json.loads(err.body or "{}")
            text = body.get("message") or text
        except (ValueError, TypeError):
            pass
        if err.status in (401, 403):
            return UserError(f"not allowed to {doing}: {text}", where=f"namespace {self._namespace}",
                             hint="bind the account to the Role hpt-apply of k8s/rbac.yaml: jobs create/get/list/watch/delete, "
                                  "configmaps create/patch/list/delete, pods list, pods/log get")
        if err.status == 404:
            return UserError(f"cannot {doing}: {text}", where=f"namespace {self._namespace}",
                             hint="does the namespace exist? `kubectl create namespace NAME` or pass --namespace")
        return UserError(f"cannot {doing}: HTTP {err.status} {text}", where=f"namespace {self._namespace}")

    def _ensure_watch(self, experiment_id: str, results_uri: str) -> JobWatch:
        """The watch on this plan's Jobs of this store (one apply writes to one store)."""
        store = store_id(results_uri)
        with self._lock:
            if self._watch is None:
                self._experiment, self._store, self._results = experiment_id, store, results_uri
                self._watch = JobWatch(self._api_client, self._ns(), k8s.plan_selector(experiment_id, store),
                                       k8s.plan_labels(experiment_id, store), read_timeout_s=self.watch_read_timeout_s).start()
            elif self._store != store:
                raise ValueError(f"this backend watches the Jobs of store {self._store}, not of {results_uri}")
            return self._watch

    def capacity(self) -> int:
        if self._capacity:
            return int(self._capacity)
        if self._gpus_per_trial and self._config is not None:
            try:
                nodes = json.loads(self._core().list_node(_preload_content=False, _request_timeout=(10, 30)).data)
                gpus = sum(int((n.get("status") or {}).get("allocatable", {}).get(k8s.GPU_RESOURCE, 0) or 0)
                           for n in nodes.get("items") or [])
                if gpus >= self._gpus_per_trial:
                    return gpus // self._gpus_per_trial
            except Exception:   # nodes are cluster-scoped: often forbidden; an autoscaled pool may be at 0
                pass
        return DEFAULT_CAPACITY

    def adopt(self, experiment_id: str, results_uri: str) -> dict[str, JobHandle]:
        """This plan's Jobs of this store still running (or waiting to start) in the cluster: trial id →
        handle. Another store's Jobs of the plan are not in the watch (its labels select the store)."""
        watch = self._ensure_watch(experiment_id, results_uri)
        if not watch.synced.wait(60):
            raise UserError(f"could not list the plan's Jobs: {watch.last_error or 'no answer in 60 s'}",
                            where=f"namespace {self._ns()}")
        found: dict[str, JobHandle] = {}
        for state in watch.states():
            if state.deleted or state.finished or not state.trial_id:
                continue
            known = found.get(state.trial_id)
            if known is None or state.attempt > known.attempt:
                found[state.trial_id] = JobHandle(state.trial_id, state.name, self._ns(), state.attempt,
                                                  self.options.manifest_via == "configmap", adopted=True)
        return found

    def _render(self, sub: Submission, settings: k8s.ClusterSettings | None = None) -> list[dict[str, Any]]:
        return k8s.render_trial(sub, self.options, settings or self._settings_for(sub))

    def submit(self, submission: Submission) -> JobHandle:
        from kubernetes.client.exceptions import ApiException

        settings = self._settings_for(submission)
        namespace = self._ns()
        watch = self._ensure_watch(submission.experiment_id, submission.results_uri)
        docs = self._render(submission, settings)
        job = docs[-1]
        name = job["metadata"]["name"]
        handle = JobHandle(submission.trial_id, name, namespace, submission.attempt, configmap=len(docs) > 1)
        batch = self._batch()
        for _ in range(60):
            if handle.configmap:
                self._create_configmap(docs[0], namespace)
            try:
                resp = batch.create_namespaced_job(namespace, job, _preload_content=False, _request_timeout=(10, 60))
                created = json.loads(resp.data)
                watch.put(job_state(created))
                if handle.configmap:
                    self._own_configmap(name, namespace, created)
                return handle
            except ApiException as err:
                if err.status != 409:
                    raise self._api_error(err, f"create Job {name}") from None
            existing = self._read_job(name, namespace)
            if existing is None:
                continue           # deleted in between: create again
            state = job_state(existing)
            if state.trial_id != submission.trial_id:
                raise UserError(f"a Job named {name} exists for another trial ({state.trial_id or 'not hpt'})",
                                where=f"namespace {namespace}", hint=f"delete it: kubectl -n {namespace} delete job {name}")
            if not state.finished and not state.deleted:
                if state.results and state.results != submission.results_uri:
                    raise UserError(f"Job {name} is running for results {state.results}, not {submission.results_uri}",
                                    where=f"namespace {namespace}", hint="apply with the same --results, or `hpt delete PLAN` first")
                log.info("adopting Job %s (already in the cluster)", name)
                watch.put(state)
                handle.adopted = True
                return handle
            # A finished Job of an earlier run (its trial is being run again): replace it.
            watch.replaced(state.uid)
            # Its ConfigMap goes too: it is owned by the old Job and would be garbage-collected with it.
            self._delete_job(name, namespace, configmap=handle.configmap)
            time.sleep(0.2)
        raise UserError(f"Job {name} still exists after deleting it (30 s)", where=f"namespace {namespace}")

    def _create_configmap(self, doc: dict[str, Any], namespace: str) -> None:
        from kubernetes.client.exceptions import ApiException

        try:
            self._core().create_namespaced_config_map(namespace, doc, _preload_content=False, _request_timeout=(10, 60))
        except ApiException as err:
            if err.status != 409:   # same name = same trial and attempt = same immutable content
                raise self._api_error(err, f"create ConfigMap {doc['metadata']['name']}") from None

    def _own_configmap(self, name: str, namespace: str, job: Mapping[str, Any]) -> None:
        """Let the Job own its ConfigMap, so the cluster deletes both together (after ttlSecondsAfterFinished)."""
        uid = (job.get("metadata") or {}).get("uid")
        if not uid:        # emulators give no uid; `hpt delete` removes ConfigMaps by label anyway
            return
        owner = {"apiVersion": "batch/v1", "kind": "Job", "name": name, "uid": uid, "blockOwnerDeletion": False}
        try:
            self._core().patch_namespaced_config_map(name, namespace, {"metadata": {"ownerReferences": [owner]}},
                                                     _preload_content=False, _request_timeout=(10, 60))
        except Exception as err:
            log.debug("could not set the owner of ConfigMap %s: %s", name, err)

    def _read_job(self, name: str, namespace: str) -> dict[str, Any] | None:
        from kubernetes.client.exceptions import ApiException

        try:
            return json.loads(self._batch().read_namespaced_job(name, namespace, _preload_content=False,
                                                                _request_timeout=(10, 60)).data)
        except ApiException as err:
            if err.status == 404:
                return None
            raise self._api_error(err, f"read Job {name}") from None

    def _delete_job(self, name: str, namespace: str, configmap: bool = False) -> bool:
        from kubernetes.client.exceptions import ApiException

        gone = False
        try:
            self._batch().delete_namespaced_job(name, namespace, propagation_policy="Background",
                                                _preload_content=False, _request_timeout=(10, 60))
            gone = True
        except ApiException as err:
            if err.status != 404:
                raise self._api_error(err, f"delete Job {name}") from None
        if configmap:
            try:
                self._core().delete_namespaced_config_map(name, namespace, _preload_content=False, _request_timeout=(10, 60))
            except ApiException as err:
                if err.status != 404:
                    log.debug("could not delete ConfigMap %s: %s", name, err)
        return gone

    def poll(self, handle: JobHandle) -> TrialStatus:
        verdict = self._verdicts.get(handle.name)
        if verdict is not None:
            return verdict
        watch = self._watch
        state = watch.get(handle.name) if watch is not None else None
        if watch is not None and watch.failing_since is not None and time.monotonic() - watch.failing_since > 600:
            raise UserError(f"lost the Kubernetes API for 10 minutes: {watch.last_error}",
                            hint="the Jobs keep running; re-run the same `hpt apply` to collect them")
        if state is None:
            return TrialStatus(Phase.PENDING)
        if state.complete:
            return TrialStatus(Phase.SUCCEEDED, exit_code=0)
        failure = state.failed_condition
        if failure is not None:
            verdict = self._failure(handle, state, failure)
            self._verdicts[handle.name] = verdict
            return verdict
        if state.deleted:
            return TrialStatus(Phase.FAILED, reason="its Job was deleted before it finished", transient=True)
        if state.ready > 0:
            self._waiting_since.pop(handle.name, None)
            return TrialStatus(Phase.RUNNING)
        if state.active > 0:
            return self._pending(handle)
        return self._no_pod(handle)

    # -- reasons --------------------------------------------------------------------------------
    def _pods(self, handle: JobHandle) -> list[dict[str, Any]]:
        """The Job's pods, newest first (label selector, checked here too)."""
        required = {k8s.TRIAL_LABEL: k8s.label_value(handle.trial_id), k8s.ATTEMPT_LABEL: str(handle.attempt)}
        if self._experiment:
            required[k8s.EXPERIMENT_LABEL] = k8s.label_value(self._experiment)
        if self._store:   # another store's Job of this trial has pods with the same trial and attempt
            required[k8s.STORE_LABEL] = self._store
        selector = ",".join(f"{k}={v}" for k, v in required.items())
        try:
            doc = json.loads(self._core().list_namespaced_pod(handle.namespace, label_selector=selector,
                                                              _preload_content=False, _request_timeout=(10, 30)).data)
        except Exception as err:
            log.debug("could not list the pods of %s: %s", handle.name, err)
            return []
        pods = [p for p in doc.get("items") or [] if labels_match((p.get("metadata") or {}).get("labels"), required)]
        pods.sort(key=lambda p: (p.get("metadata") or {}).get("creationTimestamp") or "", reverse=True)
        return pods

    def _pending(self, handle: JobHandle) -> TrialStatus:
        """A pod exists but is not running yet: waiting on an image or a node. Fail it after a grace period."""
        now = time.monotonic()
        checked = self._pod_checked.get(handle.name)
        if checked is None or now - checked[0] >= self.pod_check_interval_s:   # not a pod list per poll
            problem = waiting_problem(self._pods(handle))
            self._pod_checked[handle.name] = (now, problem)
        else:
            problem = checked[1]
        if problem is None:
            self._waiting_since.pop(handle.name, None)
            return TrialStatus(Phase.PENDING)
        kind, detail = problem
        previous = self._waiting_since.get(handle.name)
        if previous is None or previous[0] != kind:
            self._waiting_since[handle.name] = (kind, now)
            return TrialStatus(Phase.PENDING, reason=detail)
        limit = self.image_pull_timeout_s if kind == "image" else self.unschedulable_timeout_s
        waited = now - previous[1]
        if waited < limit:
            return TrialStatus(Phase.PENDING, reason=detail)
        what = "unschedulable" if kind == "unschedulable" else "could not start its container"
        verdict = TrialStatus(Phase.FAILED, reason=f"{what} for {waited:.0f} s: {detail}")
        self._verdicts[handle.name] = verdict
        self._delete_job(handle.name, handle.namespace, handle.configmap)   # free its place in the queue
        return verdict

    def _no_pod(self, handle: JobHandle) -> TrialStatus:
        """A Job with no active pod: none created yet, or between a failed pod and its retry. One the cluster
        never gives a pod (a ResourceQuota or LimitRange refusing it: the Job controller's FailedCreate
        events, which only the Job shows) would be waited on forever: after no_pod_timeout_s with no pod of
        it to be found, hpt fails the trial and deletes the Job, as for an unschedulable pod."""
        now = time.monotonic()
        previous = self._waiting_since.get(handle.name)
        if previous is None or previous[0] != "no-pod":
            self._waiting_since[handle.name] = ("no-pod", now)
            return TrialStatus(Phase.PENDING)
        waited = now - previous[1]
        if waited < self.no_pod_timeout_s:
            return TrialStatus(Phase.PENDING, reason=f"its Job has no pod yet ({waited:.0f} s)" if waited >= 1 else "")
        if self._pods(handle):   # a pod exists (failed, awaiting its retry): the Job is not stuck without one
            self._waiting_since[handle.name] = ("no-pod", now)
            return TrialStatus(Phase.PENDING)
        verdict = TrialStatus(Phase.FAILED, reason=(
            f"no pod for {waited:.0f} s: the cluster created none for Job {handle.name} (a ResourceQuota or LimitRange "
            f"may refuse it; `kubectl -n {handle.namespace} describe job {handle.name}` shows the FailedCreate events)"))
        self._verdicts[handle.name] = verdict
        self._delete_job(handle.name, handle.namespace, handle.configmap)   # it would hold its place in the queue
        return verdict

    def _failure(self, handle: JobHandle, state: JobState, condition: tuple[str, str]) -> TrialStatus:
        reason, message = condition
        pod = pod_failure(self._pods(handle), state.memory)
        if reason == "DeadlineExceeded":
            return TrialStatus(Phase.FAILED, reason=f"timed out after {state.deadline_s} s (DeadlineExceeded)")
        if pod is not None:
            return pod
        text = f"Job failed: {reason}" + (f" ({message})" if message else "")
        return TrialStatus(Phase.FAILED, reason=text)

    def cancel(self, handle: JobHandle) -> None:
        self._delete_job(handle.name, handle.namespace, handle.configmap)

    def logs(self, handle: JobHandle) -> str:
        pods = self._pods(handle)
        if not pods:
            return ""
        name = pods[0]["metadata"]["name"]
        # a trial's own Job (a Katib trialSpec) names its primary container; hpt's Jobs run "trial"
        container = ((pods[0]["metadata"].get("annotations") or {}).get(k8s.CONTAINER_ANNOTATION) or k8s.CONTAINER)
        try:
            text = self._core().read_namespaced_pod_log(name, handle.namespace, container=container,
                                                        _preload_content=False, _request_timeout=(10, 60)).data
            return text.decode("utf-8", errors="replace")
        except Exception as err:
            return f"(no log from pod {name}: {getattr(err, 'reason', err)})\n"

    def release(self, handle: JobHandle) -> None:
        # The Job stays (ttlSecondsAfterFinished removes it) so `kubectl logs job/NAME` works meanwhile.
        self._waiting_since.pop(handle.name, None)
        self._verdicts.pop(handle.name, None)
        self._pod_checked.pop(handle.name, None)
        if self._watch is not None:
            self._watch.forget(handle.name)

    def dry_run(self, submissions: Sequence[Submission]) -> str:
        """Every object as multi-document YAML (for `kubectl apply -f -`); needs no cluster."""
        self._check_offline(submissions)
        if not submissions:
            return ""
        self._resolve(submissions)
        docs: list[dict[str, Any]] = []
        for sub in submissions:
            docs += self._render(sub)
        return k8s.to_yaml(docs)

    def delete_plan(self, submissions: Sequence[Submission], dry_run: bool = False) -> dict[str, list[str]]:
        """Delete every Job and ConfigMap of the plan (`hpt delete PLAN`); with dry_run only list them. Of
        every store, or only of the submissions' store when they name one (`hpt delete PLAN --results URI`)."""
        from kubernetes.client.exceptions import ApiException

        if not submissions:
            return {"jobs": [], "configmaps": []}
        self._resolve(submissions)
        experiment = submissions[0].experiment_id
        namespace = self._ns()
        selector, required = k8s.plan_selector(experiment, self._store), k8s.plan_labels(experiment, self._store)
        found: dict[str, list[str]] = {}
        for kind, lister, deleter in (
                ("jobs", self._batch().list_namespaced_job,
                 lambda n: self._batch().delete_namespaced_job(n, namespace, propagation_policy="Background",
                                                               _preload_content=False, _request_timeout=(10, 60))),
                ("configmaps", self._core().list_namespaced_config_map,
                 lambda n: self._core().delete_namespaced_config_map(n, namespace, _preload_content=False,
                                                                     _request_timeout=(10, 60)))):
            try:
                doc = json.loads(lister(namespace, label_selector=selector, _preload_content=False,
                                        _request_timeout=(10, 120)).data)
            except ApiException as err:
                raise self._api_error(err, f"list {kind} in namespace {namespace}") from None
            except Exception as err:
                raise UserError(f"cannot reach the Kubernetes API server at {getattr(self._config, 'host', '?')}: "
                                f"{type(err).__name__}", where="kubeconfig") from None
            names = sorted(item["metadata"]["name"] for item in doc.get("items") or []
                           if labels_match((item.get("metadata") or {}).get("labels"), required))
            found[kind] = names
            if dry_run:
                continue
            for name in names:
                try:
                    deleter(name)
                except ApiException as err:
                    if err.status != 404:
                        raise self._api_error(err, f"delete {kind[:-1]} {name}") from None
        return found

    def close(self) -> None:
        if self._watch is not None:
            self._watch.stop()
            self._watch = None
