"""`hpt report`: one self-contained HTML page (no external files, PNG plots embedded as base64).

Sections, in the order a reader asks: is the winner real (summary + notes), the objective per config
per date range, the per-value trends, learning curves from TensorBoard, then the tables (configs,
trends, failed trials). This module computes the numbers and draws the plots (matplotlib's Agg
backend: no display needed); the page itself is the Jinja2 template report.html.j2 beside it, rendered
with autoescape, so a config label or a failure reason is always text, never markup.
"""
from __future__ import annotations

import base64
import io
import math
import tempfile
from datetime import datetime, timezone
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

from hpt.results.compare import Comparison, compare
from hpt.results.table import Objective, ResultTable, built_in_rows, short_param, short_range
from hpt.results.trends import TrendRow, trends

TEMPLATE = "report.html.j2"  # beside this module, shipped as package data
_PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22", "#7f7f7f"]

def _fig_png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _figure(png_b64: str | None, caption: str, alt: str) -> dict[str, str] | None:
    return {"png": png_b64, "caption": caption, "alt": alt} if png_b64 else None


def _num(value: Any, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return str(value)


def _short(label: str, width: int = 48) -> str:
    return label if len(label) <= width else label[: width - 1] + "…"


# ------------------------------------------------------------------------------------------- plots
def plot_per_range(cmp: Comparison, top: int) -> str | None:
    import matplotlib.pyplot as plt

    configs = cmp.configs[:top]
    if not configs:
        return None
    obj = cmp.objective
    if len(cmp.ranges) <= 1:  # one range: ranked dots (no bars: a zoomed axis would exaggerate bar lengths)
        fig, ax = plt.subplots(figsize=(10, 0.42 * len(configs) + 1.6))
        labels = [_short(c.label) for c in configs][::-1]
        values = [c.mean for c in configs][::-1]
        colors = [_PALETTE[i % len(_PALETTE)] for i in range(len(configs))][::-1]
        ys = list(range(len(configs)))
        ax.hlines(ys, min(values), values, color="#dde1e7", lw=1)
        ax.scatter(values, ys, color=colors, s=70, zorder=3)
        for y, v in zip(ys, values):
            ax.annotate(f"{v:.4g}", (v, y), xytext=(7, 0), textcoords="offset points", va="center", fontsize=9)
        ax.set_yticks(ys, labels)
        ax.set_xlabel(f"{obj.metric} ({'lower' if obj.ascending else 'higher'} is better)")
        lo, hi = min(values), max(values)
        pad = (hi - lo) * 0.12 or abs(hi) * 0.02 or 1.0
        ax.set_xlim(lo - pad, hi + pad * 1.6)
        ax.set_title(f"{obj.metric} per config (no date ranges: mean over repeats)" if cmp.windowless else
                     f"{obj.metric} per config on the one date range {cmp.ranges[0] if cmp.ranges else ''}")
        ax.grid(axis="x", alpha=0.3)
        return _fig_png(fig)
    fig, ax = plt.subplots(figsize=(10, 5.2))
    x = list(range(len(cmp.ranges)))
    for i, c in enumerate(configs):
        xs = [j for j, r in enumerate(cmp.ranges) if r in c.per_range]
        ys = [c.per_range[cmp.ranges[j]] for j in xs]
        star = "★ " if c.best_everywhere else ""
        ax.plot(xs, ys, marker="o", lw=2.2 if i == 0 else 1.4, color=_PALETTE[i % len(_PALETTE)],
                label=f"{star}{_short(c.label, 40)}", zorder=10 - i if i < 10 else 0)
    ax.set_xticks(x, [r.replace("..", "\n→ ") for r in cmp.ranges], fontsize=9)
    ax.set_xlabel("training date range")
    ax.set_ylabel(f"{obj.metric} ({'lower' if obj.ascending else 'higher'} is better)")
    ax.set_title(f"{obj.metric} per config on each date range (top {len(configs)} by mean rank)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
    return _fig_png(fig)


def plot_trends(table: ResultTable, obj: Objective, rows: list[TrendRow]) -> str | None:
    import matplotlib.pyplot as plt
    import numpy as np

    params = list(dict.fromkeys(r.param for r in rows))
    if not params:
        return None
    done = table.finished(obj)
    ncol = min(3, len(params))
    nrow = math.ceil(len(params) / ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(4.0 * ncol + 0.6, 3.3 * nrow + 0.4), squeeze=False)
    rng = np.random.default_rng(0)
    for ax, param in zip(axes.flat, params):
        column = param if param in done.columns else f"param.{param}"
        values = [r for r in rows if r.param == param]
        for i, r in enumerate(values):
            ys = done[done[column] == r.value][obj.metric].to_numpy()
            ax.scatter(i + rng.uniform(-0.12, 0.12, len(ys)), ys, s=14, alpha=0.45, color="#5b6474")
        ax.plot(range(len(values)), [r.mean for r in values], "-o", color="#1f77b4", lw=2, label="mean")
        ax.plot(range(len(values)), [r.median for r in values], "--s", color="#ff7f0e", lw=1.2, ms=4, label="median")
        best = [i for i, r in enumerate(values) if r.best_value]
        ax.scatter(best, [values[i].mean for i in best], s=140, facecolors="none", edgecolors="#2ca02c", lw=2, zorder=5)
        ax.set_xticks(range(len(values)), [_num(r.value) for r in values], rotation=30 if len(values) > 4 else 0, fontsize=8)
        ax.set_title(param, fontsize=11)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(params):]:
        ax.axis("off")
    axes.flat[0].set_ylabel(obj.metric)
    axes.flat[0].legend(fontsize=8)
    fig.suptitle(f"{obj.metric} by parameter value (dots: trials; circled: best mean)", fontsize=12)
    fig.tight_layout()
    return _fig_png(fig)


def plot_curves(curves: dict[str, dict[str, list[tuple[int, float]]]], trial_config: dict[str, str],
                config_order: list[str], labels: dict[str, str], obj: Objective,
                trial_range: dict[str, str] | None = None) -> tuple[str | None, list[str]]:
    """Per-epoch curves: the validation objective and the training loss; colour = config, line style = date range."""
    import matplotlib.pyplot as plt

    from hpt.results.tensorboard import pick_tag, pick_train_tag

    if not curves:
        return None, []
    all_tags = sorted({t for c in curves.values() for t in c})
    panels = []
    valid = pick_tag(all_tags, obj.metric)
    if valid:
        panels.append(valid)
    train = pick_train_tag(all_tags)
    if train and train not in panels:
        panels.append(train)
    if not panels:
        panels = all_tags[:2]
    from matplotlib.lines import Line2D
    from matplotlib.ticker import MaxNLocator

    fig, axes = plt.subplots(1, len(panels), figsize=(5.6 * len(panels) + 0.8, 4.4), squeeze=False)
    color = {c: _PALETTE[i % len(_PALETTE)] for i, c in enumerate(config_order)}
    rank = {c: i for i, c in enumerate(config_order)}
    trial_range = trial_range or {}
    ranges = sorted({trial_range.get(t, "") for t in curves})
    style = {r: ("-", "--", ":", "-.")[i % 4] for i, r in enumerate(ranges)}
    drawn: set[str] = set()
    # Worst configs first so the best one's lines end up on top.
    order = sorted(curves, key=lambda t: (-rank.get(trial_config.get(t, ""), len(rank)), t))
    for ax, tag in zip(axes.flat, panels):
        for trial in order:
            pts = curves[trial].get(tag)
            if not pts:
                continue
            config = trial_config.get(trial, "")
            drawn.add(config)
            ax.plot([p[0] for p in pts], [p[1] for p in pts], color=color.get(config, "#999999"), alpha=0.8, lw=1.5,
                    ls=style[trial_range.get(trial, "")])
        ax.set_title(tag)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    legend = [c for c in config_order if c in drawn]
    handles = [Line2D([], [], color=color[c], lw=2) for c in legend]
    names = [_short(labels.get(c, c), 36) for c in legend]
    if len(ranges) > 1:  # line styles tell the date ranges apart
        handles += [Line2D([], [], color="#444444", lw=1.5, ls=style[r]) for r in ranges]
        names += [r or "(no range)" for r in ranges]
    if handles:
        fig.legend(handles, names, loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=9, frameon=False)
    fig.suptitle("Learning curves from TensorBoard (one line per trial; colour = config, line style = date range)", fontsize=12)
    fig.tight_layout()
    return _fig_png(fig), panels


# ------------------------------------------------------------------------------------------- page
def _config_rows(cmp: Comparison) -> dict[str, Any]:
    from hpt.schemas.catalog import metrics as catalog_metrics

    rows = []
    for c in cmp.configs:
        cells = [{"value": _num(c.per_range[r]), "rank": c.ranks[r]} if r in c.per_range else None for r in cmp.ranges]
        rows.append({"star": c.best_everywhere, "label": c.label, "cells": cells, "mean": _num(c.mean),
                     "mean_rank": f"{c.mean_rank:.2f}", "trials": c.n_trials,
                     "wins": f"{c.wins}/{len(cmp.ranges)}" + (f" +{c.tied_best} tied" if c.tied_best else ""),
                     "sign_p": "–" if c.sign_p is None else f"{c.sign_p:.3g}", "best_better": c.best_better,
                     "pairs": c.n_pairs, "wilcoxon_p": "–" if c.wilcoxon_p is None else f"{c.wilcoxon_p:.3g}"})
    known = catalog_metrics().get(cmp.objective.metric)
    return {"ranges": [short_range(r).partition("..")[::2] for r in cmp.ranges], "rows": rows,
            "metric": cmp.objective.metric, "explained": known.help if known else "",
            "any_star": any(c.best_everywhere for c in cmp.configs)}


def plot_best_so_far(table: ResultTable, obj: Objective) -> str | None:
    """The best objective so far against the trials finished, in the order they finished: how a run is going."""
    import matplotlib.pyplot as plt

    done = table.finished(obj)
    if done.empty:
        return None
    order = done.sort_values("finished_at", kind="stable") if "finished_at" in done.columns else done
    values = order[obj.metric].to_numpy(dtype=float)
    best = [values[0]]
    for v in values[1:]:
        best.append(v if obj.better(v, best[-1]) else best[-1])
    xs = list(range(1, len(values) + 1))
    fig, ax = plt.subplots(figsize=(10, 3.6))
    ax.scatter(xs, values, s=16, color="#8a93a3", alpha=0.7, label="each finished trial")
    ax.step(xs, best, where="post", color="#1f77b4", lw=2.2, label="best so far")
    ax.set_xlabel("trials finished, in the order they finished")
    ax.set_ylabel(f"{obj.metric} ({'lower' if obj.ascending else 'higher'} is better)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=9)
    return _fig_png(fig)


def _progress(table: ResultTable) -> dict[str, Any]:
    """Trials by round and status: what the rows say (and, for an adaptive search, how many of each
    round's trials have no row yet)."""
    rows = table.all
    status = rows["status"].astype(str) if "status" in rows.columns else None
    statuses = sorted(set(status)) if status is not None else ["done"]
    statuses = sorted(statuses, key=lambda st: (st != "done", st))
    out: list[dict[str, Any]] = []
    if table.rounds and "round" in rows.columns:
        for r in table.rounds:
            mine = rows[rows["round"] == r["round"]]
            counts = [int((mine["status"].astype(str) == st).sum()) if status is not None else len(mine) for st in statuses]
            out.append({"round": r["round"], "fidelity": r.get("fidelity") or "–", "counts": counts,
                        "waiting": max(0, len(r["trials"]) - len(mine))})
    totals = [int((status == st).sum()) if status is not None else len(rows) for st in statuses]
    waiting = sum(r["waiting"] for r in out)
    return {"statuses": statuses, "rounds": out, "totals": totals, "waiting": waiting}


def _round_rows(table: ResultTable) -> list[dict[str, Any]]:
    """An adaptive search's rounds: which configs ran at which fidelity, and which were promoted there (with
    their mean objective at the rung before)."""
    rows = []
    for r in table.rounds:
        labels = r.get("labels", {})
        promoted = r.get("promoted")
        if promoted:
            how = f"best {len(promoted)} of {r.get('scored', '?')}, promoted"
            if r.get("promotion") == "async":   # decided with part of the rung finished
                how = f"best {len(promoted)} of the {r.get('scored', '?')} finished, promoted at once (async)"
            configs = [f"{labels.get(p['config'], p['config'])} ({_num(p['score'])})" for p in promoted]
        else:
            how = "proposed" if r.get("told") is not None else "start"
            configs = [labels.get(c, c) for c in r["configs"]]
        rows.append({"round": r["round"], "fidelity": r.get("fidelity") or "–", "trials": len(r["trials"]),
                     "how": how, "configs": configs})
    return rows


def _confirmation(table: ResultTable, obj: Objective) -> dict[str, Any] | None:
    from hpt.results.confirm import confirmation

    found = confirmation(table, obj)
    if found is None:
        return None
    return {"sentence": found.sentence(obj.metric), "held": found.held, "window": found.window, "metric": obj.metric,
            "rows": [{"rank": i + 1, "label": found.labels.get(c, c), "value": _num(found.values.get(c))}
                     for i, c in enumerate(found.configs)]}


def _failed_rows(table: ResultTable) -> dict[str, Any]:
    cols = ["trial_id", "range"] + table.params + ["reason"]
    return {"columns": [short_param(c) for c in cols],
            "rows": [[_num(rec.get(c)) for c in cols] for rec in table.failed.to_dict("records")]}


def _curves(table: ResultTable, cmp: Comparison, obj: Objective, top: int, curves: bool, store) -> dict[str, Any]:
    if not curves:
        return {"figure": None, "message": "Skipped (--no-curves)."}
    empty = {"figure": None, "message": "No TensorBoard logs found in the store."}
    if store is None or not cmp.configs:
        return empty
    from hpt.results.tensorboard import load_curves

    chosen = [c.config for c in cmp.configs[:top]]
    done = table.done
    trial_config = dict(zip(done["trial_id"], done["config"]))
    trials = [t for t, c in trial_config.items() if c in chosen]
    with tempfile.TemporaryDirectory(prefix="hpt-report-tb-") as scratch:
        data = load_curves(store, trials, Path(scratch))
    trial_range = dict(zip(done["trial_id"], done["range"]))
    png, tags = plot_curves(data, trial_config, chosen, {c.config: c.label for c in cmp.configs}, obj, trial_range)
    if not png:
        return empty
    return {"figure": _figure(png, f"{len(data)} trial(s) of the top {len(chosen)} configs; colour = config, line style = "
                                   f"date range; tags: {', '.join(tags)}.", "learning curves"), "message": ""}


def _baseline_card(table: ResultTable, obj: Objective) -> list[tuple[str, str]]:
    """What predicting the training mean scores (the rows' baseline_mse, the same windows), when the
    objective is mse: the number the best mean must beat."""
    if obj.metric != "mse" or "baseline_mse" not in table.done.columns:
        return []
    baseline = table.done["baseline_mse"].mean()
    said = "predicting the training mean" if built_in_rows(table.done) else "the trainer's own baseline"
    return [] if math.isnan(baseline) else [(_num(float(baseline)), f"mean baseline_mse ({said})")]


@lru_cache(maxsize=1)
def _template():
    from jinja2 import Environment, StrictUndefined

    env = Environment(autoescape=True, undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    return env.from_string(resources.files(__package__).joinpath(TEMPLATE).read_text(encoding="utf-8"))


def render(table: ResultTable, obj: Objective, top: int = 8, curves: bool = True, store=None,
           live: dict[str, Any] | None = None) -> str:
    """The report as one HTML string: the numbers and plots here, the page in report.html.j2. `live`: the
    page `hpt serve` keeps current ({"version": ..., "interval_s": ...}: it polls and swaps itself in)."""
    import matplotlib

    matplotlib.use("Agg")

    cmp = compare(table, obj)
    trend_rows = trends(table, obj)
    best = cmp.best
    shown = cmp.configs[:top]
    star = "; ★ = best on every range" if any(c.best_everywhere for c in shown) else ""
    page = {
        "uri": table.uri, "objective": str(obj), "generated": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "cards": [(len(table.done), "finished trials"), (len(table.failed), "failed trials"), (len(cmp.configs), "configs"),
                  (len(cmp.ranges), "date ranges"), (_num(best.mean) if best else "–", f"best mean {obj.metric}"),
                  *_baseline_card(table, obj)],
        "verdict": {"best": best.label if best else None, "metric": obj.metric, "mean": _num(best.mean) if best else "",
                    "wins": best.wins if best else 0, "ranges": len(cmp.ranges),
                    "everywhere": bool(best and best.best_everywhere), "good": bool(best and best.best_everywhere)},
        "notes": cmp.notes(),
        "per_range": _figure(plot_per_range(cmp, top), f"Top {len(shown)} configs by mean rank{star}.",
                             "objective per config per date range"),
        "configs": _config_rows(cmp),
        "trends": {"figure": _figure(plot_trends(table, obj, trend_rows),
                                     "Each dot is a finished trial; lines join the per-value mean and median.",
                                     "objective by parameter value"),
                   "rows": [{"param": r.param if i == 0 or r.param != trend_rows[i - 1].param else "",
                             "value": _num(r.value), "count": r.count, "mean": _num(r.mean), "median": _num(r.median),
                             "best": _num(r.best), "best_value": r.best_value} for i, r in enumerate(trend_rows)]}
                  if trend_rows else None,
        "curves": _curves(table, cmp, obj, top, curves, store),
        "failed": _failed_rows(table),
        "rounds": _round_rows(table),
        "confirmation": _confirmation(table, obj),
        "progress": _progress(table),
        "best_so_far": _figure(plot_best_so_far(table, obj), "Grey: each finished trial's objective; blue: the best "
                               "one so far.", "best objective so far"),
        "live": live,
    }
    return _template().render(page=page)


def render_waiting(uri: str, message: str, live: dict[str, Any]) -> str:
    """The live page before the store holds a row (or while it cannot be read): says so, and polls."""
    return _template().render(page={"uri": uri, "waiting": message, "live": live,
                                    "generated": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")})


def write_report(table: ResultTable, obj: Objective, out: Path, top: int = 8, curves: bool = True) -> Path:
    from hpt.store import open_store

    store = open_store(table.store) if curves else None
    text = render(table, obj, top=top, curves=curves, store=store)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(out)
    return out
