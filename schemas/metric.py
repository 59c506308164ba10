"""Metrics are open: any name a trainer reports, with a goal declared once; the objective is one of them.

The compiler decides the objective (a metric and its goal) and records it in the plan and in every
manifest; the trainer copies it into every row (schemas/row.py); the analysis ranks by what the rows
recorded. Nothing downstream guesses a goal from a name. The catalog's vocabulary (schemas/catalog.json
"metrics") only supplies goals for the names it knows, as a default.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Mapping

MINIMIZE, MAXIMIZE = "minimize", "maximize"
# The objective of a spec that names none, and of rows written before rows recorded theirs (row schema 1).
DEFAULT_OBJECTIVE = "mse"
GOALS = (MINIMIZE, MAXIMIZE)
GOAL_WORDS = {"min": MINIMIZE, "max": MAXIMIZE, MINIMIZE: MINIMIZE, MAXIMIZE: MAXIMIZE}
# A metric's name is a row column and a TensorBoard tag: letters, digits and _ . / -, no ':' (the CLI's
# `--objective NAME:max` suffix), at most 100 characters.
NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_./-]{0,99}$"
_NAME = re.compile(NAME_PATTERN.replace("$", r"\Z"))


@dataclass(frozen=True)
class Objective:
    """What configs are ranked by: a metric and whether lower or higher is better."""
    metric: str
    goal: str  # "minimize" | "maximize"

    @property
    def ascending(self) -> bool:
        return self.goal == MINIMIZE

    def better(self, a: float, b: float) -> bool:
        return a < b if self.ascending else a > b

    def to_dict(self) -> dict[str, str]:
        """The manifest's and the plan's `objective`."""
        return {"metric": self.metric, "goal": self.goal}

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> "Objective":
        return cls(str(doc["metric"]), str(doc["goal"]))

    def __str__(self) -> str:
        return f"{self.metric} ({'lower' if self.ascending else 'higher'} is better)"


def name_problem(name: Any, reserved: frozenset[str] = frozenset()) -> str | None:
    """Why `name` cannot be a metric (not a name, or a row column hpt itself writes); None if it can."""
    if not isinstance(name, str) or not _NAME.match(name):
        return (f"{str(name)[:60]!r} is not a metric name (letters, digits and _ . / -, starting with a letter "
                "or _, at most 100 characters)")
    if name in reserved or name.startswith("param."):
        return f"{name!r} is a column hpt writes itself; report it under another name"
    return None
