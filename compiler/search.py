"""The search space and the configs drawn from it.

A domain per tuned hyperparameter: `Values` (a list of numbers, categorical choices, booleans or JSON values; grid, or
a uniform random choice: W&B's `categorical`) or `Distribution` (W&B's vocabulary in hpt's spelling: uniform,
log-uniform, int-uniform, q-uniform, q-log-uniform, normal, q-normal, log-normal, q-log-normal; numeric
hyperparameters, random search only). Untuned
hyperparameters stay at the catalog default and are merged in by `configs()`.

- grid: the Cartesian product, visited in a seeded random order; `trials` keeps a seeded random
  subset. Configs are decoded from mixed-radix indices one at a time, so a 100,000-config grid
  never exists as a list of dicts.
- random: `trials` seeded draws; a draw equal to an earlier one is drawn again, so no config (and no
  trial) repeats.
"""
from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Any, Iterator, Mapping

from hpt.compiler.limits import MAX_GRID, MAX_SAMPLED_GRID
from hpt.schemas.catalog import Architecture, ParamSpec, Value, format_value, value_key
from hpt.schemas.errors import UserError

DEFAULT_RANDOM_TRIALS = 20
DEFAULT_ETA = 3                # halving: the top 1/eta of a rung is promoted
DEFAULT_BATCH = 4              # tpe: round 1's configs when the spec gives no batch (later rounds: apply's --parallel)
DEFAULT_PROMOTION = "async"    # halving: promote as results come in (compiler/schedulers/halving.py), not rung by rung
DEFAULT_CONTINUE = True        # halving: a rung that differs only in epochs continues from the lower rung's checkpoint
_DRAW_ATTEMPTS = 100           # draws per wanted config before giving up on finding new ones


@dataclass(frozen=True)
class Values:
    values: tuple[Value, ...]

    def describe(self) -> str:
        return ", ".join(format_value(v) for v in self.values)

    def to_json(self) -> Any:
        return list(self.values)


# hpt's distribution kinds (compiler/wandb.py turns each of W&B's into one of these; docs/wandb.md)
BOUNDED = ("uniform", "log-uniform", "int-uniform", "q-uniform", "q-log-uniform")   # min and max
NORMAL = ("normal", "q-normal", "log-normal", "q-log-normal")                         # mu and sigma, unbounded
QUANTIZED = ("q-uniform", "q-log-uniform", "q-normal", "q-log-normal")               # round(x / q) * q
KINDS = BOUNDED + NORMAL
TPE_SIGMAS = 4   # tpe searches a normal kind over mu ± 4 sigma (99.99% of its mass): its sampler needs bounds


@dataclass(frozen=True)
class Distribution:
    kind: str                   # one of KINDS
    min: float = -math.inf      # normal kinds: unbounded (log-normal: above 0)
    max: float = math.inf
    q: float | None = None      # the q kinds; its type decides W&B's: an integer q gives integers
    mu: float = 0.0             # normal kinds
    sigma: float = 1.0

    def draw(self, rng: random.Random, spec: ParamSpec) -> int | float:
        if self.kind == "int-uniform":
            value: float = rng.randint(int(self.min), int(self.max))
        elif self.kind in ("log-uniform", "q-log-uniform"):
            value = math.exp(rng.uniform(math.log(self.min), math.log(self.max)))
        elif self.kind in ("normal", "q-normal"):
            value = rng.gauss(self.mu, self.sigma)
        elif self.kind in ("log-normal", "q-log-normal"):
            value = math.exp(rng.gauss(self.mu, self.sigma))
        else:
            value = rng.uniform(self.min, self.max)
        return self.snap(value, spec)

    def snap(self, value: float, spec: ParamSpec) -> int | float:
        """A raw number (ours, or a sampler's) → the value a trial gets: on the q grid (W&B's
        round(x / q) * q), an integer for integer hyperparameters, 6 significant digits for continuous
        ones, inside the bounds (the distribution's and the hyperparameter's)."""
        if self.kind in QUANTIZED:
            q = self.q or 1
            value = round(value / q) * q
            value = float(f"{value:.12g}")  # 0.30000000000000004 → 0.3
        if spec.type == "int":
            value = round(value)
        elif self.kind not in QUANTIZED and self.kind != "int-uniform":
            value = float(f"{value:.6g}")  # readable tables; 6 digits are finer than any tuning needs
        # Rounding may step just outside the bounds; pull it back in.
        low = self.min if spec.min is None else max(self.min, spec.min)
        high = self.max if spec.max is None else min(self.max, spec.max)
        if self.kind in QUANTIZED and self.q and math.isfinite(low) and math.isfinite(high):
            # the q grid's first and last points inside the bounds, so a clamped value stays on the grid
            low = float(f"{math.ceil(low / self.q - 1e-9) * self.q:.12g}")
            high = float(f"{math.floor(high / self.q + 1e-9) * self.q:.12g}")
        if spec.type == "int":
            low = math.ceil(low) if math.isfinite(low) else low
            high = math.floor(high) if math.isfinite(high) else high
        return spec.coerce(min(max(value, low), high))

    def search_bounds(self) -> tuple[float, float, bool]:
        """(low, high, log) for a sampler that needs a bounded range (tpe)."""
        if self.kind in ("normal", "q-normal"):
            return self.mu - TPE_SIGMAS * self.sigma, self.mu + TPE_SIGMAS * self.sigma, False
        if self.kind in ("log-normal", "q-log-normal"):
            return math.exp(self.mu - TPE_SIGMAS * self.sigma), math.exp(self.mu + TPE_SIGMAS * self.sigma), True
        return self.min, self.max, self.kind in ("log-uniform", "q-log-uniform")

    def describe(self) -> str:
        q = f", q={_fmt(self.q)}" if self.q is not None else ""
        if self.kind in NORMAL:
            return f"{self.kind}(mu={_fmt(self.mu)}, sigma={_fmt(self.sigma)}{q})"
        return f"{self.kind}({_fmt(self.min)}, {_fmt(self.max)}{q})"

    def to_json(self) -> Any:
        doc: dict[str, Any] = {"distribution": self.kind}
        if self.kind in NORMAL:
            doc |= {"mu": self.mu, "sigma": self.sigma}
        else:
            doc |= {"min": self.min, "max": self.max}
        if self.q is not None:
            doc["q"] = self.q
        return doc

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> "Distribution":
        """A validated distribution in hpt's spelling (or to_json's output) → its domain."""
        kind = doc["distribution"]
        q = doc.get("q", 1 if kind in QUANTIZED else None)
        if kind in NORMAL:
            low = 0.0 if kind in ("log-normal", "q-log-normal") else -math.inf
            return cls(kind, low, math.inf, q, float(doc.get("mu", 0.0)), float(doc.get("sigma", 1.0)))
        return cls(kind, doc["min"], doc["max"], q)


Domain = Values | Distribution


def _fmt(value: float | None) -> str:
    return "" if value is None else f"{value:g}" if isinstance(value, float) else str(value)


def domain_from_spec(spec: ParamSpec, value: Any) -> Domain:
    """A validated spec entry → its domain (numbers coerced to the hyperparameter's type)."""
    if isinstance(value, (int, float, str)):  # bool is an int
        return Values((spec.coerce(value),))
    if isinstance(value, list):
        return Values(tuple(spec.coerce(v) for v in value))
    if "values" in value:
        return Values(tuple(spec.coerce(v) for v in value["values"]))
    if "value" in value:
        return Values((spec.coerce(value["value"]),))
    return Distribution.from_json(value)


# The simple form: `search.method` names a proposer and a scheduler at once (halving's proposer is
# the grid, or random draws when a parameter has a distribution; bohb is tpe proposals + halving).
METHODS: dict[str, tuple[str | None, str]] = {
    "grid": ("grid", "none"), "random": ("random", "none"), "tpe": ("tpe", "none"),
    "halving": (None, "halving"), "bohb": ("tpe", "halving"),
}


def search_parts(search: Mapping[str, Any], parameters: Mapping[str, Any]) -> tuple[str, str]:
    """(proposer, scheduler) of a spec's search: its explicit `proposer`/`scheduler`, else `method`'s pair
    (a plan compiled before the parts existed records only `method`)."""
    has_distribution = any(isinstance(v, Mapping) and "distribution" in v for v in parameters.values())
    default = "random" if has_distribution else "grid"
    proposer, scheduler = METHODS.get(search.get("method") or "", (None, "none"))
    if "scheduler" in search:
        scheduler = search["scheduler"]
        proposer = None if "method" not in search else proposer
    return search.get("proposer") or proposer or default, scheduler


def method_name(proposer: str, scheduler: str) -> str:
    """The simple form's name for a pair (what summaries show): grid, random, tpe, halving, bohb, else proposer+scheduler."""
    if scheduler == "none":
        return proposer
    if scheduler == "halving":
        return "bohb" if proposer == "tpe" else "halving"
    return f"{proposer}+{scheduler}"


@dataclass(frozen=True)
class SearchSpace:
    architecture: Architecture
    domains: dict[str, Domain]            # the tuned hyperparameters, in catalog order
    method: str                           # the simple form's name (method_name): grid | random | halving | tpe | bohb | p+s
    trials: int | None                    # grid: subset size (None = all); random: draws; halving: configs at the bottom rung
    seed: int
    eta: int | None = None                # halving only
    batch: int | None = None              # tpe only: configs per round; None: round 1 DEFAULT_BATCH, then apply's parallelism
    promotion: str | None = None          # halving only: async | sync (compiler/schedulers/halving.py)
    continues: bool | None = None         # halving only: search.continue (compiler/fidelities.continues)
    proposer: str = "grid"                # compiler/proposers/<name>
    scheduler: str = "none"               # compiler/schedulers/<name>

    @property
    def sampler(self) -> str:
        """How configs are drawn (the proposer)."""
        return self.proposer

    def grid_size(self) -> int:
        return math.prod(len(d.values) for d in self.domains.values() if isinstance(d, Values))

    def count(self) -> int:
        """How many configs configs() yields (random search may find fewer distinct ones; see configs())."""
        if self.sampler == "grid":
            return min(self.grid_size(), self.trials) if self.trials else self.grid_size()
        finite = all(isinstance(d, Values) for d in self.domains.values())
        wanted = self.trials or DEFAULT_RANDOM_TRIALS
        return min(wanted, self.grid_size()) if finite else wanted

    def check(self) -> None:
        if self.sampler == "grid" and not self.trials and self.grid_size() > MAX_GRID:
            raise UserError(f"the grid has {self.grid_size():,} configs, more than {MAX_GRID:,}", where="parameters",
                            hint='cap it with "search": {"trials": N}, or use random search')
        if self.proposer == "grid" and self.scheduler == "none" and self.grid_size() > MAX_SAMPLED_GRID:
            raise UserError(f"the grid has {self.grid_size():.3g} configs, more than {MAX_SAMPLED_GRID:.0e}", where="parameters",
                            hint='use random search ("search": {"method": "random", "trials": N}): it draws without listing them')

    def configs(self) -> Iterator[dict[str, Value]]:
        """Each config: every hyperparameter of the architecture, tuned ones from the search."""
        defaults = self.architecture.defaults()
        specs = {p.name: p for p in self.architecture.parameters}
        names = list(self.domains)
        if self.sampler == "grid":
            value_lists = [self.domains[n].values for n in names]  # type: ignore[union-attr]
            sizes = [len(v) for v in value_lists]
            total = math.prod(sizes)
            rng = random.Random(self.seed)
            if self.trials and self.trials < total:
                order = rng.sample(range(total), self.trials)
            else:
                order = list(range(total))
                rng.shuffle(order)
            for index in order:
                config = dict(defaults)
                for name, values, size in zip(reversed(names), reversed(value_lists), reversed(sizes)):
                    index, digit = divmod(index, size)
                    config[name] = values[digit]
                yield config
            return
        rng = random.Random(self.seed)
        seen: set[tuple] = set()
        wanted = self.count()
        attempts = 0
        while len(seen) < wanted and attempts < wanted * _DRAW_ATTEMPTS:
            attempts += 1
            config = dict(defaults)
            for name in names:
                domain = self.domains[name]
                config[name] = rng.choice(domain.values) if isinstance(domain, Values) else domain.draw(rng, specs[name])
            key = tuple(value_key(config[n]) for n in names)
            if key in seen:
                continue
            seen.add(key)
            yield config
