"""Adaptive search in rounds of immutable manifests: what halving and TPE share.

A round is a decision — configs promoted to the next fidelity (compiler/halving.py), or a batch of
proposals from a sampler told every finished result (compiler/tpe.py) — turned into new manifests
and added to the plan. `hpt compile` writes round 1; `hpt apply` asks `next_round` after every
finished trial (the scheduler's grow hook, built in hpt/api.py), and a method decides a round once
the rows it needs are there. A decision is a pure function of the plan (spec, seed, earlier rounds)
and the rows of the trials it depends on (read sorted by trial id), so after a kill -9 a re-apply
decides the same round again and writes the same manifests, byte for byte. A decision that depends on
which trials had finished when it was made (asynchronous halving) is recorded in plan.json before
its trials start and never decided again. The round's
manifests are written before plan.json lists them, and plan.json (the index) is replaced in one
rename: earlier manifests and rounds never change.
"""
from __future__ import annotations

import datetime as dt
import json
import math
import os
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Iterable, Mapping

from hpt.compiler.dates import Window
from hpt.compiler.fidelities import Fidelity
from hpt.compiler.trials import TrialShape, iter_trials
from hpt.schemas.plan import PLAN_FILE, Plan, manifest_digest, manifest_path
from hpt.schemas.resources import Resources
from hpt.schemas.trainer import UserTrainer


@dataclass(frozen=True)
class Proposal:
    """What a decision wants run next: configs (every hyperparameter), at a fidelity (None: the spec's budget)."""
    configs: list[dict[str, Any]]
    fidelity: Fidelity | None = None
    record: dict[str, Any] = field(default_factory=dict)   # what the round records besides its configs and trials


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
        if row is None or row.get("status") != "done":
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


def next_round(plan_dir: Path, rows: Mapping[str, Mapping[str, Any]], parallel: int | None = None) -> Decision | None:
    """Decide and record the next round of an adaptive plan; None when there is none to decide now (the
    rows decide nothing new yet, the search is complete, or the plan is not adaptive). `parallel` is the
    apply's parallelism (tpe's batch when the spec names none)."""
    from hpt.compiler import halving, tpe

    plan = Plan.load(plan_dir)
    method = plan.spec.get("search", {}).get("method")
    if not plan.rounds or method not in (halving.HALVING, tpe.TPE):
        return None
    proposal = halving.decide(plan, plan_dir, rows) if method == halving.HALVING else tpe.decide(plan, plan_dir, rows, parallel)
    if proposal is None or not proposal.configs:
        return None
    return record(plan_dir, plan, proposal)


def record(plan_dir: Path, plan: Plan, proposal: Proposal) -> Decision:
    """Write the proposal's manifests (each once: an existing one must have the same bytes), then the
    plan with the round added."""
    rendered = list(iter_trials(shape(plan, proposal.fidelity), iter(proposal.configs), [_window(w) for w in plan.windows]))
    digests = dict(plan.digests)
    for trial in rendered:
        data = trial.text.encode("utf-8")
        _write_once(manifest_path(plan_dir, trial.id), data)
        digests[trial.id] = manifest_digest(data)
    configs: list[str] = []
    for trial in rendered:
        config = json.loads(trial.text)["config"]
        if config not in configs:
            configs.append(config)
    decision = Decision(round=plan.rounds[-1]["round"] + 1, fidelity=proposal.fidelity.name if proposal.fidelity else "",
                        configs=configs, trials=[t.id for t in rendered], record=proposal.record)
    entry = {"round": decision.round, "fidelity": decision.fidelity, "configs": configs, "trials": decision.trials,
             **proposal.record}
    trials = plan.trials + decision.trials
    grown = replace(plan, rounds=plan.rounds + [entry], trials=trials, digests=digests,
                    counts={**plan.counts, "trials": len(trials)})
    _replace(plan_dir / PLAN_FILE, grown.to_json().encode("utf-8"))   # last: the round exists once the index lists it
    return decision


def shape(plan: Plan, fidelity: Fidelity | None) -> TrialShape:
    """What every trial of the plan shares, from the resolved spec plan.json records (as compile built it)."""
    spec = plan.spec
    return TrialShape(experiment=plan.experiment, architecture=spec["architecture"], data_uri=spec["data"],
                      mode=spec["mode"], epochs=spec["epochs"], metrics=spec["metrics"], objective=spec["objective"],
                      image=spec["image"], resources=Resources.from_dict(spec["resources"]),
                      kubernetes=spec.get("kubernetes", {}), search_seed=spec["search"]["seed"],
                      repeats=spec["repeats"], fidelities=(fidelity,) if fidelity else (),
                      trainer=UserTrainer.from_dict(spec["trainer"]) if spec.get("trainer") else None,
                      data_identity=spec.get("data-identity"))


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
