"""Read a compiled plan folder (plan.json + trials/<id>.json) into what the loop submits.

The executor depends on little of the plan: the manifest files in trials/ (each a TrialManifest
JSON, passed to the backend byte for byte), plan.json's experiment id and its optional results URI.
It never interprets hyperparameters; it parses a manifest only to read its id, experiment and
resources (and to copy identity columns into a failed row the trainer could not write).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from hpt.executor.backend import Submission
from hpt.schemas.errors import UserError
from hpt.schemas.manifest import TrialManifest

PLAN_JSON = "plan.json"
TRIALS = "trials"


@dataclass(frozen=True)
class Plan:
    path: Path
    experiment_id: str
    results: str | None                    # the spec's results URI, if it named one
    submissions: list[Submission]          # in the plan's order (the compiler's seeded random order)
    doc: dict[str, Any] = field(default_factory=dict)

    @property
    def trial_ids(self) -> list[str]:
        return [s.trial_id for s in self.submissions]

    def with_results(self, results_uri: str, timeout_s: float | None = None) -> "Plan":
        """The same plan with every submission pointed at a results store (and a timeout)."""
        subs = [replace(s, results_uri=results_uri, timeout_s=timeout_s) for s in self.submissions]
        return Plan(self.path, self.experiment_id, self.results, subs, self.doc)


def _experiment(doc: dict[str, Any]) -> str | None:
    exp = doc.get("experiment") or doc.get("experiment_id")
    if isinstance(exp, dict):
        exp = exp.get("id")
    return exp if isinstance(exp, str) and exp else None


def _results(doc: dict[str, Any]) -> str | None:
    # `results` at the top, or inside the resolved spec the compiler keeps in plan.json.
    for holder in (doc, doc.get("spec") or {}, doc.get("resolved") or {}):
        if isinstance(holder, dict):
            value = holder.get("results")
            if isinstance(value, dict):
                value = value.get("uri")
            if isinstance(value, str) and value:
                return value
    return None


def _order(doc: dict[str, Any]) -> list[str]:
    """Trial ids in plan.json's order, whatever shape its `trials` list has (ids or objects)."""
    order: list[str] = []
    trials = doc.get("trials")
    if isinstance(trials, list):
        for item in trials:
            tid = item if isinstance(item, str) else item.get("id") if isinstance(item, dict) else None
            if isinstance(tid, str):
                order.append(tid)
    return order


def load_plan(path: str | Path) -> Plan:
    """The plan at `path`: UserError if it is missing, not a plan, or its manifests are unreadable."""
    root = Path(path)
    plan_file = root / PLAN_JSON
    hint = "compile one with `hpt compile SPEC --out DIR`"
    if not root.exists():
        raise UserError("plan folder does not exist", where=str(root), hint=hint)
    if not root.is_dir():
        raise UserError("not a plan folder (expected a folder holding plan.json and trials/)", where=str(root), hint=hint)
    if not plan_file.is_file():
        raise UserError("no plan.json in this folder", where=str(root), hint=hint)
    try:
        doc = json.loads(plan_file.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise UserError(f"plan.json is not valid JSON: {err.msg} at line {err.lineno}", where=str(plan_file)) from None
    if not isinstance(doc, dict):
        raise UserError("plan.json must hold a JSON object", where=str(plan_file))
    trials_dir = root / TRIALS
    if not trials_dir.is_dir():
        raise UserError("no trials/ folder in the plan", where=str(root), hint=hint)

    by_id: dict[str, Submission] = {}
    experiments: set[str] = set()
    for file in sorted(trials_dir.glob("*.json")):
        text = file.read_text(encoding="utf-8")
        manifest = TrialManifest.from_json(text, where=str(file))
        tid, exp = manifest.id, manifest.experiment
        if file.stem != tid:
            raise UserError(f"manifest file name does not match its id {tid}; manifests are immutable — recompile",
                            where=str(file))
        experiments.add(exp)
        by_id[tid] = Submission(manifest, text, results_uri="")

    experiment = _experiment(doc)
    if experiment is None:
        if len(experiments) != 1:
            raise UserError("plan.json names no experiment id", where=str(plan_file), hint="recompile the spec")
        experiment = next(iter(experiments))
    strangers = experiments - {experiment}
    if strangers:
        raise UserError(f"trials of another experiment ({', '.join(sorted(strangers))}) in this plan", where=str(trials_dir),
                        hint="recompile into an empty folder (`hpt compile --force`)")

    order = [t for t in _order(doc) if t in by_id]
    missing = [t for t in _order(doc) if t not in by_id]
    if missing:
        raise UserError(f"{len(missing)} trial manifest(s) listed in plan.json are missing, e.g. {missing[0]}.json",
                        where=str(trials_dir), hint="recompile the spec")
    seen = set(order)
    order += [t for t in sorted(by_id) if t not in seen]
    return Plan(path=root, experiment_id=experiment, results=_results(doc), submissions=[by_id[t] for t in order], doc=doc)
