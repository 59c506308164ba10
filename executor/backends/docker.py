"""The Docker backend: each trial runs `hpt-trial` in its own container on a local Docker host.

What a container gets (one pure function, `DockerBackend.spec`, decides it for both `submit` and
`--dry-run`, so the printed `docker run` line is what really runs):
- the manifest, unchanged, as the env var HPT_MANIFEST (its JSON text);
- the results store as HPT_RESULTS: a local folder is bind-mounted read-write at the SAME absolute
  path, so the paths a row records (model_uri, ...) are valid on the host too; gs:// needs no mount,
  but GOOGLE_APPLICATION_CREDENTIALS (a file) is mounted read-only and STORAGE_EMULATOR_HOST is
  passed through with 127.0.0.1/localhost rewritten to host.docker.internal (mapped to the host
  gateway), so an emulator on the host is reachable;
- the dataset folder (the manifest's data.uri when it is local) bind-mounted read-only at the same path;
- the host's preprocessing cache (hpt.store.cache: $HPT_CACHE/prep) mounted read-write at
  /var/cache/hpt/prep with HPT_CACHE=/var/cache/hpt, so containers reuse what local trials fitted;
- labels hpt.experiment, hpt.store, hpt.trial, hpt.version, hpt.attempt (and hpt.gpus), by which a
  later `hpt apply` into the same store finds the containers an earlier one left running; the
  container's name carries experiment, trial and store too, so two applies of one plan into two
  stores on one Docker host never adopt, replace or remove each other's containers;
- cpu (nano_cpus) and memory limits from the manifest's `resources`, HPT_CPUS/OMP_NUM_THREADS so
  that torch uses as many threads as it has cores;
- GPUs: `resources.gpus` → a device request for specific device ids taken from a pool (nvidia-smi -L,
  or the `gpus_available` option / $HPT_GPUS), so that no GPU is given to two trials at once — except
  shares: trials of `gpus` 1/n get the same device id, up to n at a time (hpt.executor.gpu_slots), and
  carry the label hpt.gpu-share.

The user inside: the caller's uid:gid (`docker run --user $(id -u):$(id -g)`), so the container can
read the caller's dataset and write the caller's results folder, and what it writes there belongs
to the caller. The image itself runs as a non-root user (uid 10001) when started by hand. When hpt
itself runs as root (CI), the container runs as uid 0 but with every capability dropped and
no-new-privileges: root's own files stay reachable, root's powers do not come along. The `user`
option or $HPT_DOCKER_USER overrides this: "UID:GID", or "image" for the image's own user.

Failures the trainer cannot record itself come back as TrialStatus reasons, which the executor
loop writes into the trial's row: "exit code N", "OOM-killed (memory limit 64Mi)", "killed (SIGKILL)",
"could not start: <docker's error>" (exit code 125, like `docker run`). A container that could not
start is removed at once, so a GPU request on a host without GPUs leaves nothing behind.
"""
from __future__ import annotations

import math
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, Sequence

from hpt.executor.backend import Backend, Phase, Submission, TrialStatus
from hpt.executor.gpu_slots import GpuSlots
from hpt.executor.shell import mount_option, shell_quote
from hpt.schemas.dataset import local_data_uri
from hpt.schemas.errors import UserError
from hpt.schemas.resources import gpu_devices, gpu_share, memory_bytes
from hpt.store import local_path, store_id
from hpt.store.cache import CACHE_ENV, PREP, cache_root

LABEL_EXPERIMENT = "hpt.experiment"
LABEL_TRIAL = "hpt.trial"
LABEL_VERSION = "hpt.version"
LABEL_ATTEMPT = "hpt.attempt"
LABEL_GPUS = "hpt.gpus"
LABEL_GPU_SHARE = "hpt.gpu-share"   # a trial that shares its device: "1/4"
LABEL_RESULTS = "hpt.results"
LABEL_STORE = "hpt.store"           # hpt.store.store_id of the results store
CONTAINER_CREDENTIALS = "/var/run/secrets/hpt/google-credentials.json"
CONTAINER_CACHE = "/var/cache/hpt"  # HPT_CACHE inside: the host's prep/ cache is mounted under it
EMULATOR_HOSTNAME = "host.docker.internal"
EXIT_COULD_NOT_START = 125          # what `docker run` exits with when the daemon cannot start it
STOP_GRACE_S = 3                    # SIGTERM, then SIGKILL after this many seconds
LOG_TAIL_LINES = 20_000
BUILD_HINT = ("build it with `hpt image build --offline` (Debian base, no registry) or `hpt image build` (CUDA PyTorch base), "
              "or `make image`; a spec's own trainer: `hpt image build --spec SPEC`")


def rewrite_emulator_host(value: str) -> str:
    """STORAGE_EMULATOR_HOST as seen from inside a container: loopback → host.docker.internal."""
    return re.sub(r"(^|//)(127\.0\.0\.1|localhost|0\.0\.0\.0|\[::1\])(?=[:/]|$)", rf"\g<1>{EMULATOR_HOSTNAME}", value)


def detect_gpus() -> list[str]:
    """Device indices of this host's NVIDIA GPUs (`nvidia-smi -L`); [] without a driver."""
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return []
    try:
        out = subprocess.run([exe, "-L"], capture_output=True, text=True, timeout=20, check=False).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [m.group(1) for m in re.finditer(r"^GPU (\d+):", out, re.MULTILINE)]


def _gpu_pool(option: Sequence[str] | str | int | None) -> list[str]:
    if option is None:
        option = os.environ.get("HPT_GPUS")
        if option is None:
            return detect_gpus()
    if isinstance(option, int):
        return [str(i) for i in range(option)]
    if isinstance(option, str):
        return [g.strip() for g in option.split(",") if g.strip()]
    return [str(g) for g in option]


@dataclass(frozen=True)
class RunSpec:
    """Everything `docker run` needs for one trial (no secrets: credentials travel as a mounted file)."""
    image: str
    name: str
    environment: dict[str, str]
    labels: dict[str, str]
    binds: list[tuple[str, str, str]]        # (host path, container path, "ro" | "rw")
    user: str | None
    nano_cpus: int
    memory: str                              # as the manifest says, for messages
    mem_limit: int
    gpus: float                              # as the manifest says: whole GPUs or a share 1/n
    extra_hosts: dict[str, str]
    working_dir: str | None
    pass_env: tuple[str, ...] = ()           # names whose values come from hpt's environment

    @property
    def share(self) -> Fraction:
        return gpu_share(self.gpus)

    @property
    def devices(self) -> int:
        """Device ids the container gets: its whole GPUs, or the one it shares."""
        return gpu_devices(self.gpus)

    @property
    def rootless_root(self) -> bool:
        """Running as uid 0 (hpt itself runs as root): keep root's file access, drop its powers."""
        return bool(self.user) and str(self.user).split(":")[0] == "0"

    def create_kwargs(self, device_ids: Sequence[str]) -> dict[str, Any]:
        from docker.types import DeviceRequest, Mount

        env = dict(self.environment)
        for name in self.pass_env:
            if name in os.environ:
                env[name] = os.environ[name]
        kwargs: dict[str, Any] = {
            "image": self.image, "name": self.name, "detach": True, "environment": env, "labels": self.labels,
            "mounts": [Mount(target=dst, source=src, type="bind", read_only=mode == "ro") for src, dst, mode in self.binds],
            "nano_cpus": self.nano_cpus, "mem_limit": self.mem_limit, "memswap_limit": self.mem_limit,
            "init": True,  # tini as pid 1: SIGTERM reaches the trainer, zombies are reaped
        }
        if self.user:
            kwargs["user"] = self.user
        if self.rootless_root:
            kwargs["cap_drop"] = ["ALL"]
            kwargs["security_opt"] = ["no-new-privileges"]
        if self.extra_hosts:
            kwargs["extra_hosts"] = dict(self.extra_hosts)
        if self.working_dir:
            kwargs["working_dir"] = self.working_dir
        if device_ids:
            kwargs["device_requests"] = [DeviceRequest(device_ids=list(device_ids), capabilities=[["gpu"]])]
        return kwargs

    def command_line(self) -> str:
        """The equivalent `docker run` command, on one line for bash (GPUs by count: the real run
        picks free device ids)."""
        q = shell_quote
        # --rm: a line run by hand cleans up after itself (`hpt apply` removes its own containers).
        parts = ["docker", "run", "-d", "--rm", "--init", "--name", q(self.name)]
        parts += [f"--label {q(f'{k}={v}')}" for k, v in self.labels.items()]
        parts += [f"--cpus {self.nano_cpus / 1e9:g}", f"--memory {self.mem_limit}b", f"--memory-swap {self.mem_limit}b"]
        if self.gpus:
            parts.append(f"--gpus {self.devices}")
        if self.user:
            parts.append(f"--user {q(self.user)}")
        if self.rootless_root:
            parts += ["--cap-drop ALL", "--security-opt no-new-privileges"]
        parts += [f"--add-host {q(f'{h}:{ip}')}" for h, ip in self.extra_hosts.items()]
        parts += [mount_option(src, dst, read_only=mode == "ro") for src, dst, mode in self.binds]
        if self.working_dir:
            parts.append(f"-w {q(self.working_dir)}")
        parts += [f"-e {q(f'{k}={v}')}" for k, v in self.environment.items()]
        parts += [f"-e {q(name)}" for name in self.pass_env]  # docker takes the value from the caller
        parts.append(q(self.image))
        return " ".join(parts)


@dataclass
class DockerHandle:
    trial_id: str
    experiment_id: str
    name: str
    attempt: int = 1
    spec: RunSpec | None = None             # None for a container adopted from an earlier apply
    container_id: str | None = None         # None while waiting for a free GPU
    gpus: tuple[str, ...] = ()
    share: Fraction = Fraction(1)           # of each of its GPUs (1: whole devices)
    adopted: bool = False
    cancelled: bool = False
    failure: TrialStatus | None = None      # could not start
    memory: str = ""                        # the limit as the manifest says it, for an OOM reason


@dataclass(frozen=True)
class DockerOptions:
    gpus_available: Sequence[str] | str | int | None = None  # GPU ids to hand out (default: $HPT_GPUS, else nvidia-smi -L)
    docker_client: Any = None                # a docker SDK client (default: from the environment, DOCKER_HOST)
    user: str | None = "auto"                # "auto" (see the module doc), "image"/None: the image's, or "UID:GID"
    pass_env: Sequence[str] | str | None = None   # environment variables passed into every container (never printed)
    pull: bool = False                       # pull a missing image instead of failing


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

    # --- the daemon ----------------------------------------------------------------------------------
    def _client(self):
        if self._client_obj is None:
            try:
                import docker
            except ImportError:
                raise UserError("the docker backend needs the docker SDK", where="--backend docker",
                                hint="pip install 'hpt[docker]'") from None
            try:
                client = docker.from_env(timeout=60)
                client.ping()
            except Exception as err:
                where = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
                raise UserError(f"no Docker daemon answers at {where}: {_short(err)}", where="--backend docker",
                                hint="start Docker (`sudo systemctl start docker`; here: scripts/start-dockerd.sh) "
                                     "or set DOCKER_HOST") from None
            self._client_obj = client
        return self._client_obj

    @property
    def gpu_pool(self) -> list[str]:
        if self._pool is None:
            self._pool = _gpu_pool(self._gpu_option)
        return self._pool

    @property
    def slots(self) -> GpuSlots:
        if self._slots is None:
            self._slots = GpuSlots(self.gpu_pool)
        return self._slots

    # --- what runs ----------------------------------------------------------------------------------
    def _resources(self, sub: Submission) -> tuple[float, str, float]:
        res = sub.manifest.resources
        return float(res.cpus), res.memory, res.gpus

    def _user(self) -> str | None:
        option = os.environ.get("HPT_DOCKER_USER") or self.user_option
        if option == "image":
            return None
        if option != "auto":
            return option or None
        if not hasattr(os, "getuid"):
            return None
        return f"{os.getuid()}:{os.getgid()}"

    def spec(self, sub: Submission) -> RunSpec:
        from hpt.schemas import __version__

        image = sub.manifest.image
        cpus, memory, gpus = self._resources(sub)
        env = {"HPT_MANIFEST": sub.manifest_json, "HPT_RESULTS": sub.results_uri, "PYTHONUNBUFFERED": "1"}
        threads = str(max(1, math.ceil(cpus)))
        env.update(HPT_CPUS=f"{cpus:g}", OMP_NUM_THREADS=threads, MKL_NUM_THREADS=threads)
        binds: list[tuple[str, str, str]] = []
        results_path = local_path(sub.results_uri)
        if results_path:
            binds.append((results_path, results_path, "rw"))
        data_uri = sub.manifest.data["uri"]
        data_path = local_path(data_uri)
        if local_data_uri(data_uri) != data_uri:  # the demo dataset cache, as the host knows it
            data_path = local_data_uri(data_uri)
            env["HPT_DEMO_DATA"] = data_path
        if data_path and not (results_path and (data_path == results_path or data_path.startswith(results_path + "/"))):
            binds.append((data_path, data_path, "ro"))
        extra_hosts: dict[str, str] = {}
        remote = sub.results_uri.startswith("gs://") or data_uri.startswith("gs://")
        if remote:
            creds = os.environ.get("GOOGLE_APPLICATION_CREDENTIALS")
            if creds and os.path.isfile(creds):
                binds.append((os.path.abspath(creds), CONTAINER_CREDENTIALS, "ro"))
                env["GOOGLE_APPLICATION_CREDENTIALS"] = CONTAINER_CREDENTIALS
            for name in ("GOOGLE_CLOUD_PROJECT", "CLOUDSDK_CORE_PROJECT"):
                if os.environ.get(name):
                    env[name] = os.environ[name]
            emulator = os.environ.get("STORAGE_EMULATOR_HOST")
            if emulator:
                env["STORAGE_EMULATOR_HOST"] = rewrite_emulator_host(emulator)
                extra_hosts[EMULATOR_HOSTNAME] = "host-gateway"
        # The host's preprocessing cache, shared: a container takes what local trials (or earlier containers)
        # fitted, and what it fits serves the next ones. An entry is written to a temp folder and renamed
        # into place inside this one mount, so no trial ever sees half of one (hpt.trainer.data).
        binds.append((str(self.prep_cache), f"{CONTAINER_CACHE}/{PREP}", "rw"))
        env[CACHE_ENV] = CONTAINER_CACHE
        relative = any(not os.path.isabs(p) for p in (data_uri, sub.results_uri) if p and local_path(p))
        store = store_id(sub.results_uri)
        labels = {LABEL_EXPERIMENT: sub.experiment_id, LABEL_STORE: store, LABEL_TRIAL: sub.trial_id,
                  LABEL_VERSION: __version__, LABEL_ATTEMPT: str(sub.attempt)}
        if results_path:
            labels[LABEL_RESULTS] = results_path
        if 0 < gpu_share(gpus) < 1:
            labels[LABEL_GPU_SHARE] = str(gpu_share(gpus))
        return RunSpec(image=image, name=container_name(sub.experiment_id, sub.trial_id, store), environment=env,
                       labels=labels, binds=binds, user=self._user(), nano_cpus=int(round(cpus * 1e9)),
                       memory=memory, mem_limit=memory_bytes(memory), gpus=gpus, extra_hosts=extra_hosts,
                       working_dir=os.getcwd() if relative else None, pass_env=self.pass_env)

    # --- Backend protocol ----------------------------------------------------------------------------
    def preflight(self, submissions: Sequence[Submission]) -> None:
        if not submissions:
            return
        specs = [self.spec(s) for s in submissions]  # bad memory quantities fail here, before anything runs
        pool = self.gpu_pool
        worst = max(specs, key=lambda s: s.gpus)
        if worst.devices > len(pool):
            have = f"only {len(pool)}" if pool else "none (no NVIDIA GPU found by nvidia-smi)"
            raise UserError(f"trial {worst.labels[LABEL_TRIAL]} asks for {worst.gpus:g} GPU(s); this host has {have}",
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

        for image in sorted({s.image for s in specs}):
            try:
                client.images.get(image)
            except docker.errors.ImageNotFound:
                if not self.pull:
                    raise UserError(f"the trainer image {image!r} is not on this Docker host", where="image",
                                    hint=BUILD_HINT) from None
                try:
                    client.images.pull(image)
                except docker.errors.APIError as err:
                    raise UserError(f"cannot pull the trainer image {image!r}: {_short(err)}", where="image",
                                    hint=BUILD_HINT) from None
            except docker.errors.APIError as err:
                raise UserError(f"cannot inspect the image {image!r}: {_short(err)}", where="image") from None
        for spec in specs:
            self._prepare_results(spec)
        try:  # as the caller: docker would create a missing one as root
            self.prep_cache.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise UserError(f"cannot create the preprocessing cache: {err.strerror}", where=str(self.prep_cache),
                            hint=f"set ${CACHE_ENV} to a writable folder") from None
        self._needs = (max(s.nano_cpus for s in specs) / 1e9, max(s.mem_limit for s in specs), worst.share)

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
        for container in client.containers.list(all=True, filters={"label": mine}):
            labels = container.labels or {}
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
                              memory=spec.memory)
        self._start(handle)
        return handle

    def _take_gpus(self, share: Fraction | int) -> tuple[str, ...] | None:
        return self.slots.take(Fraction(share))

    def _free_gpus(self, handle: DockerHandle) -> None:
        self.slots.give_back(handle.gpus, handle.share)
        handle.gpus = ()

    def _fail_start(self, handle: DockerHandle, message: str) -> None:
        handle.failure = TrialStatus(Phase.FAILED, reason=f"could not start: {message}", exit_code=EXIT_COULD_NOT_START)
        # No log of its own: the reason (in the row and the log's attempt header) says it all.
        self._free_gpus(handle)

    def _start(self, handle: DockerHandle) -> bool:
        """Create and start the container; False while it waits for free GPUs."""
        spec = handle.spec
        assert spec is not None
        if handle.cancelled:
            return False
        gpus = self._take_gpus(spec.share) if spec.gpus else ()
        if gpus is None:
            return False  # all GPUs busy: stays pending, poll() tries again
        handle.gpus, handle.share = gpus, min(spec.share, Fraction(1))
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
                self._fail_start(handle, f"image {spec.image!r} not found ({BUILD_HINT})")
                return True
            except docker.errors.APIError as err:
                if getattr(err, "status_code", None) == 409 and self._clear_name(client, handle):
                    if handle.container_id:  # a live container of this trial: attach to it, start nothing
                        return True
                    continue
                self._fail_start(handle, _short(err))
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
            message = _short(err)
            if spec.gpus:
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
                               reason=f"docker: {_short(err)}", transient=True)
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
        if handle.container_id is None:
            return ""  # never started (its reason says why) or waiting for a GPU
        import docker.errors

        try:
            raw = self._client().api.logs(handle.container_id, stdout=True, stderr=True, tail=LOG_TAIL_LINES)
        except docker.errors.APIError as err:
            return f"(could not read the container's log: {_short(err)})\n"
        return raw.decode("utf-8", errors="replace")

    def release(self, handle: DockerHandle) -> None:
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

    def dry_run(self, submissions: Sequence[Submission]) -> str:
        """One `docker run` line per trial. Needs no daemon and no GPU (it warns about what it cannot check)."""
        lines = [self.spec(s).command_line() for s in submissions]
        self._dry_run_warnings(submissions)
        return "\n".join(lines) + ("\n" if lines else "")

    def _dry_run_warnings(self, submissions: Sequence[Submission]) -> None:
        if not submissions:
            return
        gpus = max(self._resources(s)[2] for s in submissions)
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
            print(f"warning: no Docker daemon answers ({_short(err)}); not checked that the image exists",
                  file=sys.stderr)
            return
        import docker.errors

        for image in sorted({s.manifest.image for s in submissions}):
            try:
                client.images.get(image)
            except docker.errors.ImageNotFound:
                print(f"warning: image {image!r} is not on this Docker host ({BUILD_HINT})", file=sys.stderr)
            except docker.errors.APIError:
                pass


def container_name(experiment_id: str, trial_id: str, store: str) -> str:
    """One name per trial of an experiment and store (hpt.store.store_id): the daemon refuses a second
    container with it, and another store's run of the plan has names of its own."""
    return f"hpt-{experiment_id}-{trial_id}-{store}"


def _short(err: BaseException) -> str:
    """Docker's own words, on one line (APIError's str carries the HTTP status and URL)."""
    explanation = getattr(err, "explanation", None)
    text = explanation.decode() if isinstance(explanation, bytes) else (explanation or str(err))
    return " ".join(str(text).split())
