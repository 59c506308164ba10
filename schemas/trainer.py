"""A user's trainer: the manifest's `trainer` section and the content hash of its source folder.

A manifest with a `trainer` section runs the user's program (docs/trial-protocol.md) instead of a
built-in architecture. The trial id covers the section without the folder's path (the same code in
another checkout is the same trial) and the manifest's image, so editing one source file, or
pointing at another image, gives every trial a new id and old results are never silently reused.
"""
from __future__ import annotations

import hashlib
import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hpt.schemas.errors import UserError
from hpt.schemas.files import NOT_REGULAR, is_pseudo

# Never part of the source: caches Python and tools write while the code runs or is edited, and hpt's
# own state folder (.hpt/, beside a plan).
IGNORED_DIRS = frozenset({"__pycache__", ".git", ".hg", ".venv", ".mypy_cache", ".pytest_cache", ".ipynb_checkpoints",
                          ".hpt"})
# A results store's top-level entries (store/base.py's layout, store/claims.py (claims/, owners/), store/index.py, executor/loop.py's
# runs/): a folder holding only these, one of them a folder hpt writes as trials run, is a store, not source.
# A results store's top-level entries (each module that writes one names it; tests/test_user_trainer.py checks
# that every such name is listed here).
STORE_ENTRIES = frozenset({"rows", "rows-failed", "results.csv", "models", "tensorboard", "logs", "index", "runs",
                           "claims", "owners", "rounds", "stops", "curves", "verdicts"})
STORE_WRITTEN = frozenset({"rows", "rows-failed", "index", "runs", "claims", "results.csv"})
IGNORED_SUFFIXES = (".pyc", ".pyo")
# The manifest's trainer fields that are a local detail, not what the trial computes.
NOT_HASHED = ("source",)
# A source folder is code: these bound the hash of a mistaken "source": "/" or a symlink loop.
MAX_SOURCE_FILES = 20_000
MAX_SOURCE_BYTES = 1 << 30


def is_hpt_output(folder: Path) -> bool:
    """A plan (`hpt compile --out`) or a results store (`hpt apply --results`) written inside the source: by
    their markers, not their names, so `cd repo; hpt compile sweep.yaml --out plan; hpt apply plan --results
    results` leaves the source hash — and so every trial id — as it was at compile."""
    from hpt.schemas.plan import KIND as PLAN_KIND, MAX_PLAN_BYTES, PLAN_FILE, TRIALS_DIR  # plan.py imports this module
    plan = folder / PLAN_FILE
    if plan.is_file() and not plan.is_symlink():
        # A plan's layout and its kind; a regex, not json.load: hpt-trial hashes before every trial and a
        # 250,000-trial plan.json is ~25 MB (plan.json's keys are sorted, so "kind" is not near its start).
        try:
            if not (folder / TRIALS_DIR).is_dir() or plan.stat().st_size > MAX_PLAN_BYTES:
                return False
            return re.search(rb'"kind"\s*:\s*"%s"' % PLAN_KIND.encode(), plan.read_bytes()) is not None
        except OSError:
            return False
    try:
        names = {entry.name for entry in os.scandir(folder) if not entry.name.startswith(".")}  # .x.tmp: a write
    except OSError:
        return False
    # A store holds only its own entries; a transient one (a lock, a temp file mid-write) must not flip it.
    return bool(names & STORE_WRITTEN) and len(names - STORE_ENTRIES) <= len(names & STORE_ENTRIES) // 2


def source_digest(folder: str | Path) -> str:
    """sha256 over every regular file's relative path, executable bit and bytes, in path order; caches
    (IGNORED_DIRS) and hpt's own plans and stores inside the folder (is_hpt_output) are not source."""
    root = Path(folder)
    if not root.is_dir():
        raise UserError(f"trainer source {str(root)!r} is not a folder", where="trainer.source")
    outer = hashlib.sha256()
    files = size = 0
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        dirnames[:] = sorted(d for d in dirnames if d not in IGNORED_DIRS and not d.endswith(".egg-info")
                             and not is_hpt_output(Path(dirpath) / d))
        for name in sorted(filenames):
            if name.endswith(IGNORED_SUFFIXES):
                continue
            path = Path(dirpath) / name
            rel = path.relative_to(root).as_posix()
            try:
                info = path.stat()
                if not stat.S_ISREG(info.st_mode):  # a FIFO or a device (/dev/zero) is not source, and never ends
                    continue
                if is_pseudo(path):  # a link into /proc, /sys or /dev: the kernel's files (/proc/kmsg blocks)
                    raise UserError(f"{rel} is {NOT_REGULAR}: a link into {os.path.realpath(path)}", where="trainer.source")
                files, size = files + 1, size + info.st_size
                if files > MAX_SOURCE_FILES or size > MAX_SOURCE_BYTES:
                    raise UserError(f"more than {MAX_SOURCE_FILES:,} files or {MAX_SOURCE_BYTES >> 20} MiB (a symlink "
                                    "loop, or a folder that is not just code?)", where="trainer.source")
                with path.open("rb") as stream:
                    content = hashlib.file_digest(stream, "sha256").hexdigest()
                executable = bool(info.st_mode & stat.S_IXUSR)
            except OSError as err:
                raise UserError(f"cannot read {rel}: {err.strerror}", where="trainer.source") from None
            outer.update(f"{rel}\0{int(executable)}\0{content}\n".encode())
    return "sha256:" + outer.hexdigest()


@dataclass(frozen=True)
class UserTrainer:
    """The manifest's `trainer` section, typed: exactly one of entrypoint and command."""
    source: str                    # the folder on the machine that compiled (absolute)
    digest: str                    # source_digest of that folder when compiled
    entrypoint: str = ""           # "package.module:function", run with the folder on sys.path
    command: tuple[str, ...] = ()  # argv, run in the folder; may be a template (compiler/macros.py)
    program: str = ""              # what W&B's ${program} stands for
    argv: tuple[str, ...] = ()     # a manifest's: the command rendered for its hyperparameters (a template's only)
    metrics_from: dict[str, Any] | None = None   # how hpt-trial collects metrics (trainer/collectors); None: hpt's lines
    collect: str = ""              # LOG_COLLECTED: the image has no hpt; the backend runs the command as it is and
                                   # hpt apply reads the metrics from the container's log (executor-side collection)
    job: dict[str, Any] | None = None   # a Katib trialSpec (batch/v1 Job) the k8s backend runs; in a manifest rendered
    container: str = ""            # the job's primary container (Katib's primaryContainerName): the trainer

    def to_dict(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"source": self.source, "digest": self.digest}
        if self.entrypoint:
            doc["entrypoint"] = self.entrypoint
        else:
            doc["command"] = list(self.command)
        if self.program:
            doc["program"] = self.program
        if self.argv:
            doc["argv"] = list(self.argv)
        if self.metrics_from:
            doc["metrics_from"] = dict(self.metrics_from)
        if self.collect:
            doc["collect"] = self.collect
        if self.job is not None:
            doc["job"] = self.job
            doc["container"] = self.container
        return doc

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> "UserTrainer":
        return cls(source=doc["source"], digest=doc["digest"], entrypoint=doc.get("entrypoint", ""),
                   command=tuple(doc.get("command", ())), program=doc.get("program", ""),
                   argv=tuple(doc.get("argv", ())), metrics_from=doc.get("metrics_from"), collect=doc.get("collect", ""),
                   job=doc.get("job"), container=doc.get("container", ""))


LOG_COLLECTED = "log"   # trainer.collect: the backend runs the image's program as it is; apply collects from its log


def log_collected(trainer: dict[str, Any] | None) -> bool:
    """A manifest's trainer whose image has no hpt (trainer.collect "log"): no hpt-trial runs inside."""
    return bool(trainer) and trainer.get("collect") == LOG_COLLECTED   # type: ignore[union-attr]


def primary_container(trainer: dict[str, Any]) -> dict[str, Any] | None:
    """The rendered job's primary container (the trainer), None without a job."""
    job = trainer.get("job")
    if not isinstance(job, dict):
        return None
    containers = (((job.get("spec") or {}).get("template") or {}).get("spec") or {}).get("containers") or []
    return next((c for c in containers if isinstance(c, dict) and c.get("name") == trainer.get("container")), None)


def hashed_trainer(doc: dict[str, Any]) -> dict[str, Any]:
    """What the trial id takes from a manifest's `trainer` section."""
    return {k: v for k, v in doc.items() if k not in NOT_HASHED}


MUTABLE_TAGS = ("latest", "main", "master", "dev", "edge", "nightly", "stable")


# The end of a trial's reason when only a new plan can fix it (its trainer's source changed since compile):
# hpt apply then says to recompile, not to re-apply (which would fail the same way).
RECOMPILE = "recompile the spec"
USER_IMAGE_PREFIX = "hpt-user-"   # a user trainer's default image: hpt-user-NAME:<first 12 of the digest>


def mutable_image(reference: str) -> bool:
    """True when an image reference may point at other bytes tomorrow: no digest and a moving (or no) tag."""
    if "@sha256:" in reference:
        return False
    last = reference.rsplit("/", 1)[-1]
    tag = last.split(":", 1)[1] if ":" in last else "latest"
    return tag in MUTABLE_TAGS
