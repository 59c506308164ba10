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
    def __init__(self, settings: Mapping[str, Any]):
        self.pattern = re.compile(settings.get("regex") or KATIB_FILTER)
        self.steps = Steps(settings)

    def line(self, text: str) -> list[EpochReport]:
        if "=" not in text and self.pattern.pattern == KATIB_FILTER:   # the common case, without the regex
            return []
        values: dict[str, float] = {}
        for match in self.pattern.finditer(text):
            try:
                text = match.group(2)
                value = int(text) if text.lstrip("+-").isdigit() else float(text)   # epochs=3 stays 3 in the row
            except (TypeError, ValueError):
                continue
            if isinstance(value, int) or math.isfinite(value):
                values[match.group(1)] = value
        report = self.steps.report(values)
        return [report] if report else []

    def finish(self, output: Path) -> list[EpochReport]:
        return []
