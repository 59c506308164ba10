"""`metrics_from: json-lines`: one JSON object per line — on stdout (lines that start with `{`), or in a file of
the output folder (`file`, read once the program has exited), as many loggers write them.

Every finite number of an object is a metric (bools, strings and nested values are not); `epoch` or `step`
(or the spec's `step`) is the report's step, else its ordinal. A line that is not a JSON object is log text.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Mapping

from hpt.schemas.protocol import EpochReport
from hpt.trainer.collectors import Steps

MAX_FILE_BYTES = 256 << 20


class JsonLines:
    def __init__(self, settings: Mapping[str, Any]):
        self.file = settings.get("file")
        self.steps = Steps(settings)

    def line(self, text: str) -> list[EpochReport]:
        return [] if self.file else self._parse(text)

    def _parse(self, text: str) -> list[EpochReport]:
        text = text.strip()
        if not text.startswith("{"):
            return []
        try:
            doc = json.loads(text)
        except ValueError:
            return []
        if not isinstance(doc, dict):
            return []
        values = {str(k): v for k, v in doc.items()   # an integer stays one (epochs 3 in the row, not 3.0)
                  if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)}
        report = self.steps.report(values)
        return [report] if report else []

    def finish(self, output: Path) -> list[EpochReport]:
        if not self.file:
            return []
        path = output / self.file
        if not path.is_file() or path.is_symlink():   # data, never a path to follow out of the output folder
            return []
        with path.open("rb") as stream:
            data = stream.read(MAX_FILE_BYTES)
        return [r for line in data.decode("utf-8", errors="replace").splitlines() for r in self._parse(line)]
