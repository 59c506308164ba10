"""Warm starts (`warm=True`, `hpt apply --backend docker --warm`): instead of a container per trial, one
long-lived slot container per concurrent trial, created from the trial's own spec (RunSpec.for_slot: the
same image, limits, GPUs, user, mounts, env and labels, less the trial's manifest), running the warm worker
(hpt.trainer.warm --folder) that imported torch once and forks each trial, one at a time. Requests, pids,
logs and exit codes travel through the slot's folder (executor/backends/docker/folder.py), so a `kill -9`
of the apply loses nothing: the next apply adopts the slot and its trials (label hpt.slot) and reuses it.
A slot serves only trials of its own kind (RunSpec.slot_key); an idle one of another kind makes room.
The docker backend delegates its warm trials to WarmSlots, which shares the backend's client and GPU pool.
"""
from __future__ import annotations

import json
import os
import secrets
import signal
import time
from fractions import Fraction
from pathlib import Path
from typing import Any, Callable, Sequence

from hpt.executor.backend import Phase, Submission, TrialStatus
from hpt.executor.backends.docker.daemon import build_hint, short
from hpt.executor.backends.docker.folder import Slot
from hpt.executor.backends.docker.handle import DockerHandle, could_not_start
from hpt.executor.backends.docker.runspec import (TRIAL_ENV, LABEL_GPU_SHARE, LABEL_GPUS, LABEL_SLOT, LABEL_SLOT_KEY,
                                                  LABEL_SLOT_MEMORY, LABEL_STORE, RunSpec)
from hpt.executor.gpu_slots import GpuSlots
from hpt.executor.shell import shell_quote
from hpt.schemas.warm import CANCEL_GRACE_S, IDLE_EXIT_S, REQUEST

TRIAL_COMMAND = ["hpt-trial"]       # what a slot's worker runs per request (the image's entrypoint)
HEARTBEAT_S = 5.0                   # how often a watching apply touches its slots' heartbeat files


class WarmSlots:
    """The slot containers one apply runs trials in: starting, reusing, adopting and removing them, and
    each warm trial's status, cancel and log through its slot's folder."""

    def __init__(self, client: Callable[[], Any], gpus: Callable[[], GpuSlots], state_dir: Path):
        self._client = client                    # the backend's docker client (connected on first use)
        self._gpus = gpus                        # the backend's GPU pool, shared with its per-trial containers
        self.state_dir = state_dir
        self._in_use: dict[str, Slot] = {}       # container id → the slots this apply runs trials in
        self._beat_at = 0.0

    def base(self, experiment_id: str, store: str) -> Path:
        """Where the slots of an experiment and store (hpt.store.store_id) keep their folders."""
        return self.state_dir / experiment_id / store

    def place(self, handle: DockerHandle) -> bool:
        """Put the trial's request into an idle slot of its kind, starting one if none is free; False
        while it waits (for GPUs). One trial at a time per slot: the container's limits are the trial's."""
        spec = handle.spec
        assert spec is not None
        if handle.cancelled:
            return False
        key = spec.slot_key()
        slot = next((s for s in list(self._in_use.values())
                     if s.key == key and s.reusable and not s.open_trials() and self._alive(s)), None)
        if slot is None:
            for other in [s for s in self._in_use.values() if s.key != key and not s.open_trials()]:
                self._remove(other)  # idle, of another kind: its room (and GPUs) goes to the new slot
            slot = self._start(handle)
            if slot is None:
                return handle.failure is not None
        env = {k: spec.environment[k] for k in TRIAL_ENV if k in spec.environment}
        try:
            slot.request(handle.trial_id, handle.attempt, env, TRIAL_COMMAND)
        except OSError as err:
            handle.failure = could_not_start(f"cannot write the request into {slot.folder}: {err.strerror}")
            return True
        handle.slot, handle.name, handle.container_id = slot, slot.name, slot.container_id
        return True

    def _alive(self, slot: Slot) -> bool:
        import docker.errors

        try:
            status = (self._client().api.inspect_container(slot.container_id).get("State") or {}).get("Status")
        except docker.errors.APIError:
            status = None
        if status == "running":
            return True
        self._remove(slot)
        return False

    def _start(self, handle: DockerHandle) -> Slot | None:
        """A new slot container for trials like this one; None if it waits for GPUs or failed (handle.failure)."""
        spec = handle.spec
        assert spec is not None
        gpus = self._gpus().take(Fraction(spec.resources.gpu_share)) if spec.resources.gpus else ()
        if gpus is None:
            return None
        token = secrets.token_hex(4)
        folder = self.base(handle.experiment_id, spec.labels[LABEL_STORE]) / f"w{token}"
        slot_spec = spec.for_slot(f"hpt-{handle.experiment_id}-{spec.labels[LABEL_STORE]}-w{token}", str(folder))
        slot = Slot(slot_spec.name, "", folder, slot_spec.labels[LABEL_SLOT_KEY], gpus, min(spec.resources.gpu_share, Fraction(1)),
                    spec.resources.memory)
        try:  # as the caller (docker would create missing folders as root); the container's user writes here
            for src, _, mode in slot_spec.binds:
                if mode == "rw":
                    os.makedirs(src, exist_ok=True)
            _give_to(folder, slot_spec.user)
            slot.beat()
        except OSError as err:
            self._gpus().give_back(gpus, slot.share)
            handle.failure = could_not_start(f"cannot create {err.filename}: {err.strerror}")
            return None
        kwargs = slot_spec.create_kwargs(gpus)
        if gpus:
            kwargs["labels"] = {**slot_spec.labels, LABEL_GPUS: ",".join(gpus)}
        client = self._client()
        import docker.errors

        container = None
        try:
            container = client.containers.create(**kwargs)
            container.start()
        except docker.errors.APIError as err:
            if container is not None:
                try:
                    container.remove(force=True)
                except docker.errors.APIError:
                    pass
            self._gpus().give_back(gpus, slot.share)
            slot.remove_folder()
            message = f"image {spec.image!r} not found ({build_hint(spec.image)})" if isinstance(err, docker.errors.ImageNotFound) \
                else short(err)
            if spec.resources.gpus and not isinstance(err, docker.errors.ImageNotFound):
                message += ("; this Docker host cannot give containers GPUs (install the NVIDIA Container "
                            "Toolkit there, or set resources.gpus to 0)")
            handle.failure = could_not_start(message)
            return None
        slot.container_id = container.id
        self._in_use[container.id] = slot
        return slot

    def _remove(self, slot: Slot) -> None:
        """Stop and remove a slot container, give back its GPUs; its folder goes once no trial is left in it."""
        import docker.errors

        self._in_use.pop(slot.container_id, None)
        self._gpus().give_back(slot.gpus, slot.share)
        slot.gpus = ()
        try:
            self._client().api.remove_container(slot.container_id, force=True)
        except docker.errors.APIError:
            pass
        if not slot.trials():
            slot.remove_folder()

    def adopt(self, containers: list, base: Path, experiment_id: str, found: dict[str, DockerHandle]) -> None:
        """Slot containers an earlier apply left: a running one is this apply's too (its trials are adopted,
        and it is reused once idle); a dead one's finished trials are handed over for their logs and rows,
        and its unfinished ones are dropped (nothing runs them: the loop starts them again). Folders of
        slots whose container is gone are read the same way."""
        import docker.errors

        seen: set[Path] = set()
        for container in containers:
            labels = container.labels or {}
            folder = Path(labels[LABEL_SLOT])
            seen.add(folder)
            gpus = tuple(g for g in labels.get(LABEL_GPUS, "").split(",") if g)
            slot = Slot(container.name, container.id, folder, labels.get(LABEL_SLOT_KEY, ""), gpus,
                        Fraction(labels.get(LABEL_GPU_SHARE, "1")), labels.get(LABEL_SLOT_MEMORY, ""))
            alive = container.status in ("running", "restarting", "paused")
            if alive and container.id in self._in_use:  # this apply's own (an adaptive plan's next round)
                slot = self._in_use[container.id]
            elif alive:
                # Idle and unwatched for long, its worker may be exiting right now: adopt, never reuse it.
                slot.reusable = bool(slot.open_trials()) or slot.heartbeat_age() < IDLE_EXIT_S / 2
                slot.beat()
                self._gpus().hold(gpus, slot.share)
                self._in_use[container.id] = slot
            self._adopt_trials(slot, alive, experiment_id, found)
            if not alive:
                slot.gpus = ()
                try:
                    container.remove(force=True)
                except docker.errors.APIError:
                    pass
                if not slot.trials():
                    slot.remove_folder()
        for folder in sorted(base.glob("w*")) if base.is_dir() else []:
            if folder not in seen and folder.is_dir():
                orphan = Slot(folder.name, "", folder, "")
                self._adopt_trials(orphan, False, experiment_id, found)
                if not orphan.trials():
                    orphan.remove_folder()

    @staticmethod
    def _adopt_trials(slot: Slot, alive: bool, experiment_id: str, found: dict[str, DockerHandle]) -> None:
        for tid in slot.trials():
            if tid in found:
                continue
            if not alive and slot.exit(tid) is None:
                slot.forget(tid)  # its container is gone and it never ended: nothing runs it
                continue
            found[tid] = DockerHandle(tid, experiment_id, slot.name, slot.attempt(tid), None, slot.container_id or None,
                                      adopted=True, memory=slot.memory, slot=slot, warm=True)

    def _heartbeat(self) -> None:
        now = time.monotonic()
        if now - self._beat_at >= HEARTBEAT_S:
            self._beat_at = now
            for slot in self._in_use.values():
                slot.beat()

    def poll(self, handle: DockerHandle) -> TrialStatus:
        if handle.slot is None:
            if handle.cancelled:
                return TrialStatus(Phase.FAILED, reason="cancelled before it started")
            self.place(handle)
            if handle.failure is not None:
                return handle.failure
            if handle.slot is None:
                return TrialStatus(Phase.PENDING)
        self._heartbeat()
        slot = handle.slot
        ended = slot.exit(handle.trial_id)
        if ended is not None:
            return trial_status(handle, ended)
        if handle.cancelled and not slot.asked(handle.trial_id):
            return TrialStatus(Phase.FAILED, reason="cancelled before it started")
        import docker.errors

        try:
            attrs = self._client().api.inspect_container(slot.container_id) if slot.container_id else {}
        except docker.errors.NotFound:
            attrs = {}
        except docker.errors.APIError as err:
            return TrialStatus(Phase.RUNNING, reason=f"docker: {short(err)}", transient=True)
        state = attrs.get("State") or {}
        if state.get("Status") in ("running", "restarting", "paused"):
            return TrialStatus(Phase.RUNNING if slot.started(handle.trial_id) else Phase.PENDING)
        ended = slot.exit(handle.trial_id)  # it may have ended just before its container did
        if ended is not None:
            return trial_status(handle, ended)
        if slot.container_id in self._in_use:
            self._remove(slot)
        if state.get("OOMKilled"):
            limit = f" (memory limit {handle.memory})" if handle.memory else ""
            return TrialStatus(Phase.FAILED, reason=f"OOM-killed{limit} (the warm slot container)", exit_code=137)
        if handle.cancelled:
            return TrialStatus(Phase.FAILED, reason="cancelled (slot container stopped)")
        gone = f"exited with code {state.get('ExitCode')}" if state else "was removed from outside"
        return TrialStatus(Phase.FAILED, reason=f"the warm slot container {gone} before the trial ended", transient=True)

    def cancel(self, handle: DockerHandle) -> None:
        slot = handle.slot
        if slot is None:
            return
        try:
            slot.cancel(handle.trial_id)
        except OSError:
            pass
        deadline = time.monotonic() + CANCEL_GRACE_S + 5
        while time.monotonic() < deadline and slot.exit(handle.trial_id) is None:
            if not slot.started(handle.trial_id) and slot.withdraw(handle.trial_id):
                return  # still queued behind another trial: it never runs
            time.sleep(0.05)
        if slot.exit(handle.trial_id) is None and slot.container_id in self._in_use:
            self._remove(slot)  # the worker does not answer: the container goes, and the trial with it

    def log(self, handle: DockerHandle) -> str:
        return handle.slot.log(handle.trial_id) if handle.slot is not None else ""

    def release(self, handle: DockerHandle) -> None:
        """The slot stays for the next trial; the trial's files go (and the folder, once its container has)."""
        slot = handle.slot
        if slot is not None:
            slot.forget(handle.trial_id)
            if slot.container_id not in self._in_use and not slot.trials():
                slot.remove_folder()

    def close(self) -> None:
        """The apply is over: idle slot containers go (a busy one, left running by an interrupted apply,
        ends by itself once its trial has and nobody watches)."""
        for slot in list(self._in_use.values()):
            if not slot.open_trials():
                self._remove(slot)

    def dry_run(self, specs: Sequence[tuple[Submission, RunSpec]]) -> list[str]:
        """The `docker run` line of each kind of slot container, then each trial's request as the shell line
        that writes it into the slot's folder."""
        lines: list[str] = []
        folders: dict[str, str] = {}
        for sub, spec in specs:
            key = spec.slot_key()
            if key not in folders:
                slot = f"w{len(folders) + 1}"
                folders[key] = str(self.base(sub.experiment_id, spec.labels[LABEL_STORE]) / slot)
                name = f"hpt-{sub.experiment_id}-{spec.labels[LABEL_STORE]}-{slot}"
                lines.append(f"mkdir -p {shell_quote(folders[key])} && {spec.for_slot(name, folders[key]).command_line()}")
            request = {"trial_id": sub.trial_id, "attempt": sub.attempt, "command": TRIAL_COMMAND, "args": [],
                       "env": {"HPT_MANIFEST": spec.environment["HPT_MANIFEST"]}}
            path = f"{folders[key]}/{sub.trial_id}{REQUEST}"
            lines.append(f"printf '%s\\n' {shell_quote(json.dumps(request))} > {shell_quote(path)}")
        return lines


def trial_status(handle: DockerHandle, ended: dict[str, Any]) -> TrialStatus:
    """How a slot's worker reported a trial's end (its exit file), as the row says it."""
    code = int(ended["code"])
    if code == 0:
        return TrialStatus(Phase.SUCCEEDED, exit_code=0)
    if handle.cancelled:
        return TrialStatus(Phase.FAILED, reason="cancelled (trial stopped)", exit_code=code)
    if code > 0:
        return TrialStatus(Phase.FAILED, reason=f"exit code {code}", exit_code=code)
    number = -code
    name = signal.Signals(number).name if number in signal.valid_signals() else str(number)
    limit = f" (memory limit {handle.memory})" if handle.memory else ""
    if number == signal.SIGKILL and ended.get("oom_killed"):
        return TrialStatus(Phase.FAILED, reason=f"OOM-killed{limit}", exit_code=128 + number)
    if number == signal.SIGKILL and ended.get("oom_killed") is None:  # the container could not tell
        return TrialStatus(Phase.FAILED, reason=f"killed (SIGKILL), maybe out of memory{limit}",
                           exit_code=128 + number, transient=True)
    return TrialStatus(Phase.FAILED, reason=f"killed ({name}, exit code {128 + number})", exit_code=128 + number,
                       transient=True)


def _give_to(folder: Path, user: str | None) -> None:
    """A slot folder made by root for a container running as another uid (HPT_DOCKER_USER): theirs to write."""
    if user and hasattr(os, "getuid") and os.getuid() == 0:
        uid, _, gid = user.partition(":")
        if uid.isdigit() and int(uid) != 0:
            os.chown(folder, int(uid), int(gid) if gid.isdigit() else -1)
