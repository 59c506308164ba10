"""Date ranges: the training windows, each followed by its validation period.

- Explicit pairs `[start, end)` are taken as written.
- A rotating selection `{"count": C, "months": M}` picks C windows of M whole months,
  deterministically from the month of the run: among the windows inside the dataset's coverage whose
  validation period ends before the first day of the run's month, a generator seeded by that month
  picks C, preferring windows that do not overlap. Same month → same set; next month → a new set
  (the seed's protection against overfitting by tuning heavily on the same ranges).
- Quick mode keeps one window and shortens it to its last month, so its validation period is the
  full-mode window's: quick and full results rank the same validation data.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import random
from dataclasses import dataclass

from hpt.schemas.errors import UserError


@dataclass(frozen=True)
class Window:
    index: int
    train_start: dt.date
    train_end: dt.date          # exclusive
    valid_end: dt.date          # exclusive; the validation period starts at train_end

    @property
    def train(self) -> list[str]:
        return [self.train_start.isoformat(), self.train_end.isoformat()]

    @property
    def validation(self) -> list[str]:
        return [self.train_end.isoformat(), self.valid_end.isoformat()]

    def to_dict(self) -> dict[str, object]:
        return {"index": self.index, "train": self.train, "validation": self.validation}


def add_months(day: dt.date, months: int) -> dt.date:
    """Calendar month arithmetic; the day is clamped to the target month's length (Mar 31 - 1 → Feb 28)."""
    index = day.year * 12 + day.month - 1 + months
    year, month = divmod(index, 12)
    month += 1
    for last in (31, 30, 29, 28):
        try:
            return dt.date(year, month, min(day.day, last))
        except ValueError:
            continue
    raise AssertionError("unreachable")


def month_start(day: dt.date) -> dt.date:
    return day.replace(day=1)


def explicit_windows(pairs: list[tuple[dt.date, dt.date]], validation_days: int) -> list[Window]:
    return [Window(i, start, end, end + dt.timedelta(days=validation_days)) for i, (start, end) in enumerate(pairs)]


def rotating_windows(count: int, months: int, validation_days: int, coverage: tuple[dt.date, dt.date],
                     run_month: dt.date) -> list[Window]:
    """`count` windows of `months` months chosen by the run's month (see the module docstring)."""
    first, last = coverage
    limit = min(last + dt.timedelta(days=1), month_start(run_month))  # validation must end by here (exclusive)
    start = first if first.day == 1 else add_months(month_start(first), 1)
    candidates = []
    while True:
        end = add_months(start, months)
        if end + dt.timedelta(days=validation_days) > limit:
            break
        candidates.append((start, end))
        start = add_months(start, 1)
    if len(candidates) < count:
        raise UserError(
            f"only {len(candidates)} window(s) of {months} month(s) plus {validation_days} validation days fit between "
            f"the data's start {first} and {limit - dt.timedelta(days=1)} (the earlier of the data's end and the month "
            f"before the run), {count} requested", where="date-range",
            hint="ask for fewer or shorter windows, fewer validation-days, or a dataset with more history")
    rng = random.Random(int(hashlib.sha256(f"hpt-windows:{run_month:%Y-%m}".encode()).hexdigest()[:16], 16))
    order = candidates[:]
    rng.shuffle(order)
    chosen: list[tuple[dt.date, dt.date]] = []
    for start, end in order:  # prefer windows whose train+validation spans are disjoint
        if len(chosen) == count:
            break
        span_end = end + dt.timedelta(days=validation_days)
        if all(span_end <= s or e + dt.timedelta(days=validation_days) <= start for s, e in chosen):
            chosen.append((start, end))
    for pair in order:  # not enough disjoint ones: allow overlap rather than fail
        if len(chosen) == count:
            break
        if pair not in chosen:
            chosen.append(pair)
    chosen.sort()
    return explicit_windows(chosen, validation_days)


def quick_window(window: Window) -> Window:
    """The last month of `window` (its validation period unchanged), as index 0."""
    start = max(window.train_start, add_months(window.train_end, -1))
    return Window(0, start, window.train_end, window.valid_end)


def check_inside(window: Window, coverage: tuple[dt.date, dt.date]) -> str | None:
    """Why `window` (with its validation period) is not inside the coverage, or None."""
    first, last = coverage
    if window.train_start < first:
        return f"starts {window.train_start}, before the data's first day {first}"
    if window.train_start > last:
        return f"starts {window.train_start}, after the data's last day {last}"
    if window.train_end - dt.timedelta(days=1) > last:
        return f"ends {window.train_end}, after the data's last day {last}"
    if window.valid_end - dt.timedelta(days=1) > last:
        return f"its validation period runs to {window.valid_end - dt.timedelta(days=1)}, after the data's last day {last}"
    return None
