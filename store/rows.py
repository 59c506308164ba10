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
from typing import Iterable

from hpt.schemas.catalog import metrics as catalog_metrics
from hpt.schemas.row import STATUS_DONE, STATUS_FAILED, parse_row_csv
from hpt.store.base import Store, iter_row_ids, row_key

Row = dict[str, str]
DAMAGED = "damaged row"  # how every damaged row's reason starts


def check_row(trial_id: str, data: bytes, where: str) -> Row:
    """The row in `data` if it is a valid row of `trial_id`, else a failed row saying what is wrong."""
    try:
        row = parse_row_csv(data.decode("utf-8"))
        problem = _problem(trial_id, row)
    except (UnicodeDecodeError, ValueError, csv.Error) as err:
        problem = "not UTF-8 text" if isinstance(err, UnicodeDecodeError) else str(err)
    if problem:
        return {"trial_id": trial_id, "status": STATUS_FAILED, "reason": f"{DAMAGED} {where}: {problem}"}
    return row


def _problem(trial_id: str, row: Row) -> str:
    if row.get("trial_id") != trial_id:
        return f"it holds the row of {row.get('trial_id') or 'no trial'!s}"
    if row.get("status") not in (STATUS_DONE, STATUS_FAILED):
        return f"status {row.get('status')!r} is neither {STATUS_DONE} nor {STATUS_FAILED}"
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
    return check_row(trial_id, data, key)


def read_rows(store: Store, trial_ids: Iterable[str] | None = None, threads: int = 16) -> dict[str, Row]:
    """Every row in the store (or of `trial_ids`), checked, by trial id. The listing of rows/ decides
    which trials have one; the files are read in parallel (a GCS round trip each)."""
    ids = list(iter_row_ids(store) if trial_ids is None else trial_ids)
    if not ids:
        return {}
    with ThreadPoolExecutor(max_workers=max(1, min(threads, len(ids)))) as pool:
        found = pool.map(lambda tid: (tid, read_row(store, tid)), ids)
        return {tid: row for tid, row in found if row is not None}  # None: moved aside between list and get
