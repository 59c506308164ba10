"""Resolving a validated spec: every omitted key gets its default, every override is applied.

The result, `Resolved`, is what the plan records as its spec: nothing in it is implicit any more
(the mode's epochs, the metrics, the objective's goal, the data location, resources...).
"""
from __future__ import annotations

import dataclasses
import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from hpt.compiler.fidelities import Fidelity, resolve_fidelities
from hpt.compiler.confirm import DEFAULT_TOP
from hpt.compiler.proposers import PROPOSERS
from hpt.compiler.search import (DEFAULT_CONTINUE, DEFAULT_ETA, DEFAULT_PROMOTION, DEFAULT_RANDOM_TRIALS, Domain, SearchSpace, Values,
                                 domain_from_spec, method_name, search_parts)
from hpt.compiler.validation import check_date_pairs
from hpt.compiler.metrics import choose_metrics
from hpt.schemas.catalog import Architecture, architecture, learning_rate_family, mode_defaults
from hpt.schemas.errors import UserError
from hpt.compiler.usertrainer import SpecTrainer
from hpt.schemas.manifest import DEFAULT_IMAGE
from hpt.schemas.trainer import UserTrainer
from hpt.schemas.resources import Resources
DEFAULT_VALIDATION_DAYS = 30


@dataclass(frozen=True)
class Rotating:
    count: int
    months: int


@dataclass
class Resolved:
    architecture: Architecture
    date_range: list[tuple[dt.date, dt.date]] | Rotating | None   # None: rotating default (see below)
    space: SearchSpace
    auto: bool                      # no parameters given: the catalog's learning-rate family
    mode: str
    epochs: int
    metrics: list[str]
    objective: dict[str, str]
    data: str | None                # as the spec wrote it (resolved against the dataset later)
    results: str | None
    image: str
    resources: Resources
    validation_days: int
    repeats: int
    kubernetes: dict[str, Any] = field(default_factory=dict)
    fidelities: tuple[Fidelity, ...] = ()    # none: one trial per config × range × repeat, at `epochs`
    trainer: UserTrainer | None = None       # the spec's own trainer; None: the built-in architecture
    windowed: bool = True                    # False: the trainer splits its data itself (no dated windows)
    data_version: str = ""                   # the trainer's declared data version (enters the ids)
    target: float | None = None              # search.target: a reached objective value ends the search
    stopping: dict[str, Any] | None = None   # in-trial stopping: the rule and every setting (compiler/stopping/)
    confirm_top: int | None = None           # a confirmation round of this many configs (compiler/confirm.py)


# With no date-range at all: three rotating windows of three months (the seed's "is it real" check).
DEFAULT_DATE_RANGE = Rotating(count=3, months=3)


def resolve(doc: dict[str, Any], *, mode: str | None = None, seed: int | None = None,
            warnings: list[str] | None = None, user: SpecTrainer | None = None) -> Resolved:
    """`user`: the spec's own trainer (compiler.validation.validate_and_load), when it has one."""
    warnings = warnings if warnings is not None else []
    arch = user.architecture if user else architecture(doc["architecture"])
    mode = mode or doc.get("mode", "full")
    epochs = int(doc.get("epochs", mode_defaults(mode)["epochs"]))

    raw_range = doc.get("date-range")
    date_range: list[tuple[dt.date, dt.date]] | Rotating
    if raw_range is None:
        date_range = DEFAULT_DATE_RANGE
    elif isinstance(raw_range, dict):
        date_range = Rotating(count=raw_range["count"], months=raw_range["months"])
    else:
        date_range = check_date_pairs(raw_range)

    search = doc.get("search", {})
    params = doc.get("parameters") or {}
    auto = not params
    domains: dict[str, Domain] = {}
    if auto:  # built-ins: the learning-rate family; a user trainer: whatever its catalog gives auto values
        for name in (learning_rate_family() if user is None else arch.param_names):
            spec = arch.param(name)
            if spec.auto:
                domains[name] = Values(tuple(spec.coerce(v) for v in spec.auto))
        if not domains:
            raise UserError("auto mode has nothing to tune: no hyperparameter of the trainer's catalog lists auto values",
                            where="parameters", hint="give \"parameters\", or \"auto\": [...] values in the catalog")
    else:
        for spec in arch.parameters:  # catalog order, whatever order the spec used
            if spec.name in params:
                domains[spec.name] = domain_from_spec(spec, params[spec.name])
    proposer, scheduler = search_parts(search, doc.get("parameters") or {})
    trials = search.get("trials", search.get("min_configs"))   # halving's other name for it (validated once)
    if trials is None and (PROPOSERS.get(proposer).needs_trials):
        trials = DEFAULT_RANDOM_TRIALS
        # W&B runs random and bayes sweeps until stopped; a plan is finite, so say what it holds
        warnings.append(f"search: {method_name(proposer, scheduler)} search with no trial count runs {trials} configs, "
                        "hpt's default cap (set search.trials, or W&B's run_cap)")
    halving = scheduler == "halving"
    space = SearchSpace(architecture=arch, domains=domains, method=method_name(proposer, scheduler), trials=trials,
                        seed=int(seed if seed is not None else search.get("seed", 0)),
                        eta=int(search.get("eta", DEFAULT_ETA)) if halving else None,
                        batch=int(search["batch"]) if proposer == "tpe" and "batch" in search else None,
                        promotion=search.get("promotion", DEFAULT_PROMOTION) if halving else None,
                        continues=bool(search.get("continue", DEFAULT_CONTINUE)) if halving else None,
                        proposer=proposer, scheduler=scheduler)
    space.check()

    chosen_metrics = choose_metrics(doc, user.metrics if user else None)   # validated already: no errors here
    warnings += chosen_metrics.warnings

    return Resolved(
        architecture=arch, date_range=date_range, space=space, auto=auto, mode=mode, epochs=epochs,
        metrics=chosen_metrics.names, objective=chosen_metrics.objective,
        data=doc.get("data"), results=doc.get("results"), image=user.image if user else doc.get("image", DEFAULT_IMAGE),
        resources=Resources.from_dict(doc.get("resources", {})),
        validation_days=int(doc.get("validation-days", DEFAULT_VALIDATION_DAYS)),
        repeats=int(doc.get("repeats", 1)), kubernetes=dict(doc.get("kubernetes", {})),
        fidelities=resolve_fidelities(doc.get("fidelities"), epochs),
        trainer=_with_goals(user.trainer, chosen_metrics.goals) if user else None, windowed=user.windows if user else True,
        data_version=user.data_version if user else "",
        target=search.get("target"),
        stopping=resolve_stopping(search.get("stopping")),
        confirm_top=int(search["confirm"].get("top", DEFAULT_TOP)) if "confirm" in search else None,
    )


def _with_goals(trainer: UserTrainer, goals: dict[str, str]) -> UserTrainer:
    """A collector that keeps each metric's best value needs every goal: recorded in its settings, once."""
    settings = trainer.metrics_from
    if not settings or settings.get("final") != "best":
        return trainer
    return dataclasses.replace(trainer, metrics_from={**settings, "goals": dict(sorted(goals.items()))})


def resolve_stopping(given: dict[str, Any] | None) -> dict[str, Any] | None:
    """The spec's `search.stopping` with the rule's defaults filled in (validated here, once)."""
    if given is None:
        return None
    from hpt.compiler.stopping import STOPPING
    from hpt.compiler.paths import did_you_mean

    if given["rule"] not in STOPPING.names():
        raise UserError(f"unknown stopping rule {given['rule']!r}", where="search.stopping.rule",
                        hint=did_you_mean(given["rule"], STOPPING.names()) or f"known: {', '.join(STOPPING.names())}")
    return STOPPING.get(given["rule"]).resolve(given, "search.stopping")
