"""The result row: what a finished (or failed) trial leaves in the store as rows/<trial-id>.csv.

A row is one CSV header + one line. Column order is fixed here so that results.csv, the analysis
and any spreadsheet see the same table. Hyperparameters appear as `param.<name>`, the manifest's
metrics (any names: schemas/metric.py) under their own names, and every other number the trainer
reported in one `extra_metrics` column (a JSON object), so nothing it measured is lost.

Row schema versions (the `row_schema` column; a row without one is version 1):
  1  identity, param.<name>, the catalog's metrics the manifest named, provenance
  2  + `objective` and `goal` (what the plan ranks by, copied from the manifest), metrics of any name,
     `extra_metrics`, `row_schema`
"""
from __future__ import annotations

import csv
import io
import json
import math
from typing import Any, Iterable, Mapping

from hpt.schemas.catalog import metrics as catalog_metrics
from hpt.schemas.manifest import TrialManifest, canonical_json, config_id
from hpt.schemas.metric import name_problem
from hpt.schemas.version import __version__

PARAM_PREFIX = "param."
ROW_SCHEMA = 2

# Identity and provenance, before the hyperparameters.
LEADING = ["trial_id", "experiment_id", "config_id", "architecture", "repeat", "seed",
           "train_start", "train_end", "valid_start", "valid_end", "mode", "max_epochs", "fidelity", "status", "reason",
           "objective", "goal"]
# After the metrics.
EXTRA_METRICS = "extra_metrics"
TRAILING = ["started_at", "finished_at", "model_uri", "device", "hpt_version", "row_schema"]
# Columns hpt writes itself: no metric may take one of these names (checked at compile and here).
RESERVED = frozenset(LEADING) | frozenset(TRAILING) | {EXTRA_METRICS, "config", "range", "round"}

STATUS_DONE = "done"
STATUS_FAILED = "failed"
STATUS_STOPPED = "stopped"    # ended early by an in-trial stopping rule: its last reported values (a result)
STATUSES = (STATUS_DONE, STATUS_FAILED, STATUS_STOPPED)
MAX_REASON = 500
MAX_EXTRA = 200          # undeclared metrics kept per row (a script printing thousands of names is cut, by name order)


def param_column(name: str) -> str:
    return PARAM_PREFIX + name


def column_order(columns: Iterable[str]) -> list[str]:
    """Stable order for any set of columns: leading, params (sorted), metrics (the catalog's in its order,
    then any others sorted), extra_metrics, trailing."""
    present = set(columns)
    metric_names = list(catalog_metrics())
    params = sorted(c for c in present if c.startswith(PARAM_PREFIX))
    ordered = [c for c in LEADING if c in present] + params + [m for m in metric_names if m in present]
    others = sorted(present - set(ordered) - set(TRAILING) - {EXTRA_METRICS})
    ordered += others + ([EXTRA_METRICS] if EXTRA_METRICS in present else [])
    return ordered + [c for c in TRAILING if c in present]


def _fmt(value: Any) -> Any:
    if isinstance(value, bool):  # a bool hyperparameter, spelt as in the spec and the manifest
        return "true" if value else "false"
    if isinstance(value, (list, dict)):   # W&B's values of any JSON type: canonical JSON, so equal values group
        return canonical_json(value)
    return repr(value) if isinstance(value, float) else value  # repr: the shortest text that reads back exactly


def build_row(manifest: TrialManifest | Mapping[str, Any], *, status: str, reason: str = "",
              metrics: Mapping[str, Any] | None = None, started_at: str, finished_at: str, model_uri: str = "",
              device: str = "") -> dict[str, Any]:
    """The one builder of a trial's row, done or failed, by the trainer or by `hpt apply` for a trial that
    ended without writing its own: identity copied from the manifest (never interpreted), the objective
    and its goal, param.<name>, the manifest's chosen metrics (empty when failed), every other finite
    number of `metrics` in extra_metrics, trailing columns. A manifest document that is not valid (the
    trainer refused it) still yields a row with whatever identity it has."""
    doc = manifest.to_dict() if isinstance(manifest, TrialManifest) else manifest
    window = doc.get("window") if isinstance(doc.get("window"), Mapping) else {}
    train, valid = list(window.get("train") or ["", ""]), list(window.get("validation") or ["", ""])
    budget = doc.get("budget") if isinstance(doc.get("budget"), Mapping) else {}
    params = doc.get("params") if isinstance(doc.get("params"), Mapping) else {}
    architecture = doc.get("architecture", "")
    row: dict[str, Any] = {
        "trial_id": doc.get("id", ""), "experiment_id": doc.get("experiment", ""),
        "config_id": doc.get("config") or (config_id(architecture, dict(params)) if architecture else ""),
        "architecture": architecture, "repeat": doc.get("repeat", ""), "seed": doc.get("seed", ""),
        "train_start": train[0], "train_end": train[1], "valid_start": valid[0], "valid_end": valid[1],
        "mode": budget.get("mode", ""), "max_epochs": budget.get("epochs", ""), "fidelity": budget.get("fidelity", ""),
        "status": status, "reason": " ".join(reason.split())[:MAX_REASON],
    }
    objective = doc.get("objective") if isinstance(doc.get("objective"), Mapping) else {}
    row["objective"], row["goal"] = str(objective.get("metric", "")), str(objective.get("goal", ""))
    for name, value in sorted(params.items()):
        row[param_column(name)] = _fmt(value)
    reported = dict(metrics or {})
    declared = [n for n in (doc.get("metrics") or []) if name_problem(n, RESERVED) is None]
    for name in declared:  # a bad name is a compile-time error; a hand-made manifest must not crash here
        value = reported.get(name)
        row[name] = "" if value is None else _fmt(value)
    extra = {str(k): v for k, v in sorted(reported.items()) if k not in declared and _finite(v)}
    if extra:
        row[EXTRA_METRICS] = json.dumps(dict(list(extra.items())[:MAX_EXTRA]), sort_keys=True, separators=(",", ":"))
    row.update({"started_at": started_at, "finished_at": finished_at, "model_uri": model_uri, "device": device,
                "hpt_version": __version__, "row_schema": ROW_SCHEMA})
    return row


def _finite(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)


def extra_metrics(row: Mapping[str, Any]) -> dict[str, float]:
    """A row's extra_metrics column as numbers ({} when absent or damaged: the declared columns are the truth)."""
    text = row.get(EXTRA_METRICS)
    if not isinstance(text, str) or not text.strip():
        return {}
    try:
        doc = json.loads(text)
    except ValueError:
        return {}
    return {str(k): float(v) for k, v in doc.items() if _finite(v)} if isinstance(doc, dict) else {}


def row_schema(row: Mapping[str, Any]) -> int:
    """The row's schema version (1 for a row written before versions were recorded)."""
    try:
        return int(str(row.get("row_schema") or 1))
    except ValueError:
        return 1


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
    blanks = [""] * len(columns)

    def cells(r: Mapping[str, Any]) -> list:   # what csv.DictWriter(restval="") writes, a missing or None cell blank
        return ["" if v is None else v for v in map(r.get, columns, blanks)]

    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(columns)
    writer.writerows(map(cells, sorted(rows, key=lambda r: str(r.get("trial_id", "")))))
    return buf.getvalue()
