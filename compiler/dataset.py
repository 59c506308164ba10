"""Which dataset the trials read, and its coverage, from `dataset.json` alone.

`--data` beats the spec's `data`, which beats the demo dataset (hpt.schemas.dataset.demo_dataset_dir()).
A named dataset must describe itself; the demo one may not be built yet on this machine, in which case
its known coverage stands in. A gs:// dataset this machine cannot read is a warning: coverage unchecked.

What the trial ids know of the data's content comes from here too (data_identity): the partition digests of
dataset.json (version 2), or, for a descriptor without them, the digest of dataset.json itself — with a
warning, since then a month edited in place keeps its trials' ids.
"""
from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass
from pathlib import Path

from hpt.store import DatasetStore, check_scheme, is_gcs, local_path
from hpt.schemas.dataset import DEMO_COVERAGE, DEMO_URI, DESCRIPTOR, DatasetInfo, demo_dataset_dir
from hpt.schemas.errors import UserError


@dataclass(frozen=True)
class DatasetRef:
    uri: str                                   # absolute path or gs:// URI: what manifests carry
    named: bool                                # the spec or --data named it (False: the demo default)
    coverage: tuple[dt.date, dt.date] | None   # None: could not be read here
    info: DatasetInfo | None = None
    descriptor_digest: str = ""                # sha256 of dataset.json's bytes ("" when not read)

    @property
    def partitions(self) -> dict[str, str] | None:
        """'YYYY-MM' → content digest from dataset.json; None when it has none (or was not read)."""
        return dict(self.info.partitions) if self.info is not None and self.info.partitions else None


def absolute_uri(uri: str, base: Path) -> str:
    """gs:// stays as it is (without a trailing slash); a path or file:// becomes an absolute path."""
    if is_gcs(uri):
        return uri.rstrip("/")
    check_scheme(uri, "data", where="data")
    path = local_path(uri, base)
    assert path is not None  # check_scheme let only the local forms through
    return path


def resolve_dataset(spec_data: str | None, cli_data: str | None, spec_dir: Path, warnings: list[str]) -> DatasetRef:
    if cli_data:
        return _named(absolute_uri(cli_data, Path.cwd()), "--data", warnings)
    if spec_data:
        return _named(absolute_uri(spec_data, spec_dir), "data", warnings)
    # Manifests carry the demo URI, not this machine's cache path, so trial ids stay machine-independent.
    read = _read(demo_dataset_dir(), "demo dataset", warnings, missing_ok=True)
    if read is None:
        return DatasetRef(uri=DEMO_URI, named=False, coverage=DEMO_COVERAGE)
    info, digest = read
    return _identified(DatasetRef(uri=DEMO_URI, named=False, coverage=(info.start, info.end), info=info,
                                  descriptor_digest=digest), "demo dataset", warnings)


def _named(uri: str, where: str, warnings: list[str]) -> DatasetRef:
    read = _read(uri, where, warnings, missing_ok=False)
    if read is None:
        return DatasetRef(uri=uri, named=True, coverage=None)
    info, digest = read
    return _identified(DatasetRef(uri=uri, named=True, coverage=(info.start, info.end), info=info,
                                  descriptor_digest=digest), where, warnings)


def _identified(ref: DatasetRef, where: str, warnings: list[str]) -> DatasetRef:
    if ref.partitions is None:
        warnings.append(f"{where}: {ref.uri}/{DESCRIPTOR} has no partition digests, so trial ids cannot tell when a "
                        "month's data changes and a changed month would reuse results trained on the old data; "
                        f"the digest of {DESCRIPTOR} stands in (run `hpt data index {ref.uri}` to add them)")
    return ref


def data_identity(ref: DatasetRef) -> dict[str, str]:
    """What the manifests' `data` section carries besides the URI and the months' digests, when the digests
    are missing: the descriptor's digest, else nothing (an unread dataset; compile has warned)."""
    if ref.partitions is None and ref.descriptor_digest:
        return {"descriptor": ref.descriptor_digest}
    return {}


def _read(uri: str, where: str, warnings: list[str], missing_ok: bool) -> tuple[DatasetInfo, str] | None:
    location = f"{uri}/{DESCRIPTOR}"
    try:
        text = DatasetStore(uri).descriptor()
    except KeyError:
        if missing_ok:
            return None
        raise UserError(f"no {DESCRIPTOR} at {location}", where=where,
                        hint="a dataset is a folder with dataset.json and month partitions; `hpt data demo --out DIR` builds the demo one there") from None
    except Exception as err:  # noqa: BLE001 — gs:// without credentials, network down: anything the client raises
        if not is_gcs(uri):
            if isinstance(err, UserError):
                raise
            raise UserError(f"cannot read {location}: {err}", where=where) from None
        text = err.message if isinstance(err, UserError) else str(err)
        first_line = text.strip().splitlines()[0] if text.strip() else type(err).__name__
        warnings.append(f"{where}: cannot read {location} from this machine ({first_line[:160]}); "
                        "date coverage was not checked, and trial ids do not cover the data's content (a changed "
                        "month would reuse results trained on the old data)")
        return None
    return DatasetInfo.from_json(text, where=location), "sha256:" + hashlib.sha256(text.encode("utf-8")).hexdigest()
