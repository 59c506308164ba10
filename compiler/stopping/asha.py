"""asha: asynchronous successive halving over the steps of one trial (Ray Tune's ASHAScheduler, in Ray's
words). Rungs at steps grace_period·reduction_factor^k up to `max_t`; at a rung a trial goes on only if
its value there is no worse than the (1 − 1/reduction_factor) quantile of the values the other trials
reported at that step (finished and running; Ray's cutoff, linear interpolation); with none to compare,
it goes on. Ray's defaults: grace_period 1, reduction_factor 4, max_t 100."""
from __future__ import annotations

from typing import Any, Mapping

from hpt.compiler.stopping import Curve, Stop, StoppingRule, percentile, value_at
from hpt.schemas.errors import UserError


def rungs(first: int, factor: int, last: int) -> list[int]:
    steps, step = [], first
    while step <= last:
        steps.append(step)
        step *= factor
    return steps


class ASHA(StoppingRule):
    name = "asha"
    defaults = {"grace_period": 1, "reduction_factor": 4, "max_t": 100}
    integers = ("grace_period", "reduction_factor", "max_t")

    def check(self, settings: Mapping[str, Any], where: str) -> None:
        if settings["max_t"] < settings["grace_period"]:
            raise UserError(f"max_t ({settings['max_t']}) is below grace_period ({settings['grace_period']})",
                            where=f"{where}.max_t")

    def first_stop(self, settings: Mapping[str, Any], curve: Curve, finished: Mapping[str, Curve],
                   running: Mapping[str, Curve]) -> Stop | None:
        others = [*finished.values(), *running.values()]
        factor = settings["reduction_factor"]
        for step in rungs(settings["grace_period"], factor, settings["max_t"]):
            value = value_at(curve, step)
            if value is None:
                continue
            recorded = [v for c in others if (v := value_at(c, step)) is not None]
            if not recorded:
                continue
            cutoff = percentile(recorded, 100 / factor)   # lower is better: the best 1/factor lie below it
            if value > cutoff:
                return Stop(step, value, f"asha at step {step}: {value:.6g} is outside the best 1/{factor} of "
                                         f"{len(recorded)} other trials (cutoff {cutoff:.6g})")
        return None
