"""dataset.json: how a dataset folder describes itself (the compiler reads only this file).

A dataset is a folder (local path, file:// or gs://) with Parquet files partitioned by month,
`month=YYYY-MM/part-*.parquet`, and this descriptor naming the columns and the coverage.

Version 2 descriptors also carry a content digest per month partition (`partitions`), so the compiler
can put the digests of the months a trial reads into its manifest (and so its id) without reading the
data, and the trainer can check that what it reads is what was compiled. A partition's digest is
partition_digest of its Parquet files' md5s: the md5 is what a store already knows of an object (GCS
keeps one for every object it did not compose), so a gs:// dataset is indexed from its listing alone.
Version 1 descriptors (no `partitions`) are still read.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from typing import Any

from hpt.schemas.errors import UserError

DESCRIPTOR = "dataset.json"
_PARTITION = "month="
_MONTH = re.compile(r"\d{4}-\d{2}")
_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
DATASET_VERSION = 2   # 2: `partitions` (a content digest per month); 1: without

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


def partition_digest(files: dict[str, str]) -> str:
    """The content digest of one month partition: sha256 over its Parquet files' names (relative to the
    partition folder) and md5s (hex), in name order. An empty partition has one too (a month a window
    reads where the data has no rows): adding rows to it changes it."""
    lines = "".join(f"{name}\0{files[name]}\n" for name in sorted(files))
    return "sha256:" + hashlib.sha256(lines.encode("utf-8")).hexdigest()


EMPTY_PARTITION = partition_digest({})   # a month with no files: what a manifest expects of a month it lacks


def months_between(start: dt.date, stop: dt.date) -> list[str]:
    """'YYYY-MM' of every month overlapping [start, stop): the partitions a window reads."""
    last = stop - dt.timedelta(days=1)
    months, year, month = [], start.year, start.month
    while (year, month) <= (last.year, last.month):
        months.append(f"{year:04d}-{month:02d}")
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    return months


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
    partitions: dict[str, str] = field(default_factory=dict)   # 'YYYY-MM' → partition_digest; {}: not indexed (v1)

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
        doc["version"] = DATASET_VERSION
        if self.partitions:
            doc["partitions"] = dict(sorted(self.partitions.items()))
        return json.dumps(doc, indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str, where: str = DESCRIPTOR) -> "DatasetInfo":
        try:
            doc = json.loads(text)
            coverage = doc["coverage"]
            known = {"name", "timestamp", "text", "target", "aux_targets", "features", "coverage", "partitioning", "format",
                     "source", "license", "rows", "version", "partitions"}
            version = doc.get("version", 1)
            if not isinstance(version, int) or isinstance(version, bool) or not 1 <= version <= DATASET_VERSION:
                raise UserError(f"dataset.json version {version!r} is not one this hpt reads (1 to {DATASET_VERSION})",
                                where=f"{where}: version", hint="upgrade hpt, or rewrite it with `hpt data index`")
            return cls(name=doc.get("name", ""), timestamp=doc["timestamp"], text=doc.get("text", ""), target=doc["target"],
                       start=dt.date.fromisoformat(coverage["start"]), end=dt.date.fromisoformat(coverage["end"]),
                       aux_targets=tuple(doc.get("aux_targets", ())), features=tuple(doc.get("features", ())), source=doc.get("source", ""),
                       license=doc.get("license", ""), rows=doc.get("rows"),
                       extra={k: v for k, v in doc.items() if k not in known},
                       partitions=_partitions(doc.get("partitions", {}), where))
        except json.JSONDecodeError as err:
            raise UserError(f"not valid JSON: {err.msg} at line {err.lineno}, column {err.colno}", where=where) from None
        except KeyError as err:
            raise UserError(f"missing required key {err.args[0]!r}", where=where) from None
        except (TypeError, ValueError) as err:
            raise UserError(f"invalid dataset descriptor: {err}", where=where) from None


def _partitions(doc: Any, where: str) -> dict[str, str]:
    if not isinstance(doc, dict):
        raise UserError("partitions must be an object of 'YYYY-MM': 'sha256:…' digests", where=f"{where}: partitions")
    for month, digest in doc.items():
        if not _MONTH.fullmatch(month) or not isinstance(digest, str) or not _DIGEST.fullmatch(digest):
            raise UserError(f"not a 'YYYY-MM': 'sha256:<64 hex>' pair: {month!r}: {str(digest)[:80]!r}",
                            where=f"{where}: partitions")
    return dict(doc)
