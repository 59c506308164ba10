"""Metric collectors: how `hpt-trial` reads what a user's program measured, the way the program already reports it.

One module per format, each a `Collector` registered here under the name a spec's `trainer.metrics_from`
uses (adding one is one new file plus its line in REGISTRY, docs and tests):

  hpt          (default) hpt:epoch / hpt:result lines and metrics.json: the trial protocol's own (protocol.py)
  stdout       name=value pairs on stdout, Katib's StdOut format and filter, or a regex of the spec's
  json-lines   one JSON object per line, on stdout or in a file of the output folder
  tensorboard  scalars of the event files the program writes under its output folder (tensorboard's reader)

hpt's own lines and metrics file are always honoured (they are the protocol); a collector adds reports. Each
report is a step's values (protocol.EpochReport); `final_metrics` turns them into the trial's result: per
metric its last value (Katib's "latest", W&B's summary), its best by its goal, or its value at the step where
the objective is best. An explicit result (metrics.json, hpt:result) wins per name.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Protocol

from hpt.schemas.protocol import EpochReport


class Collector(Protocol):
    """Reads one trial's reports: `line` for each line of its output as it arrives (cheap: 10,000 lines must
    not slow the trial, bench/bench_user_trial.py); where it `reads_files`, `poll` every second or so while the
    program runs (the files it writes, read from where the last poll ended) and `finish` once it has exited."""

    reads_files: bool

    def line(self, text: str) -> list[EpochReport]: ...

    def poll(self, output: Path) -> list[EpochReport]: ...

    def finish(self, output: Path) -> list[EpochReport]: ...


class NoCollector:
    """Format hpt: the protocol's own lines are read by hpt.trainer.user itself."""

    reads_files = False

    def __init__(self, settings: Mapping[str, Any]):
        pass

    def line(self, text: str) -> list[EpochReport]:
        return []

    def poll(self, output: Path) -> list[EpochReport]:
        return []

    def finish(self, output: Path) -> list[EpochReport]:
        return []


def collector(settings: Mapping[str, Any] | None) -> Collector:
    """The collector a manifest's `trainer.metrics_from` names (None: hpt's own lines only)."""
    from hpt.trainer.collectors.jsonl import JsonLines
    from hpt.trainer.collectors.stdout import StdoutPairs
    from hpt.trainer.collectors.tensorboard import TensorBoardFiles

    registry: dict[str, type] = {"hpt": NoCollector, "stdout": StdoutPairs, "json-lines": JsonLines,
                                 "tensorboard": TensorBoardFiles}
    settings = settings or {"format": "hpt"}
    return registry[settings["format"]](settings)


class Steps:
    """Numbers → reports: the step is the value of `step` (default: epoch, else step) when reported, else
    the report's ordinal; the step's own number is not a metric."""

    def __init__(self, settings: Mapping[str, Any]):
        self.names = (settings["step"],) if settings.get("step") else ("epoch", "step")
        self.count = 0

    def report(self, values: dict[str, float]) -> EpochReport | None:
        if not values:
            return None
        self.count += 1
        for name in self.names:
            if name in values and float(values[name]).is_integer():
                step = int(values.pop(name))
                return EpochReport(step, values) if values else None
        return EpochReport(self.count, values)


def final_metrics(reports: list[EpochReport], settings: Mapping[str, Any] | None, objective: Mapping[str, str]) \
        -> dict[str, float]:
    """Each metric's final value from its reports (settings `final`: last | best | best-epoch; `goals`: name →
    goal for best, the objective's own goal always known)."""
    if not reports:
        return {}
    final = (settings or {}).get("final", "last")
    goals = dict((settings or {}).get("goals") or {}) | {objective["metric"]: objective["goal"]}
    out: dict[str, float] = {}
    if final == "best-epoch":
        metric, sign = objective["metric"], (-1.0 if objective["goal"] == "maximize" else 1.0)
        scored = [(sign * r.values[metric], i) for i, r in enumerate(reports) if metric in r.values]
        if scored:
            best_step = reports[min(scored)[1]].epoch
            for r in reports:                      # every value reported at that step (last one wins)
                if r.epoch == best_step:
                    out.update(r.values)
        last = {name: value for r in reports for name, value in r.values.items()}
        return last | out                          # metrics never reported at that step: their last value
    if final != "best":
        for r in reports:          # each metric's last value (a script's 10,000 reports: dict.update's C loop)
            out.update(r.values)
        return out
    for r in reports:
        for name, value in r.values.items():
            if name in out and name in goals:
                better = value > out[name] if goals[name] == "maximize" else value < out[name]
                if not better:
                    continue
            out[name] = value
    return out

