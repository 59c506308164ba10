"""A Kubernetes API emulator for tests and benchmarks (needs the test extra: kmock, pytest-asyncio).

No cluster can run where hpt is tested, so the official `kubernetes` client talks HTTP to kmock's
in-process KubernetesEmulator, served on 127.0.0.1 from a background thread, through a kubeconfig
that points at it. Nothing in hpt's runtime imports this module.

kmock keeps objects as plain JSON and ignores label selectors; this subclass adds what the k8s
backend's tests need to see and nothing more:
- on create, metadata.namespace (from the URL), uid and creationTimestamp, as an API server sets them
  (without the namespace, kmock's watch drops every event of a namespaced watch);
- a monotonic `metadata.resourceVersion` on every create/patch, so a resumed watch can be checked;
- `expire_watches(n)`: the next n watches answer with an ERROR event of code 410 (Gone), as an
  API server does when the watch's resourceVersion is too old;
- `drop_watches()`: close every open watch stream (a network disconnect);
- pod logs (`pods/<name>/log`) served from `pod_logs[name]`;
- an audit log of every request as an API server's authorizer sees it (bearer token, verb, API group,
  resource[/subresource], namespace: `api_request`), and, when `authorize` is set, 403 Forbidden for what
  it refuses (`Rbac`: the Roles and bindings of k8s/ evaluated as RBAC does);
- optionally a second, HTTPS endpoint on the same objects (`tls=True`), for the official client's
  in-cluster loader (it only speaks https to $KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT).

    cluster = EmulatedCluster().start()
    kubeconfig = cluster.write_kubeconfig(tmp_path / "kubeconfig")   # context "emulator"
    ...
    cluster.stop()
"""
from __future__ import annotations

import asyncio
import json
import os
import queue
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import aiohttp.test_utils
import aiohttp.web
import kmock
from kmock._internal import enums

RESOURCES = {"batch/v1/jobs": "Job", "v1/pods": "Pod", "v1/configmaps": "ConfigMap", "v1/namespaces": "Namespace",
             "v1/nodes": "Node"}
CLUSTER_SCOPED = {"Namespace", "Node"}


def api_request(method: str, path: str, params: Mapping[str, str] | None = None) -> dict[str, str]:
    """What RBAC authorizes in a resource request: verb, API group, resource (with its subresource,
    `pods/log`), namespace ("" for cluster-scoped) and name, read from the HTTP method and path as the API
    server does (GET of one object is get, of a collection list, or watch with ?watch; DELETE of a
    collection is deletecollection)."""
    parts = [p for p in path.split("/") if p]
    if parts[:1] == ["api"]:
        group, rest = "", parts[2:]
    elif parts[:1] == ["apis"]:
        group, rest = parts[1], parts[3:]
    else:
        return {"verb": method.lower(), "group": "", "resource": "", "namespace": "", "name": "", "path": path}
    namespace = ""
    if len(rest) >= 2 and rest[0] == "namespaces" and len(rest) != 2:
        namespace, rest = rest[1], rest[2:]
    resource = rest[0] if rest else ""
    name = rest[1] if len(rest) > 1 else ""
    if len(rest) > 2:
        resource += "/" + rest[2]
    watch = str((params or {}).get("watch", "")).lower() in ("1", "true")
    verb = {"POST": "create", "PUT": "update", "PATCH": "patch"}.get(method.upper())
    if verb is None:
        if method.upper() == "DELETE":
            verb = "delete" if name else "deletecollection"
        else:
            verb = "watch" if watch else "get" if name else "list"
    return {"verb": verb, "group": group, "resource": resource, "namespace": namespace, "name": name, "path": path}


def _token(headers: Mapping[str, str]) -> str:
    auth = next((v for k, v in headers.items() if k.lower() == "authorization"), "")
    scheme, _, token = auth.partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""   # the scheme is case-insensitive (RFC 7235)


class Rbac:
    """RBAC as the API server evaluates it, over Role/ClusterRole/RoleBinding/ClusterRoleBinding objects
    (e.g. every document in k8s/): a request is allowed when a binding of its subject grants a rule whose
    apiGroups, resources and verbs all match ("*" matches anything). A RoleBinding grants in its own
    namespace only; a ClusterRoleBinding everywhere, cluster-scoped resources included. A token names its
    subject as the API server would after authenticating it: `system:serviceaccount:NS:NAME`."""

    def __init__(self, docs: Iterable[Mapping[str, Any]]):
        docs = [d for d in docs if d]
        self.roles = {(d["kind"], d["metadata"].get("namespace", ""), d["metadata"]["name"]): d.get("rules") or []
                      for d in docs if d.get("kind") in ("Role", "ClusterRole")}
        self.bindings = [d for d in docs if d.get("kind") in ("RoleBinding", "ClusterRoleBinding")]

    def rules_for(self, token: str) -> list[tuple[str, dict[str, Any]]]:
        """(namespace where it applies, "" = everywhere; rule) for every rule granted to the token's subject."""
        prefix = "system:serviceaccount:"
        if not token.startswith(prefix):
            return []
        sa_ns, _, sa_name = token[len(prefix):].partition(":")
        granted = []
        for b in self.bindings:
            if not any(s.get("kind") == "ServiceAccount" and s.get("name") == sa_name and s.get("namespace") == sa_ns
                       for s in b.get("subjects") or []):
                continue
            ref = b["roleRef"]
            where = b["metadata"].get("namespace", "") if b["kind"] == "RoleBinding" else ""
            role_ns = "" if ref["kind"] == "ClusterRole" else b["metadata"].get("namespace", "")
            for rule in self.roles.get((ref["kind"], role_ns, ref["name"]), []):
                granted.append((where, rule))
        return granted

    def allows(self, token: str, request: Mapping[str, str]) -> bool:
        def has(values: list[str], value: str) -> bool:
            return "*" in values or value in values

        for where, rule in self.rules_for(token):
            if where and where != request["namespace"]:
                continue   # a RoleBinding grants only in its namespace, never cluster-scoped resources
            if (has(rule.get("apiGroups") or [], request["group"]) and has(rule.get("resources") or [], request["resource"])
                    and has(rule.get("verbs") or [], request["verb"])
                    and (not rule.get("resourceNames") or request["name"] in rule["resourceNames"])):
                return True
        return False


class _Emulator(kmock.KubernetesEmulator):
    """kmock's emulator plus resourceVersions, 410 Gone on demand, dropped watches and pod logs."""

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        self.rv = 0                          # the last resourceVersion handed out
        self.expire = 0                      # how many next watches answer 410 Gone
        self.watch_generation = 0            # bumped by drop_watches(): open streams end
        self.pod_logs: dict[str, str] = {}
        self.watch_params: list[dict[str, str]] = []   # query of every watch request, in order
        self.log: list[tuple[str, str, str]] = []       # (action, plural, path) of every request
        self.audit: list[dict[str, str]] = []            # api_request(...) + token of every request
        self.authorize: Callable[[str, dict[str, str]], bool] | None = None   # None: everything allowed
        self._inflight: set[Any] = set()
        for plural, kind in RESOURCES.items():
            self.resources[plural] = kmock.ResourceInfo(kind=kind, namespaced=kind not in CLUSTER_SCOPED,
                                                        verbs={"list", "watch", "get", "create", "patch", "delete"})

    async def _handle(self, request):  # type: ignore[override]
        # kmock matches each request against its whole request history (quadratic: 95 % of the
        # emulator's time at a few thousand requests). Keep only requests still being served there,
        # and a light log for assertions.
        self.log.append((request.action.value if request.action is not None else "",
                         request.resource.plural if request.resource is not None else "", str(request.url.path)))
        seen = {**api_request(str(request.method.value if hasattr(request.method, "value") else request.method),
                              str(request.url.path), request.params), "token": _token(request.headers)}
        self.audit.append(seen)
        if self.authorize is not None and not self.authorize(seen["token"], seen):
            seen["denied"] = "1"
            what = seen["resource"] + (f' "{seen["name"]}"' if seen["name"] else "")
            return aiohttp.web.json_response(
                {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "reason": "Forbidden",
                 "code": 403, "message": f'{what} is forbidden: User "{seen["token"]}" cannot {seen["verb"]} resource '
                                         f'"{seen["resource"]}" in API group "{seen["group"]}"'
                                         + (f' in the namespace "{seen["namespace"]}"' if seen["namespace"] else "")},
                status=403)
        self._inflight.add(request)
        if len(self._requests) > 8:
            self._requests[:] = [r for r in self._requests if r in self._inflight]
        try:
            return await self._handle_tracked(request)
        finally:
            self._inflight.discard(request)

    async def _handle_tracked(self, request):
        if request.subresource == "log" and request.action == enums.action.FETCH:
            text = self.pod_logs.get(request.name or "")
            if text is None:
                return await self._render_error(kmock.KubernetesObjectNotFoundError())
            return aiohttp.web.Response(text=text, content_type="text/plain")
        if request.action in (enums.action.CREATE, enums.action.UPDATE) and isinstance(request.data, dict):
            self.rv += 1
            meta = request.data.setdefault("metadata", {})
            meta["resourceVersion"] = str(self.rv)
            if request.action == enums.action.CREATE:
                # What an API server fills in; kmock's watch filters events by metadata.namespace.
                if request.namespace and not meta.get("namespace"):
                    meta["namespace"] = request.namespace
                meta.setdefault("uid", str(uuid.uuid4()))
                meta.setdefault("creationTimestamp", time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
        return await super()._handle(request)

    async def _serve_list(self, request):  # type: ignore[override]
        listing = await super()._serve_list(request)
        listing["metadata"] = {"resourceVersion": str(self.rv)}   # kmock says "..."; a list carries the current one
        return listing

    async def _serve_watch(self, request):  # type: ignore[override]
        """kmock's watch, minus its gap: the replay of existing objects and the bus mark are taken under
        the same lock that writes take, so no event between them is lost (as with a real watch)."""
        self.watch_params.append(dict(request.params or {}))
        if self.expire > 0:
            self.expire -= 1
            yield b""
            yield {"type": "ERROR", "object": {"apiVersion": "v1", "kind": "Status", "status": "Failure",
                                                "code": 410, "reason": "Expired",
                                                "message": "too old resource version"}}
            return
        yield b""
        generation = self.watch_generation
        bus = self._buses[request.resource]
        async with self._lock:
            events = [{"type": "ADDED", "object": obj.raw}
                      for (res, ns, name), obj in self.objects.items()
                      if res == request.resource and not obj.deleted
                      and (request.namespace is None or ns == request.namespace)
                      and (request.name is None or name == request.name)]
            mark = await bus.mark()
        step: asyncio.Future | None = None
        try:
            for event in events:
                yield event
            stream = bus.stream(since=mark).__aiter__()
            while True:
                step = asyncio.ensure_future(stream.__anext__())
                while not step.done():
                    await asyncio.wait([step], timeout=0.05)
                    if generation != self.watch_generation:   # dropped: end the stream like a lost connection
                        step.cancel()
                        try:
                            await step
                        except (asyncio.CancelledError, StopAsyncIteration):
                            pass
                        return
                try:
                    event = step.result()
                except StopAsyncIteration:
                    return
                meta = (event.get("object") or {}).get("metadata") or {}
                if request.namespace is not None and meta.get("namespace") != request.namespace:
                    continue
                if request.name is not None and meta.get("name") != request.name:
                    continue
                yield event
        finally:   # the client went away or the stream was dropped: stop reading the bus first
            if step is not None and not step.done():
                step.cancel()
                try:
                    await step
                except (asyncio.CancelledError, StopAsyncIteration, KeyError):
                    pass
            await bus.unmark(mark)


class _TlsServer(aiohttp.test_utils.RawTestServer):
    """kmock's server class, serving https with the context set on the class (kmock passes no ssl)."""
    ssl_context: Any = None

    async def start_server(self, loop=None, **kwargs):  # noqa: ANN001, ANN201
        await super().start_server(loop=loop, ssl=self.ssl_context, **kwargs)


def self_signed(folder: Path, host: str = "127.0.0.1") -> tuple[Path, Path]:
    """A certificate for `host` (an IP SAN, as a cluster's CA would issue for its API server) and its key."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kube-apiserver")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(host))]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    folder.mkdir(parents=True, exist_ok=True)
    cert_file, key_file = folder / "ca.crt", folder / "apiserver.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_file, key_file


class EmulatedCluster:
    """The emulator on a free localhost port, in its own thread and event loop; with `tls` (a folder for
    its certificate), also on an https port (`https_port`, CA in `ca_file`)."""

    def __init__(self, tls: Path | None = None) -> None:
        self.tls = tls
        self.ca_file: Path | None = None
        self.https_port = 0
        self.url = ""
        self.handler: _Emulator | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stopped: asyncio.Event | None = None

    def start(self) -> "EmulatedCluster":
        ready = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            profile_to = os.environ.get("HPT_EMULATOR_PROFILE")   # where to dump a cProfile of the server
            profiler = None
            if profile_to:
                import cProfile

                profiler = cProfile.Profile()
                profiler.enable()
            try:
                loop.run_until_complete(self._serve(ready))
                if profiler is not None:
                    profiler.disable()
                    profiler.dump_stats(profile_to)
            except BaseException as err:  # surface start-up failures to start()
                failure.append(err)
                ready.set()
            finally:
                loop.close()

        self._thread = threading.Thread(target=run, name="k8s-emulator", daemon=True)
        self._thread.start()
        ready.wait(30)
        if failure:
            raise RuntimeError(f"the Kubernetes emulator did not start: {failure[0]!r}") from failure[0]
        if not self.url:
            raise RuntimeError("the Kubernetes emulator did not start within 30 s")
        return self

    async def _serve(self, ready: threading.Event) -> None:
        self._stopped = asyncio.Event()
        async with _Emulator() as handler, kmock.Server(handler) as server:
            self.handler = handler
            self.url = str(server.url).rstrip("/")
            if self.tls is None:
                ready.set()
                await self._stopped.wait()
                return
            import ssl

            cert, key = self_signed(self.tls)
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(cert, key)
            server_cls = type("TlsServer", (_TlsServer,), {"ssl_context": context})
            async with kmock.Server(handler, server_cls=server_cls) as secure:
                self.ca_file, self.https_port = cert, secure.port
                ready.set()
                await self._stopped.wait()

    def stop(self) -> None:
        if self._loop is not None and self._stopped is not None and self._thread is not None:
            if self._thread.is_alive():
                self.drop_watches()      # open watch streams would hold the server's shutdown
                time.sleep(0.1)
            self._loop.call_soon_threadsafe(self._stopped.set)
            self._thread.join(10)

    def __enter__(self) -> "EmulatedCluster":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # -- controls, thread-safe ------------------------------------------------------------------
    def call(self, fn, *args: Any) -> Any:
        """Run fn(*args) in the emulator's loop thread and return its result."""
        assert self._loop is not None
        async def run():
            return fn(*args)
        return asyncio.run_coroutine_threadsafe(run(), self._loop).result(30)

    def expire_watches(self, count: int = 1) -> None:
        def set_(n: int) -> None:
            assert self.handler is not None
            self.handler.expire += n
        self.call(set_, count)

    def drop_watches(self) -> None:
        def bump() -> None:
            assert self.handler is not None
            self.handler.watch_generation += 1
        self.call(bump)

    def set_pod_log(self, pod: str, text: str) -> None:
        self.call(lambda: self.handler.pod_logs.__setitem__(pod, text))  # type: ignore[union-attr]

    def watch_params(self) -> list[dict[str, str]]:
        return self.call(lambda: list(self.handler.watch_params))  # type: ignore[union-attr]

    def requests(self, action: str | None = None, plural: str | None = None) -> list[tuple[str, str, str]]:
        """(action, plural, path) of every request served so far, optionally filtered."""
        def collect() -> list[tuple[str, str, str]]:
            assert self.handler is not None
            return [(act, res, path) for act, res, path in self.handler.log
                    if (action is None or act == action) and (plural is None or res == plural)]
        return self.call(collect)

    def audit(self, token: str | None = None) -> list[dict[str, str]]:
        """Every request as the authorizer saw it (api_request + "token", "denied" when refused), in order."""
        return self.call(lambda: [dict(a) for a in self.handler.audit  # type: ignore[union-attr]
                                  if token is None or a["token"] == token])

    def set_authorizer(self, authorize: Callable[[str, dict[str, str]], bool] | None) -> None:
        """Refuse (403) each request `authorize(token, request)` says no to; None allows everything."""
        self.call(lambda: setattr(self.handler, "authorize", authorize))

    def objects(self, plural: str) -> list[dict[str, Any]]:
        """Every live object of a resource ("jobs", "pods", "configmaps"), as JSON."""
        def collect() -> list[dict[str, Any]]:
            assert self.handler is not None
            return [json.loads(json.dumps(obj.raw)) for (res, _, _), obj in self.handler.objects.items()
                    if res.plural == plural and not obj.deleted]
        return self.call(collect)

    def write_kubeconfig(self, path: str | Path, namespace: str = "default", context: str = "emulator",
                         token: str = "emulator") -> Path:
        path = Path(path)
        doc = {
            "apiVersion": "v1", "kind": "Config", "current-context": context,
            "clusters": [{"name": context, "cluster": {"server": self.url}}],
            "users": [{"name": context, "user": {"token": token}}],
            "contexts": [{"name": context, "context": {"cluster": context, "user": context, "namespace": namespace}}],
        }
        path.write_text(json.dumps(doc, indent=2))   # JSON is YAML: kubeconfig loaders read it
        return path


# -- playing the cluster's part: what the Job controller and kubelet would write ------------------
def api_client(kubeconfig: str | Path, context: str = "emulator"):
    """An official-client ApiClient for the kubeconfig written by `EmulatedCluster.write_kubeconfig`."""
    from kubernetes import client, config

    cfg = client.Configuration()
    config.load_kube_config(config_file=str(kubeconfig), context=context, client_configuration=cfg)
    return client.ApiClient(cfg)


def set_job_status(api, name: str, namespace: str, status: dict[str, Any]) -> None:
    """PATCH the Job's status subresource, as the Job controller does (watchers get MODIFIED)."""
    from kubernetes.client import BatchV1Api

    BatchV1Api(api).patch_namespaced_job_status(name, namespace, {"status": status}, _preload_content=False)


def condition(kind: str, reason: str = "", message: str = "") -> dict[str, str]:
    return {"type": kind, "status": "True", "reason": reason, "message": message,
            "lastTransitionTime": "2026-01-01T00:00:00Z"}


def add_pod(api, job: dict[str, Any], status: dict[str, Any], suffix: str = "x1") -> str:
    """Create the Job's pod with the template's labels (as the Job controller would) and a status."""
    from kubernetes.client import CoreV1Api

    meta = job["metadata"]
    labels = dict(job["spec"]["template"]["metadata"]["labels"])
    labels["batch.kubernetes.io/job-name"] = meta["name"]
    name = f"{meta['name']}-{suffix}"
    pod = {"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": name, "namespace": meta.get("namespace", "default"), "labels": labels,
                        "creationTimestamp": "2026-01-01T00:00:00Z"},
           "spec": job["spec"]["template"]["spec"], "status": status}
    CoreV1Api(api).create_namespaced_pod(pod["metadata"]["namespace"], pod, _preload_content=False)
    return name


def terminated(exit_code: int, reason: str = "Error") -> dict[str, Any]:
    """A pod status whose trial container ended."""
    return {"phase": "Failed" if exit_code else "Succeeded",
            "containerStatuses": [{"name": "trial", "ready": False, "restartCount": 0, "image": "x", "imageID": "",
                                   "state": {"terminated": {"exitCode": exit_code, "reason": reason}}}]}


def manifest_of(job: dict[str, Any], api=None) -> dict[str, Any]:  # noqa: ANN001 — an ApiClient
    """The trial manifest a Job carries: HPT_MANIFEST's JSON (env delivery) or, given `api`, the mounted
    ConfigMap's file that HPT_MANIFEST names (ConfigMap delivery), read as the kubelet would mount it."""
    pod = job["spec"]["template"]["spec"]
    env = pod["containers"][0]["env"]
    value = next(e["value"] for e in env if e["name"] == "HPT_MANIFEST")
    if value.lstrip().startswith("{") or api is None:
        return json.loads(value)
    from kubernetes.client import CoreV1Api

    mount = next(m for m in pod["containers"][0]["volumeMounts"] if value.startswith(m["mountPath"].rstrip("/") + "/"))
    volume = next(v for v in pod["volumes"] if v["name"] == mount["name"])
    configmap = json.loads(CoreV1Api(api).read_namespaced_config_map(
        volume["configMap"]["name"], job["metadata"]["namespace"], _preload_content=False).data)
    return json.loads(configmap["data"][value[len(mount["mountPath"].rstrip("/")) + 1:]])


def done_row(manifest: dict[str, Any], mse: float = 0.5) -> dict[str, Any]:
    """The row a successful trainer would leave (identity columns, status done, one metric)."""
    from hpt.schemas.row import PARAM_PREFIX, STATUS_DONE

    window = manifest["window"]
    row: dict[str, Any] = {
        "trial_id": manifest["id"], "experiment_id": manifest["experiment"], "config_id": manifest.get("config", ""),
        "architecture": manifest["architecture"], "repeat": manifest["repeat"], "seed": manifest["seed"],
        "train_start": window["train"][0], "train_end": window["train"][1],
        "valid_start": window["validation"][0], "valid_end": window["validation"][1],
        "mode": manifest["budget"]["mode"], "max_epochs": manifest["budget"]["epochs"],
        "fidelity": manifest["budget"].get("fidelity", ""),
        "status": STATUS_DONE, "reason": "", "mse": mse, "hpt_version": manifest["hpt_version"],
    }
    for name, value in manifest["params"].items():
        row[PARAM_PREFIX + name] = value
    return row


class FakeJobController:
    """Runs every new Job of the emulator to an end, in a thread: running → (row written) → Complete.

    `outcome(manifest) -> int` picks each trial's exit code (default 0). Exit 0 writes the trial's row
    into the results store named by the Job (like the real trainer), then marks the Job Complete;
    any other code adds a failed pod with that exit code and marks the Job Failed (BackoffLimitExceeded).
    """

    def __init__(self, kubeconfig: str | Path, namespace: str = "default", outcome=None, workers: int = 4,
                 experiment: str | None = None):
        self.kubeconfig = kubeconfig
        self.experiment = experiment      # only this plan's Jobs (the emulator ignores label selectors)
        self.namespace = namespace
        self.outcome = outcome or (lambda manifest: 0)
        self.workers = workers
        self.finished = 0
        self._stop = threading.Event()
        self._seen: set[tuple[str, str]] = set()   # (name, uid): a Job deleted and created again is a new Job
        self._queue: "queue.Queue[dict[str, Any] | None]" = queue.Queue()
        self._threads: list[threading.Thread] = []

    def start(self) -> "FakeJobController":
        self._threads = [threading.Thread(target=self._watch, daemon=True, name="fake-job-controller")]
        self._threads += [threading.Thread(target=self._work, daemon=True, name=f"fake-kubelet-{i}") for i in range(self.workers)]
        for t in self._threads:
            t.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        for _ in range(self.workers):
            self._queue.put(None)

    def _watch(self) -> None:
        from kubernetes.client import BatchV1Api
        from kubernetes.watch.watch import iter_resp_lines

        api = BatchV1Api(api_client(self.kubeconfig))
        while not self._stop.is_set():
            try:
                resp = api.list_namespaced_job(self.namespace, watch=True, _preload_content=False, _request_timeout=(5, 2))
                for line in iter_resp_lines(resp):
                    if self._stop.is_set():
                        return
                    event = json.loads(line)
                    job = event.get("object") or {}
                    name = (job.get("metadata") or {}).get("name")
                    labels = (job.get("metadata") or {}).get("labels") or {}
                    if self.experiment and labels.get("hpt.dev/experiment") != self.experiment:
                        continue
                    key = (name, (job.get("metadata") or {}).get("uid", ""))
                    if event.get("type") == "ADDED" and key not in self._seen and not job.get("status"):
                        self._seen.add(key)
                        self._queue.put(job)
            except Exception:
                continue   # read timeout on a quiet stream: watch again

    def _work(self) -> None:
        from hpt.store import open_store, row_key
        from hpt.schemas.row import row_csv

        api = api_client(self.kubeconfig)
        while True:
            job = self._queue.get()
            if job is None:
                return
            name = job["metadata"]["name"]
            try:
                manifest = manifest_of(job, api)
                set_job_status(api, name, self.namespace, {"active": 1, "ready": 1})
                code = int(self.outcome(manifest))
                if code == 0:
                    results = job["metadata"]["annotations"]["hpt.dev/results"]
                    open_store(results).put_once(row_key(manifest["id"]), row_csv(done_row(manifest)).encode())
                    set_job_status(api, name, self.namespace, {"active": 0, "ready": 0, "succeeded": 1,
                                                               "conditions": [condition("Complete")]})
                else:
                    add_pod(api, job, terminated(code))
                    set_job_status(api, name, self.namespace, {"active": 0, "ready": 0, "failed": 1,
                                                               "conditions": [condition("Failed", "BackoffLimitExceeded",
                                                                                        "Job has reached the specified backoff limit")]})
                self.finished += 1
            except Exception as err:  # keep serving other Jobs; a test will see this Job never end
                print(f"fake job controller: {name}: {err!r}")
