"""Adaptive search in rounds of immutable manifests: the journal every proposer and scheduler writes to.

A round is a decision of the plan's scheduler (compiler/schedulers/) — configs promoted to the next
fidelity (halving), or a batch asked of a model-based proposer (compiler/proposers/tpe.py) told every
finished result — turned into new manifests and appended to the plan. The parts are found by name in
their registries (the resolved spec's `search.proposer` and `search.scheduler`). `hpt compile` writes round 1; `hpt apply` asks `next_round` after every
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
import os
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any, Mapping

from hpt.compiler import confirm
from hpt.compiler.dates import Window
from hpt.compiler.decisions import Decision, Proposal
from hpt.compiler.fidelities import Fidelity, continued
from hpt.compiler.proposers import PROPOSERS
from hpt.compiler.schedulers import SCHEDULERS, Context
from hpt.compiler.search import search_parts
from hpt.compiler.trials import RenderedTrial, TrialShape, iter_trials
from hpt.schemas.manifest import TrialManifest, canonical_json
from hpt.schemas.plan import PLAN_FILE, Plan, manifest_digest, manifest_path
from hpt.schemas.resources import Resources
from hpt.schemas.trainer import UserTrainer


def next_round(plan_dir: Path, rows: Mapping[str, Mapping[str, Any]], parallel: int | None = None) -> Decision | None:
    """Decide and record the next round of an adaptive plan; None when there is none to decide now (the
    rows decide nothing new yet, the search is complete, or the plan is not adaptive). `parallel` is the
    apply's parallelism (tpe's batch when the spec names none)."""
    plan = Plan.load(plan_dir)
    if not plan.rounds:
        return None
    proposer_name, scheduler_name = search_parts(plan.spec["search"], plan.spec["parameters"])
    context = Context(plan=plan, plan_dir=plan_dir, rows=rows, proposer=PROPOSERS.get(proposer_name), parallel=parallel)
    proposal = SCHEDULERS.get(scheduler_name).decide(context)
    if proposal is None or not proposal.configs:
        confirmation = confirm.decide(plan, plan_dir, rows)   # the last round, once the search has nothing left
        return None if confirmation is None else record(plan_dir, plan, *confirmation)
    return record(plan_dir, plan, proposal)


def record(plan_dir: Path, plan: Plan, proposal: Proposal, windows: list[Window] | None = None) -> Decision:
    """Write the proposal's manifests (each once: an existing one must have the same bytes), then the
    plan with the round added. `windows`: the date ranges its trials run on (default: the plan's)."""
    windows = windows if windows is not None else [_window(w) for w in plan.windows]
    rendered = list(iter_trials(shape(plan, proposal.fidelity), iter(proposal.configs), windows))
    if proposal.continue_from is not None:
        rendered = _continuing(plan, proposal, windows, rendered)
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


def _continuing(plan: Plan, proposal: Proposal, windows: list[Window], rendered: list[RenderedTrial]) -> list[RenderedTrial]:
    """Each promoted trial with `continuation.from`: the same config, window and repeat at the lower rung,
    rendered in the same order (so the two lists pair up); one whose lower trial the plan lacks starts afresh."""
    assert proposal.continue_from is not None
    lower = iter_trials(shape(plan, proposal.continue_from), iter(proposal.configs), windows)
    known = set(plan.trials)
    out = []
    for trial, below in zip(rendered, lower, strict=True):
        if below.id not in known:
            out.append(trial)
            continue
        doc = json.loads(trial.text)
        doc["continuation"] = {**doc.get("continuation", {}), "from": below.id, "epochs": proposal.continue_from.epochs}
        text = canonical_json(doc) + "\n"   # not a result field: the id stays
        if TrialManifest.from_json(text, where=f"trial {trial.id}").to_json() != text:
            raise AssertionError(f"bug: continuing trial {trial.id} differs from TrialManifest.to_json()")
        out.append(RenderedTrial(trial.id, text))
    return out


def shape(plan: Plan, fidelity: Fidelity | None) -> TrialShape:
    """What every trial of the plan shares, from the resolved spec plan.json records (as compile built it)."""
    spec = plan.spec
    return TrialShape(experiment=plan.experiment, architecture=spec["architecture"], data_uri=spec["data"],
                      mode=spec["mode"], epochs=spec["epochs"], metrics=spec["metrics"], objective=spec["objective"],
                      image=spec["image"], resources=Resources.from_dict(spec["resources"]),
                      kubernetes=spec.get("kubernetes", {}), search_seed=spec["search"]["seed"],
                      repeats=spec["repeats"], fidelities=(fidelity,) if fidelity else (),
                      trainer=UserTrainer.from_dict(spec["trainer"]) if spec.get("trainer") else None,
                      data_identity=spec.get("data-identity"), keep_checkpoint=_keeps_checkpoint(plan, fidelity))


def _keeps_checkpoint(plan: Plan, fidelity: Fidelity | None) -> bool:
    """Trials at `fidelity` keep a checkpoint when the next rung continues from them (search.continue)."""
    if fidelity is None or not plan.spec["search"].get("continue"):   # plans compiled before it: False
        return False
    ladder = [Fidelity(f["name"], f["months"], f["epochs"]) for f in plan.spec.get("fidelities", [])]
    names = [f.name for f in ladder]
    return fidelity.name in names and continued(ladder, names.index(fidelity.name) + 1) is not None


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
