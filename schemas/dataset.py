"""dataset.json: how a dataset folder describes itself (the compiler reads only this file).

A dataset is a folder (local path, file:// or gs://) with Parquet files partitioned by month,
`month=YYYY-MM/part-*.parquet`, and this descriptor naming the columns and the coverage.
"""
from __future__ import annotations

import datetime as dt
import json
import os
import re
from dataclasses import dataclass, field
from typing import Any

from hpt.schemas.errors import UserError

DESCRIPTOR = "dataset.json"
_PARTITION = "month="
_MONTH = re.compile(r"\d{4}-\d{2}")

# The demo dataset (Online Retail II) covers these days; the compiler falls back to them when the
# demo folder has not been built yet, so a spec on the default data compiles on a fresh machine.
DEMO_NAME = "online-retail-ii"
DEMO_COVERAGE = (dt.date(2009, 12, 1), dt.date(2011, 12, 9))
# What a manifest says when it means "the demo dataset, wherever this machine keeps it": a path
# would put the user's home folder into the trial id, and the same trial must have the same id
# on any machine.
DEMO_URI = "demo://" + DEMO_NAME


def demo_dataset_dir() -> str:
    """Where the demo dataset lives (the one place that says so): $HPT_DEMO_DATA, else the user cache.

    The trainer builds it there; the compiler points trials at it when a spec names no data.
    """
    configured = os.environ.get("HPT_DEMO_DATA")
    if configured:
        return os.path.abspath(os.path.expanduser(configured))
    return os.path.join(os.path.expanduser("~"), ".cache", "hpt", "demo", DEMO_NAME)


def local_data_uri(uri: str) -> str:
    """The location a manifest's data.uri means on this machine: the demo URI (or an empty one)
    becomes the demo folder; every other URI is returned as it is."""
    return demo_dataset_dir() if uri in ("", DEMO_URI) else uri


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    timestamp: str            # column with the event time
    target: str               # numeric main target column
    start: dt.date            # first day with data
    end: dt.date              # last day with data (inclusive)
    text: str = ""            # input text column of the built-in architectures ("" when the data has none)
    aux_targets: tuple[str, ...] = ()   # extra numeric targets (multitask)
    features: tuple[str, ...] = ()      # the other input columns, for a user's own trainer
    source: str = ""
    license: str = ""
    rows: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @staticmethod
    def partition(month: dt.date | str) -> str:
        """The folder of one month's Parquet files, `month=YYYY-MM` (from a date or 'YYYY-MM'): the one
        place that spells it."""
        return f"{_PARTITION}{month:%Y-%m}" if isinstance(month, dt.date) else f"{_PARTITION}{month}"

    @staticmethod
    def partition_month(folder: str) -> str | None:
        """'YYYY-MM' of a partition folder's name (partition's inverse); None for any other name."""
        month = folder[len(_PARTITION):] if folder.startswith(_PARTITION) else ""
        return month if _MONTH.fullmatch(month) else None

    def to_json(self) -> str:
        doc = {"name": self.name, "timestamp": self.timestamp, "text": self.text, "target": self.target,
               "aux_targets": list(self.aux_targets), "features": list(self.features), "coverage": {"start": self.start.isoformat(), "end": self.end.isoformat()},
               "partitioning": "month", "format": "parquet", "source": self.source, "license": self.license, "rows": self.rows}
        doc.update(self.extra)
        return json.dumps(doc, indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str, where: str = DESCRIPTOR) -> "DatasetInfo":
        try:
            doc = json.loads(text)
            coverage = doc["coverage"]
            known = {"name", "timestamp", "text", "target", "aux_targets", "features", "coverage", "partitioning", "format", "source", "license", "rows"}
            return cls(name=doc.get("name", ""), timestamp=doc["timestamp"], text=doc.get("text", ""), target=doc["target"],
                       start=dt.date.fromisoformat(coverage["start"]), end=dt.date.fromisoformat(coverage["end"]),
                       aux_targets=tuple(doc.get("aux_targets", ())), features=tuple(doc.get("features", ())), source=doc.get("source", ""),
                       license=doc.get("license", ""), rows=doc.get("rows"),
                       extra={k: v for k, v in doc.items() if k not in known})
        except json.JSONDecodeError as err:
            raise UserError(f"not valid JSON: {err.msg} at line {err.lineno}, column {err.colno}", where=where) from None
        except KeyError as err:
            raise UserError(f"missing required key {err.args[0]!r}", where=where) from None
        except (TypeError, ValueError) as err:
            raise UserError(f"invalid dataset descriptor: {err}", where=where) from None
