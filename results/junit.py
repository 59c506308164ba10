"""JUnit XML for CI: one testcase per trial, so Jenkins' `junit` step shows which trials failed and why.

`write_junit(rows, path)` takes result rows (dicts as in rows/<id>.csv, values may be strings) and writes
one <testsuite> inside <testsuites>. A row whose status is not "done" is a <failure> carrying its reason;
a trial that never ran to an end (status skipped / pending / cancelled / not run — a caller may pass such
pseudo-rows for plan trials without a row) is <skipped>.
"""
from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from datetime import datetime
from pathlib import Path
from typing import Any, Mapping

from hpt.schemas.metric import DEFAULT_OBJECTIVE, GOALS, MINIMIZE, Objective
from hpt.schemas.row import PARAM_PREFIX, STATUS_DONE

_SHORT_PARAMS = 4  # params shown in a testcase name; the full set is in the <properties>
# Statuses of trials that never ran to an end (a stopped run): <skipped>, not <failure>.
SKIPPED_STATUSES = {"skipped", "pending", "cancelled", "canceled", "not run", "stopped"}   # stopped: ended early by a rule


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def _float(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if number == number else None  # NaN → None


def _seconds(row: Mapping[str, Any]) -> float:
    """Training time if recorded, else finished − started, else 0."""
    elapsed = _float(row.get("train_time_s"))
    if elapsed is not None:
        return max(elapsed, 0.0)
    try:
        started = datetime.fromisoformat(_text(row.get("started_at")).replace("Z", "+00:00"))
        finished = datetime.fromisoformat(_text(row.get("finished_at")).replace("Z", "+00:00"))
    except ValueError:
        return 0.0
    return max((finished - started).total_seconds(), 0.0)


def _short_value(value: Any) -> str:
    number = _float(value)
    if number is None:
        return _text(value)
    return f"{number:g}"


def short_config(row: Mapping[str, Any], varying: set[str] | None = None) -> str:
    """`lstm lr=0.001 dropout=0.1 …` — readable in a CI listing; the full params are in properties.

    With `varying` (the param columns that differ across the run), only those are named.
    """
    params = [(k[len(PARAM_PREFIX):], v) for k, v in row.items() if k.startswith(PARAM_PREFIX) and _text(v) != ""
              and (varying is None or k in varying)]
    params.sort()
    shown = " ".join(f"{name}={_short_value(v)}" for name, v in params[:_SHORT_PARAMS])
    more = f" +{len(params) - _SHORT_PARAMS}" if len(params) > _SHORT_PARAMS else ""
    arch = _text(row.get("architecture"))
    return " ".join(part for part in (arch, shown + more) if part)


def _window(row: Mapping[str, Any]) -> str:
    start, end = _text(row.get("train_start")), _text(row.get("train_end"))
    return f"{start}..{end}" if start or end else ""


def _ranks(rows: list[dict], objective: Objective | None) -> dict[str, tuple[Objective, float, int]]:
    """trial id → (objective, value, rank among finished trials of that objective; 1 = best). Without an
    `objective`, each row's own recorded one (rows of schema 1: mse)."""
    groups: dict[Objective, list[tuple[float, str]]] = {}
    for row in rows:
        if _text(row.get("status")) != STATUS_DONE:
            continue
        if objective is not None:
            obj = objective
        elif _text(row.get("objective")) and _text(row.get("goal")) in GOALS:
            obj = Objective(_text(row["objective"]), _text(row["goal"]))
        else:
            obj = Objective(DEFAULT_OBJECTIVE, MINIMIZE)
        value = _float(row.get(obj.metric))
        if value is not None:
            groups.setdefault(obj, []).append((value, _text(row.get("trial_id"))))
    out: dict[str, tuple[Objective, float, int]] = {}
    for obj, scored in groups.items():
        scored.sort(key=lambda vt: (vt[0] if obj.ascending else -vt[0], vt[1]))
        out |= {tid: (obj, value, rank) for rank, (value, tid) in enumerate(scored, 1)}
    return out


def write_junit(rows: list[dict], path, suite_name: str = "hpt", objective: Objective | None = None,
                confirmation: Any = None, metric: str = "") -> None:
    """Write one JUnit testsuite with a testcase per trial (in trial-id order); failed trials become <failure>
    with their reason; a finished one carries its objective, value and rank (1 = best) as properties and
    first in its system-out. `objective`: rank by this instead of the objective each row recorded.
    `confirmation` (hpt.results.confirm.Confirmation) adds one testcase: the winner held on the untouched
    window, or a <failure> saying it did not."""
    rows = sorted(rows, key=lambda r: _text(r.get("trial_id")))
    ranks = _ranks(rows, objective)
    if confirmation is not None:
        sentence = confirmation.sentence(metric)
        rows = rows + [{"trial_id": "confirmation", "status": STATUS_DONE if confirmation.held else "not-confirmed",
                        "reason": sentence, "architecture": "confirmation", "_out": sentence}]
    skipped = [r for r in rows if _text(r.get("status")) in SKIPPED_STATUSES]
    failures = [r for r in rows if _text(r.get("status")) not in SKIPPED_STATUSES | {STATUS_DONE}]
    total_time = sum(_seconds(r) for r in rows)
    columns = {k for r in rows for k in r if k.startswith(PARAM_PREFIX)}
    varying = {c for c in columns if len({_text(r.get(c)) for r in rows}) > 1} if len(rows) > 1 else None

    root = ET.Element("testsuites", name=suite_name, tests=str(len(rows)), failures=str(len(failures)),
                      errors="0", skipped=str(len(skipped)), time=f"{total_time:.3f}")
    suite = ET.SubElement(root, "testsuite", name=suite_name, tests=str(len(rows)), failures=str(len(failures)),
                          errors="0", skipped=str(len(skipped)), time=f"{total_time:.3f}")
    for row in rows:
        trial = _text(row.get("trial_id")) or "unknown-trial"
        config = short_config(row, varying)
        window = _window(row)
        name = " ".join(part for part in (trial, config, f"[{window}]" if window else "") if part)
        case = ET.SubElement(suite, "testcase", name=name,
                             classname=f"{suite_name}.{_text(row.get('architecture')) or 'trial'}",
                             time=f"{_seconds(row):.3f}")
        props = ET.SubElement(case, "properties")
        for key in ("config_id", "experiment_id", "repeat", "seed", "train_start", "train_end", "mode", "model_uri"):
            if _text(row.get(key)):
                ET.SubElement(props, "property", name=key, value=_text(row.get(key)))
        ranked = ranks.get(trial)
        if ranked is not None:
            obj, value, rank = ranked
            for key, text in (("objective", obj.metric), ("goal", obj.goal), ("objective_value", f"{value:g}"),
                              ("rank", str(rank))):
                ET.SubElement(props, "property", name=key, value=text)
        params = {k[len(PARAM_PREFIX):]: _text(v) for k, v in row.items() if k.startswith(PARAM_PREFIX)}
        if params:
            ET.SubElement(props, "property", name="params", value=json.dumps(params, sort_keys=True))
        status = _text(row.get("status"))
        if status in SKIPPED_STATUSES:
            ET.SubElement(case, "skipped", message=_text(row.get("reason")) or status)
        elif status != STATUS_DONE:
            reason = _text(row.get("reason")) or f"status {status or 'missing'}"
            first_line = reason.strip().splitlines()[0] if reason.strip() else reason
            failure = ET.SubElement(case, "failure", message=first_line[:500], type=status or "failed")
            failure.text = reason
        elif row.get("_out"):
            ET.SubElement(case, "system-out").text = row["_out"]
        else:
            shown = ((ranked[0].metric,) if ranked else ()) + ("mse", "loss", "mae", "train_time_s", "epochs", "best_epoch")
            metrics = {k: _text(row.get(k)) for k in dict.fromkeys(shown) if _text(row.get(k)) != ""}
            if metrics:
                out = ET.SubElement(case, "system-out")
                out.text = (f"rank {ranked[2]} by {ranked[0]}: " if ranked else "") + \
                    " ".join(f"{k}={v}" for k, v in metrics.items())
        if not len(props):
            case.remove(props)

    tree = ET.ElementTree(root)
    ET.indent(tree)
    target = Path(path)
    if target.parent and not target.parent.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
    tree.write(target, encoding="utf-8", xml_declaration=True)
