"""Fidelities: cheaper versions of every trial, so one plan measures whether cheap runs rank like full ones.

The seed tuned its tuner by running the same configs on one week … three months of data and with
various epochs. A spec's `fidelities` lists such settings; each is `months` (the last months of the
date range; the validation period stays, so every fidelity is scored on the same data) and/or
`epochs`. Every config × range × repeat runs once per fidelity; the manifest's `budget.fidelity`
names it, and `hpt fidelity STORE` compares the rankings.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from hpt.compiler.dates import Window, add_months
from hpt.schemas.errors import UserError


@dataclass(frozen=True)
class Fidelity:
    name: str
    months: int | None      # None: the whole date range
    epochs: int             # resolved: the spec's epochs when the fidelity names none

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "months": self.months, "epochs": self.epochs}

    def window(self, window: Window) -> Window:
        """The range's last `months` months (same index, same validation period)."""
        if self.months is None:
            return window
        return replace(window, train_start=add_months(window.train_end, -self.months))


def continues(lower: Fidelity, upper: Fidelity) -> bool:
    """Whether a trial at `upper` may start from the checkpoint of the same trial at `lower`: the same data
    (months) and more epochs, so its first `lower.epochs` epochs are exactly the lower trial's."""
    return lower.months == upper.months and upper.epochs > lower.epochs


def continued(fidelities: tuple[Fidelity, ...] | list[Fidelity], k: int) -> Fidelity | None:
    """The rung below rung k that rung k continues from (halving with search.continue), or None."""
    return fidelities[k - 1] if 0 < k < len(fidelities) and continues(fidelities[k - 1], fidelities[k]) else None


def default_name(entry: dict[str, Any]) -> str:
    """`{"months": 1, "epochs": 5}` → `m1-e5`; only what the spec gave."""
    parts = [f"m{entry['months']}"] if "months" in entry else []
    parts += [f"e{entry['epochs']}"] if "epochs" in entry else []
    return "-".join(parts)


def resolve_fidelities(entries: list[dict[str, Any]] | None, epochs: int) -> tuple[Fidelity, ...]:
    """Validated spec entries → fidelities; names must be unique (they label the results)."""
    out: list[Fidelity] = []
    seen: dict[str, int] = {}
    for i, entry in enumerate(entries or ()):
        if "months" not in entry and "epochs" not in entry:
            raise UserError("a fidelity needs months, epochs or both", where=f"fidelities[{i}]")
        name = entry.get("name") or default_name(entry)
        if name in seen:
            raise UserError(f"the name {name!r} is taken by fidelities[{seen[name]}]; names label the results",
                            where=f"fidelities[{i}]" + (".name" if "name" in entry else ""),
                            hint='give each fidelity its own "name"')
        seen[name] = i
        out.append(Fidelity(name, entry.get("months"), int(entry.get("epochs", epochs))))
    return tuple(out)


def check_fidelities(fidelities: tuple[Fidelity, ...], windows: list[Window], rotating_months: int | None,
                     mode: str) -> None:
    """Each fidelity fits every range, and no two train on the same data for the same epochs (the same trial
    under two names)."""
    if not fidelities:
        return
    if mode == "quick":
        raise UserError("quick mode and fidelities do not mix: quick mode is itself one cheap fidelity", where="fidelities",
                        hint='drop "mode": "quick" / --mode quick, or list the cheap setting as a fidelity')
    for i, fid in enumerate(fidelities):
        if fid.months is None:
            continue
        for window in windows:
            if add_months(window.train_end, -fid.months) < window.train_start:
                what = (f"the rotating windows of {rotating_months} month(s)" if rotating_months is not None
                        else f"date-range[{window.index}] [{window.train_start}, {window.train_end})")
                raise UserError(f"{fid.months} month(s) is longer than {what}", where=f"fidelities[{i}].months",
                                hint="a fidelity trains on the last months of each date range")
    for window in windows:
        seen: dict[tuple, int] = {}
        for i, fid in enumerate(fidelities):
            key = (fid.window(window).train_start, fid.epochs)
            if key in seen:
                raise UserError(f"trains on the same data for the same epochs as fidelities[{seen[key]}] "
                                f"(on date-range[{window.index}])", where=f"fidelities[{i}]",
                                hint="each fidelity must differ in months or epochs")
            seen[key] = i
