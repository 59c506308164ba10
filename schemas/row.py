"""The result row: what a finished (or failed) trial leaves in the store as rows/<trial-id>.csv.

A row is one CSV header + one line. Column order is fixed here so that results.csv, the analysis
and any spreadsheet see the same table. Hyperparameters appear as `param.<name>`, metrics under
their own names (see catalog.json "metrics").
"""
from __future__ import annotations

import csv
import io
from typing import Any, Iterable, Mapping

from hpt.schemas.catalog import metrics

PARAM_PREFIX = "param."

# Identity and provenance, before the hyperparameters.
LEADING = ["trial_id", "experiment_id", "config_id", "architecture", "repeat", "seed",
           "train_start", "train_end", "valid_start", "valid_end", "mode", "max_epochs", "fidelity", "status", "reason"]
# After the metrics.
TRAILING = ["started_at", "finished_at", "model_uri", "device", "hpt_version"]

STATUS_DONE = "done"
STATUS_FAILED = "failed"


def param_column(name: str) -> str:
    return PARAM_PREFIX + name


def column_order(columns: Iterable[str]) -> list[str]:
    """Stable order for any set of columns: leading, params (sorted), metrics (catalog order), trailing, rest."""
    present = set(columns)
    metric_names = list(metrics())
    params = sorted(c for c in present if c.startswith(PARAM_PREFIX))
    ordered = [c for c in LEADING if c in present] + params + [m for m in metric_names if m in present]
    ordered += [c for c in TRAILING if c in present]
    known = set(ordered)
    return ordered + sorted(present - known)


def row_csv(row: Mapping[str, Any]) -> str:
    """Serialize one row as CSV text (header + one line) in the canonical column order."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=column_order(row), lineterminator="\n")
    writer.writeheader()
    writer.writerow({k: "" if v is None else v for k, v in row.items()})
    return buf.getvalue()


def parse_row_csv(text: str) -> dict[str, str]:
    rows = list(csv.DictReader(io.StringIO(text)))
    if len(rows) != 1:
        raise ValueError(f"a row file holds exactly one row, found {len(rows)}")
    return rows[0]


def table_csv(rows: Iterable[Mapping[str, Any]]) -> str:
    """Many rows (e.g. every rows/*.csv) as one CSV: the union of columns, canonical order."""
    rows = list(rows)
    columns = column_order({c for r in rows for c in r})
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n", restval="")
    writer.writeheader()
    for r in sorted(rows, key=lambda r: str(r.get("trial_id", ""))):
        writer.writerow({k: "" if v is None else v for k, v in r.items()})
    return buf.getvalue()
