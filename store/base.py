"""The results store: where every trial leaves its row, model, TensorBoard logs and log file.

Layout under the store's root URI:
    rows/<trial-id>.csv        one row per finished or failed trial, written create-only
    results.csv                every row merged, refreshed as trials finish
    models/<trial-id>/...      weights, manifest, preprocessing
    tensorboard/<trial-id>/    per-epoch curves
    logs/<trial-id>.log        the trial's captured output
    rows-failed/<id>.<n>.csv   earlier failed rows of a trial, moved aside by `hpt apply` before a retry
    index/rows/<segment>.json  the row index: what many row files hold, in a few objects (hpt.store.index)
    runs/<experiment-id>.json  what `hpt apply` is running now (for `hpt status` on any machine)
    claims/<trial-id>/<n>.json which apply runs the trial now, and its lease (hpt.store.claims)

A trial is done when its row exists. Implementations: LocalStore (a folder, path or file://) and
GCSStore (gs://bucket/prefix). `open_store(uri)` picks one (hpt.store.location knows the URI forms).
A dataset is read through the same interface (hpt.store.dataset).
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Iterator, Protocol, runtime_checkable

from hpt.schemas.errors import UserError
from hpt.store.location import check_scheme, is_gcs, store_uri

ROWS = "rows/"
RESULTS_CSV = "results.csv"
MODELS = "models/"
TENSORBOARD = "tensorboard/"
LOGS = "logs/"
ROUNDS = "rounds/"        # rounds/<experiment>.json: an adaptive plan's rounds, copied by `hpt apply` for the analysis


# How long a store call keeps retrying an unreachable store (an outage, a lost network) before it gives
# up: long enough to ride out a few minutes of outage without losing a trained model, short enough to
# end a command whose store is simply wrong. Seconds; HPT_STORE_DEADLINE_S overrides it.
STORE_DEADLINE_ENV = "HPT_STORE_DEADLINE_S"
DEFAULT_STORE_DEADLINE_S = 300.0
# The exit code of a program (hpt-trial) that gave up on an unreachable store without writing anything:
# EX_TEMPFAIL, "try again later" — `hpt apply` retries that trial instead of recording it failed.
EXIT_STORE_UNAVAILABLE = 75


class AlreadyExists(Exception):
    """A create-only write found the object already there (the trial already has a row)."""


class StoreUnavailable(UserError):
    """The store did not answer within the deadline (an outage, no network). A user error for the CLI
    (one line, exit 2); the trainer exits EXIT_STORE_UNAVAILABLE instead, so its trial is retried."""


def store_deadline_s() -> float:
    """The retry deadline for store calls: $HPT_STORE_DEADLINE_S, else DEFAULT_STORE_DEADLINE_S."""
    text = os.environ.get(STORE_DEADLINE_ENV, "").strip()
    if not text:
        return DEFAULT_STORE_DEADLINE_S
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise UserError(f"must be a positive number of seconds, got {text!r}", where=STORE_DEADLINE_ENV)
    return value


@runtime_checkable
class Store(Protocol):
    uri: str

    def put_once(self, key: str, data: bytes) -> None:
        """Create `key` with `data`; raise AlreadyExists if it exists. Never leaves a partial object."""

    def put(self, key: str, data: bytes) -> None:
        """Create or replace `key` atomically (readers see the old or the new object, never a mix)."""

    def get(self, key: str) -> bytes:
        """The object's bytes; KeyError if absent."""

    def get_versioned(self, key: str) -> tuple[bytes, str]:
        """The object's bytes and the version list_versions reports for exactly these bytes; KeyError if absent."""

    def exists(self, key: str) -> bool: ...

    def delete(self, key: str) -> None:
        """Remove `key` if present. Only `hpt apply` uses it: to move a failed trial's row aside
        (to rows-failed/) before retrying it; a done trial's row is never deleted."""

    def list(self, prefix: str = "") -> list[str]:
        """Keys under `prefix` (relative to the store root), sorted."""

    def list_versions(self, prefix: str) -> dict[str, str]:
        """Keys under `prefix` with a version each, from the same one listing: a token that changes
        whenever the object is written again (gs://: its generation). What the row index checks its
        entries against (hpt.store.index)."""

    def checksums(self, prefix: str = "") -> dict[str, str]:
        """Key → md5 (hex) of every object under `prefix`: what a dataset's partition digests are made of.
        A folder hashes the files' bytes; GCS answers from its listing (the md5 it keeps of each object)."""

    def put_tree(self, prefix: str, folder: Path) -> None:
        """Upload every file under a local folder to `prefix/...` (models, TensorBoard logs)."""

    def get_tree(self, prefix: str, folder: Path) -> None:
        """Download every object under `prefix/` into a local folder."""

    def url(self, key: str) -> str:
        """A URI naming the object, for rows and messages."""


class TreeTransfer:
    """put_tree/get_tree in terms of put/list/get: shared by every store implementation."""

    def put_tree(self, prefix: str, folder: Path) -> None:
        for path in sorted(Path(folder).rglob("*")):
            if path.is_file():
                self.put(f"{prefix.rstrip('/')}/{path.relative_to(folder).as_posix()}", path.read_bytes())  # type: ignore[attr-defined]

    def get_tree(self, prefix: str, folder: Path) -> None:
        prefix = prefix.rstrip("/") + "/"
        root = Path(folder).resolve()
        for key in self.list(prefix):  # type: ignore[attr-defined]
            target = Path(folder) / key[len(prefix):]
            if not target.resolve().is_relative_to(root):   # a listed name is data: never a way out of the folder
                raise UserError(f"the stored name {key!r} points outside {folder}", where=self.url(key))  # type: ignore[attr-defined]
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(self.get(key))  # type: ignore[attr-defined]


def open_store(uri: str) -> Store:
    """The store for a URI: gs://bucket[/prefix] → GCS, anything else (path, file://) → a local folder."""
    if not uri:
        raise UserError("empty results URI", hint="pass --results PATH or gs://bucket/prefix")
    if is_gcs(uri):
        from hpt.store.gcs import GCSStore

        return GCSStore(uri)
    check_scheme(uri, "results")
    from hpt.store.local import LocalStore

    return LocalStore(uri)


def store_id(uri: str) -> str:
    """A short stable name for the store at `uri` (however it is spelled: of store_uri(uri), as open_store
    spells it): what a label or a container or Job name on a shared host or cluster carries, so two stores'
    runs of one plan never take each other's."""
    return "s-" + hashlib.sha256(store_uri(uri).encode("utf-8")).hexdigest()[:10]


def row_key(trial_id: str) -> str:
    return f"{ROWS}{trial_id}.csv"


def iter_row_ids(store: Store) -> Iterator[str]:
    """Trial ids that have a row in the store (finished or failed)."""
    for key in store.list(ROWS):
        name = key[len(ROWS):]
        if name.endswith(".csv") and "/" not in name:
            yield name[:-4]


def read_text(uri: str) -> str:
    """Read one object/file by full URI (local path, file:// or gs://); KeyError if absent."""
    parent, _, name = uri.rstrip("/").rpartition("/")
    if is_gcs(uri) and parent == "gs:/":  # gs://bucket names a bucket, not an object
        raise KeyError(uri)
    return open_store(parent or ".").get(name).decode("utf-8")
