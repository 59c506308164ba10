"""The spec's metrics and objective, decided once: which metrics the rows carry, and what configs are ranked by.

A built-in architecture reports the catalog's metrics only (schemas/catalog.json "metrics"), so a spec
for one may name only those. A trainer of your own reports what it computes: any name (schemas/metric.py),
with its goal declared once — in the spec (`metrics: [{"name": "smape", "goal": "minimize"}]`, or the
objective's `goal`, or W&B's `metric: {name, goal}`), or in the trainer's catalog file (`metrics`); a
name of the catalog's vocabulary (mse, mae, …) brings its goal along. The objective's goal must be known
by one of these; the compiler records it in the plan and in every manifest, and nothing later guesses it.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from hpt.compiler.paths import did_you_mean
from hpt.schemas.catalog import EPOCH_METRICS, default_metrics, metrics as catalog_metrics
from hpt.schemas.errors import UserError
from hpt.schemas.metric import DEFAULT_OBJECTIVE, name_problem
from hpt.schemas.row import RESERVED


@dataclass
class MetricChoice:
    names: list[str]                       # the row's metric columns, in the spec's order (objective included)
    objective: dict[str, str]              # {"metric", "goal"}
    goals: dict[str, str] = field(default_factory=dict)    # every name whose goal is known
    errors: list[UserError] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def choose_metrics(doc: Mapping[str, Any], declared: Mapping[str, str] | None) -> MetricChoice:
    """`declared`: a user trainer's catalog-file metrics (name → goal), {} for one without; None for a
    built-in architecture (catalog names only). Every problem is collected in `errors`."""
    known = catalog_metrics()
    errors: list[UserError] = []
    warnings: list[str] = []
    goals: dict[str, str] = {n: m.goal for n, m in known.items()} | dict(declared or {})
    spec_goal: dict[str, str] = {}      # goals the spec itself declared
    names: list[str] = []
    for i, entry in enumerate(doc.get("metrics") or ()):
        name = entry if isinstance(entry, str) else entry.get("name", "")
        where = f"metrics[{i}]" if isinstance(entry, str) else f"metrics[{i}].name"
        if declared is None:
            if name not in known:
                errors.append(UserError(f"unknown metric {name!r}", where=where, hint=_hint(name, known)))
                continue
        else:
            problem = name_problem(name, RESERVED)
            if problem:
                errors.append(UserError(problem, where=where))
                continue
        if isinstance(entry, dict) and "goal" in entry:
            _declare(name, entry["goal"], f"metrics[{i}].goal", goals, spec_goal, declared, errors, warnings)
        names.append(name)

    objective = doc.get("objective") or {}
    if "metric" in objective:
        metric = objective["metric"]
    elif declared is not None and names:
        metric = names[0]           # a trainer of your own: the first metric listed is the objective
    else:
        metric = DEFAULT_OBJECTIVE
    if declared is None and metric not in known:
        errors.append(UserError(f"unknown metric {metric!r}", where="objective.metric", hint=_hint(metric, known)))
        return MetricChoice(names, {"metric": metric, "goal": "minimize"}, goals, errors, warnings)
    if declared is not None and name_problem(metric, RESERVED):
        errors.append(UserError(name_problem(metric, RESERVED) or "", where="objective.metric"))
        return MetricChoice(names, {"metric": metric, "goal": "minimize"}, goals, errors, warnings)
    if "goal" in objective:
        _declare(metric, objective["goal"], "objective.goal", goals, spec_goal, declared, errors, warnings)
    goal = goals.get(metric)
    if goal is None:
        errors.append(UserError(f"the objective {metric!r} has no declared goal", where="objective",
                                hint=f'say "objective": {{"metric": "{metric}", "goal": "minimize" or "maximize"}}, '
                                     f'or declare it in "metrics" as {{"name": "{metric}", "goal": ...}}'))
        goal = "minimize"
    if "metrics" in doc and metric not in names and not any(e.where and e.where.startswith("metrics") for e in errors):
        errors.append(UserError(f"the objective metric {metric!r} is not among the reported metrics",
                                where="objective.metric", hint=f"add {metric!r} to \"metrics\""))
    if declared is None and metric not in EPOCH_METRICS:
        warnings.append(f"objective: the built-in trainer measures {', '.join(EPOCH_METRICS)} every epoch and keeps the "
                        f"epoch best by validation mse; {metric} ranks the trials only")
    if "metrics" not in doc:
        # A user trainer reports what it computes: by default only the objective is asked of it.
        names = list(default_metrics()) if declared is None else [metric]
        if metric not in names:
            names.append(metric)
    return MetricChoice(names, {"metric": metric, "goal": goal}, {n: g for n, g in goals.items() if n in names},
                        errors, warnings)


def _declare(name: str, goal: str, where: str, goals: dict[str, str], spec_goal: dict[str, str],
             declared: Mapping[str, str] | None, errors: list[UserError], warnings: list[str]) -> None:
    """A goal the spec gives: it must agree with one declared elsewhere in the spec or the trainer's catalog;
    against the catalog vocabulary's it is a warning (maximizing mse is odd, not impossible)."""
    firm = spec_goal.get(name) or (declared or {}).get(name)
    if firm is not None and firm != goal:
        errors.append(UserError(f"{name!r} is declared to {firm} elsewhere", where=where, hint="declare one goal"))
        return
    vocabulary = catalog_metrics().get(name)
    if firm is None and vocabulary is not None and vocabulary.goal != goal:
        warnings.append(f"{where}: {goal} {name}, which the catalog says to {vocabulary.goal}")
    spec_goal[name] = goal
    goals[name] = goal


def _hint(name: str, known: Mapping[str, Any]) -> str:
    return did_you_mean(name, known) or ("a built-in architecture reports the catalog's metrics only: "
                                          f"{', '.join(known)}")
