"""Successive halving in rounds of immutable manifests.

A halving plan starts with round 1: every config of the search (a grid, or random draws) at the
cheapest fidelity (the spec's first). Each further round is a decision: once every trial of the last
round is done, its configs are scored — the objective averaged over the config's date ranges and
repeats, so a config must be good across windows, not on one — and the best ⌊n/η⌋ (at least one)
run at the next fidelity. The decision is a pure function of the plan (spec, seed, earlier rounds)
and the rows of the last round (read sorted by trial id, ties broken by config id), so after a
kill -9 a re-apply decides the same round and writes the same manifests, byte for byte.

Rounds are synchronous: a rung is decided when all of it is done (ASHA's asynchronous promotion
would make the decision depend on the order trials finish in). A round's manifests are written
before plan.json lists them, and plan.json (the index) is replaced in one rename; earlier manifests
and rounds never change.
"""
from __future__ import annotations

import datetime as dt
import json
import math
import os
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Iterable, Mapping

from hpt.compiler.dates import Window
from hpt.compiler.fidelities import Fidelity
from hpt.compiler.trials import TrialShape, iter_trials
from hpt.schemas.plan import PLAN_FILE, Plan, manifest_digest, manifest_path
from hpt.schemas.resources import Resources
from hpt.schemas.trainer import UserTrainer

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


@dataclass(frozen=True)
class Decision:
    round: int
    fidelity: str
    scored: int                       # configs scored at the previous rung
    promoted: list[dict[str, Any]]    # {config, score, rank}, best first
    trials: list[str]


def score(manifests: Iterable[Mapping[str, Any]], rows: Mapping[str, Mapping[str, Any]], objective: Mapping[str, str]) \
        -> dict[str, float] | None:
    """Each config's objective averaged over its trials; None while any trial has no done row.
    A done trial whose objective is missing or not finite scores as the worst possible."""
    worst = math.inf if objective.get("goal", "minimize") == "minimize" else -math.inf
    values: dict[str, list[float]] = {}
    for m in sorted(manifests, key=lambda m: m["id"]):
        row = rows.get(m["id"])
        if row is None or row.get("status") != "done":
            return None
        try:
            value = float(row.get(objective["metric"], ""))
        except (TypeError, ValueError):
            value = worst
        values.setdefault(m["config"], []).append(value if math.isfinite(value) else worst)
    return {config: sum(v) / len(v) for config, v in values.items()}


def promote(scores: Mapping[str, float], goal: str, eta: int) -> list[dict[str, Any]]:
    """The best ⌊n/η⌋ configs (at least one), best first; ties go to the smaller config id."""
    sign = 1 if goal == "minimize" else -1
    ranked = sorted(scores, key=lambda c: (sign * scores[c], c))
    keep = max(1, len(ranked) // eta)
    return [{"config": c, "rank": i + 1, "score": scores[c] if math.isfinite(scores[c]) else None}
            for i, c in enumerate(ranked[:keep])]


def next_round(plan_dir: Path, rows: Mapping[str, Mapping[str, Any]]) -> Decision | None:
    """Decide and record the next round of a halving plan; None when the last round is not all done,
    the top rung is reached, or the plan is not a halving plan."""
    plan = Plan.load(plan_dir)
    spec = plan.spec
    if spec.get("search", {}).get("method") != HALVING or not plan.rounds:
        return None
    fidelities = [Fidelity(f["name"], f["months"], f["epochs"]) for f in spec["fidelities"]]
    last = plan.rounds[-1]
    if last["rung"] + 1 >= len(fidelities):
        return None
    manifests = [json.loads(manifest_path(plan_dir, tid).read_text(encoding="utf-8")) for tid in last["trials"]]
    scores = score(manifests, rows, spec["objective"])
    if scores is None:
        return None
    promoted = promote(scores, spec["objective"]["goal"], spec["search"]["eta"])
    params = {m["config"]: m["params"] for m in manifests}
    fidelity = fidelities[last["rung"] + 1]
    shape = TrialShape(experiment=plan.experiment, architecture=spec["architecture"], data_uri=spec["data"],
                       mode=spec["mode"], epochs=spec["epochs"], metrics=spec["metrics"], objective=spec["objective"],
                       image=spec["image"], resources=Resources.from_dict(spec["resources"]),
                       kubernetes=spec.get("kubernetes", {}), search_seed=spec["search"]["seed"],
                       repeats=spec["repeats"], fidelities=(fidelity,),
                       trainer=UserTrainer.from_dict(spec["trainer"]) if spec.get("trainer") else None)
    windows = [_window(w) for w in plan.windows]
    rendered = list(iter_trials(shape, (dict(params[p["config"]]) for p in promoted), windows))
    digests = dict(plan.digests)
    for trial in rendered:
        data = trial.text.encode("utf-8")
        _write_once(manifest_path(plan_dir, trial.id), data)
        digests[trial.id] = manifest_digest(data)
    decision = Decision(round=last["round"] + 1, fidelity=fidelity.name, scored=len(scores), promoted=promoted,
                        trials=[t.id for t in rendered])
    rounds = plan.rounds + [{"round": decision.round, "rung": last["rung"] + 1, "fidelity": fidelity.name,
                             "configs": [p["config"] for p in promoted], "promoted": promoted,
                             "scored": len(scores), "trials": decision.trials}]
    trials = plan.trials + decision.trials
    grown = replace(plan, rounds=rounds, trials=trials, digests=digests, counts={**plan.counts, "trials": len(trials)})
    _replace(plan_dir / PLAN_FILE, grown.to_json().encode("utf-8"))   # last: the round exists once the index lists it
    return decision


def _window(doc: Mapping[str, Any]) -> Window:
    train, validation = doc["train"], doc["validation"]
    return Window(index=doc["index"], train_start=dt.date.fromisoformat(train[0]),
                  train_end=dt.date.fromisoformat(train[1]), valid_end=dt.date.fromisoformat(validation[1]))


def _write_once(path: Path, data: bytes) -> None:
    """A manifest is immutable: write it if absent (atomically); if present it must be these bytes."""
    if path.exists():
        if path.read_bytes() != data:
            raise AssertionError(f"bug: {path.name} exists with other content; a decision must be reproducible")
        return
    _replace(path, data)


def _replace(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
