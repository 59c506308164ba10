"""A dataset behind the store interface: its descriptor (`dataset.json`) and its month partitions.

A dataset is a folder — a path, file:// or gs:// — holding hpt.schemas.dataset.DESCRIPTOR and one
folder of Parquet files per month, named by DatasetInfo.partition (`month=YYYY-MM/*.parquet`). It is
read and written through open_store, like rows and models: a gs:// dataset and a local one are the same
to the compiler (which reads only the descriptor), the trainer and `hpt data` (write_dataset, the one writer).

Each month's content digest (hpt.schemas.dataset.partition_digest) is made of the store's md5s of its
Parquet files: write_dataset records them as it writes, index_dataset adds them to a folder made by other
means (from the store's checksums: a gs:// listing, no download), and read_month checks the bytes a trial
reads against the digest its manifest was compiled with.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import io
import os
import shutil
import tempfile
from dataclasses import replace as replace_fields
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

from hpt.schemas.dataset import DESCRIPTOR, EMPTY_PARTITION, DatasetInfo, months_between, partition_digest
from hpt.schemas.errors import UserError
from hpt.schemas.trainer import RECOMPILE
from hpt.store.base import Store, open_store
from hpt.store.location import local_path

PARQUET = ".parquet"
DATA_CHANGED = f"the data changed since compile: {RECOMPILE}"   # apply then says re-applying would fail the same way


class DataChanged(UserError):
    """A month partition's content is not the one the trial's manifest was compiled with."""


class DatasetStore:
    def __init__(self, uri: str):
        self.store: Store = open_store(uri)
        self.uri = self.store.uri

    def descriptor(self) -> str:
        """The text of dataset.json; KeyError if the folder has none."""
        return self.store.get(DESCRIPTOR).decode("utf-8")

    def info(self) -> DatasetInfo:
        return DatasetInfo.from_json(self.descriptor(), where=f"{self.uri}/{DESCRIPTOR}")

    def parts(self, month: str) -> list[str]:
        """Keys of one month's Parquet files ('YYYY-MM'), anywhere under its partition folder, sorted."""
        return [k for k in self.store.list(DatasetInfo.partition(month) + "/") if k.endswith(PARQUET)]

    def months(self) -> dict[str, list[str]]:
        """Every month with Parquet files → its keys, in month order."""
        found: dict[str, list[str]] = {}
        for key in self.store.list():
            folder, _, name = key.partition("/")
            month = DatasetInfo.partition_month(folder)
            if month is not None and name.endswith(PARQUET):
                found.setdefault(month, []).append(key)
        return dict(sorted(found.items()))

    def get(self, key: str) -> bytes:
        return self.store.get(key)

    def digests(self, months: Iterable[str] | None = None) -> dict[str, str]:
        """Each month's digest as the store's checksums say now (no Parquet is decoded; a gs:// dataset is
        not downloaded): every month with Parquet files when `months` is None, else those months, an empty
        one having the empty partition's digest."""
        if months is None:
            grouped: dict[str, dict[str, str]] = {}
            for key, md5 in self.store.checksums().items():
                folder, _, name = key.partition("/")
                month = DatasetInfo.partition_month(folder)
                if month is not None and name.endswith(PARQUET):
                    grouped.setdefault(month, {})[name] = md5
            return {month: partition_digest(files) for month, files in sorted(grouped.items())}
        out = {}
        for month in months:
            prefix = DatasetInfo.partition(month) + "/"
            out[month] = partition_digest({key[len(prefix):]: md5 for key, md5 in self.store.checksums(prefix).items()
                                           if key.endswith(PARQUET)})
        return out

    def check(self, expected: Mapping[str, str]) -> None:
        """Raise DataChanged unless every month of `expected` ('YYYY-MM' → digest, from a manifest) has that
        digest now: the check of a trial that does not read the bytes (its preprocessing is cached)."""
        now = self.digests(sorted(expected))
        for month in sorted(expected):
            if now[month] != expected[month]:
                raise self._changed(month, now[month], expected[month])

    def read_month(self, month: str, expected: str | None = None) -> list[tuple[str, bytes]]:
        """Every Parquet file of one month ('YYYY-MM'): (key, bytes), in key order. With `expected` (the
        manifest's digest of that month) the bytes read must make that digest, else DataChanged: a trial
        never computes a row on other data than its id covers."""
        prefix = DatasetInfo.partition(month) + "/"
        files = [(key, self.get(key)) for key in self.parts(month)]
        if expected is not None:
            now = partition_digest({key[len(prefix):]: hashlib.md5(data).hexdigest() for key, data in files})
            if now != expected:
                raise self._changed(month, now, expected)
        return files

    def _changed(self, month: str, now: str, expected: str) -> DataChanged:
        return DataChanged(f"{DATA_CHANGED} ({DatasetInfo.partition(month)} has digest {now[:19]}… now, "
                           f"{expected[:19]}… in the trial's manifest)", where=self.uri,
                           hint=f"if its files were edited in place, `hpt data index {self.uri}` first; then `hpt compile` "
                                "again: the months that changed get new trial ids")


def index_dataset(uri: str) -> DatasetInfo:
    """Add (or refresh) the partition digests in the dataset.json of a dataset made by other means, from the
    store's checksums (a local folder's files are hashed; a gs:// listing is enough). Returns the descriptor written."""
    dataset = DatasetStore(uri)
    try:
        info = dataset.info()
    except KeyError:
        raise UserError(f"no {DESCRIPTOR} here: not a dataset folder", where=dataset.uri,
                        hint="write a dataset.json naming the timestamp and target columns and the coverage "
                             "(docs/trainer.md), or make the folder with `hpt data import`") from None
    digests = dataset.digests()
    if not digests:
        raise UserError(f"no month partitions ({DatasetInfo.partition('YYYY-MM')}/*.parquet)", where=dataset.uri)
    info = replace_fields(info, partitions=digests)
    dataset.store.put(DESCRIPTOR, info.to_json().encode("utf-8"))
    return info


PART = "part-0.parquet"  # the one file a writer puts in each month's partition


def read_window(dataset: DatasetStore, info: DatasetInfo, start: dt.date, stop: dt.date,
                columns: list[str] | None = None, partitions: Mapping[str, str] | None = None):
    """The one reader of a dataset's rows: those with start ≤ timestamp < stop, as a pandas DataFrame of
    `columns` (default: every column), reading only the month partitions the range overlaps, timestamps as
    naive UTC. Unsorted within a month (callers that need an order sort). With `partitions` (a manifest's
    `data.partitions`) every month read must have the digest compiled into it, else DataChanged (a month the
    manifest lacks was empty then: a trial without windows, on data that grew since)."""
    import pandas as pd

    frames = [_read_part(dataset, info, key, data, columns) for month in months_between(start, stop)
              for key, data in dataset.read_month(month, partitions.get(month, EMPTY_PARTITION) if partitions is not None else None)]
    if not frames:
        return pd.DataFrame({c: [] for c in columns or [info.timestamp]})
    frame = pd.concat(frames, ignore_index=True)
    keep = (frame[info.timestamp] >= pd.Timestamp(start)) & (frame[info.timestamp] < pd.Timestamp(stop))
    return frame[keep].reset_index(drop=True)


def _read_part(dataset: DatasetStore, info: DatasetInfo, key: str, data: bytes, columns: list[str] | None):
    """One Parquet file's columns (its bytes, as read from `key`) as a DataFrame, timestamps as naive UTC."""
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq

    where = f"{dataset.uri}/{key}"
    try:
        buffer = pa.BufferReader(data)
        names = set(pq.read_schema(buffer).names)
        missing = [c for c in (columns or [info.timestamp]) if c not in names]
        if missing:
            raise UserError(f"partition lacks column(s) {', '.join(missing)} named in {DESCRIPTOR}", where=where)
        buffer.seek(0)
        frame = pq.read_table(buffer, columns=columns).to_pandas()
    except (pa.ArrowException, OSError) as err:
        raise UserError(f"unreadable Parquet partition: {str(err).splitlines()[0]}", where=where) from None
    try:
        stamps = pd.to_datetime(frame[info.timestamp])
    except (ValueError, TypeError) as err:
        raise UserError(f"column {info.timestamp!r} is not a timestamp: {err}", where=where) from None
    if getattr(stamps.dt, "tz", None) is not None:  # windows are calendar dates in UTC
        stamps = stamps.dt.tz_convert("UTC").dt.tz_localize(None)
    frame[info.timestamp] = stamps
    return frame


def write_dataset(uri: str, frame, info: DatasetInfo, *, replace: bool = False,
                  per_month: Callable[[str, Any], Any] | None = None,
                  superseded: Callable[[], bool] | None = None,
                  progress: Callable[[str], None] | None = None) -> DatasetInfo:
    """Write `frame` (a pandas DataFrame sorted by `info.timestamp`, naive UTC times) as a dataset at
    `uri`: one `month=YYYY-MM/part-0.parquet` per calendar month, then dataset.json LAST, so a reader
    never takes a half-written folder for a dataset. The one writer (`hpt data demo`, `hpt data import`).

    `info` names the columns and the coverage; its `rows`, `extra["months"]` and `partitions` (each month's
    digest, from the bytes written) are filled in here.
    `per_month(month, part)` may thin a month's rows (the demo's sample). A local folder is built in a
    temporary sibling and renamed into place; gs:// objects are written in place, the old descriptor
    deleted first. A non-empty destination is refused unless `replace` and it holds a dataset; just
    before the swap, `superseded()` returning True keeps what a concurrent writer finished instead.
    Returns the descriptor written.
    """
    say = progress or (lambda message: None)
    months = frame[info.timestamp].dt.strftime("%Y-%m")
    local = local_path(uri)
    target: Store = open_store(uri)
    existing = target.list()
    if existing:
        if not replace:
            raise UserError("destination is not empty; refusing to overwrite it", where=target.uri,
                            hint="choose another destination, or --replace to replace the dataset there")
        if DESCRIPTOR not in existing:
            raise UserError(f"destination holds no {DESCRIPTOR}: it is not a dataset; refusing to replace it",
                            where=target.uri, hint="choose another destination")
    tmp = None
    if local is not None:
        Path(local).parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=Path(local).parent, prefix=f".{Path(local).name}.building-"))
        writer: Store = open_store(str(tmp))
    else:
        writer = target
        writer.delete(DESCRIPTOR)  # from here on, readers see no dataset until the new one is complete
    try:
        written: list[str] = []
        digests: dict[str, str] = {}
        total = 0
        for month, part in frame.groupby(months, sort=True):
            if per_month is not None:
                part = per_month(month, part)
            key = f"{DatasetInfo.partition(month)}/{PART}"
            data = _parquet(part)
            writer.put(key, data)
            digests[month] = partition_digest({PART: hashlib.md5(data).hexdigest()})
            written.append(month)
            total += len(part)
            say(f"wrote {DatasetInfo.partition(month)} ({len(part):,} rows)")
        if tmp is None:
            keep = {f"{DatasetInfo.partition(m)}/{PART}" for m in written}
            for key in existing:
                if key not in keep and key != DESCRIPTOR:
                    writer.delete(key)
        info = replace_fields(info, rows=total, extra={**info.extra, "months": written}, partitions=digests)
        writer.put(DESCRIPTOR, info.to_json().encode("utf-8"))
        if tmp is not None:
            if superseded is not None and superseded():
                shutil.rmtree(tmp, ignore_errors=True)
            else:
                _swap_in(tmp, Path(local))
    except BaseException:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
        raise
    return info


def _parquet(part) -> bytes:
    import pyarrow as pa
    import pyarrow.parquet as pq

    buffer = io.BytesIO()
    pq.write_table(pa.Table.from_pandas(part.reset_index(drop=True), preserve_index=False), buffer)
    return buffer.getvalue()


def _swap_in(tmp: Path, out: Path) -> None:
    """Move the finished folder to `out`; an old one is renamed away first and then removed."""
    if out.exists():
        old = out.with_name(f".{out.name}.old-{os.getpid()}")
        os.rename(out, old)
        os.rename(tmp, out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.rename(tmp, out)
