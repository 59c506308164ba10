"""The result row: what a finished (or failed) trial leaves in the store as rows/<trial-id>.csv.

A row is one CSV header + one line. Column order is fixed here so that results.csv, the analysis
and any spreadsheet see the same table. Hyperparameters appear as `param.<name>`, metrics under
their own names (see catalog.json "metrics").
"""
from __future__ import annotations

import csv
import io
from typing import Any, Iterable, Mapping

from hpt.schemas.catalog import metrics as catalog_metrics
from hpt.schemas.manifest import TrialManifest, config_id
from hpt.schemas.version import __version__

PARAM_PREFIX = "param."

# Identity and provenance, before the hyperparameters.
LEADING = ["trial_id", "experiment_id", "config_id", "architecture", "repeat", "seed",
           "train_start", "train_end", "valid_start", "valid_end", "mode", "max_epochs", "fidelity", "status", "reason"]
# After the metrics.
TRAILING = ["started_at", "finished_at", "model_uri", "device", "hpt_version"]

STATUS_DONE = "done"
STATUS_FAILED = "failed"
MAX_REASON = 500


def param_column(name: str) -> str:
    return PARAM_PREFIX + name


def column_order(columns: Iterable[str]) -> list[str]:
    """Stable order for any set of columns: leading, params (sorted), metrics (catalog order), trailing, rest."""
    present = set(columns)
    metric_names = list(catalog_metrics())
    params = sorted(c for c in present if c.startswith(PARAM_PREFIX))
    ordered = [c for c in LEADING if c in present] + params + [m for m in metric_names if m in present]
    ordered += [c for c in TRAILING if c in present]
    known = set(ordered)
    return ordered + sorted(present - known)


def _fmt(value: Any) -> Any:
    if isinstance(value, bool):  # a bool hyperparameter, spelt as in the spec and the manifest
        return "true" if value else "false"
    return repr(value) if isinstance(value, float) else value  # repr: the shortest text that reads back exactly


def build_row(manifest: TrialManifest | Mapping[str, Any], *, status: str, reason: str = "",
              metrics: Mapping[str, Any] | None = None, started_at: str, finished_at: str, model_uri: str = "",
              device: str = "") -> dict[str, Any]:
    """The one builder of a trial's row, done or failed, by the trainer or by `hpt apply` for a trial that
    ended without writing its own: identity copied from the manifest (never interpreted), param.<name>,
    the manifest's chosen metrics (empty when failed), trailing columns. A manifest document that is not
    valid (the trainer refused it) still yields a row with whatever identity it has."""
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
    for name, value in sorted(params.items()):
        row[param_column(name)] = _fmt(value)
    known = catalog_metrics()
    for name in doc.get("metrics") or []:
        if name in known:  # unknown names are a compile-time error; an old manifest must not crash here
            value = (metrics or {}).get(name)
            row[name] = "" if value is None else _fmt(value)
    row.update({"started_at": started_at, "finished_at": finished_at, "model_uri": model_uri, "device": device,
                "hpt_version": __version__})
    return row


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
