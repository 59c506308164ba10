"""`hpt results`, `hpt fidelity`, `hpt report` — read a results store while trials run, and after.

Everything reads the store (rows/*.csv, the source of truth), never the plan: any machine that can
read the store can watch a run. Tables go to stdout (rich, or CSV/JSON for machines); notes and
counts to stderr. Exit codes: 0 ok, 2 user error (bad URI, empty store, unknown metric).
"""
from __future__ import annotations

import csv
import io
import json
import math
from enum import Enum
from pathlib import Path
from typing import Any, Optional

import typer
from rich.text import Text

from hpt.commands.common import (SUMMARY_AT, SUMMARY_TOP, TableFormat, all_option, console as _shared_console, err_console,
                                 format_option, user_errors)
from hpt.schemas.errors import UserError

# Shown after the objective when --metrics is not given (kept short so the table fits a terminal).
DEFAULT_SHOWN = ("mse", "baseline_mse", "loss", "train_time_s", "best_epoch")
# Metrics whose meaning the trials table spells out under it: what the objective is measured on.
EXPLAINED = ("mse", "baseline_mse")


def _wide_console():
    """Tables are wide; without a terminal (CI logs, pipes) use 160 columns instead of rich's 80."""
    import os

    from rich.console import Console

    if _shared_console.is_terminal or os.environ.get("COLUMNS"):
        return _shared_console
    return Console(width=160, markup=False, highlight=False)  # user text is never markup (see common.py)


class _Lazy:
    def __getattr__(self, name):
        return getattr(_wide_console(), name)


console = _Lazy()


def _range(label: str) -> str:
    from hpt.results.table import short_range

    return short_range(label)


class By(str, Enum):
    config = "config"


def _num(value: Any, digits: int = 4) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        if math.isnan(value):
            return ""
        return f"{value:.{digits}g}"
    return str(value)


def _p(value: float | None) -> str:
    return "–" if value is None else f"{value:.3g}"


def _json_default(value: Any) -> Any:
    item = getattr(value, "item", None)
    if callable(item):
        return item()
    return str(value)


def _clean(value: Any) -> Any:
    """Valid JSON for every number (docs/cli.md): NaN → null (no value), ±inf → the strings "Infinity" and
    "-Infinity" (what JavaScript's Number() and Python's float() read back), recursively."""
    if isinstance(value, float) and not math.isfinite(value):
        return None if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    item = getattr(value, "item", None)
    if callable(item) and not isinstance(value, (str, bytes)):
        return _clean(item())
    return value


def _emit_json(doc: Any) -> None:
    typer.echo(json.dumps(_clean(doc), indent=2, default=_json_default, allow_nan=False))


def _emit_csv(records: list[dict[str, Any]], columns: list[str]) -> None:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n", extrasaction="ignore", restval="")
    writer.writeheader()
    for rec in records:
        writer.writerow({k: "" if v is None or (isinstance(v, float) and math.isnan(v)) else v for k, v in rec.items()})
    typer.echo(buf.getvalue(), nl=False)


# ---------------------------------------------------------------------------------------------- views
def _trial_view(table, obj, metrics: list[str], top: int | None, fmt: TableFormat, everything: bool = False) -> None:
    from rich.table import Table

    from hpt.results.table import built_in_rows, short_param
    from hpt.schemas.catalog import metrics as catalog_metrics

    done = table.done.copy()
    has_obj = obj.metric in done.columns
    if has_obj:
        done = done.sort_values(obj.metric, ascending=obj.ascending, na_position="last", kind="stable")
    # The objective, the catalog's usual few, and a trainer's own metrics (any names) after them.
    own = [m for m in table.metrics if m not in catalog_metrics()][:6]
    shown_metrics = metrics or [m for m in dict.fromkeys((obj.metric, *DEFAULT_SHOWN, *own)) if m in table.metrics]
    if has_obj and obj.metric not in shown_metrics:
        shown_metrics = [obj.metric] + shown_metrics
    extra = [c for c in ("round", "fidelity", "repeat") if c in done.columns and done[c].nunique() > 1]
    columns = ["trial_id", "range"] + extra + table.params + shown_metrics
    summarised = fmt is TableFormat.table and not everything and not top and len(done) > SUMMARY_AT
    rows = done.head(top) if top else done.head(SUMMARY_TOP) if summarised else done
    failed = table.failed

    if fmt is TableFormat.json:
        pick = lambda df, cols: [{c: r.get(c) for c in cols if c in df.columns} for r in df.to_dict("records")]
        _emit_json({"store": table.uri, "objective": {"metric": obj.metric, "goal": obj.goal},
                    "n_done": len(table.done), "n_failed": len(failed), "params": table.params,
                    "metrics": shown_metrics, "rows": pick(rows, ["config_id", "status"] + columns),
                    "failed": pick(failed, ["trial_id", "config_id", "range", "status", "reason"] + table.params)})
        return
    if fmt is TableFormat.csv:
        records = [dict(r, status=r.get("status")) for r in rows.to_dict("records")]
        records += failed.to_dict("records")
        cols = ["trial_id", "config_id", "status", "range"] + extra + table.params + shown_metrics + ["reason"]
        _emit_csv(records, cols)
        return

    title = (f"the best {len(rows)} of {len(table.done)} finished trials, by {obj}" if summarised
             else f"{len(table.done)} finished trial(s), sorted by {obj}")
    t = Table(title=title, title_justify="left")
    t.add_column("#", justify="right", style="dim")
    for c in columns:
        header = short_param(c)
        # A narrow terminal wraps the headers and the numbers, never a fidelity's or a range's name.
        t.add_column(Text(header, style="bold") if c == obj.metric else header,
                     justify="right" if c in shown_metrics or c in table.params else "left", overflow="fold",
                     no_wrap=c in ("range", "fidelity"))
    for i, rec in enumerate(rows.to_dict("records"), 1):
        t.add_row(str(i), *[_range(rec.get(c)) if c == "range" else _num(rec.get(c)) for c in columns])
    t.caption = _caption(shown_metrics, built_in_rows(table.done))
    t.caption_justify = "left"
    console.print(t)
    if summarised:
        console.print(f"… {len(done) - len(rows)} more finished trial(s): --all lists every one, --top N the best N, "
                      "--format csv|json all of them for a program.", highlight=False)
    _failed_table(failed, table.params, everything or fmt is not TableFormat.table)


def _caption(shown: list[str], built_in: bool = True):  # noqa: ANN202 — rich.text.Text
    """What the range column and the explained metrics mean (catalog help; a user trainer's baseline is its
    own), as plain text (no markup)."""
    from rich.text import Text

    from hpt.results.table import metric_help

    lines = ["range: the training window."]
    lines += [f"{m}: {metric_help(m, built_in)}." for m in EXPLAINED if m in shown and metric_help(m, built_in)]
    return Text("\n".join(lines), style="dim")


def _failed_table(failed, params: list[str], everything: bool = True) -> None:
    from rich.table import Table

    from hpt.results.table import short_param

    if failed.empty:
        return
    if not everything and len(failed) > SUMMARY_TOP:
        _failures_by_reason(failed)
        return
    t = Table(title=f"{len(failed)} failed trial(s)", title_justify="left", title_style="red")
    for c in ["trial_id", "range"] + params + ["reason"]:
        t.add_column(short_param(c), overflow="fold")
    for rec in failed.to_dict("records"):
        t.add_row(*[_range(rec.get(c)) if c == "range" else _num(rec.get(c)) for c in ["trial_id", "range"] + params + ["reason"]])
    console.print(t)


def _failures_by_reason(failed) -> None:
    """Failed trials counted by reason (most common first), a few trial ids of each: readable at any size."""
    from rich.table import Table

    reasons = failed["reason"].fillna("").astype(str) if "reason" in failed.columns else None
    if reasons is None:
        return
    groups = failed.assign(_reason=reasons.where(reasons != "", "failed")).groupby("_reason", sort=False)["trial_id"]
    summary = groups.agg(["size", lambda ids: ", ".join(map(str, ids.head(3)))])
    summary.columns = ["n", "examples"]
    summary = summary.sort_values("n", ascending=False, kind="stable")
    t = Table(title=f"{len(failed)} failed trial(s), by reason", title_justify="left", title_style="red")
    t.add_column("trials", justify="right")
    t.add_column("reason", overflow="fold")
    t.add_column("e.g.", overflow="fold")
    shown = summary.head(SUMMARY_TOP)
    for reason, rec in shown.iterrows():
        more = " …" if rec["n"] > 3 else ""
        t.add_row(str(rec["n"]), str(reason), rec["examples"] + more)
    console.print(t)
    if len(summary) > len(shown):
        console.print(f"… {len(summary) - len(shown)} more reason(s); --all lists every failed trial.", highlight=False)


def _config_view(table, obj, top: int | None, fmt: TableFormat, metrics: list[str], everything: bool = False) -> dict | None:
    from rich.table import Table

    from hpt import api

    cmp = api.compare(table, objective=obj, metrics=metrics)
    extra = [m for m in metrics if m != obj.metric]
    summarised = fmt is TableFormat.table and not everything and not top and len(cmp.configs) > SUMMARY_AT
    configs = cmp.configs[:top] if top else cmp.configs[:SUMMARY_TOP] if summarised else cmp.configs
    if fmt is TableFormat.json:
        return cmp.record() | {"configs": [c.record() for c in configs]}
    if fmt is TableFormat.csv:
        records = []
        for c in configs:
            rec = {"config": c.config, "label": c.label, "architecture": c.architecture, "best_on_every_range": c.best_everywhere,
                   "mean": c.mean, "mean_rank": c.mean_rank, "wins": c.wins, "tied_best": c.tied_best, "n_ranges": c.n_ranges,
                   "n_trials": c.n_trials, "n_pairs": c.n_pairs, "sign_p": c.sign_p, "wilcoxon_p": c.wilcoxon_p}
            for r in cmp.ranges:
                rec[f"{obj.metric}@{r}"] = c.per_range.get(r)
                rec[f"rank@{r}"] = c.ranks.get(r)
            records.append(rec | {f"mean_{m}": c.metrics.get(m) for m in extra} | c.params)
        cols = list(records[0]) if records else []
        _emit_csv(records, cols)
        return None

    if not cmp.configs:
        for note in cmp.notes():
            console.print(note, highlight=False)
        _failed_table(table.failed, table.params)
        return None
    n = len(cmp.ranges)
    title = (f"the best {len(configs)} of {len(cmp.configs)} configs" if summarised else f"{len(cmp.configs)} config(s)")
    over = "their repeats (no date ranges)" if cmp.windowless else f"{n} date range(s)"
    t = Table(title=f"{title} over {over}: {obj.metric} (rank)", title_justify="left")
    t.add_column("", width=1)
    t.add_column("config", overflow="fold")
    for r in cmp.ranges:
        t.add_column(_range(r), justify="right")
    t.add_column("mean", justify="right")
    t.add_column("mean\nrank", justify="right")
    t.add_column("wins", justify="right")
    for m in extra:
        t.add_column(f"mean\n{m}", justify="right")
    t.add_column("vs best\nsign p", justify="right")
    t.add_column("vs best\nwilcoxon p", justify="right")
    for i, c in enumerate(configs):
        cells = []
        for r in cmp.ranges:
            if r in c.per_range:
                cells.append(Text(f"{_num(c.per_range[r])} ({c.ranks[r]})", style="bold green" if c.ranks[r] == 1 else ""))
            else:
                cells.append(Text("—", style="dim"))
        wins = f"{c.wins}/{n}" + (f" +{c.tied_best} tied" if c.tied_best else "")
        vs = ("best", "") if i == 0 else (_p(c.sign_p) + f" ({c.best_better}/{c.n_pairs})", _p(c.wilcoxon_p))
        t.add_row(Text("★", style="bold yellow") if c.best_everywhere else "", c.label, *cells, _num(c.mean), f"{c.mean_rank:.2f}",
                  wins, *[_num(c.metrics.get(m)) for m in extra], *vs)
    console.print(t)
    if summarised:
        console.print(f"… {len(cmp.configs) - len(configs)} more config(s): --all lists every one, --top N the best N.",
                      highlight=False)
    console.print("wins k/n: ranges where the config is strictly best (+t tied: shares the best value on t more); "
                  "sign p (b/n): b of n paired results where the best config did better.", style="dim")
    for note in cmp.notes():
        console.print(f"• {note}", highlight=False)
    _failed_table(table.failed, table.params, everything)
    return None


def _trend_view(table, obj, fmt: TableFormat) -> list | None:
    from rich.table import Table

    from hpt import api

    rows = api.trends(table, objective=obj)
    if fmt is TableFormat.json:
        return [r.record() for r in rows]
    if fmt is TableFormat.csv:
        _emit_csv([r.record() for r in rows], ["param", "value", "count", "mean", "median", "best", "best_value"])
        return None
    if not rows:
        console.print("No finished trial yet: no trends to show." if table.done.empty
                      else "No parameter varies: no trends to show.")
        return None
    t = Table(title=f"Per-value trends of {obj}", title_justify="left")
    for c in ("param", "value", "count", "mean", "median", "best"):
        t.add_column(c, justify="left" if c in ("param", "value") else "right")
    last = None
    for r in rows:
        style = "bold green" if r.best_value else None
        t.add_row(r.param if r.param != last else "", _num(r.value), str(r.count), _num(r.mean), _num(r.median),
                  _num(r.best), style=style, end_section=False)
        last = r.param
    console.print(t)
    console.print("Green: the value with the best mean for its parameter. Means mix date ranges and the other "
                  "parameters; a balanced grid keeps that fair.", style="dim")
    return None


def _note(message: str) -> None:
    err_console.print(message, highlight=False, soft_wrap=True)


_MOVED_COLUMNS = ("config", "label", "low_rank", "high_rank", "shift", "low", "high")


def _moved_record(m) -> dict[str, Any]:  # noqa: ANN001 — fidelity.Moved
    return {"config": m.config, "label": m.label, "low_rank": m.low_rank, "high_rank": m.high_rank, "shift": m.shift,
            "low": m.low, "high": m.high}


def _fidelity_table(result, metric: str, title: str | None = None) -> None:  # noqa: ANN001 — fidelity.Fidelity
    from rich.table import Table

    t = Table(title=title or f"Fidelity by {metric}", title_justify="left", show_header=False)
    t.add_column("what")
    t.add_column("value", justify="right")
    t.add_row("configs in common", f"{result.n_common} (low {result.n_low}, high {result.n_high})")
    t.add_row("Spearman ρ", f"{_num(result.spearman, 3)} (p {_p(result.spearman_p)})" if result.spearman is not None else "–")
    t.add_row("Kendall τ", f"{_num(result.kendall, 3)} (p {_p(result.kendall_p)})" if result.kendall is not None else "–")
    t.add_row(f"top-{result.k} overlap", f"{result.overlap}/{result.k}")
    t.add_row("low's best, rank in high", str(result.best_low_rank_in_high))
    console.print(t)
    if result.moved:
        m = Table(title="Moved most", title_justify="left")
        for c in ("config", "low rank", "high rank", "shift", "low", "high"):
            m.add_column(c, justify="left" if c == "config" else "right", overflow="fold")
        for mv in result.moved:
            m.add_row(mv.label, str(mv.low_rank), str(mv.high_rank), f"{mv.shift:+d}", _num(mv.low), _num(mv.high))
        console.print(m)
    console.print(result.verdict(), highlight=False)


def _ladder_view(uri: str, rungs: list, fmt: TableFormat) -> None:
    """One store, several fidelities: each against the high one, with the two-store view per pair."""
    if fmt is TableFormat.json:
        _emit_json({"store": uri, "high": rungs[0].high,
                    "pairs": [{"low_fidelity": r.low, "high_fidelity": r.high,
                               **(r.result.record() | {"verdict": r.result.verdict()} if r.result else {"problem": r.problem})}
                              for r in rungs]})
        return
    if fmt is TableFormat.csv:
        _emit_csv([{"low_fidelity": r.low, "high_fidelity": r.high, **_moved_record(m)}
                   for r in rungs if r.result for m in r.result.moved],
                  ["low_fidelity", "high_fidelity", *_MOVED_COLUMNS])
        return
    for r in rungs:
        if r.result is None:
            console.print(Text.assemble((f"{r.low} vs {r.high}", "bold"), f": not yet comparable — {r.problem}"))
            continue
        _fidelity_table(r.result, r.result.objective.metric, title=f"Fidelity {r.low} vs {r.high}, by {r.result.objective.metric}")


# ------------------------------------------------------------------------------------------ commands
def register(app: typer.Typer) -> None:
    @app.command("results")
    @user_errors
    def results_cmd(
        uri: str = typer.Argument(..., help="The results store: a folder, file://PATH or gs://BUCKET/PREFIX."),
        metrics: Optional[str] = typer.Option(None, "--metrics", help="Comma-separated metric columns to show (e.g. mse,train_time_s)."),
        objective: Optional[str] = typer.Option(None, "--objective", help="Metric to rank by (default: the objective the rows recorded, the spec's; mse for older rows). NAME:min / NAME:max for another column."),
        fmt: TableFormat = format_option(TableFormat.table, "table (for people), csv or json (for machines)."),
        by: Optional[By] = typer.Option(None, "--by", help="`config`: group trials of one config across date ranges and repeats — is the winner real?"),
        show_trends: bool = typer.Option(False, "--trends", help="Per parameter value: count, mean, median and best of the objective."),
        top: Optional[int] = typer.Option(None, "--top", min=1, help="Show only the best N rows / configs."),
        fidelity: Optional[str] = typer.Option(None, "--fidelity", help="Only the trials of this fidelity (a spec's `fidelities`); --by config and --trends default to the most expensive one."),
        everything: bool = all_option(),
    ) -> None:
        """Read results (also mid-run): rows sorted by the objective, or --by config, or --trends."""
        from hpt import api
        from hpt.results.table import parse_metric_list

        table = (api.comparable(uri, fidelity, note=_note) if by or show_trends else api.read_results(uri, fidelity=fidelity))
        obj = table.objective(objective)
        chosen = parse_metric_list(metrics, table)
        table.require(obj)
        stopped = f", {table.n_stopped} stopped early" if table.n_stopped else ""
        err_console.print(f"{table.uri}: {len(table.done)} finished{stopped}, {len(table.failed)} failed (read from {table.source})",
                          highlight=False, soft_wrap=True)
        if fmt is TableFormat.csv and by and show_trends:
            raise UserError("--format csv holds one table: choose --by config or --trends", where="--format")
        if not by and not show_trends:
            _trial_view(table, obj, chosen, top, fmt, everything)
            return
        doc: dict[str, Any] = {}
        if by:
            got = _config_view(table, obj, top, fmt, chosen, everything)
            if got is not None:
                doc["by_config"] = got
        if show_trends:
            got = _trend_view(table, obj, fmt)
            if got is not None:
                doc["trends"] = got
        if fmt is TableFormat.json:
            _emit_json({"store": table.uri, **doc})

    @app.command("fidelity")
    @user_errors
    def fidelity_cmd(
        low: str = typer.Argument(..., metavar="STORE|LOW_STORE",
                                  help="One store whose rows carry several fidelities (a spec with `fidelities`), or the cheap run's store."),
        high: Optional[str] = typer.Argument(None, metavar="[HIGH_STORE]", help="Store of the expensive run of the same configs."),
        objective: Optional[str] = typer.Option(None, "--objective", help="Metric to rank by (default: the objective the rows recorded, the spec's; mse for older rows). NAME:min / NAME:max for another column."),
        k: int = typer.Option(5, "--k", "-k", min=1, help="Size of the top-k sets to compare."),
        high_name: Optional[str] = typer.Option(None, "--high", help="One store: the fidelity to compare the others with (default: the most epochs × months)."),
        fmt: TableFormat = format_option(TableFormat.table, "table, csv or json."),
    ) -> None:
        """Can the cheap run be trusted? Rank agreement of the same configs at a cheap and an expensive fidelity."""
        from hpt import api

        if high is None:
            table = api.read_results(low)
            rungs = api.fidelity(table, objective=objective, k=k, high_name=high_name)
            _ladder_view(table.uri, rungs, fmt)
            return
        if high_name is not None:
            raise UserError("--high names a fidelity inside one store; with two stores the second is the high one", where="--high")
        result = api.fidelity(low, high, objective=objective, k=k)
        if fmt is TableFormat.json:
            _emit_json({"low": low, "high": high, **result.record(), "verdict": result.verdict()})
            return
        if fmt is TableFormat.csv:
            _emit_csv([_moved_record(m) for m in result.moved], list(_MOVED_COLUMNS))
            return
        _fidelity_table(result, result.objective.metric)

    @app.command("report")
    @user_errors
    def report_cmd(
        uri: str = typer.Argument(..., help="The results store: a folder, file://PATH or gs://BUCKET/PREFIX."),
        out: Path = typer.Option(Path("report.html"), "--out", "-o", help="The HTML file to write (one self-contained page)."),
        objective: Optional[str] = typer.Option(None, "--objective", help="Metric to rank by (default: the objective the rows recorded, the spec's; mse for older rows). NAME:min / NAME:max for another column."),
        top: int = typer.Option(8, "--top", min=1, help="Configs drawn in the per-range and learning-curve plots."),
        curves: bool = typer.Option(True, "--curves/--no-curves", help="Read learning curves from the TensorBoard logs."),
    ) -> None:
        """One self-contained HTML page: per-range objective, trends, learning curves, the tables."""
        from hpt import api

        path = api.report(uri, out, objective=objective, top=top, curves=curves, note=_note)
        err_console.print(f"wrote {path} ({path.stat().st_size // 1024} KiB)", highlight=False)
