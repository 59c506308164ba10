"""tpe: Optuna's TPE sampler as a library, asked for a batch of configs per round (a model-based proposer).

Round 1 (written by `hpt compile`) is the sampler's first batch; each further round is asked by the
scheduler (compiler/schedulers/: `none` once every trial of the earlier rounds is done, `halving` once
the cheapest rung's are), from a study rebuilt from scratch and told every finished config at that fidelity
(its objective averaged over date ranges and repeats, in trial-id order) with a seed derived from the
search seed and the round number. `trials` bounds the total configs. `batch` is the size of a round;
without it in the spec, round 1 (written at compile, before any apply) has DEFAULT_BATCH configs and
every later round as many as the apply runs at once (`--parallel`, else the backend's capacity), so
every slot stays busy. Each round records its batch. So a round is a pure function of the plan, the
rows and that batch: a re-apply after kill -9 with the same `--parallel` asks the same questions and
gets the same answers. Optuna is the optional extra `hpt[search]`.
"""
from __future__ import annotations

import hashlib
import math
import random
from pathlib import Path
from typing import Any, Mapping

from hpt.compiler.proposers import Proposer
from hpt.compiler.search import DEFAULT_BATCH, Distribution, Domain, SearchSpace, Values
from hpt.schemas.catalog import ParamSpec, value_key
from hpt.schemas.errors import UserError
from hpt.schemas.plan import Plan

TPE = "tpe"
_ASK_ATTEMPTS = 50          # asks per wanted config before giving up on finding new ones


def require_optuna(where: str = "search.method") -> Any:
    """The optuna module, or exit 2 naming the key that asked for it."""
    try:
        import optuna
    except ImportError:
        raise UserError("tpe needs Optuna, which is not installed", where=where,
                        hint="pip install 'hpt[search]'") from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


def startup(trials: int, batch: int) -> int:
    """Configs drawn at random before TPE models the results: a third of the budget, between one batch and 10."""
    return max(batch, min(10, trials // 3))


def settings(space: SearchSpace) -> dict[str, Any]:
    """What plan.json records so that later rounds can be asked without the catalog: the budget, round 1's
    batch and each tuned hyperparameter's type."""
    trials, batch = space.trials or 0, space.batch or DEFAULT_BATCH   # resolve() fills trials in for tpe
    specs = {p.name: p for p in space.architecture.parameters}
    return {"batch": batch, "trials": trials, "startup": startup(trials, batch),
            "types": {name: specs[name].type for name in space.domains}}


def propose(domains: Mapping[str, Domain], types: Mapping[str, str], defaults: Mapping[str, Any], goal: str,
            history: list[tuple[dict[str, Any], float]], taken: set[tuple], batch: int, n_startup: int,
            seed: int) -> list[dict[str, Any]]:
    """Up to `batch` new configs (every hyperparameter) from TPE told `history` (config, score); none in `taken`."""
    optuna = require_optuna()
    names = list(domains)
    specs = {n: ParamSpec(name=n, type=types[n], default=0, help="", min=-math.inf, max=math.inf) for n in names}
    dists = {n: _distribution(optuna, domains[n], types[n]) for n in names}
    sampler = optuna.samplers.TPESampler(seed=seed, n_startup_trials=n_startup, constant_liar=True,
                                         multivariate=True)
    study = optuna.create_study(direction="minimize" if goal == "minimize" else "maximize", sampler=sampler)
    for config, value in history:
        if math.isfinite(value):   # a diverged config is simply not told (it is in `taken`, so never asked again)
            study.add_trial(optuna.trial.create_trial(params={n: _encode(domains[n], config[n]) for n in names},
                                                      distributions=dists, value=value))
    out: list[dict[str, Any]] = []
    taken = set(taken)
    for _ in range(batch * _ASK_ATTEMPTS):
        if len(out) == batch:
            break
        trial = study.ask(dists)
        config = dict(defaults)
        for n in names:
            value = trial.params[n]
            domain = domains[n]
            config[n] = domain.snap(value, specs[n]) if isinstance(domain, Distribution) else \
                specs[n].coerce(_decode(domain, value))
        key = tuple(value_key(config[n]) for n in names)
        if key in taken:
            study.tell(trial, state=optuna.trial.TrialState.FAIL)   # asked again: say so, so it moves on
            continue
        taken.add(key)
        out.append(config)
    # TPE keeps proposing what it already has (a small finite space it has mostly seen): fill the batch
    # with seeded uniform draws of configs not run yet, as random search would.
    rng = random.Random(seed)
    for _ in range((batch - len(out)) * _ASK_ATTEMPTS):
        if len(out) == batch:
            break
        config = dict(defaults)
        for n in names:
            domain = domains[n]
            config[n] = rng.choice(domain.values) if isinstance(domain, Values) else domain.draw(rng, specs[n])
        key = tuple(value_key(config[n]) for n in names)
        if key not in taken:
            taken.add(key)
            out.append(config)
    return out


def _encoded(domain: Domain) -> bool:
    """Optuna's categorical choices are scalars only: a list or object value (W&B's any JSON type) goes to
    Optuna as its canonical JSON text (catalog.value_key, distinct per value) and comes back decoded."""
    return isinstance(domain, Values) and any(isinstance(v, (list, dict)) for v in domain.values)


def _encode(domain: Domain, value: Any) -> Any:
    return value_key(value) if _encoded(domain) else value


def _decode(domain: Domain, value: Any) -> Any:
    if not _encoded(domain):
        return value
    return {value_key(v): v for v in domain.values}[value]   # type: ignore[union-attr]


def _distribution(optuna: Any, domain: Domain, kind: str) -> Any:
    if isinstance(domain, Values):
        return optuna.distributions.CategoricalDistribution([_encode(domain, v) for v in domain.values])
    low, high, log = domain.search_bounds()
    if domain.kind == "int-uniform" or (kind == "int" and not log):
        return optuna.distributions.IntDistribution(math.ceil(low), math.floor(high))
    return optuna.distributions.FloatDistribution(low, high, log=log)


def round_seed(search_seed: int, round_no: int) -> int:
    return int(hashlib.sha256(f"hpt-tpe:{search_seed}:{round_no}".encode()).hexdigest()[:8], 16)


def first_batch(space: SearchSpace) -> list[dict[str, Any]]:
    """Round 1: the sampler's first batch (random draws: nothing is known yet)."""
    conf = settings(space)
    specs = {p.name: p for p in space.architecture.parameters}
    return propose(space.domains, {n: specs[n].type for n in space.domains}, space.architecture.defaults(),
                   "minimize", [], set(), min(conf["batch"], conf["trials"]), conf["startup"], round_seed(space.seed, 1))


def _domain(value: Any) -> Domain:
    """A resolved spec's parameter (Values/Distribution.to_json) back to its domain."""
    if isinstance(value, list):
        return Values(tuple(value))
    return Distribution.from_json(value)


class TPEProposer(Proposer):
    name = TPE
    adaptive = True
    needs_trials = True
    settings_keys = ("batch",)

    def check(self, search: Mapping[str, Any], doc: Mapping[str, Any]) -> None:
        require_optuna("search.proposer" if "proposer" in search else "search.method")

    def first(self, space: SearchSpace):  # noqa: ANN201
        return iter(first_batch(space))

    def settings(self, space: SearchSpace) -> dict[str, Any]:
        return settings(space)

    def batch(self, plan: Plan, parallel: int | None) -> int:
        """The spec's `batch`, else the apply's parallelism, else round 1's size."""
        return plan.spec["search"].get("batch") or parallel or (plan.tpe or {})["batch"]

    def budget(self, plan: Plan) -> int:
        return (plan.tpe or {})["trials"]

    def propose(self, plan: Plan, history: list[tuple[dict[str, Any], float]], taken: set[tuple], n: int,
                round_no: int, defaults: Mapping[str, Any]) -> list[dict[str, Any]]:
        conf, spec = plan.tpe or {}, plan.spec
        domains = {name: _domain(value) for name, value in spec["parameters"].items()}
        return propose(domains, conf["types"], defaults, spec["objective"]["goal"], history, taken, n, conf["startup"],
                       round_seed(spec["search"]["seed"], round_no))
