"""In-trial stopping rules: end a running trial early from its per-step reports (Katib's early stopping,
Ray Tune's ASHA, W&B's `early_terminate`, Optuna's pruners).

A rule is one module here behind `StoppingRule`, found by its `name` (the spec's `search.stopping.rule`).
`first_stop` is a pure function of the reports seen: each trial's curve, a list of (step, value) of the
objective in the order of its steps (steps are the `epoch` of hpt:epoch reports). It returns the first
step at which the rule stops a running trial, or None, so the same reports always give the same stop,
however late the executor reads them (hpt/api.py builds the executor's hook from it; the executor writes
an immutable stop record before the trial sees it). Values are in "lower is better" form: a maximised
objective is negated before a rule sees it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar, Mapping, Sequence

from hpt.compiler.registry import Registry
from hpt.schemas.errors import UserError

Curve = Sequence[tuple[int, float]]


@dataclass(frozen=True)
class Stop:
    step: int
    value: float          # the trial's objective at that step (as reported, not negated)
    reason: str           # one line: the rule and the numbers it compared


class StoppingRule:
    name: ClassVar[str] = ""
    defaults: ClassVar[dict[str, Any]] = {}      # every setting the rule reads, with its default
    integers: ClassVar[tuple[str, ...]] = ()     # settings that must be integers ≥ 1 (others: see check)

    def __init_subclass__(cls, **kw: Any) -> None:
        super().__init_subclass__(**kw)
        STOPPING.add(cls)

    def resolve(self, given: Mapping[str, Any], where: str) -> dict[str, Any]:
        """The rule's settings with defaults filled in; an unknown or bad one is a UserError naming it."""
        unknown = sorted(set(given) - set(self.defaults) - {"rule"})
        if unknown:
            raise UserError(f"unknown setting {unknown[0]!r} for stopping rule {self.name}", where=f"{where}.{unknown[0]}",
                            hint=f"known: {', '.join(sorted(self.defaults))}")
        out = {"rule": self.name, **self.defaults, **{k: v for k, v in given.items() if k != "rule"}}
        for key in self.integers:
            value = out[key]
            if value is None and self.defaults.get(key) is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < (2 if key in ("eta", "reduction_factor") else 1):
                least = 2 if key in ("eta", "reduction_factor") else 1
                raise UserError(f"{key} must be an integer ≥ {least} (got {value!r})", where=f"{where}.{key}")
        self.check(out, where)
        return out

    def check(self, settings: Mapping[str, Any], where: str) -> None:
        """Rule-specific checks beyond the integers (a UserError naming the key)."""

    def first_stop(self, settings: Mapping[str, Any], curve: Curve, finished: Mapping[str, Curve],
                   running: Mapping[str, Curve]) -> Stop | None:
        """The first step of `curve` (a running trial's) at which the rule stops it, told the curves of the
        finished trials and of the other running ones; None: it runs on."""
        raise NotImplementedError


def value_at(curve: Curve, step: int) -> float | None:
    """The value reported at exactly `step` (the last such report), None if none was."""
    found = None
    for s, v in curve:
        if s == step:
            found = v
    return found


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0–100) with linear interpolation between closest ranks (numpy's default)."""
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100
    low = math.floor(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


STOPPING: Registry[StoppingRule] = Registry(__name__, "stopping rule")
