"""The watch on a plan's Jobs (an informer): one list, then a watch resumed from the last resourceVersion.

`JobWatch` runs in a daemon thread and keeps a small cache of every Job's state (`JobState`); the backend's
`poll` reads that cache and never calls the API. After a disconnect the watch resumes from the last
resourceVersion it saw; on 410 Gone (too old) it lists again and continues from the list's version.
Label selectors are also checked client-side (some API emulators ignore them).
"""
from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from hpt.executor.backends.kubernetes import render as k8s

log = logging.getLogger("hpt.k8s")


@dataclass
class JobState:
    """What the watch keeps of one Job: enough to decide the trial's phase, no more."""
    name: str
    trial_id: str
    attempt: int
    uid: str = ""
    results: str = ""
    active: int = 0
    ready: int = 0
    succeeded: int = 0
    failed: int = 0
    conditions: dict[str, tuple[str, str]] = field(default_factory=dict)  # type → (reason, message) for status True
    deadline_s: int | None = None
    memory: str = ""
    deleted: bool = False
    seen: float = 0.0          # time.monotonic() of the last update

    @property
    def complete(self) -> bool:
        return "Complete" in self.conditions or "SuccessCriteriaMet" in self.conditions

    @property
    def failed_condition(self) -> tuple[str, str] | None:
        return self.conditions.get("Failed") or self.conditions.get("FailureTarget")

    @property
    def finished(self) -> bool:
        return self.complete or self.failed_condition is not None


def labels_match(labels: Mapping[str, str] | None, required: Mapping[str, str]) -> bool:
    labels = labels or {}
    return all(labels.get(k) == v for k, v in required.items())


def job_state(obj: Mapping[str, Any]) -> JobState:
    meta = obj.get("metadata") or {}
    labels = meta.get("labels") or {}
    status = obj.get("status") or {}
    spec = obj.get("spec") or {}
    conditions = {c.get("type", ""): (c.get("reason") or "", c.get("message") or "")
                  for c in status.get("conditions") or [] if str(c.get("status")) == "True"}
    try:
        container = spec["template"]["spec"]["containers"][0]
        memory = container.get("resources", {}).get("limits", {}).get("memory", "")
    except (KeyError, IndexError, TypeError):
        memory = ""
    try:
        attempt = int(labels.get(k8s.ATTEMPT_LABEL, "1"))
    except ValueError:
        attempt = 1
    return JobState(
        name=meta.get("name", ""), trial_id=(meta.get("annotations") or {}).get("hpt.dev/trial-id") or labels.get(k8s.TRIAL_LABEL, ""),
        attempt=attempt, uid=meta.get("uid") or "", results=(meta.get("annotations") or {}).get(k8s.RESULTS_ANNOTATION, ""),
        active=int(status.get("active") or 0), ready=int(status.get("ready") or 0),
        succeeded=int(status.get("succeeded") or 0), failed=int(status.get("failed") or 0),
        conditions=conditions, deadline_s=spec.get("activeDeadlineSeconds"), memory=memory, seen=time.monotonic())


class JobWatch:
    """One watch on a plan's Jobs, in a daemon thread; `get(name)` reads its cache."""

    def __init__(self, api_factory: Callable[[], Any], namespace: str, selector: str, required: Mapping[str, str],
                 read_timeout_s: float = 60.0, server_timeout_s: int = 300):
        self._api_factory = api_factory
        self.namespace = namespace
        self.selector = selector
        self.required = dict(required)
        self.read_timeout_s = read_timeout_s
        self.server_timeout_s = server_timeout_s
        self.cache: dict[str, JobState] = {}
        self.gone_uids: set[str] = set()    # Jobs replaced by a new one of the same name: ignore their events
        self.lock = threading.Lock()
        self.resource_version: str | None = None
        self.lists = 0               # how many times it listed (first sync + every 410)
        self.watches = 0             # how many watch requests it made
        self.synced = threading.Event()
        self.failing_since: float | None = None
        self.last_error = ""
        self._stop = threading.Event()
        self._resp = None
        self._thread = threading.Thread(target=self._run, name="hpt-k8s-watch", daemon=True)

    def start(self) -> "JobWatch":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        resp = self._resp
        if resp is not None:
            import socket

            try:   # unblock the thread's read: shut the socket down under it (as kubernetes.watch does)
                sock = getattr(getattr(resp, "connection", None), "sock", None)
                if sock is not None:
                    sock.shutdown(socket.SHUT_RDWR)
            except Exception:
                pass
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(2)

    def get(self, name: str) -> JobState | None:
        with self.lock:
            return self.cache.get(name)

    def put(self, state: JobState) -> None:
        """Record what a create/read returned, so poll sees the Job before its first watch event."""
        with self.lock:
            old = self.cache.get(state.name)
            if old is None or not old.finished or state.finished or (state.uid and old.uid != state.uid):
                self.cache[state.name] = state

    def replaced(self, uid: str) -> None:
        """The Job with this uid was deleted to make way for a new one of the same name."""
        if uid:
            with self.lock:
                self.gone_uids.add(uid)

    def forget(self, name: str) -> None:
        with self.lock:
            self.cache.pop(name, None)

    def states(self) -> list[JobState]:
        with self.lock:
            return list(self.cache.values())

    # -- the thread ---------------------------------------------------------------------------
    def _run(self) -> None:
        from kubernetes.client import BatchV1Api
        from kubernetes.client.exceptions import ApiException

        api = BatchV1Api(self._api_factory())
        delay = 0.2
        while not self._stop.is_set():
            try:
                if self.resource_version is None:
                    self._list(api)
                self._watch(api)
                delay = 0.2
                self.failing_since = None
            except ApiException as err:
                if err.status == 410:      # our resourceVersion is too old: list again
                    log.info("watch expired (410 Gone); listing the plan's Jobs again")
                    self.resource_version = None
                    continue
                self._failed(err, f"HTTP {err.status} {err.reason}")
            except Exception as err:        # disconnects, timeouts, refused connections
                if self._stop.is_set():
                    break
                self._failed(err, f"{type(err).__name__}: {err}")
            if self._stop.wait(delay):
                break
            delay = min(delay * 2, 5.0)

    def _failed(self, err: Exception, text: str) -> None:
        if self.failing_since is None:
            self.failing_since = time.monotonic()
        self.last_error = text
        log.debug("Job watch interrupted (%s); resuming from resourceVersion %s", text, self.resource_version)

    def _list(self, api) -> None:
        started = time.monotonic()
        resp = api.list_namespaced_job(self.namespace, label_selector=self.selector, _preload_content=False,
                                       _request_timeout=(10, 120))
        doc = json.loads(resp.data)
        self.lists += 1
        fresh = {}
        for item in doc.get("items") or []:
            if labels_match((item.get("metadata") or {}).get("labels"), self.required):
                state = job_state(item)
                fresh[state.name] = state
        with self.lock:
            for name, old in self.cache.items():
                # Gone while we were not watching (but not created after the list began).
                if name not in fresh and not old.deleted and old.seen < started:
                    old.deleted = True
            self.cache.update(fresh)
        self.resource_version = (doc.get("metadata") or {}).get("resourceVersion") or None
        self.synced.set()

    def _watch(self, api) -> None:
        from kubernetes.client.exceptions import ApiException

        kwargs: dict[str, Any] = dict(label_selector=self.selector, watch=True, allow_watch_bookmarks=True,
                                      timeout_seconds=self.server_timeout_s, _preload_content=False,
                                      _request_timeout=(10, self.read_timeout_s))
        if self.resource_version:
            kwargs["resource_version"] = self.resource_version
        from urllib3.exceptions import ProtocolError, ReadTimeoutError

        self.watches += 1
        resp = api.list_namespaced_job(self.namespace, **kwargs)
        self._resp = resp
        self.failing_since = None   # the API server answered
        if self._stop.is_set():     # stop() ran before _resp was set: it could not shut this one down
            resp.release_conn()
            return
        try:
            for line in _lines(resp):
                if self._stop.is_set():
                    return
                if not line or not line.strip():
                    continue
                event = json.loads(line)
                kind, obj = event.get("type"), event.get("object") or {}
                if kind == "ERROR":
                    raise ApiException(status=int(obj.get("code") or 500), reason=f"{obj.get('reason')}: {obj.get('message')}")
                meta = obj.get("metadata") or {}
                rv = meta.get("resourceVersion")
                if kind != "BOOKMARK" and labels_match(meta.get("labels"), self.required) and meta.get("uid") not in self.gone_uids:
                    state = job_state(obj)
                    with self.lock:
                        if kind == "DELETED":
                            old = self.cache.get(state.name)
                            if old is not None and old.uid and state.uid and old.uid != state.uid:
                                continue   # an older Job of that name
                            state = old if old is not None else state
                            state.deleted = True
                        self.cache[state.name] = state
                if rv:
                    self.resource_version = rv
                self.failing_since = None
        except (ReadTimeoutError, ProtocolError):
            return   # a quiet or dropped stream: watch again from the last resourceVersion
        finally:
            self._resp = None
            try:
                resp.release_conn()
            except Exception:
                pass


def _lines(resp):
    from kubernetes.watch.watch import iter_resp_lines

    return iter_resp_lines(resp)
