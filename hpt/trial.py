"""The trial protocol from Python (docs/trial-protocol.md): what a user's trainer imports. No torch, no store.

    from hpt import trial

    def main():
        t = trial.current()                 # the manifest: params, windows, data URI, epochs, seed, output folder
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
import os
import sys
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from hpt.schemas import protocol

__all__ = ["Trial", "current", "log", "result"]


@dataclass(frozen=True)
class Trial:
    id: str
    params: dict[str, Any]              # every hyperparameter, resolved
    train: tuple[str, str]              # [start, end) ISO dates
    validation: tuple[str, str]         # [start, end), right after train
    data_uri: str                       # the dataset folder (path or gs://)
    epochs: int                         # the budget: at most this many epochs
    seed: int
    output: Path                        # artifacts here are uploaded to models/<trial-id>/
    manifest: dict[str, Any]            # the whole manifest (trial.schema.json)


@cache
def current() -> Trial:
    """The trial this process runs; RuntimeError outside `hpt-trial` (set HPT_TRIAL_MANIFEST to try one by hand)."""
    path = os.environ.get(protocol.ENV_MANIFEST)
    if not path:
        raise RuntimeError(f"not inside an hpt trial: ${protocol.ENV_MANIFEST} is not set (hpt-trial sets it)")
    doc = json.loads(Path(path).read_text(encoding="utf-8"))
    output = Path(os.environ.get(protocol.ENV_OUTPUT) or Path(path).parent / "output")
    output.mkdir(parents=True, exist_ok=True)
    return Trial(id=doc["id"], params=dict(doc["params"]), train=tuple(doc["window"]["train"]),
                 validation=tuple(doc["window"]["validation"]), data_uri=doc["data"]["uri"],
                 epochs=int(doc["budget"]["epochs"]), seed=int(doc["seed"]), output=output, manifest=doc)


def log(epoch: int, **values: float) -> None:
    """One epoch's numbers (any names): a line on stdout that hpt-trial turns into TensorBoard scalars."""
    print(protocol.epoch_line(int(epoch), {k: float(v) for k, v in values.items()}), flush=True)


def result(**metrics: float) -> None:
    """The trial's final metrics (catalog names such as mse, mae): written to the output folder's metrics.json."""
    path = Path(os.environ.get(protocol.ENV_METRICS) or current().output / protocol.METRICS_FILE)
    text = json.dumps({k: float(v) for k, v in metrics.items()}, allow_nan=True, indent=1) + "\n"
    partial = path.with_name(path.name + ".partial")
    partial.write_text(text, encoding="utf-8")
    partial.replace(path)   # never half a file, even if the program dies here


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
