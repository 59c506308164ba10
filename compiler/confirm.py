"""Confirmation on an untouched window: the search's last round retrains its top k configs on a window
that no decision ever read, and the analysis (hpt.results.confirm) says whether the winner still wins.

The window (compile picks it, `confirm_window`): training as long as the latest tuning window's, ending
on the first day of the month on or after the end of every tuning window's validation period, so its
validation period comes after all of them. It is recorded in the resolved spec (`search.confirm`), never
in the plan's `windows`, so no proposer or scheduler sees a row of it. The round (`decide`) is asked once
the search has nothing left to run — every trial of the plan has a row and the scheduler decides nothing
more — and ranks the configs measured at the highest fidelity reached by their objective over the tuning
windows (done trials only; ties to the smaller config id), then records the best `top` as one round
`{"confirm": true, "ranked": [...]}` of trials on the confirmation window: a pure function of the plan
and the rows, recorded before its trials start like any round.
"""
from __future__ import annotations

import datetime as dt
from typing import Any, Mapping

from hpt.compiler.dates import Window, add_months, month_start
from hpt.compiler.decisions import Proposal, finished_scores, round_manifests
from hpt.compiler.fidelities import Fidelity
from hpt.schemas.plan import Plan
from hpt.schemas.row import STATUS_DONE

DEFAULT_TOP = 3


def confirm_window(windows: list[Window], validation_days: int) -> Window:
    latest = max(windows, key=lambda w: (w.valid_end, w.train_end))
    end = month_start(latest.valid_end)
    if end < latest.valid_end:
        end = add_months(end, 1)
    if latest.train_start.day == 1 and latest.train_end.day == 1:   # whole months stay whole months
        months = (latest.train_end.year - latest.train_start.year) * 12 + latest.train_end.month - latest.train_start.month
        start = add_months(end, -months)
    else:
        start = end - (latest.train_end - latest.train_start)
    return Window(index=max(w.index for w in windows) + 1, train_start=start, train_end=end,
                  valid_end=end + dt.timedelta(days=validation_days))


def window_of(doc: Mapping[str, Any]) -> Window:
    return Window(index=doc["index"], train_start=dt.date.fromisoformat(doc["train"][0]),
                  train_end=dt.date.fromisoformat(doc["train"][1]), valid_end=dt.date.fromisoformat(doc["validation"][1]))


def decide(plan: Plan, plan_dir, rows: Mapping[str, Mapping[str, Any]]) -> tuple[Proposal, list[Window]] | None:  # noqa: ANN001
    """The confirmation round, or None: not asked for, decided already, or the search still runs."""
    settings = plan.spec["search"].get("confirm")
    if not settings or any(r.get("confirm") for r in plan.rounds or []):
        return None
    if any(tid not in rows for tid in plan.trials):
        return None
    manifests = [m for r in plan.rounds for m in round_manifests(plan_dir, r)]
    done = {m["id"]: rows[m["id"]] for m in manifests if rows.get(m["id"], {}).get("status") == STATUS_DONE}
    order = [f["name"] for f in plan.spec.get("fidelities", [])]
    by_fidelity: dict[str, list[dict[str, Any]]] = {}
    for m in manifests:
        by_fidelity.setdefault(m["budget"].get("fidelity") or "", []).append(m)
    fidelity_name = max(by_fidelity, key=lambda name: order.index(name) if name in order else -1)
    scores = finished_scores(by_fidelity[fidelity_name], done, plan.spec["objective"])
    if not scores:
        return None
    sign = 1 if plan.spec["objective"]["goal"] == "minimize" else -1
    ranked = sorted(scores, key=lambda c: (sign * scores[c], c))[:settings["top"]]
    params = {m["config"]: m["params"] for m in manifests}
    fidelity = next((Fidelity(f["name"], f["months"], f["epochs"]) for f in plan.spec.get("fidelities", [])
                     if f["name"] == fidelity_name), None)
    record = {"confirm": True, "window": settings["window"],
              "ranked": [{"config": c, "rank": i + 1, "score": scores[c]} for i, c in enumerate(ranked)]}
    return Proposal(configs=[dict(params[c]) for c in ranked], fidelity=fidelity, record=record), [window_of(settings["window"])]

