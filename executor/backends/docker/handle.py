"""What the docker backend hands the executor loop for one trial, and how a trial that could not start ends."""
from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

from hpt.executor.backend import Phase, TrialStatus
from hpt.executor.backends.docker.folder import Slot
from hpt.executor.backends.docker.runspec import RunSpec

EXIT_COULD_NOT_START = 125          # what `docker run` exits with when the daemon cannot start it


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


def could_not_start(message: str) -> TrialStatus:
    """No log of its own: the reason (in the row and the log's attempt header) says it all."""
    return TrialStatus(Phase.FAILED, reason=f"could not start: {message}", exit_code=EXIT_COULD_NOT_START)
