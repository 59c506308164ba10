"""Per-value trends: the grid view the seed valued ("every value is tried many times, so trends show").

For each parameter that varies and each of its values: how many finished trials used it, and the
count, mean, median and best of the objective over them.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from hpt.results.table import Objective, ResultTable, short_param


@dataclass
class TrendRow:
    param: str
    value: Any
    count: int
    mean: float
    median: float
    best: float
    best_value: bool   # this value has the best mean for its parameter

    def record(self) -> dict[str, Any]:
        return asdict(self)


def _sort_key(value: Any) -> tuple:
    try:
        return (0, float(value), "")
    except (TypeError, ValueError):
        return (1, 0.0, str(value))


def _plain(value: Any) -> Any:
    """numpy scalars → Python numbers, so JSON and CSV print them plainly."""
    item = getattr(value, "item", None)
    return item() if callable(item) else value


def trends(table: ResultTable, obj: Objective) -> list[TrendRow]:
    done = table.finished(obj)
    out: list[TrendRow] = []
    for column in table.params:
        if column not in done.columns:
            continue
        stats = done.groupby(column, dropna=True)[obj.metric].agg(["count", "mean", "median", "min", "max"])
        if stats.empty:
            continue
        best_mean = stats["mean"].min() if obj.ascending else stats["mean"].max()
        for value in sorted(stats.index, key=_sort_key):
            row = stats.loc[value]
            out.append(TrendRow(
                param=short_param(column), value=_plain(value), count=int(row["count"]), mean=float(row["mean"]),
                median=float(row["median"]), best=float(row["min"] if obj.ascending else row["max"]),
                best_value=bool(row["mean"] == best_mean)))
    return out
