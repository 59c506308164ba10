"""A dataset behind the store interface: its descriptor (`dataset.json`) and its month partitions.

A dataset is a folder — a path, file:// or gs:// — holding hpt.schemas.dataset.DESCRIPTOR and one
folder of Parquet files per month, named by DatasetInfo.partition (`month=YYYY-MM/*.parquet`). It is
read and written through open_store, like rows and models: a gs:// dataset and a local one are the same
to the compiler (which reads only the descriptor), the trainer and `hpt data` (write_dataset, the one writer).
"""
from __future__ import annotations

import datetime as dt
import io
import os
import shutil
import tempfile
from dataclasses import replace as replace_fields
from pathlib import Path
from typing import Any, Callable

from hpt.schemas.dataset import DESCRIPTOR, DatasetInfo
from hpt.schemas.errors import UserError
from hpt.store.base import Store, open_store
from hpt.store.location import local_path

PARQUET = ".parquet"


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


PART = "part-0.parquet"  # the one file a writer puts in each month's partition


def months_between(start: dt.date, stop: dt.date) -> list[str]:
    """'YYYY-MM' of every month overlapping [start, stop)."""
    last = stop - dt.timedelta(days=1)
    months, year, month = [], start.year, start.month
    while (year, month) <= (last.year, last.month):
        months.append(f"{year:04d}-{month:02d}")
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    return months


def read_window(dataset: DatasetStore, info: DatasetInfo, start: dt.date, stop: dt.date,
                columns: list[str] | None = None):
    """The one reader of a dataset's rows: those with start ≤ timestamp < stop, as a pandas DataFrame of
    `columns` (default: every column), reading only the month partitions the range overlaps, timestamps as
    naive UTC. Unsorted within a month (callers that need an order sort)."""
    import pandas as pd

    frames = [_read_part(dataset, info, key, columns) for month in months_between(start, stop)
              for key in dataset.parts(month)]
    if not frames:
        return pd.DataFrame({c: [] for c in columns or [info.timestamp]})
    frame = pd.concat(frames, ignore_index=True)
    keep = (frame[info.timestamp] >= pd.Timestamp(start)) & (frame[info.timestamp] < pd.Timestamp(stop))
    return frame[keep].reset_index(drop=True)


def _read_part(dataset: DatasetStore, info: DatasetInfo, key: str, columns: list[str] | None):
    """One Parquet file's columns as a DataFrame, timestamps as naive UTC."""
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq

    where = f"{dataset.uri}/{key}"
    try:
        buffer = pa.BufferReader(dataset.get(key))
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

    `info` names the columns and the coverage; its `rows` and `extra["months"]` are filled in here.
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
        total = 0
        for month, part in frame.groupby(months, sort=True):
            if per_month is not None:
                part = per_month(month, part)
            key = f"{DatasetInfo.partition(month)}/{PART}"
            writer.put(key, _parquet(part))
            written.append(month)
            total += len(part)
            say(f"wrote {DatasetInfo.partition(month)} ({len(part):,} rows)")
        if tmp is None:
            keep = {f"{DatasetInfo.partition(m)}/{PART}" for m in written}
            for key in existing:
                if key not in keep and key != DESCRIPTOR:
                    writer.delete(key)
        info = replace_fields(info, rows=total, extra={**info.extra, "months": written})
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
