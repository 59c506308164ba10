"""What every search decision shares: a Proposal (what a proposer or scheduler wants run next), the
Decision recorded for it (compiler/rounds.py writes it), and the scores a decision reads from the rows.

Proposers (compiler/proposers/) and schedulers (compiler/schedulers/) import this module; rounds.py
imports them through their registries, so no search module imports another's.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

from hpt.compiler.fidelities import Fidelity
from hpt.schemas.catalog import value_key
from hpt.schemas.plan import manifest_path
from hpt.schemas.row import STATUS_DONE, STATUS_STOPPED

FINISHED = (STATUS_DONE, STATUS_STOPPED)   # a stopped trial is a result: its last reported values


@dataclass(frozen=True)
class Proposal:
    """What a decision wants run next: configs (every hyperparameter), at a fidelity (None: the spec's budget)."""
    configs: list[dict[str, Any]]
    fidelity: Fidelity | None = None
    record: dict[str, Any] = field(default_factory=dict)   # what the round records besides its configs and trials
    # halving (search.continue): the lower rung's fidelity each trial continues from, at the same window and repeat
    continue_from: Fidelity | None = None


@dataclass(frozen=True)
class Decision:
    round: int
    fidelity: str                    # "" without fidelities
    configs: list[str]
    trials: list[str]
    record: dict[str, Any]           # halving: rung, scored, promoted [{config, rank, score}]; tpe: told


def score(manifests: Iterable[Mapping[str, Any]], rows: Mapping[str, Mapping[str, Any]], objective: Mapping[str, str]) \
        -> dict[str, float] | None:
    """Each config's objective averaged over its trials (date ranges, repeats); None while any trial has
    no done row. A done trial whose objective is missing or not finite scores as the worst possible."""
    manifests = list(manifests)
    scores = finished_scores(manifests, rows, objective)
    return scores if len(scores) == len({m["config"] for m in manifests}) else None


def finished_scores(manifests: Iterable[Mapping[str, Any]], rows: Mapping[str, Mapping[str, Any]],
                    objective: Mapping[str, str]) -> dict[str, float]:
    """The scores (as `score` computes them) of the configs all of whose trials have a done row; a config
    with a trial pending or failed is not finished and has none."""
    worst = math.inf if objective.get("goal", "minimize") == "minimize" else -math.inf
    values: dict[str, list[float]] = {}
    unfinished: set[str] = set()
    for m in sorted(manifests, key=lambda m: m["id"]):
        row = rows.get(m["id"])
        if row is None or row.get("status") not in FINISHED:
            unfinished.add(m["config"])
            continue
        try:
            value = float(row.get(objective["metric"], ""))
        except (TypeError, ValueError):
            value = worst
        values.setdefault(m["config"], []).append(value if math.isfinite(value) else worst)
    return {config: sum(v) / len(v) for config, v in values.items() if config not in unfinished}


def round_manifests(plan_dir: Path, round_doc: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [json.loads(manifest_path(plan_dir, tid).read_text(encoding="utf-8")) for tid in round_doc["trials"]]




def tuned_key(plan: Any, params: Mapping[str, Any]) -> tuple:
    """A config's tuned values in the spec's parameter order: how proposers tell configs apart."""
    return tuple(value_key(params[n]) for n in plan.spec["parameters"])
