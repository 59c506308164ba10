"""`metrics_from: json-lines`: one JSON object per line — on stdout (lines that start with `{`), or in a file of
the output folder (`file`), as many loggers write them: read while the program runs (`poll`: its complete
lines since the last read) and once more after it exits, at most MAX_FILE_BYTES in all.

Every finite number of an object is a metric (bools, strings and nested values are not); `epoch` or `step`
(or the spec's `step`) is the report's step, else its ordinal. A line that is not a JSON object is log text.
"""
from __future__ import annotations

import json
import math
import os
import stat
from pathlib import Path
from typing import Any, Mapping

from hpt.schemas.protocol import EpochReport
from hpt.trainer.collectors import Steps

MAX_FILE_BYTES = 256 << 20


class JsonLines:
    def __init__(self, settings: Mapping[str, Any]):
        self.file = settings.get("file")
        self.reads_files = bool(self.file)
        self.steps = Steps(settings)
        self.offset = 0          # bytes of the file read so far (complete lines only)

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

    def poll(self, output: Path) -> list[EpochReport]:
        return self._read_file(output, final=False)

    def finish(self, output: Path) -> list[EpochReport]:
        return self._read_file(output, final=True)

    def _read_file(self, output: Path, final: bool) -> list[EpochReport]:
        """The file's complete lines past `offset` (at the end, an unfinished last line too)."""
        if not self.file or self.offset >= MAX_FILE_BYTES:
            return []
        path = output / self.file
        try:
            if not path.resolve().is_relative_to(output.resolve()) or not stat.S_ISREG(os.lstat(path).st_mode):   # data, never a link to follow out of the output folder
                return []
            with path.open("rb") as stream:
                stream.seek(self.offset)
                data = stream.read(MAX_FILE_BYTES - self.offset)
        except OSError:
            return []
        if not final:
            data = data[:data.rfind(b"\n") + 1]
        self.offset += len(data)
        return [r for line in data.decode("utf-8", errors="replace").splitlines() for r in self._parse(line)]
