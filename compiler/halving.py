"""Successive halving: the decision of each round (compiler/rounds.py records it).

A halving plan starts with round 1: every config of the search (a grid, or random draws) at the
cheapest fidelity (the spec's first). Each further round is a decision: once every trial of the last
round is done, its configs are scored — the objective averaged over the config's date ranges and
repeats, so a config must be good across windows, not on one — and the best ⌊n/η⌋ (at least one)
run at the next fidelity. The decision is a pure function of the plan (spec, seed, earlier rounds)
and the rows of the last round (read sorted by trial id, ties broken by config id), so after a
kill -9 a re-apply decides the same round and writes the same manifests, byte for byte.

Rounds are synchronous: a rung is decided when all of it is done (ASHA's asynchronous promotion
would make the decision depend on the order trials finish in).
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Iterable, Mapping

from hpt.compiler.dates import Window
from hpt.compiler.fidelities import Fidelity
from hpt.compiler.rounds import Proposal, round_manifests, score
from hpt.schemas.plan import Plan

HALVING = "halving"


def rung_sizes(configs: int, eta: int, rungs: int) -> list[int]:
    """Configs at each rung: n, ⌊n/η⌋, ⌊n/η²⌋ … (at least one each)."""
    sizes = [configs]
    for _ in range(rungs - 1):
        sizes.append(max(1, sizes[-1] // eta))
    return sizes


def budget(configs: int, eta: int, fidelities: Iterable[Fidelity], windows: list[Window], repeats: int) -> list[dict[str, Any]]:
    """Per rung: its fidelity, configs, trials, and its compute in epoch-months (epochs × months of
    training data, summed over trials) — what the whole search costs at most, before anything runs."""
    fidelities = list(fidelities)
    out = []
    for fid, n in zip(fidelities, rung_sizes(configs, eta, len(fidelities))):
        months = sum(_months(fid.window(w)) for w in windows) * repeats
        out.append({"fidelity": fid.name, "months": fid.months, "epochs": fid.epochs, "configs": n,
                    "trials": n * len(windows) * repeats, "epoch_months": n * months * fid.epochs})
    return out


def _months(window: Window) -> int:
    return (window.train_end.year - window.train_start.year) * 12 + window.train_end.month - window.train_start.month


def first_round(configs: list[str], trials: list[str], fidelity: Fidelity) -> dict[str, Any]:
    return {"round": 1, "rung": 0, "fidelity": fidelity.name, "configs": configs, "trials": trials}


def promote(scores: Mapping[str, float], goal: str, eta: int) -> list[dict[str, Any]]:
    """The best ⌊n/η⌋ configs (at least one), best first; ties go to the smaller config id."""
    sign = 1 if goal == "minimize" else -1
    ranked = sorted(scores, key=lambda c: (sign * scores[c], c))
    keep = max(1, len(ranked) // eta)
    return [{"config": c, "rank": i + 1, "score": scores[c] if math.isfinite(scores[c]) else None}
            for i, c in enumerate(ranked[:keep])]


def decide(plan: Plan, plan_dir: Path, rows: Mapping[str, Mapping[str, Any]]) -> Proposal | None:
    """The next rung's configs (the best 1/eta of the last round) and its fidelity, or None: the last
    round is not all done, or it was the top rung."""
    spec = plan.spec
    fidelities = [Fidelity(f["name"], f["months"], f["epochs"]) for f in spec["fidelities"]]
    last = plan.rounds[-1]
    if last["rung"] + 1 >= len(fidelities):
        return None
    manifests = round_manifests(plan_dir, last)
    scores = score(manifests, rows, spec["objective"])
    if scores is None:
        return None
    promoted = promote(scores, spec["objective"]["goal"], spec["search"]["eta"])
    params = {m["config"]: m["params"] for m in manifests}
    return Proposal(configs=[dict(params[p["config"]]) for p in promoted], fidelity=fidelities[last["rung"] + 1],
                    record={"rung": last["rung"] + 1, "promoted": promoted, "scored": len(scores)})
