"""median: Katib's `medianstop` (the Vizier paper's median stopping rule). A running trial is stopped at
step S ≥ `start_step` when its best value up to S is strictly worse than the median of the running
averages (the mean of every value reported at steps ≤ S) of the finished trials, once at least
`min_trials_required` finished trials reported at a step ≤ S. Katib's defaults: 3 and 4."""
from __future__ import annotations

import statistics
from typing import Any, Mapping

from hpt.compiler.stopping import Curve, Stop, StoppingRule


class MedianStopping(StoppingRule):
    name = "median"
    defaults = {"min_trials_required": 3, "start_step": 4}
    integers = ("min_trials_required", "start_step")

    def first_stop(self, settings: Mapping[str, Any], curve: Curve, finished: Mapping[str, Curve],
                   running: Mapping[str, Curve]) -> Stop | None:
        best = None
        for step, value in curve:
            best = value if best is None else min(best, value)
            if step < settings["start_step"]:
                continue
            averages = []
            for other in sorted(finished):
                seen = [v for s, v in finished[other] if s <= step]
                if seen:
                    averages.append(sum(seen) / len(seen))
            if len(averages) < settings["min_trials_required"]:
                continue
            median = statistics.median(averages)
            if best > median:
                return Stop(step, value, f"median stopping at step {step}: best {best:.6g} is worse than the median "
                                         f"{median:.6g} of {len(averages)} finished trials' running averages")
        return None
