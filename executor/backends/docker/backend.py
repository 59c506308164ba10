"""The Docker backend: each trial runs `hpt-trial` in its own container on a local Docker host.

What a container gets, and as which user, is decided by one pure function for both `submit` and `--dry-run`
(hpt.executor.backends.docker.runspec.trial_spec). Warm trials run in long-lived slot containers instead
(hpt.executor.backends.docker.slots, to which this backend delegates them): by default (`warm=None`) those of
hpt's own trainer on no GPU (hpt.executor.warm.fresh_reason), with `warm=True` every trial, `False` none.

Failures the trainer cannot record itself come back as TrialStatus reasons, which the executor
loop writes into the trial's row: "exit code N", "OOM-killed (memory limit 64Mi)", "killed (SIGKILL)",
"could not start: <docker's error>" (exit code 125, like `docker run`). A container that could not
start is removed at once, so a GPU request on a host without GPUs leaves nothing behind.
"""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, Sequence

from hpt.executor.backend import Backend, Phase, Submission, TrialStatus
from hpt.executor.backends.docker.daemon import build_hint, connect, short
from hpt.executor.backends.docker.handle import DockerHandle, could_not_start
from hpt.executor.backends.docker.runspec import (LABEL_ATTEMPT, LABEL_EXPERIMENT, LABEL_GPU_SHARE, LABEL_GPUS,
                                                  LABEL_RESULTS, LABEL_SLOT, LABEL_STORE, LABEL_TRIAL, RunSpec,
                                                  container_user, gpu_pool, trial_spec)
from hpt.executor.backends.docker.slots import WarmSlots
from hpt.executor.gpu_slots import GpuSlots
from hpt.executor.warm import fresh_note, fresh_reason, warm_choice
from hpt.schemas.errors import UserError
from hpt.schemas.resources import gpu_devices
from hpt.schemas.trainer import log_collected
from hpt.store import store_id
from hpt.store.cache import CACHE_ENV, PREP, cache_root

STOP_GRACE_S = 3                    # SIGTERM, then SIGKILL after this many seconds
LOG_TAIL_LINES = 20_000


@dataclass(frozen=True)
class DockerOptions:
    gpus_available: Sequence[str] | str | int | None = None  # GPU ids to hand out (default: $HPT_GPUS, else nvidia-smi -L)
    docker_client: Any = None                # a docker SDK client (default: from the environment, DOCKER_HOST)
    user: str | None = "auto"                # "auto" (runspec.py's module doc), "image"/None: the image's, or "UID:GID"
    pass_env: Sequence[str] | str | None = None   # environment variables passed into every container (never printed)
    pull: bool = False                       # pull a missing image instead of failing
    warm: bool | None = None                 # warm slot containers; None: where safe (docs/docker.md, "Warm starts")
    state_dir: str | Path | None = None      # --warm: the slots' folders; the apply command passes PLAN/.hpt/docker


class DockerBackend(Backend):
    name = "docker"
    Options = DockerOptions
    poll_interval = 0.25

    def __init__(self, options: DockerOptions = DockerOptions()):
        self._client_obj = options.docker_client
        self._gpu_option = options.gpus_available
        self._pool: list[str] | None = None
        self._slots: GpuSlots | None = None
        self.user_option = options.user       # $HPT_DOCKER_USER wins
        pass_env = options.pass_env
        if isinstance(pass_env, str):
            pass_env = [n for n in pass_env.split(",") if n]
        self.pass_env = tuple(pass_env or ())
        self.pull = options.pull
        self._needs: tuple[float, int, Fraction] = (1.0, 0, Fraction(0))   # max cpus, memory bytes, gpus per trial
        self.prep_cache = (cache_root() / PREP).resolve()    # the host's, shared with every container
        self.warm = options.warm
        base = options.state_dir or Path.home() / ".cache" / "hpt" / "docker"
        self.state_dir = Path(base).expanduser().resolve()
        self._warm_slots = WarmSlots(self._client, lambda: self.slots, self.state_dir)

    # --- the daemon ----------------------------------------------------------------------------------
    def _client(self):
        if self._client_obj is None:
            self._client_obj = connect()
        return self._client_obj

    @property
    def gpu_pool(self) -> list[str]:
        if self._pool is None:
            self._pool = gpu_pool(self._gpu_option)
        return self._pool

    @property
    def slots(self) -> GpuSlots:
        if self._slots is None:
            self._slots = GpuSlots(self.gpu_pool)
        return self._slots

    # --- what runs ----------------------------------------------------------------------------------
    def spec(self, sub: Submission) -> RunSpec:
        return trial_spec(sub, container_user(self.user_option), self.pass_env, self.prep_cache)

    # --- Backend protocol ----------------------------------------------------------------------------
    def preflight(self, submissions: Sequence[Submission]) -> None:
        if not submissions:
            return
        specs = [self.spec(s) for s in submissions]
        memory = max(s.resources.memory_bytes for s in specs)  # a bad memory quantity fails here, before anything runs
        pool = self.gpu_pool
        worst = max(specs, key=lambda s: s.resources.gpus)
        if worst.resources.gpu_devices > len(pool):
            have = f"only {len(pool)}" if pool else "none (no NVIDIA GPU found by nvidia-smi)"
            raise UserError(f"trial {worst.labels[LABEL_TRIAL]} asks for {worst.resources.gpus:g} GPU(s); this host has {have}",
                            where="resources.gpus",
                            hint="lower resources.gpus in the spec, set HPT_GPUS=0,1,... to name the host's GPUs, "
                                 "or run on a GPU machine / --backend k8s")
        for spec in specs:
            for src, _dst, mode in spec.binds:
                if mode == "ro" and not os.path.exists(src):
                    raise UserError("the dataset folder does not exist on this host", where=src,
                                    hint="`hpt data` builds the demo dataset; check the spec's data.uri")
        client = self._client()
        import docker.errors

        user_images = {s.manifest.image for s in submissions if s.manifest.trainer}
        for image in sorted({s.image for s in specs}):
            hint = build_hint(image, image in user_images)
            try:
                client.images.get(image)
            except docker.errors.ImageNotFound:
                if not self.pull:
                    raise UserError(f"the trainer image {image!r} is not on this Docker host", where="image",
                                    hint=hint) from None
                try:
                    client.images.pull(image)
                except docker.errors.APIError as err:
                    raise UserError(f"cannot pull the trainer image {image!r}: {short(err)}", where="image",
                                    hint=hint) from None
            except docker.errors.APIError as err:
                raise UserError(f"cannot inspect the image {image!r}: {short(err)}", where="image") from None
        for spec in specs:
            self._prepare_results(spec)
        try:  # as the caller: docker would create a missing one as root
            self.prep_cache.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise UserError(f"cannot create the preprocessing cache: {err.strerror}", where=str(self.prep_cache),
                            hint=f"set ${CACHE_ENV} to a writable folder") from None
        self._needs = (max(s.nano_cpus for s in specs) / 1e9, memory, worst.resources.gpu_share)
        if self.warm is None:
            note = fresh_note([fresh_reason(s.manifest, containers=True) for s in submissions], "the docker backend")
            if note:
                print(note, file=sys.stderr)

    def _warm_for(self, submission: Submission) -> bool:
        # a warm slot runs hpt's worker: an image with no hpt inside runs its own program in a container of its own
        return not log_collected(submission.manifest.trainer) and warm_choice(self.warm, submission.manifest,
                                                                               containers=True)

    def _prepare_results(self, spec: RunSpec) -> None:
        """Create the local results folder as the caller: docker would create a missing one as root."""
        path = spec.labels.get(LABEL_RESULTS)
        if not path:
            return
        try:
            Path(path).mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise UserError(f"cannot create the results folder: {err.strerror}", where=path) from None
        if not os.access(path, os.W_OK):
            raise UserError("the results folder is not writable by this user", where=path)

    def capacity(self) -> int:
        cpus, memory, gpus = self._needs
        try:
            info = self._client().info()
            ncpu, mem = int(info.get("NCPU") or 1), int(info.get("MemTotal") or 0)
        except Exception:
            ncpu, mem = os.cpu_count() or 1, 0
        limits = [int(ncpu // max(cpus, 1e-9))]
        if mem and memory:
            limits.append(int(mem // memory))
        if gpus:
            limits.append(self.slots.capacity(gpus))
        return max(1, min(limits))

    def adopt(self, experiment_id: str, results_uri: str) -> dict[str, DockerHandle]:
        """Running containers of this experiment and store → handles; so are exited ones, so that the
        loop saves their logs and records how they ended before removing them. Never-started ones go.
        Another store's containers of the same plan are left alone."""
        client = self._client()
        import docker.errors

        found: dict[str, DockerHandle] = {}
        mine = [f"{LABEL_EXPERIMENT}={experiment_id}", f"{LABEL_STORE}={store_id(results_uri)}"]
        listed = client.containers.list(all=True, filters={"label": mine})
        slots = [c for c in listed if (c.labels or {}).get(LABEL_SLOT)]
        self._warm_slots.adopt(slots, self._warm_slots.base(experiment_id, store_id(results_uri)), experiment_id, found)
        for container in listed:
            labels = container.labels or {}
            if labels.get(LABEL_SLOT):
                continue
            tid = labels.get(LABEL_TRIAL, "")
            status = container.status
            if not tid or status == "created" or tid in found:
                try:
                    container.remove(force=True)
                except docker.errors.APIError:
                    pass
                continue
            gpus = tuple(g for g in labels.get(LABEL_GPUS, "").split(",") if g)
            share = Fraction(labels.get(LABEL_GPU_SHARE, "1"))
            if status in ("running", "restarting", "paused"):
                self.slots.hold(gpus, share)
            else:
                gpus = ()
            found[tid] = DockerHandle(tid, experiment_id, container.name, int(labels.get(LABEL_ATTEMPT, "1") or 1),
                                      None, container.id, gpus, share, adopted=True)
        return found

    def submit(self, submission: Submission) -> DockerHandle:
        spec = self.spec(submission)
        handle = DockerHandle(submission.trial_id, submission.experiment_id, spec.name, submission.attempt, spec,
                              memory=spec.resources.memory, warm=self._warm_for(submission))
        if handle.warm:
            handle.name = ""
            self._warm_slots.place(handle)
        else:
            self._start(handle)
        return handle

    def _take_gpus(self, share: Fraction | int) -> tuple[str, ...] | None:
        return self.slots.take(Fraction(share))

    def _free_gpus(self, handle: DockerHandle) -> None:
        self.slots.give_back(handle.gpus, handle.share)
        handle.gpus = ()

    def _fail_start(self, handle: DockerHandle, message: str) -> None:
        handle.failure = could_not_start(message)
        self._free_gpus(handle)

    def _start(self, handle: DockerHandle) -> bool:
        """Create and start the container; False while it waits for free GPUs."""
        spec = handle.spec
        assert spec is not None
        if handle.cancelled:
            return False
        gpus = self._take_gpus(spec.resources.gpu_share) if spec.resources.gpus else ()
        if gpus is None:
            return False  # all GPUs busy: stays pending, poll() tries again
        handle.gpus, handle.share = gpus, min(spec.resources.gpu_share, Fraction(1))
        client = self._client()
        import docker.errors

        try:  # `-v` made a missing results folder (as root); a bind Mount needs it to exist
            for src, _, mode in spec.binds:
                if mode == "rw":
                    os.makedirs(src, exist_ok=True)
        except OSError as err:
            self._fail_start(handle, f"cannot create {err.filename}: {err.strerror}")
            return True
        kwargs = spec.create_kwargs(gpus)
        if gpus:
            kwargs["labels"] = {**spec.labels, LABEL_GPUS: ",".join(gpus)}
        container = None
        for _ in range(2):
            try:
                container = client.containers.create(**kwargs)
                break
            except docker.errors.ImageNotFound:
                self._fail_start(handle, f"image {spec.image!r} not found ({build_hint(spec.image)})")
                return True
            except docker.errors.APIError as err:
                if getattr(err, "status_code", None) == 409 and self._clear_name(client, handle):
                    if handle.container_id:  # a live container of this trial: attach to it, start nothing
                        return True
                    continue
                self._fail_start(handle, short(err))
                return True
        if container is None:
            self._fail_start(handle, f"a container named {spec.name} exists and cannot be removed")
            return True
        handle.container_id = container.id
        try:
            container.start()
        except docker.errors.APIError as err:
            # e.g. a GPU request on a host without GPUs: the daemon created the container but cannot
            # start it. Leave nothing behind.
            try:
                container.remove(force=True)
            except docker.errors.APIError:
                pass
            handle.container_id = None
            message = short(err)
            if spec.resources.gpus:
                message += ("; this Docker host cannot give containers GPUs (install the NVIDIA Container "
                            "Toolkit there, or set resources.gpus to 0)")
            self._fail_start(handle, message)
        return True

    def _clear_name(self, client: Any, handle: DockerHandle) -> bool:
        """The name is taken (a container of this trial from an earlier apply). A live one is adopted
        (handle.container_id set); a dead one is removed. False if it could not be cleared."""
        import docker.errors

        try:
            old = client.containers.get(handle.name)
        except docker.errors.NotFound:
            return True
        except docker.errors.APIError:
            return False
        if old.status in ("running", "restarting", "paused"):
            self._free_gpus(handle)
            handle.container_id = old.id
            handle.gpus = tuple(g for g in (old.labels or {}).get(LABEL_GPUS, "").split(",") if g)
            handle.share = Fraction((old.labels or {}).get(LABEL_GPU_SHARE, "1"))
            self.slots.hold(handle.gpus, handle.share)
            handle.adopted = True
            return True
        try:
            old.remove(force=True)
        except docker.errors.APIError:
            return False
        return True

    def poll(self, handle: DockerHandle) -> TrialStatus:
        if handle.failure is not None:
            return handle.failure
        if handle.warm:
            return self._warm_slots.poll(handle)
        if handle.container_id is None:
            if handle.cancelled:
                return TrialStatus(Phase.FAILED, reason="cancelled before it started")
            if not self._start(handle):
                return TrialStatus(Phase.PENDING)
            if handle.failure is not None:
                return handle.failure
            if handle.container_id is None:
                return TrialStatus(Phase.PENDING)
        import docker.errors

        try:
            attrs = self._client().api.inspect_container(handle.container_id)
        except docker.errors.NotFound:
            self._free_gpus(handle)
            return TrialStatus(Phase.FAILED, reason="the container was removed from outside", transient=True)
        except docker.errors.APIError as err:
            return TrialStatus(Phase.RUNNING if not handle.cancelled else Phase.FAILED,
                               reason=f"docker: {short(err)}", transient=True)
        state = attrs.get("State") or {}
        status = state.get("Status")
        if status == "created":
            return TrialStatus(Phase.PENDING)
        if status in ("running", "restarting", "paused"):
            return TrialStatus(Phase.RUNNING)
        self._free_gpus(handle)
        return self._ended(handle, state, (attrs.get("HostConfig") or {}).get("Memory") or 0)

    def _ended(self, handle: DockerHandle, state: dict[str, Any], mem_limit: int = 0) -> TrialStatus:
        code = int(state.get("ExitCode") or 0)
        if state.get("OOMKilled"):
            memory = handle.memory or (f"{mem_limit / 2**20:g}Mi" if mem_limit else "")
            limit = f" (memory limit {memory})" if memory else ""
            return TrialStatus(Phase.FAILED, reason=f"OOM-killed{limit}", exit_code=code or 137)
        if handle.cancelled:
            return TrialStatus(Phase.FAILED, reason="cancelled (container stopped)", exit_code=code)
        if code == 0:
            return TrialStatus(Phase.SUCCEEDED, exit_code=0)
        if state.get("Error"):
            return TrialStatus(Phase.FAILED, reason=f"could not start: {state['Error']}", exit_code=code)
        if code in (137, 143):  # killed from outside (docker kill, a daemon restart): worth another try
            name = "SIGKILL" if code == 137 else "SIGTERM"
            return TrialStatus(Phase.FAILED, reason=f"killed ({name}, exit code {code})", exit_code=code, transient=True)
        return TrialStatus(Phase.FAILED, reason=f"exit code {code}", exit_code=code)

    def cancel(self, handle: DockerHandle) -> None:
        handle.cancelled = True
        if handle.warm:
            self._warm_slots.cancel(handle)
            return
        if handle.container_id is None:
            return
        import docker.errors

        try:
            self._client().api.stop(handle.container_id, timeout=STOP_GRACE_S)
        except docker.errors.NotFound:
            pass
        except docker.errors.APIError:
            try:
                self._client().api.kill(handle.container_id)
            except docker.errors.APIError:
                pass
        self._free_gpus(handle)

    def logs(self, handle: DockerHandle) -> str:
        if handle.warm:
            return self._warm_slots.log(handle)
        if handle.container_id is None:
            return ""  # never started (its reason says why) or waiting for a GPU
        import docker.errors

        try:
            raw = self._client().api.logs(handle.container_id, stdout=True, stderr=True, tail=LOG_TAIL_LINES)
        except docker.errors.APIError as err:
            return f"(could not read the container's log: {short(err)})\n"
        return raw.decode("utf-8", errors="replace")

    def release(self, handle: DockerHandle) -> None:
        if handle.warm:
            self._warm_slots.release(handle)
            return
        self._free_gpus(handle)
        if handle.container_id is None:
            return
        import docker.errors

        try:
            self._client().api.remove_container(handle.container_id, force=True)
        except docker.errors.NotFound:
            pass
        handle.container_id = None

    def delete_plan(self, submissions: Sequence[Submission], dry_run: bool = False) -> dict[str, list[str]]:
        """Remove the plan's containers (running ones are stopped: a killed `hpt apply` leaves them running);
        with dry_run only list them. Of every store, or only of the submissions' store when they name one."""
        if not submissions:
            return {"containers": []}
        import docker.errors

        mine = [f"{LABEL_EXPERIMENT}={submissions[0].experiment_id}"]
        if submissions[0].results_uri:
            mine.append(f"{LABEL_STORE}={store_id(submissions[0].results_uri)}")
        containers = self._client().containers.list(all=True, filters={"label": mine})
        for container in [] if dry_run else containers:
            try:
                container.remove(force=True)
            except docker.errors.NotFound:
                pass   # gone meanwhile
        return {"containers": sorted(c.name for c in containers)}

    def close(self) -> None:
        """The apply is over: idle slot containers go (a busy one, left running by an interrupted apply,
        ends by itself once its trial has and nobody watches)."""
        self._warm_slots.close()

    def dry_run(self, submissions: Sequence[Submission]) -> str:
        """One `docker run` line per trial. Needs no daemon and no GPU (it warns about what it cannot check).
        Warm: the `docker run` line of each kind of slot container, then each trial's request as the
        shell line that writes it into the slot's folder."""
        warm = [s for s in submissions if self._warm_for(s)]
        lines = self._warm_slots.dry_run([(s, self.spec(s)) for s in warm]) if warm else []
        if warm:
            print("note: warm trials run in one slot container per concurrent trial (up to --parallel) of each kind; "
                  "each runs its requests one at a time (--no-warm: a container per trial)", file=sys.stderr)
        lines += [self.spec(s).command_line() for s in submissions if not self._warm_for(s)]
        self._dry_run_warnings(submissions)
        return "\n".join(lines) + ("\n" if lines else "")

    def _dry_run_warnings(self, submissions: Sequence[Submission]) -> None:
        if not submissions:
            return
        gpus = max(s.manifest.resources.gpus for s in submissions)
        if gpus:
            print(f"note: GPU trials get specific free device ids at start (pool: {','.join(self.gpu_pool) or 'none'}); "
                  "the lines show --gpus N; trials of a share 1/n (label hpt.gpu-share) get one device id, "
                  "shared by up to n of them at a time", file=sys.stderr)
            if gpu_devices(gpus) > len(self.gpu_pool):
                print(f"warning: a trial asks for {gpus:g} GPU(s) but this host has {len(self.gpu_pool)}; "
                      "`hpt apply` would refuse to start here", file=sys.stderr)
        try:
            import docker

            client = self._client_obj or docker.from_env(timeout=3)
            client.ping()
        except Exception as err:
            print(f"warning: no Docker daemon answers ({short(err)}); not checked that the image exists",
                  file=sys.stderr)
            return
        import docker.errors

        user_images = {s.manifest.image for s in submissions if s.manifest.trainer}
        for image in sorted({s.manifest.image for s in submissions}):
            try:
                client.images.get(image)
            except docker.errors.ImageNotFound:
                print(f"warning: image {image!r} is not on this Docker host ({build_hint(image, image in user_images)})",
                      file=sys.stderr)
            except docker.errors.APIError:
                pass

