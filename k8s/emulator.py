"""A Kubernetes API emulator for tests and benchmarks (needs the test extra: kmock, pytest-asyncio).

No cluster can run where hpt is tested, so the official `kubernetes` client talks HTTP to kmock's
in-process KubernetesEmulator, served on 127.0.0.1 from a background thread, through a kubeconfig
that points at it. Nothing in hpt's runtime imports this module.

kmock keeps objects as plain JSON and ignores label selectors; this subclass adds what the k8s
backend's tests need to see and nothing more:
- a monotonic `metadata.resourceVersion` on every create/patch, so a resumed watch can be checked;
- `expire_watches(n)`: the next n watches answer with an ERROR event of code 410 (Gone), as an
  API server does when the watch's resourceVersion is too old;
- `drop_watches()`: close every open watch stream (a network disconnect);
- pod logs (`pods/<name>/log`) served from `pod_logs[name]`.

    cluster = EmulatedCluster().start()
    kubeconfig = cluster.write_kubeconfig(tmp_path / "kubeconfig")   # context "emulator"
    ...
    cluster.stop()
"""
from __future__ import annotations

import asyncio
import json
import threading
from pathlib import Path
from typing import Any

import aiohttp.web
import kmock
from kmock._internal import enums

RESOURCES = {"batch/v1/jobs": "Job", "v1/pods": "Pod", "v1/configmaps": "ConfigMap", "v1/namespaces": "Namespace"}


class _Emulator(kmock.KubernetesEmulator):
    """kmock's emulator plus resourceVersions, 410 Gone on demand, dropped watches and pod logs."""

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        self.rv = 0                          # the last resourceVersion handed out
        self.expire = 0                      # how many next watches answer 410 Gone
        self.watch_generation = 0            # bumped by drop_watches(): open streams end
        self.pod_logs: dict[str, str] = {}
        self.watch_params: list[dict[str, str]] = []   # query of every watch request, in order
        for plural, kind in RESOURCES.items():
            self.resources[plural] = kmock.ResourceInfo(kind=kind, namespaced=kind != "Namespace",
                                                        verbs={"list", "watch", "get", "create", "patch", "delete"})

    async def _handle(self, request):  # type: ignore[override]
        if request.subresource == "log" and request.action == enums.action.FETCH:
            text = self.pod_logs.get(request.name or "")
            if text is None:
                return await self._render_error(kmock.KubernetesObjectNotFoundError())
            return aiohttp.web.Response(text=text, content_type="text/plain")
        if request.action in (enums.action.CREATE, enums.action.UPDATE) and isinstance(request.data, dict):
            self.rv += 1
            request.data.setdefault("metadata", {})["resourceVersion"] = str(self.rv)
        return await super()._handle(request)

    async def _serve_list(self, request):  # type: ignore[override]
        listing = await super()._serve_list(request)
        listing["metadata"] = {"resourceVersion": str(self.rv)}   # kmock says "..."; a list carries the current one
        return listing

    async def _serve_watch(self, request):  # type: ignore[override]
        self.watch_params.append(dict(request.params or {}))
        if self.expire > 0:
            self.expire -= 1
            yield b""
            yield {"type": "ERROR", "object": {"apiVersion": "v1", "kind": "Status", "status": "Failure",
                                                "code": 410, "reason": "Expired",
                                                "message": "too old resource version"}}
            return
        generation = self.watch_generation
        stream = super()._serve_watch(request).__aiter__()
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
                    await stream.aclose()
                    return
            try:
                event = step.result()
            except StopAsyncIteration:
                return
            yield event


class EmulatedCluster:
    """The emulator on a free localhost port, in its own thread and event loop."""

    def __init__(self) -> None:
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
            try:
                loop.run_until_complete(self._serve(ready))
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
            ready.set()
            await self._stopped.wait()

    def stop(self) -> None:
        if self._loop is not None and self._stopped is not None and self._thread is not None:
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
            out = []
            for req in self.handler._requests:
                act = req.action.value if req.action is not None else ""
                res = req.resource.plural if req.resource is not None else ""
                if (action is None or act == action) and (plural is None or res == plural):
                    out.append((act, res or "", str(req.url.path)))
            return out
        return self.call(collect)

    def objects(self, plural: str) -> list[dict[str, Any]]:
        """Every live object of a resource ("jobs", "pods", "configmaps"), as JSON."""
        def collect() -> list[dict[str, Any]]:
            assert self.handler is not None
            return [json.loads(json.dumps(obj.raw)) for (res, _, _), obj in self.handler.objects.items()
                    if res.plural == plural and not obj.deleted]
        return self.call(collect)

    def write_kubeconfig(self, path: str | Path, namespace: str = "default", context: str = "emulator") -> Path:
        path = Path(path)
        doc = {
            "apiVersion": "v1", "kind": "Config", "current-context": context,
            "clusters": [{"name": context, "cluster": {"server": self.url}}],
            "users": [{"name": context, "user": {"token": "emulator"}}],
            "contexts": [{"name": context, "context": {"cluster": context, "user": context, "namespace": namespace}}],
        }
        path.write_text(json.dumps(doc, indent=2))   # JSON is YAML: kubeconfig loaders read it
        return path
