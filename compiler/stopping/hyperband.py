"""hyperband: W&B's `early_terminate: {type: hyperband}` over the steps of one trial, in W&B's words.
Brackets at steps min_iter·eta^k, or, with `max_iter`, at max_iter/eta^i for i = 1…s (W&B's two ways
of giving them). At a bracket the values every trial reported at that step are sorted best first; a
trial goes on if its value is no worse than the one at place ⌊n/eta⌋ (W&B's threshold: the best
⌊n/eta⌋ + 1 go on). `strict: true` keeps only the best ⌊n/eta⌋ (at least one), as the Hyperband paper's
successive halving does. Defaults: eta 3, strict false; `min_iter` or `max_iter` (with `s`) is needed."""
from __future__ import annotations

from typing import Any, Mapping

from hpt.compiler.stopping import Curve, Stop, StoppingRule, value_at
from hpt.schemas.errors import UserError

MAX_BRACKETS = 64


def brackets(settings: Mapping[str, Any]) -> list[int]:
    eta = settings["eta"]
    if settings.get("max_iter") is not None:
        out, band = [], float(settings["max_iter"])
        for _ in range(settings["s"] or 0):
            band /= eta
            if band < 1:
                break
            out.append(int(band))
        return sorted(set(out))
    out, band = [], settings["min_iter"]
    while len(out) < MAX_BRACKETS and band < 2 ** 31:
        out.append(band)
        band *= eta
    return out


class Hyperband(StoppingRule):
    name = "hyperband"
    defaults = {"min_iter": None, "max_iter": None, "s": None, "eta": 3, "strict": False}
    integers = ("min_iter", "max_iter", "s", "eta")

    def check(self, settings: Mapping[str, Any], where: str) -> None:
        if not isinstance(settings["strict"], bool):
            raise UserError(f"strict must be true or false (got {settings['strict']!r})", where=f"{where}.strict")
        if settings["min_iter"] is None and settings["max_iter"] is None:
            raise UserError("hyperband needs min_iter, or max_iter with s", where=where,
                            hint='e.g. "stopping": {"rule": "hyperband", "min_iter": 1, "eta": 3}')
        if settings["min_iter"] is not None and settings["max_iter"] is not None:
            raise UserError("give min_iter or max_iter, not both (W&B's two ways of giving the brackets)",
                            where=f"{where}.max_iter")
        if settings["max_iter"] is not None and not brackets(settings):
            raise UserError(f"max_iter {settings['max_iter']}, s {settings['s']}, eta {settings['eta']} give no bracket",
                            where=f"{where}.s", hint="s ≥ 1 and max_iter ≥ eta")

    def first_stop(self, settings: Mapping[str, Any], curve: Curve, finished: Mapping[str, Curve],
                   running: Mapping[str, Curve]) -> Stop | None:
        others = [*finished.values(), *running.values()]
        eta = settings["eta"]
        for step in brackets(settings):
            value = value_at(curve, step)
            if value is None:
                continue
            values = sorted([v for c in others if (v := value_at(c, step)) is not None] + [value])
            keep = max(1, len(values) // eta) if settings["strict"] else len(values) // eta + 1
            threshold = values[min(keep, len(values)) - 1]
            if value > threshold:
                return Stop(step, value, f"hyperband at step {step}: {value:.6g} is outside the best {keep} of "
                                         f"{len(values)} trials there (threshold {threshold:.6g})")
        return None
