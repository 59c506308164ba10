"""The one reader of stored rows: rows/<trial-id>.csv, checked before anyone believes it.

Every caller that asks "what does the store say about this trial" (`hpt apply`, `hpt status`,
`hpt results`, results.csv's publisher) reads through here. A row file that is not a valid row for
its own trial — empty, header only, not UTF-8, two data lines, another trial's id, no status, a
metric that is not a number — reads as a *failed* row whose reason names the file and the damage:
`hpt apply` then moves it aside and retries the trial, and status and results say why. A damaged
file never blocks its trial and never crashes the analysis.
"""
from __future__ import annotations

import csv
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Iterable, TypeVar

from hpt.schemas.catalog import metrics as catalog_metrics
from hpt.schemas.files import NOT_REGULAR, NotRegularFile
from hpt.schemas.row import STATUS_FAILED, STATUSES, parse_row_csv
from hpt.store.base import Store, iter_row_ids, row_key

Row = dict[str, str]
T = TypeVar("T")
DAMAGED = "damaged row"  # how every damaged row's reason starts


def check_row(trial_id: str, data: bytes, where: str) -> Row:
    """The row in `data` if it is a valid row of `trial_id`, else a failed row saying what is wrong."""
    try:
        row = parse_row_csv(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, csv.Error) as err:
        problem = "not UTF-8 text" if isinstance(err, UnicodeDecodeError) else str(err)
        return _damaged(trial_id, where, problem)
    return judge_row(trial_id, row, where)


def parse_row_bytes(data: bytes) -> Row | None:
    """A row file's columns as written (not yet judged), or None when it is not one CSV row of text
    columns (judged damaged by check_row, which says why). What the row index (hpt.store.index) keeps."""
    try:
        row = parse_row_csv(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, csv.Error):
        return None
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in row.items()):
        return None  # a short or long line: csv.DictReader fills None (kept out of the index, judged on read)
    return row


def judge_row(trial_id: str, row: Row, where: str) -> Row:
    """A parsed row if it is a valid row of `trial_id`, else the failed row that says what is wrong."""
    try:
        problem = _problem(trial_id, row)
    except (ValueError, TypeError, AttributeError) as err:
        problem = str(err)
    return _damaged(trial_id, where, problem) if problem else row


def _damaged(trial_id: str, where: str, problem: str) -> Row:
    return {"trial_id": trial_id, "status": STATUS_FAILED, "reason": f"{DAMAGED} {where}: {problem}"}


def _problem(trial_id: str, row: Row) -> str:
    if row.get("trial_id") != trial_id:
        return f"it holds the row of {row.get('trial_id') or 'no trial'!s}"
    if row.get("status") not in STATUSES:
        return f"status {row.get('status')!r} is not one of {', '.join(STATUSES)}"
    recorded = (row.get("objective") or "").strip()   # row schema 2: the objective's column is a number too
    for name in [*catalog_metrics(), *([recorded] if recorded and recorded not in catalog_metrics() else [])]:
        value = (row.get(name) or "").strip()
        if value:
            try:
                float(value)
            except ValueError:
                return f"metric {name} is {value[:40]!r}, not a number"
    return ""


def read_row(store: Store, trial_id: str) -> Row | None:
    """The trial's row (checked), or None when it has none."""
    key = row_key(trial_id)
    try:
        data = store.get(key)
    except KeyError:
        return None
    except NotRegularFile:  # a FIFO or device under the row's name: damaged, never read (it may never end)
        return {"trial_id": trial_id, "status": STATUS_FAILED, "reason": f"{DAMAGED} {key}: {NOT_REGULAR}"}
    return check_row(trial_id, data, key)


def read_rows(store: Store, trial_ids: Iterable[str] | None = None, threads: int = 16) -> dict[str, Row]:
    """Every row in the store (or of `trial_ids`), checked, by trial id, each read from its own file (the
    row index, hpt.store.index.snapshot, reads a big store faster). The listing of rows/ decides which
    trials have one."""
    ids = list(iter_row_ids(store) if trial_ids is None else trial_ids)
    found = map_batched(store, lambda tid: (tid, read_row(store, tid)), ids, threads)
    return {tid: row for tid, row in found if row is not None}  # None: moved aside between list and get


def map_batched(store: Store, fn: Callable[[str], T], keys: list[str], threads: int = 16) -> list[T]:
    """fn over keys: in this thread for a local folder (a file read is faster than a thread hand-off),
    in `threads` threads of one batch each for a remote store (a round trip per key)."""
    if "://" not in store.uri or len(keys) < 2:
        return [fn(k) for k in keys]
    n = max(1, min(threads, len(keys)))
    batches = [keys[i::n] for i in range(n)]
    with ThreadPoolExecutor(max_workers=n) as pool:
        return [item for batch in pool.map(lambda b: [fn(k) for k in b], batches) for item in batch]
