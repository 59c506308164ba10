"""`hpt data import`: a user's CSV or Parquet table with a timestamp → a dataset folder trials read.

The table is read whole (pandas), its time column parsed, its rows sorted by time, and the result
written by the one dataset writer (hpt.store.dataset.write_dataset: month partitions, then
dataset.json naming the timestamp, target, text and feature columns and the coverage), to a folder or
gs://. Every problem with the input is a UserError naming the column, and the line (CSV; the row for
Parquet) of the first bad value.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Sequence

from hpt.compiler.limits import MAX_DATE, MIN_DATE
from hpt.schemas.dataset import DatasetInfo
from hpt.schemas.errors import UserError
from hpt.schemas.files import open_regular
from hpt.store.dataset import write_dataset

PARQUET_SUFFIXES = (".parquet", ".pq")
# When the time is spread over several columns (year, month, day, hour), the assembled one is called this.
ASSEMBLED_TIMESTAMP = "timestamp"


@dataclass(frozen=True)
class ImportedTable:
    """The table as it will be written: time-sorted, times naive UTC, plus what describes it."""

    frame: Any                  # pandas DataFrame
    info: DatasetInfo           # rows and months are filled in by the writer
    missing_target: int         # rows whose target is empty (kept; the trainer decides)


def import_dataset(source: str | Path, out: str, *, timestamp: Sequence[str], target: str,
                   features: Sequence[str] | None = None, text: str | None = None, aux_targets: Sequence[str] = (),
                   time_format: str | None = None, name: str | None = None, data_source: str | None = None,
                   license: str = "", replace: bool = False,
                   progress: Callable[[str], None] | None = None) -> DatasetInfo:
    """Read `source` (CSV, optionally compressed, or Parquet) and write it as a dataset at `out`
    (a folder, file:// or gs://). Returns the descriptor written (hpt.schemas.dataset.DatasetInfo).

    `timestamp`: one column holding times, or several holding their parts (e.g. year, month, day,
    hour), assembled into a column named "timestamp". `features` defaults to every other column.
    """
    table = read_table(source, timestamp=timestamp, target=target, features=features, text=text,
                       aux_targets=aux_targets, time_format=time_format, name=name, data_source=data_source,
                       license=license)
    tell = progress or (lambda message: None)
    first = [f"writing {len(table.frame):,} rows to {out}"]

    def say(message: str) -> None:   # the header once writing has begun: a refused destination stays the only line
        while first:
            tell(first.pop())
        tell(message)

    return write_dataset(out, table.frame, table.info, replace=replace, progress=say)


def read_table(source: str | Path, *, timestamp: Sequence[str], target: str, features: Sequence[str] | None = None,
               text: str | None = None, aux_targets: Sequence[str] = (), time_format: str | None = None,
               name: str | None = None, data_source: str | None = None, license: str = "") -> ImportedTable:
    """The checked, time-sorted table and its descriptor (see import_dataset)."""
    path = Path(source).expanduser()
    raw, is_csv = _read(path)
    where = str(path)
    timestamp = [c.strip() for c in timestamp if c.strip()]
    if not timestamp:
        raise UserError("no timestamp column named", where="--timestamp")
    named = {"--timestamp": timestamp, "--target": [target], "--text": [text] if text else [],
             "--aux-target": list(aux_targets), "--features": list(features or [])}
    for option, columns in named.items():
        for column in columns:
            if column not in raw.columns:
                raise UserError(f"no column {column!r} in the table (its columns: {', '.join(map(str, raw.columns))})",
                                where=f"{where}: {option}")
    if len(raw) == 0:
        raise UserError("the table has a header but no rows", where=where)

    def line(index: int) -> str:  # the first data line of a CSV is line 2 (after the header)
        return f"line {index + 2}" if is_csv else f"row {index + 1}"

    stamps = _times(raw, timestamp, time_format, where, line)
    column = timestamp[0] if len(timestamp) == 1 else ASSEMBLED_TIMESTAMP
    if len(timestamp) > 1 and column in raw.columns:
        raise UserError(f"the table already has a column {column!r}; the assembled time needs that name",
                        where=f"{where}: --timestamp")
    numeric = [target, *aux_targets]
    frame = raw.copy()
    for col in numeric:
        frame[col] = _numbers(raw[col], col, where, line)
    frame[column] = stamps
    if text:
        frame[text] = raw[text].fillna("").astype(str)
    used = {*timestamp, column, target, *aux_targets, *([text] if text else [])}
    chosen = list(features) if features is not None else [c for c in raw.columns if c not in used]
    clash = sorted(set(chosen) & ({column, target, *aux_targets} | ({text} if text else set())))
    if clash:
        raise UserError(f"column {clash[0]!r} cannot be a feature and the time, target or text too", where=f"{where}: --features")
    keep = [column, target, *aux_targets, *([text] if text else []), *chosen]
    frame = frame[list(dict.fromkeys(keep))]
    # A stable sort keeps the file's order within one time: the same input gives the same dataset.
    frame = frame.sort_values(column, kind="stable").reset_index(drop=True)
    info = DatasetInfo(name=name or path.name.split(".")[0], timestamp=column, target=target, text=text or "",
                       aux_targets=tuple(aux_targets), features=tuple(chosen),
                       start=frame[column].min().date(), end=frame[column].max().date(),
                       source=data_source if data_source is not None else path.name, license=license,
                       extra={"imported_from": path.name})
    missing = int(frame[target].isna().sum())
    if missing:
        info = replace(info, extra={**info.extra, "missing_target": missing})
    return ImportedTable(frame=frame, info=info, missing_target=missing)


def _read(path: Path):
    """The raw table and whether it is a CSV (for line numbers)."""
    import pandas as pd
    import pyarrow as pa

    where = str(path)
    if not path.exists():
        raise UserError("no such file", where=where)
    if path.is_dir():
        raise UserError("is a folder, not a table file", where=where)
    try:
        with open_regular(path, where) as fh:  # a FIFO or device: refused before anything is read
            magic = fh.read(4)
    except OSError as err:
        raise UserError(f"cannot read the table: {err.strerror}", where=where) from None
    if not magic:
        raise UserError("the file is empty", where=where)
    is_parquet = path.suffix.lower() in PARQUET_SUFFIXES or magic == b"PAR1"
    try:
        if is_parquet:
            _check_parquet_bounds(path, where)
            return pd.read_parquet(path), False
        _check_csv_bounds(path, where)
        return pd.read_csv(path, low_memory=False), True
    except pd.errors.EmptyDataError:
        raise UserError("the file is empty (no header line)", where=where) from None
    except pd.errors.ParserError as err:
        raise UserError(f"not a readable CSV: {str(err).strip().splitlines()[0]}", where=where) from None
    except (pa.ArrowException, OSError, UnicodeDecodeError, ValueError) as err:
        kind = "Parquet" if is_parquet else "CSV"
        raise UserError(f"not a readable {kind} file: {str(err).strip().splitlines()[0][:200]}", where=where) from None


MAX_COLUMNS = 10_000               # a table hpt imports has a time, a target and some features, not a million columns
MAX_HEADER_BYTES = 1 << 20         # the CSV's header line
MAX_TABLE_BYTES = 256 << 20        # the CSV's size once decompressed: it is read whole into memory (a bigger table: Parquet)
_DECOMPRESS = {".gz": "gzip", ".bz2": "bz2", ".xz": "lzma"}


def _check_csv_bounds(path: Path, where: str) -> None:
    """Columns and decompressed size within bounds, found by streaming the file once in constant memory
    (a 1 MB .csv.gz may expand to gigabytes: it is refused without ever being held)."""
    import csv
    import importlib
    import io
    module = _DECOMPRESS.get(path.suffix.lower())
    try:
        fh = importlib.import_module(module).open(path, "rb") if module else open_regular(path, where)
        with fh:
            header = fh.readline(MAX_HEADER_BYTES + 1)
            if len(header) > MAX_HEADER_BYTES:
                raise UserError(f"the header line is longer than {MAX_HEADER_BYTES >> 20} MiB (at most {MAX_COLUMNS:,} "
                                "columns are read)", where=where)
            columns = next(csv.reader(io.StringIO(header.decode("utf-8", errors="replace"))), [])
            if len(columns) > MAX_COLUMNS:
                raise UserError(f"{len(columns):,} columns; at most {MAX_COLUMNS:,} are read", where=where)
            total = len(header)
            while chunk := fh.read(1 << 20):
                total += len(chunk)
                if total > MAX_TABLE_BYTES:
                    raise UserError(f"larger than {MAX_TABLE_BYTES >> 20} MiB once decompressed; a CSV is read whole "
                                    "into memory", where=where, hint="import it in parts (by year), or as Parquet")
    except UserError:
        raise
    except Exception as err:  # noqa: BLE001  (OSError, EOFError, zlib/lzma/bz2 errors: a damaged compressed file)
        raise UserError(f"not a readable CSV file: {str(err).strip()[:200] or type(err).__name__}", where=where) from None


def _check_parquet_bounds(path: Path, where: str) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        columns = len(pq.read_schema(path))
    except (pa.ArrowException, OSError) as err:
        raise UserError(f"not a readable Parquet file: {str(err).strip().splitlines()[0][:200]}", where=where) from None
    if columns > MAX_COLUMNS:
        raise UserError(f"{columns:,} columns; at most {MAX_COLUMNS:,} are read", where=where)


def _times(raw, columns: list[str], time_format: str | None, where: str, line: Callable[[int], str]):
    """The parsed times (naive UTC, datetime64[us]); the first empty or unparseable one is an error."""
    import pandas as pd

    if len(columns) > 1:
        parts = raw[columns]
        bad = parts.isna().any(axis=1)
        if bad.any():
            first = int(bad.to_numpy().argmax())
            empty = [c for c in columns if pd.isna(parts.iloc[first][c])][0]
            raise UserError(f"empty time part in column {empty!r} at {line(first)}", where=where)
        try:
            stamps = pd.to_datetime(parts.rename(columns=str.lower), errors="coerce")
        except (ValueError, TypeError) as err:
            raise UserError(f"cannot assemble a time from columns {', '.join(columns)}: {err} "
                            "(name them year, month, day[, hour, minute, second])", where=f"{where}: --timestamp") from None
        def values(i: int) -> str:
            return " ".join(f"{c}={parts.iloc[i][c]!r}" for c in columns)

        label = ", ".join(columns)
    else:
        column = columns[0]
        series = raw[column]
        if pd.api.types.is_datetime64_any_dtype(series):
            stamps = series
        else:
            if pd.api.types.is_numeric_dtype(series):
                raise UserError(f"column {column!r} holds numbers, not times", where=f"{where}: --timestamp",
                                hint="name a column of dates or times, or the columns of its parts: --timestamp year,month,day,hour")
            text = series.astype("string").str.strip()
            empty = text.isna() | (text == "")
            if empty.any():
                raise UserError(f"empty time in column {column!r} at {line(int(empty.to_numpy().argmax()))}", where=where)
            try:
                with warnings.catch_warnings():  # pandas warns when it falls back to parsing times one by one
                    warnings.simplefilter("ignore", UserWarning)
                    stamps = pd.to_datetime(text, format=time_format, errors="coerce", utc=True)
            except (ValueError, KeyError) as err:  # a layout strptime does not know ("%Q")
                raise UserError(f"not a time layout: {time_format!r} ({err})", where="--time-format") from None

        def values(i: int) -> str:
            return repr(series.iloc[i])

        label = column
    bad = stamps.isna()
    if bad.any():
        first = int(bad.to_numpy().argmax())
        how = f" with --time-format {time_format!r}" if time_format else ""
        raise UserError(f"unparseable time in column {label!r} at {line(first)}: {values(first)}{how}", where=where,
                        hint=None if time_format else "give its layout with --time-format, e.g. '%d/%m/%Y %H:%M'")
    if getattr(stamps.dt, "tz", None) is not None:  # windows are calendar dates in UTC
        stamps = stamps.dt.tz_convert("UTC").dt.tz_localize(None)
    outside = (stamps < pd.Timestamp(MIN_DATE)) | (stamps >= pd.Timestamp(MAX_DATE) + pd.Timedelta(days=1))
    if outside.any():  # the compiler's date ranges live in these years; a dataset outside them cannot be used
        first = int(outside.to_numpy().argmax())
        raise UserError(f"time {values(first)} in column {label!r} at {line(first)} is outside {MIN_DATE} to {MAX_DATE}",
                        where=where)
    return stamps.astype("datetime64[us]")


def _clip(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else f"{text[:limit // 2]}…{text[-limit // 2:]} ({len(text):,} characters)"


def _numbers(series, column: str, where: str, line: Callable[[int], str]):
    """The column as float64; empty cells stay missing, any other non-number is an error."""
    import pandas as pd

    if pd.api.types.is_bool_dtype(series):
        return series.astype("float64")
    try:
        values = pd.to_numeric(series, errors="coerce")
    except OverflowError:  # an integer too large for a float (hundreds of digits)
        values = pd.to_numeric(series.astype("string"), errors="coerce")
    bad = (values.isna() & series.notna()) | values.isin([float("inf"), float("-inf")])
    if pd.api.types.is_object_dtype(series) or pd.api.types.is_string_dtype(series):
        bad &= series.astype("string").str.strip().fillna("") != ""
    if bad.any():
        first = int(bad.to_numpy().argmax())
        what = "is not numeric" if pd.isna(values.iloc[first]) else "is not a finite number"
        raise UserError(f"column {column!r} {what}: {_clip(repr(series.iloc[first]))} at {line(first)}", where=where)
    return values.astype("float64")

