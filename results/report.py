"""`hpt report`: one self-contained HTML page (no external files, PNG plots embedded as base64).

Sections, in the order a reader asks: is the winner real (summary + notes), the objective per config
per date range, the per-value trends, learning curves from TensorBoard, then the tables (configs,
trends, failed trials). matplotlib renders with the Agg backend, so no display is needed.
"""
from __future__ import annotations

import base64
import html
import io
import math
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from hpt.results.compare import Comparison, compare
from hpt.results.table import Objective, ResultTable, short_param
from hpt.results.trends import TrendRow, trends

_PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22", "#7f7f7f"]

_CSS = """
body{font-family:-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;margin:0;background:#f6f7f9;color:#1d2330;line-height:1.45}
main{max-width:1160px;margin:0 auto;padding:24px 32px 48px}
h1{font-size:26px;margin:8px 0 2px} h2{font-size:20px;margin:32px 0 8px;border-bottom:2px solid #dde1e7;padding-bottom:4px}
.sub{color:#5b6474;font-size:14px;margin-bottom:16px}
.cards{display:flex;gap:12px;flex-wrap:wrap;margin:12px 0}
.card{background:#fff;border:1px solid #dde1e7;border-radius:8px;padding:10px 16px;min-width:130px}
.card b{display:block;font-size:22px} .card span{color:#5b6474;font-size:13px}
.verdict{background:#fff;border-left:6px solid #2ca02c;padding:12px 16px;border-radius:6px;margin:12px 0;font-size:16px}
.verdict.warn{border-left-color:#e0a800}
ul.notes{background:#fff;border:1px solid #dde1e7;border-radius:8px;padding:12px 16px 12px 36px;margin:8px 0}
ul.notes li{margin:4px 0}
figure{background:#fff;border:1px solid #dde1e7;border-radius:8px;margin:12px 0;padding:8px;text-align:center}
figure img{max-width:100%;height:auto} figcaption{color:#5b6474;font-size:13px;margin-top:4px}
table{border-collapse:collapse;background:#fff;font-size:13px;margin:8px 0;border:1px solid #dde1e7}
th,td{padding:5px 9px;border-bottom:1px solid #e8ebef;text-align:right;white-space:nowrap}
th{background:#eef1f5;text-align:center} td.l,th.l{text-align:left}
tr.best td{background:#e8f6ea;font-weight:600} td.r1{color:#137a2a;font-weight:600}
.star{color:#d9a400;font-size:16px} .muted{color:#8a93a3}
.scroll{overflow-x:auto}
"""


def _fig_png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _img(png_b64: str, caption: str, alt: str) -> str:
    return (f'<figure><img alt="{html.escape(alt)}" src="data:image/png;base64,{png_b64}">'
            f"<figcaption>{html.escape(caption)}</figcaption></figure>")


def _num(value: Any, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return html.escape(str(value))


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
        ax.set_title(f"{obj.metric} per config on the one date range {cmp.ranges[0] if cmp.ranges else ''}")
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


# ------------------------------------------------------------------------------------------ tables
def _config_table(cmp: Comparison) -> str:
    obj = cmp.objective
    head = "".join(f"<th>{html.escape(r)}</th>" for r in cmp.ranges)
    out = [f'<div class="scroll"><table><tr><th></th><th class="l">config</th>{head}<th>mean</th><th>mean rank</th>'
           f"<th>wins</th><th>trials</th><th>vs best: sign p</th><th>vs best: Wilcoxon p</th></tr>"]
    n = len(cmp.ranges)
    for i, c in enumerate(cmp.configs):
        cells = []
        for r in cmp.ranges:
            if r in c.per_range:
                cls = ' class="r1"' if c.ranks[r] == 1 else ""
                cells.append(f"<td{cls}>{_num(c.per_range[r])} <span class=muted>({c.ranks[r]})</span></td>")
            else:
                cells.append('<td class="muted">—</td>')
        star = '<span class="star" title="best on every range">★</span>' if c.best_everywhere else ""
        ties = f" +{c.tied_best} tied" if c.tied_best else ""
        if i == 0:
            vs = "<td>best</td><td></td>"
        else:
            sp = "–" if c.sign_p is None else f"{c.sign_p:.3g}"
            wp = "–" if c.wilcoxon_p is None else f"{c.wilcoxon_p:.3g}"
            vs = f"<td>{sp} <span class=muted>({c.best_better}/{c.n_pairs})</span></td><td>{wp}</td>"
        cls = ' class="best"' if i == 0 else ""
        out.append(f"<tr{cls}><td>{star}</td><td class=l>{html.escape(c.label)}</td>{''.join(cells)}<td>{_num(c.mean)}</td>"
                   f"<td>{c.mean_rank:.2f}</td><td>{c.wins}/{n}{ties}</td><td>{c.n_trials}</td>{vs}</tr>")
    out.append("</table></div>")
    out.append(f'<p class="sub">Each cell: {html.escape(obj.metric)} on that range (mean over repeats) and its rank there. '
               "Wins: ranges where the config is strictly best. (b/n) after a sign-test p: on b of n paired results "
               "(same range and repeat) the best config did better.</p>")
    return "".join(out)


def _trend_table(rows: list[TrendRow]) -> str:
    out = ['<table><tr><th class="l">parameter</th><th>value</th><th>count</th><th>mean</th><th>median</th><th>best</th></tr>']
    last = None
    for r in rows:
        cls = ' class="best"' if r.best_value else ""
        name = html.escape(r.param) if r.param != last else ""
        out.append(f"<tr{cls}><td class=l>{name}</td><td>{_num(r.value)}</td><td>{r.count}</td><td>{_num(r.mean)}</td>"
                   f"<td>{_num(r.median)}</td><td>{_num(r.best)}</td></tr>")
        last = r.param
    out.append("</table>")
    return "".join(out)


def _failed_table(table: ResultTable) -> str:
    if table.failed.empty:
        return "<p>No failed trials.</p>"
    cols = ["trial_id", "range"] + table.params + ["reason"]
    out = ["<div class=scroll><table><tr>" + "".join(f'<th class="l">{html.escape(short_param(c))}</th>' for c in cols) + "</tr>"]
    for rec in table.failed.to_dict("records"):
        out.append("<tr>" + "".join(f"<td class=l>{_num(rec.get(c))}</td>" for c in cols) + "</tr>")
    out.append("</table></div>")
    return "".join(out)


def _verdict(cmp: Comparison) -> tuple[str, bool]:
    best = cmp.best
    if best is None:
        return "No finished trial has the objective yet.", False
    n = len(cmp.ranges)
    text = (f"Best config: <b>{html.escape(best.label)}</b> — mean {html.escape(cmp.objective.metric)} "
            f"{_num(best.mean)}, strictly best on {best.wins} of {n} date range(s).")
    if best.best_everywhere:
        return text + ' <span class="star">★</span> It beats every other config on every range.', True
    if n <= 1:
        return text + " With one date range this is a ranking, not yet evidence: confirm it on more ranges.", False
    return text + " It is not best on every range, so treat the ranking as tentative.", False


# ------------------------------------------------------------------------------------------- page
def render(table: ResultTable, obj: Objective, top: int = 8, curves: bool = True, store=None) -> str:
    """The report as one HTML string."""
    import matplotlib

    matplotlib.use("Agg")

    cmp = compare(table, obj)
    trend_rows = trends(table, obj)
    labels = {c.config: c.label for c in cmp.configs}
    parts: list[str] = []
    verdict, good = _verdict(cmp)
    generated = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    parts.append(f"<h1>hpt report</h1><div class=sub>{html.escape(table.uri)} · objective {html.escape(str(obj))} · "
                 f"generated {generated}</div>")
    cards = [(len(table.done), "finished trials"), (len(table.failed), "failed trials"), (len(cmp.configs), "configs"),
             (len(cmp.ranges), "date ranges"), (_num(cmp.best.mean) if cmp.best else "–", f"best mean {obj.metric}")]
    parts.append('<div class="cards">' + "".join(f"<div class=card><b>{v}</b><span>{html.escape(k)}</span></div>" for v, k in cards)
                 + "</div>")
    parts.append("<h2>Is it real?</h2>")
    parts.append(f'<div class="verdict{"" if good else " warn"}">{verdict}</div>')
    parts.append('<ul class="notes">' + "".join(f"<li>{html.escape(n)}</li>" for n in cmp.notes()) + "</ul>")

    parts.append("<h2>Objective per config per date range</h2>")
    png = plot_per_range(cmp, top)
    if png:
        parts.append(_img(png, f"Top {min(top, len(cmp.configs))} configs by mean rank; ★ = best on every range.",
                          "objective per config per date range"))
    parts.append(_config_table(cmp))

    parts.append("<h2>Per-value trends</h2>")
    if trend_rows:
        png = plot_trends(table, obj, trend_rows)
        if png:
            parts.append(_img(png, "Each dot is a finished trial; lines join the per-value mean and median.",
                              "objective by parameter value"))
        parts.append(_trend_table(trend_rows))
    else:
        parts.append("<p>No parameter varies across these trials.</p>")

    parts.append("<h2>Learning curves</h2>")
    curve_html = "<p>No TensorBoard logs found in the store.</p>" if curves else "<p>Skipped (--no-curves).</p>"
    if curves and store is not None and cmp.configs:
        from hpt.results.tensorboard import load_curves

        chosen = [c.config for c in cmp.configs[:top]]
        done = table.done
        trial_config = dict(zip(done["trial_id"], done["config"]))
        trials = [t for t, c in trial_config.items() if c in chosen]
        with tempfile.TemporaryDirectory(prefix="hpt-report-tb-") as scratch:
            data = load_curves(store, trials, Path(scratch))
        trial_range = dict(zip(done["trial_id"], done["range"]))
        png, tags = plot_curves(data, trial_config, chosen, labels, obj, trial_range)
        if png:
            curve_html = _img(png, f"{len(data)} trial(s) of the top {len(chosen)} configs; colour = config, line style = "
                                   f"date range; tags: {', '.join(tags)}.",
                              "learning curves")
    parts.append(curve_html)

    parts.append("<h2>Failed trials</h2>")
    parts.append(_failed_table(table))
    body = "\n".join(parts)
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>hpt report</title>'
            f'<meta name="viewport" content="width=device-width, initial-scale=1"><style>{_CSS}</style></head>'
            f"<body><main>\n{body}\n</main></body></html>\n")


def write_report(table: ResultTable, obj: Objective, out: Path, top: int = 8, curves: bool = True) -> Path:
    from hpt.store import open_store

    store = open_store(table.uri) if curves else None
    text = render(table, obj, top=top, curves=curves, store=store)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(out)
    return out
