"""Where a URI points: a folder path, file://PATH, or gs://BUCKET[/PREFIX] — for stores and datasets alike.

The one place that knows these forms: open_store picks the implementation with it, the compiler makes
a spec's data location absolute with it, the trainer finds a dataset with it, and the Docker backend
finds the host folders to mount.
"""
from __future__ import annotations

import os
from pathlib import Path

from hpt.schemas.errors import UserError

FILE = "file://"
GCS = "gs://"
FORMS_HINT = "use a folder path, file://PATH or gs://BUCKET/PREFIX"


def is_gcs(uri: str) -> bool:
    return uri.startswith(GCS)


def check_scheme(uri: str, what: str, where: str | None = None) -> None:
    """A user error for a URI of any scheme but file:// and gs:// (`what`: "results", "data")."""
    if "://" in uri and not uri.startswith((FILE, GCS)):
        raise UserError(f"unsupported {what} URI scheme in {uri!r}", where=where, hint=FORMS_HINT)


def store_uri(uri: str) -> str:
    """The results URI as open_store(uri).uri spells it (what hpt.store.store_id digests), without opening
    the store (no credentials, no network): gs://BUCKET/PREFIX without slashes at the end, a folder as
    its resolved absolute path."""
    if is_gcs(uri):
        bucket, _, prefix = uri[len(GCS):].partition("/")
        return f"{GCS}{bucket}/{prefix.strip('/')}".rstrip("/")
    check_scheme(uri, "results")
    path = local_path(uri)
    assert path is not None   # check_scheme lets only a path or file:// through
    return str(Path(path).resolve())


def local_path(uri: str, base: str | Path | None = None) -> str | None:
    """The absolute, normalized path a local URI names (a path or file://PATH; ~ expanded; a relative
    path taken from `base`, by default the working folder). None for gs:// and any other scheme."""
    if not uri or ("://" in uri and not uri.startswith(FILE)):
        return None
    path = os.path.expanduser(uri[len(FILE):] if uri.startswith(FILE) else uri)
    return os.path.normpath(os.path.join(base if base is not None else os.getcwd(), path))
