"""`metrics_from: tensorboard`: the scalars of the TensorBoard event files the program wrote under its output
folder (torch's SummaryWriter, tf.summary, …), read with the tensorboard package's own event reader.

Every scalar tag is a metric under its tag (`val/wape`); its step is the event's step. Old-style summaries
(`simple_value`) and new-style scalar tensors are both read. Read once the program has exited; event files
are found recursively, symlinks not followed.
"""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Mapping

from hpt.schemas.protocol import EpochReport

MAX_EVENT_FILES = 1000


class TensorBoardFiles:
    def __init__(self, settings: Mapping[str, Any]):
        pass

    def line(self, text: str) -> list[EpochReport]:
        return []

    def finish(self, output: Path) -> list[EpochReport]:
        files = []
        for folder, dirs, names in os.walk(output):   # os.walk does not follow symlinked folders
            files += [Path(folder) / n for n in names if "tfevents" in n and not (Path(folder) / n).is_symlink()]
        if not files:
            return []
        from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
        from tensorboard.util import tensor_util

        by_step: dict[int, dict[str, float]] = {}
        for path in sorted(files)[:MAX_EVENT_FILES]:
            for event in EventFileLoader(str(path)).Load():
                if not event.HasField("summary"):
                    continue
                for value in event.summary.value:
                    if value.HasField("simple_value"):
                        number = float(value.simple_value)
                    elif value.HasField("tensor") and not value.tensor.tensor_shape.dim:
                        number = float(tensor_util.make_ndarray(value.tensor).item())
                    else:
                        continue
                    if math.isfinite(number):
                        by_step.setdefault(int(event.step), {})[value.tag] = number
        return [EpochReport(step, values) for step, values in sorted(by_step.items())]
