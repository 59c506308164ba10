"""What one trial's container is: RunSpec, everything `docker run` needs, built by one pure function
(`trial_spec`) for both `submit` and `--dry-run`, so the printed `docker run` line is what really runs.

What a container gets:
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
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import re
import shutil
import subprocess
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Sequence

from hpt.executor.backend import Submission
from hpt.executor.shell import mount_option, shell_quote
from hpt.schemas.dataset import local_data_uri
from hpt.schemas.resources import Resources
from hpt.store import local_path, store_id
from hpt.store.cache import CACHE_ENV, PREP
from hpt.store.ownership import TICKET_ENV
from hpt.schemas.trainer import log_collected, primary_container

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
TRIAL_ENV = ("HPT_MANIFEST", TICKET_ENV)  # what is one trial's own, not its container's: a slot gets it per request
CONTAINER_CACHE = "/var/cache/hpt"  # HPT_CACHE inside: the host's prep/ cache is mounted under it
EMULATOR_HOSTNAME = "host.docker.internal"
WARM_COMMAND = ("python3", "-m", "hpt.trainer.warm", "--folder")   # a slot container's program, then its folder


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



def gpu_pool(option: Sequence[str] | str | int | None) -> list[str]:
    """The GPU ids to hand out: the option, else $HPT_GPUS, else this host's (detect_gpus)."""
    if option is None:
        option = os.environ.get("HPT_GPUS")
        if option is None:
            return detect_gpus()
    if isinstance(option, int):
        return [str(i) for i in range(option)]
    if isinstance(option, str):
        return [g.strip() for g in option.split(",") if g.strip()]
    return [str(g) for g in option]



def container_name(experiment_id: str, trial_id: str, store: str) -> str:
    """One name per trial of an experiment and store (hpt.store.store_id): the daemon refuses a second
    container with it, and another store's run of the plan has names of its own."""
    return f"hpt-{experiment_id}-{trial_id}-{store}"



def container_user(option: str | None) -> str | None:
    """The --user a container runs as: $HPT_DOCKER_USER, else the option ("auto": the caller's uid:gid)."""
    option = os.environ.get("HPT_DOCKER_USER") or option
    if option == "image":
        return None
    if option != "auto":
        return option or None
    if not hasattr(os, "getuid"):
        return None
    return f"{os.getuid()}:{os.getgid()}"


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
        env = {k: v for k, v in self.environment.items() if k not in TRIAL_ENV}
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
        return replace(self, name=name, environment={k: v for k, v in self.environment.items() if k not in TRIAL_ENV},
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



def trial_spec(sub: Submission, user: str | None, pass_env: tuple[str, ...], prep_cache: Path) -> RunSpec:
    """The container of one trial (see the module doc); prep_cache is the host's preprocessing cache."""
    from hpt.schemas import __version__

    image = sub.manifest.image
    resources = sub.manifest.resources
    cpus = float(resources.cpus)
    env = {"HPT_MANIFEST": sub.manifest_json, "HPT_RESULTS": sub.results_uri, "PYTHONUNBUFFERED": "1"}
    threads = str(max(1, math.ceil(cpus)))
    env.update(HPT_CPUS=f"{cpus:g}", OMP_NUM_THREADS=threads, MKL_NUM_THREADS=threads)
    env.update(sub.ticket_env)  # per launch, like the manifest: never part of a slot's key
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
    binds.append((str(prep_cache), f"{CONTAINER_CACHE}/{PREP}", "rw"))
    env[CACHE_ENV] = CONTAINER_CACHE
    relative = any(not os.path.isabs(p) for p in (data_uri, sub.results_uri) if p and local_path(p))
    store = store_id(sub.results_uri)
    labels = {LABEL_EXPERIMENT: sub.experiment_id, LABEL_STORE: store, LABEL_TRIAL: sub.trial_id,
              LABEL_VERSION: __version__, LABEL_ATTEMPT: str(sub.attempt)}
    if results_path:
        labels[LABEL_RESULTS] = results_path
    if 0 < resources.gpu_share < 1:
        labels[LABEL_GPU_SHARE] = str(resources.gpu_share)
    spec = RunSpec(image=image, name=container_name(sub.experiment_id, sub.trial_id, store), environment=env,
                   labels=labels, binds=binds, user=user, resources=resources, extra_hosts=extra_hosts,
                   working_dir=os.getcwd() if relative else None, pass_env=pass_env)
    return own_program(spec, sub.manifest.trainer) if log_collected(sub.manifest.trainer) else spec


def own_program(spec: RunSpec, trainer: dict[str, Any]) -> RunSpec:
    """A trial image with no hpt inside (trainer.collect log): its program as the manifest renders it — a
    Katib job's primary container (its command as the entrypoint, its args, env values and workingDir, as
    Kubernetes runs them), else the argv — in the image's own working folder; hpt apply reads its log. No
    mount: the program reads its own data, and the store is apply's to write, not the program's."""
    container = primary_container(trainer)
    # what the k8s backend gives a trial's own Job too: no manifest, no credentials, no store emulator
    kept = ("PYTHONUNBUFFERED", "HPT_CPUS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "HPT_RESULTS", *TRIAL_ENV[1:])
    env = {k: v for k, v in spec.environment.items() if k in kept} | {"HPT_TRIAL_ID": spec.labels[LABEL_TRIAL],
                                                                        "HPT_ATTEMPT": spec.labels[LABEL_ATTEMPT]}
    spec = replace(spec, binds=[], working_dir=None, environment=env, extra_hosts={}, pass_env=())
    if container is None:
        argv = tuple(trainer.get("argv") or trainer.get("command") or ())
        return replace(spec, entrypoint=argv[:1], command=argv[1:])
    for item in container.get("env") or []:   # valueFrom (a secret, a field) needs a cluster: not on docker
        if isinstance(item, dict) and isinstance(item.get("name"), str) and isinstance(item.get("value"), str):
            env[item["name"]] = item["value"]
    return replace(spec, entrypoint=tuple(str(a) for a in container.get("command") or ()),
                   command=tuple(str(a) for a in container.get("args") or ()), environment=env,
                   working_dir=container.get("workingDir") or None)
