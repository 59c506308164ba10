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

Warm starts (`warm=True`, `hpt apply --backend docker --warm`): instead of a container per trial, one
long-lived slot container per concurrent trial, created from the trial's own spec (RunSpec.for_slot: the
same image, limits, GPUs, user, mounts, env and labels, less the trial's manifest), running the warm worker
(hpt.trainer.warm --folder) that imported torch once and forks each trial, one at a time. Requests, pids,
logs and exit codes travel through the slot's folder (executor/backends/docker_warm.py), so a `kill -9`
of the apply loses nothing: the next apply adopts the slot and its trials (label hpt.slot) and reuses it.
A slot serves only trials of its own kind (RunSpec.slot_key); an idle one of another kind makes room.

Failures the trainer cannot record itself come back as TrialStatus reasons, which the executor
loop writes into the trial's row: "exit code N", "OOM-killed (memory limit 64Mi)", "killed (SIGKILL)",
"could not start: <docker's error>" (exit code 125, like `docker run`). A container that could not
start is removed at once, so a GPU request on a host without GPUs leaves nothing behind.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, replace
from fractions import Fraction
from pathlib import Path
from typing import Any, Sequence

from hpt.executor.backend import Backend, Phase, Submission, TrialStatus
from hpt.executor.backends.docker_warm import Slot
from hpt.executor.gpu_slots import GpuSlots
from hpt.executor.shell import mount_option, shell_quote
from hpt.schemas.dataset import local_data_uri
from hpt.schemas.errors import UserError
from hpt.schemas.resources import Resources, gpu_devices
from hpt.store import local_path, store_id
from hpt.schemas.warm import CANCEL_GRACE_S, IDLE_EXIT_S, REQUEST
from hpt.store.cache import CACHE_ENV, PREP, cache_root

LABEL_EXPERIMENT = "hpt.experiment"
LABEL_TRIAL = "hpt.trial"
LABEL_VERSION = "hpt.version"
LABEL_ATTEMPT = "hpt.attempt"
LABEL_GPUS = "hpt.gpus"
LABEL_GPU_SHARE = "hpt.gpu-share"   # a trial that shares its device: "1/4"
LABEL_RESULTS = "hpt.results"
LABEL_STORE = "hpt.store"           # hpt.store.store_id of the results store
LABEL_SLOT = "hpt.slot"             # a warm slot container: its folder (the same path on the host and inside)
LABEL_SLOT_KEY = "hpt.slot-key"     # what a trial must share with the slot to run in it (RunSpec.slot_key)
LABEL_SLOT_MEMORY = "hpt.slot-memory"  # its memory limit as the manifest says it (for an adopted trial's OOM reason)
CONTAINER_CREDENTIALS = "/var/run/secrets/hpt/google-credentials.json"
CONTAINER_CACHE = "/var/cache/hpt"  # HPT_CACHE inside: the host's prep/ cache is mounted under it
EMULATOR_HOSTNAME = "host.docker.internal"
EXIT_COULD_NOT_START = 125          # what `docker run` exits with when the daemon cannot start it
STOP_GRACE_S = 3                    # SIGTERM, then SIGKILL after this many seconds
LOG_TAIL_LINES = 20_000
WARM_COMMAND = ("python3", "-m", "hpt.trainer.warm", "--folder")   # a slot container's program, then its folder
TRIAL_COMMAND = ["hpt-trial"]       # what a slot's worker runs per request (the image's entrypoint)
HEARTBEAT_S = 5.0                   # how often a watching apply touches its slots' heartbeat files
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
    resources: Resources                     # the manifest's: cpus, memory, gpus (whole GPUs or a share 1/n)
    extra_hosts: dict[str, str]
    working_dir: str | None
    pass_env: tuple[str, ...] = ()           # names whose values come from hpt's environment
    entrypoint: tuple[str, ...] = ()         # instead of the image's (a warm slot: python3 -m hpt.trainer.warm)
    command: tuple[str, ...] = ()

    @property
    def nano_cpus(self) -> int:
        return int(round(float(self.resources.cpus) * 1e9))

    @property
    def rootless_root(self) -> bool:
        """Running as uid 0 (hpt itself runs as root): keep root's file access, drop its powers."""
        return bool(self.user) and str(self.user).split(":")[0] == "0"

    def slot_key(self) -> str:
        """A digest of everything of the container except the trial: trials with one key can share a slot."""
        env = {k: v for k, v in self.environment.items() if k != "HPT_MANIFEST"}
        labels = {k: v for k, v in self.labels.items() if k not in (LABEL_TRIAL, LABEL_ATTEMPT)}
        parts = [self.image, env, labels, self.binds, self.user, self.nano_cpus, self.resources.memory_bytes,
                 str(self.resources.gpus),
                 self.extra_hosts, self.working_dir, list(self.pass_env)]
        return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:12]

    def for_slot(self, name: str, folder: str) -> RunSpec:
        """The slot container that runs trials of this spec one at a time: the same image, limits, user,
        mounts, environment and labels, less the trial's own (its manifest travels per request), plus
        its folder, mounted at the same path, and the warm worker as its program."""
        key = self.slot_key()
        labels = {k: v for k, v in self.labels.items() if k not in (LABEL_TRIAL, LABEL_ATTEMPT)}
        return replace(self, name=name, environment={k: v for k, v in self.environment.items() if k != "HPT_MANIFEST"},
                       labels={**labels, LABEL_SLOT: folder, LABEL_SLOT_KEY: key, LABEL_SLOT_MEMORY: self.resources.memory},
                       binds=[*self.binds, (folder, folder, "rw")], entrypoint=WARM_COMMAND[:1],
                       command=(*WARM_COMMAND[1:], folder))

    def create_kwargs(self, device_ids: Sequence[str]) -> dict[str, Any]:
        from docker.types import DeviceRequest, Mount

        env = dict(self.environment)
        for name in self.pass_env:
            if name in os.environ:
                env[name] = os.environ[name]
        kwargs: dict[str, Any] = {
            "image": self.image, "name": self.name, "detach": True, "environment": env, "labels": self.labels,
            "mounts": [Mount(target=dst, source=src, type="bind", read_only=mode == "ro") for src, dst, mode in self.binds],
            "nano_cpus": self.nano_cpus, "mem_limit": self.resources.memory_bytes,
            "memswap_limit": self.resources.memory_bytes,
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
        if self.entrypoint:
            kwargs["entrypoint"] = list(self.entrypoint)
        if self.command:
            kwargs["command"] = list(self.command)
        return kwargs

    def command_line(self) -> str:
        """The equivalent `docker run` command, on one line for bash (GPUs by count: the real run
        picks free device ids)."""
        q = shell_quote
        # --rm: a line run by hand cleans up after itself (`hpt apply` removes its own containers).
        parts = ["docker", "run", "-d", "--rm", "--init", "--name", q(self.name)]
        parts += [f"--label {q(f'{k}={v}')}" for k, v in self.labels.items()]
        memory = self.resources.memory_bytes
        parts += [f"--cpus {self.nano_cpus / 1e9:g}", f"--memory {memory}b", f"--memory-swap {memory}b"]
        if self.resources.gpus:
            parts.append(f"--gpus {self.resources.gpu_devices}")
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
        if self.entrypoint:  # docker run's --entrypoint takes the program; its arguments follow the image
            parts.append(f"--entrypoint {q(self.entrypoint[0])}")
        parts.append(q(self.image))
        parts += [q(a) for a in (*self.entrypoint[1:], *self.command)]
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
    slot: Slot | None = None                # --warm: the slot container it runs in (None while it waits)
    warm: bool = False                      # a trial of a slot container (name and container_id are the slot's)


@dataclass(frozen=True)
class DockerOptions:
    gpus_available: Sequence[str] | str | int | None = None  # GPU ids to hand out (default: $HPT_GPUS, else nvidia-smi -L)
    docker_client: Any = None                # a docker SDK client (default: from the environment, DOCKER_HOST)
    user: str | None = "auto"                # "auto" (see the module doc), "image"/None: the image's, or "UID:GID"
    pass_env: Sequence[str] | str | None = None   # environment variables passed into every container (never printed)
    pull: bool = False                       # pull a missing image instead of failing
    warm: bool = False                       # run trials in warm slot containers (docs/docker.md, "Warm starts")
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
        self._slots_in_use: dict[str, Slot] = {}              # container id → the slots this apply runs trials in
        self._beat_at = 0.0

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
        resources = sub.manifest.resources
        cpus = float(resources.cpus)
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
        if 0 < resources.gpu_share < 1:
            labels[LABEL_GPU_SHARE] = str(resources.gpu_share)
        return RunSpec(image=image, name=container_name(sub.experiment_id, sub.trial_id, store), environment=env,
                       labels=labels, binds=binds, user=self._user(), resources=resources, extra_hosts=extra_hosts,
                       working_dir=os.getcwd() if relative else None, pass_env=self.pass_env)

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
        self._needs = (max(s.nano_cpus for s in specs) / 1e9, memory, worst.resources.gpu_share)

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
        self._adopt_slots(slots, self._slot_base(experiment_id, store_id(results_uri)), experiment_id, found)
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
                              memory=spec.resources.memory, warm=self.warm)
        if self.warm:
            handle.name = ""
            self._place(handle)
        else:
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

    # --- warm: slot containers (docs/docker.md, "Warm starts") ------------------------------------------
    def _slot_base(self, experiment_id: str, store: str) -> Path:
        """Where the slots of an experiment and store (hpt.store.store_id) keep their folders."""
        return self.state_dir / experiment_id / store

    def _place(self, handle: DockerHandle) -> bool:
        """Put the trial's request into an idle slot of its kind, starting one if none is free; False
        while it waits (for GPUs). One trial at a time per slot: the container's limits are the trial's."""
        spec = handle.spec
        assert spec is not None
        if handle.cancelled:
            return False
        key = spec.slot_key()
        slot = next((s for s in list(self._slots_in_use.values())
                     if s.key == key and s.reusable and not s.open_trials() and self._slot_alive(s)), None)
        if slot is None:
            for other in [s for s in self._slots_in_use.values() if s.key != key and not s.open_trials()]:
                self._remove_slot(other)  # idle, of another kind: its room (and GPUs) goes to the new slot
            slot = self._start_slot(handle)
            if slot is None:
                return handle.failure is not None
        env = {"HPT_MANIFEST": spec.environment["HPT_MANIFEST"]}
        try:
            slot.request(handle.trial_id, handle.attempt, env, TRIAL_COMMAND)
        except OSError as err:
            self._fail_start(handle, f"cannot write the request into {slot.folder}: {err.strerror}")
            return True
        handle.slot, handle.name, handle.container_id = slot, slot.name, slot.container_id
        return True

    def _slot_alive(self, slot: Slot) -> bool:
        import docker.errors

        try:
            status = (self._client().api.inspect_container(slot.container_id).get("State") or {}).get("Status")
        except docker.errors.APIError:
            status = None
        if status == "running":
            return True
        self._remove_slot(slot)
        return False

    def _start_slot(self, handle: DockerHandle) -> Slot | None:
        """A new slot container for trials like this one; None if it waits for GPUs or failed (handle.failure)."""
        spec = handle.spec
        assert spec is not None
        gpus = self._take_gpus(spec.resources.gpu_share) if spec.resources.gpus else ()
        if gpus is None:
            return None
        token = secrets.token_hex(4)
        folder = self._slot_base(handle.experiment_id, spec.labels[LABEL_STORE]) / f"w{token}"
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
            self.slots.give_back(gpus, slot.share)
            self._fail_start(handle, f"cannot create {err.filename}: {err.strerror}")
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
            self.slots.give_back(gpus, slot.share)
            slot.remove_folder()
            message = f"image {spec.image!r} not found ({BUILD_HINT})" if isinstance(err, docker.errors.ImageNotFound) \
                else _short(err)
            if spec.resources.gpus and not isinstance(err, docker.errors.ImageNotFound):
                message += ("; this Docker host cannot give containers GPUs (install the NVIDIA Container "
                            "Toolkit there, or set resources.gpus to 0)")
            self._fail_start(handle, message)
            return None
        slot.container_id = container.id
        self._slots_in_use[container.id] = slot
        return slot

    def _remove_slot(self, slot: Slot) -> None:
        """Stop and remove a slot container, give back its GPUs; its folder goes once no trial is left in it."""
        import docker.errors

        self._slots_in_use.pop(slot.container_id, None)
        self.slots.give_back(slot.gpus, slot.share)
        slot.gpus = ()
        try:
            self._client().api.remove_container(slot.container_id, force=True)
        except docker.errors.APIError:
            pass
        if not slot.trials():
            slot.remove_folder()

    def _adopt_slots(self, containers: list, base: Path, experiment_id: str, found: dict[str, DockerHandle]) -> None:
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
            if alive and container.id in self._slots_in_use:  # this apply's own (an adaptive plan's next round)
                slot = self._slots_in_use[container.id]
            elif alive:
                # Idle and unwatched for long, its worker may be exiting right now: adopt, never reuse it.
                slot.reusable = bool(slot.open_trials()) or slot.heartbeat_age() < IDLE_EXIT_S / 2
                slot.beat()
                self.slots.hold(gpus, slot.share)
                self._slots_in_use[container.id] = slot
            self._adopt_slot_trials(slot, alive, experiment_id, found)
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
                self._adopt_slot_trials(orphan, False, experiment_id, found)
                if not orphan.trials():
                    orphan.remove_folder()

    @staticmethod
    def _adopt_slot_trials(slot: Slot, alive: bool, experiment_id: str, found: dict[str, DockerHandle]) -> None:
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
            for slot in self._slots_in_use.values():
                slot.beat()

    def _poll_warm(self, handle: DockerHandle) -> TrialStatus:
        if handle.slot is None:
            if handle.cancelled:
                return TrialStatus(Phase.FAILED, reason="cancelled before it started")
            self._place(handle)
            if handle.failure is not None:
                return handle.failure
            if handle.slot is None:
                return TrialStatus(Phase.PENDING)
        self._heartbeat()
        slot = handle.slot
        ended = slot.exit(handle.trial_id)
        if ended is not None:
            return self._warm_ended(handle, ended)
        if handle.cancelled and not slot.asked(handle.trial_id):
            return TrialStatus(Phase.FAILED, reason="cancelled before it started")
        import docker.errors

        try:
            attrs = self._client().api.inspect_container(slot.container_id) if slot.container_id else {}
        except docker.errors.NotFound:
            attrs = {}
        except docker.errors.APIError as err:
            return TrialStatus(Phase.RUNNING, reason=f"docker: {_short(err)}", transient=True)
        state = attrs.get("State") or {}
        if state.get("Status") in ("running", "restarting", "paused"):
            return TrialStatus(Phase.RUNNING if slot.started(handle.trial_id) else Phase.PENDING)
        ended = slot.exit(handle.trial_id)  # it may have ended just before its container did
        if ended is not None:
            return self._warm_ended(handle, ended)
        if slot.container_id in self._slots_in_use:
            self._remove_slot(slot)
        if state.get("OOMKilled"):
            limit = f" (memory limit {handle.memory})" if handle.memory else ""
            return TrialStatus(Phase.FAILED, reason=f"OOM-killed{limit} (the warm slot container)", exit_code=137)
        if handle.cancelled:
            return TrialStatus(Phase.FAILED, reason="cancelled (slot container stopped)")
        gone = f"exited with code {state.get('ExitCode')}" if state else "was removed from outside"
        return TrialStatus(Phase.FAILED, reason=f"the warm slot container {gone} before the trial ended", transient=True)

    def _warm_ended(self, handle: DockerHandle, ended: dict[str, Any]) -> TrialStatus:
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

    def _cancel_warm(self, handle: DockerHandle) -> None:
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
        if slot.exit(handle.trial_id) is None and slot.container_id in self._slots_in_use:
            self._remove_slot(slot)  # the worker does not answer: the container goes, and the trial with it

    def poll(self, handle: DockerHandle) -> TrialStatus:
        if handle.failure is not None:
            return handle.failure
        if handle.warm:
            return self._poll_warm(handle)
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
        if handle.warm:
            self._cancel_warm(handle)
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
            return handle.slot.log(handle.trial_id) if handle.slot is not None else ""
        if handle.container_id is None:
            return ""  # never started (its reason says why) or waiting for a GPU
        import docker.errors

        try:
            raw = self._client().api.logs(handle.container_id, stdout=True, stderr=True, tail=LOG_TAIL_LINES)
        except docker.errors.APIError as err:
            return f"(could not read the container's log: {_short(err)})\n"
        return raw.decode("utf-8", errors="replace")

    def release(self, handle: DockerHandle) -> None:
        if handle.warm:  # the slot stays for the next trial; its files go
            slot = handle.slot
            if slot is not None:
                slot.forget(handle.trial_id)
                if slot.container_id not in self._slots_in_use and not slot.trials():
                    slot.remove_folder()
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
        for slot in list(self._slots_in_use.values()):
            if not slot.open_trials():
                self._remove_slot(slot)

    def dry_run(self, submissions: Sequence[Submission]) -> str:
        """One `docker run` line per trial. Needs no daemon and no GPU (it warns about what it cannot check).
        Warm: the `docker run` line of each kind of slot container, then each trial's request as the
        shell line that writes it into the slot's folder."""
        if self.warm:
            return self._dry_run_warm(submissions)
        lines = [self.spec(s).command_line() for s in submissions]
        self._dry_run_warnings(submissions)
        return "\n".join(lines) + ("\n" if lines else "")

    def _dry_run_warm(self, submissions: Sequence[Submission]) -> str:
        lines: list[str] = []
        folders: dict[str, str] = {}
        for sub in submissions:
            spec = self.spec(sub)
            key = spec.slot_key()
            if key not in folders:
                slot = f"w{len(folders) + 1}"
                folders[key] = str(self._slot_base(sub.experiment_id, spec.labels[LABEL_STORE]) / slot)
                name = f"hpt-{sub.experiment_id}-{spec.labels[LABEL_STORE]}-{slot}"
                lines.append(f"mkdir -p {shell_quote(folders[key])} && {spec.for_slot(name, folders[key]).command_line()}")
            request = {"trial_id": sub.trial_id, "attempt": sub.attempt, "command": TRIAL_COMMAND, "args": [],
                       "env": {"HPT_MANIFEST": spec.environment["HPT_MANIFEST"]}}
            path = f"{folders[key]}/{sub.trial_id}{REQUEST}"
            lines.append(f"printf '%s\\n' {shell_quote(json.dumps(request))} > {shell_quote(path)}")
        if submissions:
            print("note: --warm runs one slot container per concurrent trial (up to --parallel) of each kind; "
                  "each runs its requests one at a time", file=sys.stderr)
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


def _give_to(folder: Path, user: str | None) -> None:
    """A slot folder made by root for a container running as another uid (HPT_DOCKER_USER): theirs to write."""
    if user and hasattr(os, "getuid") and os.getuid() == 0:
        uid, _, gid = user.partition(":")
        if uid.isdigit() and int(uid) != 0:
            os.chown(folder, int(uid), int(gid) if gid.isdigit() else -1)


def container_name(experiment_id: str, trial_id: str, store: str) -> str:
    """One name per trial of an experiment and store (hpt.store.store_id): the daemon refuses a second
    container with it, and another store's run of the plan has names of its own."""
    return f"hpt-{experiment_id}-{trial_id}-{store}"


def _short(err: BaseException) -> str:
    """Docker's own words, on one line (APIError's str carries the HTTP status and URL)."""
    explanation = getattr(err, "explanation", None)
    text = explanation.decode() if isinstance(explanation, bytes) else (explanation or str(err))
    return " ".join(str(text).split())
