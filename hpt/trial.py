"""The trial protocol from Python (docs/trial-protocol.md): what a user's trainer imports. No torch, no store.

    from hpt import trial

    def main():
        t = trial.current()                 # the manifest: params, windows, data URI, epochs, seed, output folder
        train, valid = trial.frames(t)      # the dataset folder's rows in its two windows (pandas)
        for epoch in range(1, t.epochs + 1):
            ...
            trial.log(epoch, loss=train_loss, mse=val_mse)      # a TensorBoard point per value
        trial.result(mse=best_mse, mae=best_mae)                # the row's metrics

`python -m hpt.trial module:function` is how `hpt-trial` runs an entry point: the function is called
with the trial if it takes an argument, and a dict it returns is the result when it reported none.
"""
from __future__ import annotations

import importlib
import inspect
import json
import numbers
import os
import sys
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from hpt.schemas import protocol

__all__ = ["Trial", "current", "frames", "log", "result"]


@dataclass(frozen=True)
class Trial:
    """One trial, as `hpt-trial` hands it over (docs/trial-protocol.md lists every field)."""
    id: str                             # t-…: the content hash of what decides the result
    params: dict[str, Any]              # every hyperparameter, resolved (catalog defaults filled in)
    train: tuple[str, str] | None       # [start, end) ISO dates; None for a trainer without windows
    validation: tuple[str, str] | None  # [start, end), right after train; None without windows
    data_uri: str                       # the dataset folder on this machine (a path, or its gs:// URI)
    epochs: int                         # the budget: at most this many epochs (a fidelity may lower it)
    seed: int                           # the training seed (the same for every config of a repeat)
    output: Path                        # artifacts here are uploaded to models/<trial-id>/
    manifest: dict[str, Any]            # the whole manifest (trial.schema.json)
    objective: dict[str, str] = field(default_factory=dict)   # {"metric", "goal"}: what configs are ranked by
    metrics: tuple[str, ...] = ()       # the metrics the row has columns for (report any others too)
    repeat: int = 0                     # which repeat of its config and window (0, 1, …)
    fidelity: str = ""                  # the spec's fidelity it runs at ("" without fidelities)
    experiment: str = ""                # e-…: the plan it belongs to
    # Halving's rungs that differ only in epochs (docs/trial-protocol.md); a program may ignore all three.
    continue_from: Path | None = None   # what the same trial at the lower rung left in its output folder
    continue_epochs: int = 0            # the epochs that lower trial was given
    keep_checkpoint: bool = False       # a higher rung will continue from this trial: leave in `output` what it needs


@cache
def current() -> Trial:
    """The trial this process runs; RuntimeError outside `hpt-trial` (set HPT_TRIAL_MANIFEST to try one by hand).
    Protocol version 1 manifests (no objective recorded in every row yet) read the same."""
    path = os.environ.get(protocol.ENV_MANIFEST)
    if not path:
        raise RuntimeError(f"not inside an hpt trial: ${protocol.ENV_MANIFEST} is not set (hpt-trial sets it)")
    doc = json.loads(Path(path).read_text(encoding="utf-8"))
    output = Path(os.environ.get(protocol.ENV_OUTPUT) or Path(path).parent / "output")
    output.mkdir(parents=True, exist_ok=True)
    window = doc.get("window") or {}
    return Trial(id=doc["id"], params=dict(doc["params"]),
                 train=tuple(window["train"]) if window else None,
                 validation=tuple(window["validation"]) if window else None,
                 data_uri=os.environ.get(protocol.ENV_DATA) or doc["data"]["uri"],
                 epochs=int(doc["budget"]["epochs"]), seed=int(doc["seed"]), output=output, manifest=doc,
                 objective=dict(doc.get("objective") or {}), metrics=tuple(doc.get("metrics") or ()),
                 repeat=int(doc.get("repeat", 0)), fidelity=str(doc["budget"].get("fidelity", "")),
                 experiment=str(doc.get("experiment", "")),
                 continue_from=Path(os.environ[protocol.ENV_CONTINUE_FROM]) if os.environ.get(protocol.ENV_CONTINUE_FROM) else None,
                 continue_epochs=int(os.environ.get(protocol.ENV_CONTINUE_EPOCHS) or 0),
                 keep_checkpoint=os.environ.get(protocol.ENV_KEEP_CHECKPOINT) == "1")


def frames(t: Trial | None = None, columns: list[str] | None = None):
    """(train, validation): the rows of the trial's dataset folder inside its two windows, as pandas DataFrames
    of `columns` (default: all), reading only the month partitions they cover — a local folder or gs://.
    For a trial without windows: (every row, an empty frame of the same columns). The months read are checked
    against the manifest's `data.partitions`: a month changed since compile raises hpt.store.DataChanged ("the
    data changed since compile: recompile"), which fails the trial."""
    import datetime as dt

    from hpt.schemas.dataset import DatasetInfo, local_data_uri
    from hpt.store.dataset import DatasetStore, read_window

    t = t or current()
    partitions = (t.manifest.get("data") or {}).get("partitions")
    dataset = DatasetStore(local_data_uri(t.data_uri))
    info = DatasetInfo.from_json(dataset.descriptor(), where=f"{dataset.uri}/dataset.json")
    if columns is not None and info.timestamp not in columns:
        columns = [info.timestamp, *columns]
    if t.train is None or t.validation is None:
        everything = read_window(dataset, info, info.start, info.end + dt.timedelta(days=1), columns, partitions)
        return everything, everything.iloc[0:0]
    day = dt.date.fromisoformat
    return (read_window(dataset, info, day(t.train[0]), day(t.train[1]), columns, partitions),
            read_window(dataset, info, day(t.validation[0]), day(t.validation[1]), columns, partitions))


def log(epoch: int, **values: float) -> None:
    """One epoch's numbers (any names): a line on stdout that hpt-trial turns into TensorBoard scalars."""
    print(protocol.epoch_line(int(epoch), {k: _number(v) for k, v in values.items()}), flush=True)


def result(**metrics: float) -> None:
    """The trial's final metrics (catalog names such as mse, mae): written to the output folder's metrics.json."""
    path = Path(os.environ.get(protocol.ENV_METRICS) or current().output / protocol.METRICS_FILE)
    text = json.dumps({k: _number(v) for k, v in metrics.items()}, allow_nan=True, indent=1) + "\n"
    partial = path.with_name(path.name + ".partial")
    partial.write_text(text, encoding="utf-8")
    partial.replace(path)   # never half a file, even if the program dies here


def _number(value: Any) -> int | float:
    """An integer stays one (epochs 3, not 3.0, in the row); anything else numeric becomes a float."""
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        return int(value)
    return float(value)


def _run_entrypoint(spec: str) -> None:
    module_name, function_name = spec.split(":", 1)
    sys.path.insert(0, os.getcwd())
    function = getattr(importlib.import_module(module_name), function_name)
    takes_trial = bool(inspect.signature(function).parameters)
    returned = function(current()) if takes_trial else function()
    metrics_file = Path(os.environ.get(protocol.ENV_METRICS) or current().output / protocol.METRICS_FILE)
    if isinstance(returned, dict) and not metrics_file.exists():
        result(**returned)


if __name__ == "__main__":
    _run_entrypoint(sys.argv[1])
