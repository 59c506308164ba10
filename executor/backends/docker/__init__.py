"""The Docker backend, split by concept: the backend, a container per trial (backend.py); what that container
is (runspec.py: RunSpec, its name, labels, mounts, user, the emulator rewrite, the host's GPU pool); the
handle a trial travels with (handle.py); the daemon connection (daemon.py); warm slot containers
(slots.py) and the folder each one talks through (folder.py). docs/docker.md describes the behaviour."""
from __future__ import annotations

from hpt.executor.backends.docker.backend import DockerBackend, DockerOptions
from hpt.executor.backends.docker.handle import DockerHandle
from hpt.executor.backends.docker.runspec import (LABEL_ATTEMPT, LABEL_EXPERIMENT, LABEL_GPU_SHARE, LABEL_GPUS,
                                                  LABEL_RESULTS, LABEL_SLOT, LABEL_SLOT_KEY, LABEL_SLOT_MEMORY,
                                                  LABEL_STORE, LABEL_TRIAL, LABEL_VERSION, RunSpec, container_name,
                                                  detect_gpus, rewrite_emulator_host)

__all__ = ["DockerBackend", "DockerOptions", "DockerHandle", "RunSpec", "container_name", "detect_gpus",
           "rewrite_emulator_host", "LABEL_ATTEMPT", "LABEL_EXPERIMENT", "LABEL_GPU_SHARE", "LABEL_GPUS",
           "LABEL_RESULTS", "LABEL_SLOT", "LABEL_SLOT_KEY", "LABEL_SLOT_MEMORY", "LABEL_STORE", "LABEL_TRIAL",
           "LABEL_VERSION"]
