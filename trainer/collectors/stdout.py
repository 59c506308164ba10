r"""`metrics_from: stdout`: name=value pairs in the program's output, as Katib's StdOut metrics collector reads them.

Katib's default filter, `([\w|-]+)\s*=\s*([+-]?\d*(\.\d+)?([Ee][+-]?\d+)?)` (pkg/metricscollector; older
releases lacked the exponent), finds every pair on a line: `epoch 3 val_loss=0.41 smape=12.5` reports
val_loss and smape. A spec's `regex` replaces it (its first group is the name, its second the value). Each
line with pairs is one report; its step is its `epoch` (or `step`, or the spec's `step`) pair, else the
report's ordinal. A value that is not a finite number is skipped, as Katib skips what does not parse.
"""
from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any, Mapping

from hpt.schemas.protocol import EpochReport
from hpt.trainer.collectors import Steps

KATIB_FILTER = r"([\w|-]+)\s*=\s*([+-]?\d*(\.\d+)?([Ee][+-]?\d+)?)"


class StdoutPairs:
    reads_files = False

    def __init__(self, settings: Mapping[str, Any]):
        self.pattern = re.compile(settings.get("regex") or KATIB_FILTER)   # compile checked: ≥ 2 groups
        self.needs_equals = self.pattern.pattern == KATIB_FILTER
        self.steps = Steps(settings)

    def line(self, text: str) -> list[EpochReport]:
        if self.needs_equals and "=" not in text:   # the common case, without the regex
            return []
        values: dict[str, float] = {}
        for groups in self.pattern.findall(text):     # tuples of every group: one C call for the line
            number = groups[1]
            try:
                value = int(number) if number.lstrip("+-").isdigit() else float(number)   # epochs=3 stays 3
            except ValueError:
                continue
            if type(value) is int or math.isfinite(value):
                values[groups[0]] = value
        report = self.steps.report(values)
        return [report] if report else []

    def poll(self, output: Path) -> list[EpochReport]:
        return []

    def finish(self, output: Path) -> list[EpochReport]:
        return []
