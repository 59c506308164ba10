"""A reached target ends the search: the plan's `search.target` (W&B's `metric.target`, Katib's
`objective.goal`), recorded by compile beside the objective it is a value of. Once a finished trial's
objective reaches it (≤ when minimised, ≥ when maximised), `hpt apply` starts no new trial and the
running ones finish — what W&B's sweep and Katib's Experiment do. A pure function of the rows, so a
re-apply, `hpt status` and the run that saw it happen all agree on it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping

from hpt.schemas.row import STATUS_DONE, STATUS_STOPPED


@dataclass(frozen=True)
class Target:
    metric: str
    goal: str       # minimize | maximize
    value: float

    @classmethod
    def of(cls, spec: Mapping[str, Any]) -> "Target | None":
        """The plan's target (its resolved spec), None when it has none."""
        value = (spec.get("search") or {}).get("target")
        objective = spec.get("objective") or {}
        if value is None or "metric" not in objective:
            return None
        return cls(str(objective["metric"]), str(objective.get("goal", "minimize")), float(value))

    def reached(self, row: Mapping[str, str]) -> float | None:
        """The row's objective when it reaches the target (a finished trial's: done, or stopped early)."""
        if row.get("status") not in (STATUS_DONE, STATUS_STOPPED):
            return None
        try:
            value = float(row.get(self.metric, ""))
        except (TypeError, ValueError):
            return None
        if not math.isfinite(value):
            return None
        return value if (value <= self.value if self.goal == "minimize" else value >= self.value) else None

    def first(self, rows: Mapping[str, Mapping[str, str]]) -> tuple[str, float] | None:
        """The trial that reached it with the best value (ties: the lower id), or None."""
        found = [(v if self.goal == "minimize" else -v, tid, v) for tid, row in rows.items()
                 if (v := self.reached(row)) is not None]
        return (min(found)[1], min(found)[2]) if found else None

    def says(self, trial_id: str, value: float) -> str:
        sign = "≤" if self.goal == "minimize" else "≥"
        return f"target reached: {trial_id}'s {self.metric} {value:.6g} {sign} {self.value:g}"
