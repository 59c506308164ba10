"""Which dataset the trials read, and its coverage, from `dataset.json` alone.

`--data` beats the spec's `data`, which beats the demo dataset (hpt.schemas.dataset.demo_dataset_dir()).
A named dataset must describe itself; the demo one may not be built yet on this machine, in which case
its known coverage stands in. A gs:// dataset this machine cannot read is a warning: coverage unchecked.
"""
from __future__ import annotations

import datetime as dt
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
    info = _read(demo_dataset_dir(), "demo dataset", warnings, missing_ok=True)
    if info is None:
        return DatasetRef(uri=DEMO_URI, named=False, coverage=DEMO_COVERAGE)
    return DatasetRef(uri=DEMO_URI, named=False, coverage=(info.start, info.end), info=info)


def _named(uri: str, where: str, warnings: list[str]) -> DatasetRef:
    info = _read(uri, where, warnings, missing_ok=False)
    return DatasetRef(uri=uri, named=True, coverage=(info.start, info.end) if info else None, info=info)


def _read(uri: str, where: str, warnings: list[str], missing_ok: bool) -> DatasetInfo | None:
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
                        "date coverage was not checked")
        return None
    return DatasetInfo.from_json(text, where=location)
