"""`metrics_from: tensorboard`: the scalars of the TensorBoard event files the program writes under its output
folder (torch's SummaryWriter, tf.summary, …), read with the tensorboard package's own event reader.

Every scalar tag is a metric under its tag (`val/wape`); its step is the event's step. Old-style summaries
(`simple_value`) and new-style scalar tensors are both read. The files are read while the program runs
(`poll`, every few tenths of a second: each file from where the last read ended, a record still being
written waits for its end), so its steps are reports as they happen — curves, hpt:epoch lines for apply's
in-trial stopping — and once more after it exits. A step is reported once a later step has been seen (its
other tags may still come) or at the end; a tag that comes for a step already reported is a second report
at that step. Event files are found recursively, regular files only, symlinks not followed.
"""
from __future__ import annotations

import math
import os
import stat
from pathlib import Path
from typing import Any, Mapping

from hpt.schemas.protocol import EpochReport

MAX_EVENT_FILES = 1000


class TensorBoardFiles:
    reads_files = True

    def __init__(self, settings: Mapping[str, Any]):
        self.loaders: dict[Path, Any] = {}               # event file → its EventFileLoader (keeps its offset)
        self.pending: dict[int, dict[str, float]] = {}   # step → values read, not reported yet

    def line(self, text: str) -> list[EpochReport]:
        return []

    def poll(self, output: Path) -> list[EpochReport]:
        self._read(output)
        if not self.pending:
            return []
        newest = max(self.pending)
        return self._take([step for step in self.pending if step < newest])

    def finish(self, output: Path) -> list[EpochReport]:
        self._read(output)
        return self._take(list(self.pending))

    def _take(self, steps: list[int]) -> list[EpochReport]:
        return [EpochReport(step, self.pending.pop(step)) for step in sorted(steps)]

    def _read(self, output: Path) -> None:
        for path in self._files(output):
            loader = self.loaders.get(path)
            if loader is None:
                from tensorboard.backend.event_processing.event_file_loader import EventFileLoader

                loader = self.loaders[path] = EventFileLoader(str(path))
            for event in loader.Load():
                if event.HasField("summary"):
                    for value in event.summary.value:
                        number = _scalar(value)
                        if number is not None:
                            self.pending.setdefault(int(event.step), {})[value.tag] = number

    def _files(self, output: Path) -> list[Path]:
        found = []
        for folder, dirs, names in os.walk(output):   # os.walk does not follow symlinked folders
            for name in names:
                if "tfevents" in name:
                    path = Path(folder) / name
                    try:
                        regular = stat.S_ISREG(os.lstat(path).st_mode)   # no symlink, FIFO or device
                    except OSError:
                        regular = False
                    if regular:
                        found.append(path)
        known = [p for p in sorted(found) if p in self.loaders]
        return (known + [p for p in sorted(found) if p not in self.loaders])[:MAX_EVENT_FILES]


def _scalar(value: Any) -> float | None:
    if value.HasField("simple_value"):
        number = float(value.simple_value)
    elif value.HasField("tensor") and not value.tensor.tensor_shape.dim:
        from tensorboard.util import tensor_util

        try:
            number = float(tensor_util.make_ndarray(value.tensor).item())
        except (TypeError, ValueError):   # a string tensor (text summaries) is not a scalar metric
            return None
    else:
        return None
    return number if math.isfinite(number) else None
