"""The extension point for where trials run: a Backend submits, polls, cancels and reads logs.

The scheduling loop (hpt.executor.loop) is the only caller; `hpt delete` calls `delete_plan`. A backend receives the manifest as
it was written by the compiler (its JSON text, byte for byte) and the results store URI, and
starts `hpt-trial` with both, in whatever form it runs things: a subprocess, a container, a Job.
"""
from __future__ import annotations

import enum
import os
from abc import ABC, abstractmethod
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, ClassVar, Protocol, Self, Sequence

from hpt.schemas.errors import UserError
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
    ticket: str = ""            # the ownership ticket of this launch (hpt.store.ownership): the backend passes
                                # it to the trial as $HPT_TRIAL_TICKET; "" in a dry run
    judged: bool = False        # the apply judges its reports (in-trial stopping): it awaits the verdict on its last

    @property
    def ticket_env(self) -> dict[str, str]:
        """The environment that carries the ticket into the trial process."""
        from hpt.schemas.stopping import AWAITS_VERDICT_ENV
        from hpt.store.ownership import TICKET_ENV

        return ({TICKET_ENV: self.ticket} if self.ticket else {}) | ({AWAITS_VERDICT_ENV: "1"} if self.judged else {})

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
    """A backend's reference to one running trial (a process, a container, a Job)."""
    trial_id: str
    attempt: int


class Backend(ABC):
    """Where trials run. A backend names itself (`name`), declares its options as a dataclass (`Options`,
    every field with a default) and implements the abstract methods; the other members have defaults
    that fit a backend whose trials end with `hpt apply`. The loop uses nothing else."""

    name: ClassVar[str]
    Options: ClassVar[type]
    poll_interval: ClassVar[float] = 0.2     # seconds between polls of the running trials

    @classmethod
    def with_options(cls, **given: Any) -> Self:
        """The backend built from keyword options; an unknown one is a UserError naming it."""
        known = [f.name for f in fields(cls.Options)]
        unknown = sorted(set(given) - set(known))
        if unknown:
            raise UserError(f"unknown option {unknown[0]!r} for the {cls.name} backend", where=unknown[0],
                            hint=f"known: {', '.join(known)}")
        return cls(cls.Options(**given))

    @abstractmethod
    def preflight(self, submissions: Sequence[Submission]) -> None:
        """Check, before any trial starts, that everything is there (daemon, image, GPUs, cluster).
        Raise hpt.schemas.UserError with a clear message if not."""

    @abstractmethod
    def capacity(self) -> int:
        """How many trials this backend can run at once by default (cores, GPUs, cluster quota)."""

    def adopt(self, experiment_id: str, results_uri: str) -> dict[str, Handle]:
        """Trials of this experiment writing to this store (`results_uri`, as Submission.results_uri
        spells it) still running from an earlier `hpt apply` (crash, Ctrl-C): trial id → handle, so the
        loop re-attaches instead of starting duplicates. Another store's trials of the same plan are not
        this apply's: a backend that keeps state across applies keys it on the store too."""
        return {}

    @abstractmethod
    def submit(self, submission: Submission) -> Handle: ...

    @abstractmethod
    def poll(self, handle: Handle) -> TrialStatus: ...

    @abstractmethod
    def cancel(self, handle: Handle) -> None: ...

    def logs(self, handle: Handle) -> str:
        """The trial's output so far (stdout and stderr)."""
        return ""

    def release(self, handle: Handle) -> None:
        """Free what the finished trial held (remove the container, forget the process)."""

    @abstractmethod
    def dry_run(self, submissions: Sequence[Submission]) -> str:
        """What would run, in this backend's own form (commands, `docker run` lines, YAML)."""

    @property
    def cancel_on_interrupt(self) -> bool:
        """Whether an interrupted `hpt apply` cancels its running trials (False: they outlive it)."""
        return True

    def follow_hint(self, experiment_id: str) -> str:
        """How to follow trials an interrupted apply left running."""
        return "they keep running"

    def delete_plan(self, submissions: Sequence[Submission], dry_run: bool = False) -> dict[str, list[str]]:
        """Remove what this backend keeps of a plan outside the results store (`hpt delete`; with dry_run
        only list it): kind → names. Of every store's applies when the submissions name no results_uri
        (a plan as loaded), else only of that store's. Trials that end with the apply leave nothing."""
        return {}

    def close(self) -> None:
        """The apply is over: stop watches, close clients."""


LOG_TAIL_BYTES = 2_000_000  # what a backend's logs() returns at most of a log file: its end


def log_tail(path: Path) -> str:
    """The end of a trial's log file (at most LOG_TAIL_BYTES), "" when there is none yet."""
    try:
        with open(path, "rb") as fh:
            size = fh.seek(0, os.SEEK_END)
            fh.seek(max(0, size - LOG_TAIL_BYTES))
            return fh.read().decode("utf-8", errors="replace")
    except OSError:
        return ""
