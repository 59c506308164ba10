"""The extension point for where trials run: a Backend submits, polls, cancels and reads logs.

The scheduling loop (hpt.executor.loop) is the only caller. A backend receives the manifest as
it was written by the compiler (its JSON text, byte for byte) and the results store URI, and
starts `hpt-trial` with both, in whatever form it runs things: a subprocess, a container, a Job.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Protocol, Sequence, runtime_checkable

from hpt.schemas.manifest import TrialManifest


class Phase(str, enum.Enum):
    PENDING = "pending"      # submitted, not started yet (image pull, scheduling)
    RUNNING = "running"
    SUCCEEDED = "succeeded"  # the trainer exited 0 (its row should be in the store)
    FAILED = "failed"        # see TrialStatus.reason


@dataclass(frozen=True)
class Submission:
    """What a backend needs to run one trial."""
    manifest: TrialManifest     # the typed view: image, resources, kubernetes settings, labels
    manifest_json: str          # the manifest file's text, unchanged: what the trial itself reads
    results_uri: str
    timeout_s: float | None = None
    attempt: int = 1

    @classmethod
    def of(cls, manifest: TrialManifest, results_uri: str, timeout_s: float | None = None, attempt: int = 1) -> "Submission":
        return cls(manifest, manifest.to_json(), results_uri, timeout_s, attempt)

    @property
    def trial_id(self) -> str:
        return self.manifest.id

    @property
    def experiment_id(self) -> str:
        return self.manifest.experiment


@dataclass(frozen=True)
class TrialStatus:
    phase: Phase
    reason: str = ""              # for FAILED: "exit code 3", "OOM-killed", "timed out after 600 s", ...
    exit_code: int | None = None
    transient: bool = False       # a failure worth retrying (node lost, daemon hiccup), not a trainer error

    @property
    def finished(self) -> bool:
        return self.phase in (Phase.SUCCEEDED, Phase.FAILED)


class Handle(Protocol):
    """Opaque per-backend reference to a running trial (a Popen, a container id, a Job name)."""
    trial_id: str


@runtime_checkable
class Backend(Protocol):
    name: str

    def preflight(self, submissions: Sequence[Submission]) -> None:
        """Check, before any trial starts, that everything is there (daemon, image, GPUs, cluster).
        Raise hpt.schemas.UserError with a clear message if not."""

    def capacity(self) -> int:
        """How many trials this backend can run at once by default (cores, GPUs, cluster quota)."""

    def adopt(self, experiment_id: str) -> dict[str, Handle]:
        """Trials of this experiment still running from an earlier `hpt apply` (crash, Ctrl-C):
        trial id → handle, so the loop re-attaches instead of starting duplicates."""

    def submit(self, submission: Submission) -> Handle: ...

    def poll(self, handle: Handle) -> TrialStatus: ...

    def cancel(self, handle: Handle) -> None: ...

    def logs(self, handle: Handle) -> str:
        """The trial's output so far (stdout and stderr)."""

    def release(self, handle: Handle) -> None:
        """Free what the finished trial held (remove the container, forget the process)."""

    def dry_run(self, submissions: Sequence[Submission]) -> str:
        """What would run, in this backend's own form (commands, `docker run` lines, YAML)."""
