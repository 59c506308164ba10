"""Trials: every config × every date range × every repeat, as trial manifests, one at a time.

A trial's training seed comes from the search seed and the repeat index only, so the configs of one
repeat start from the same initialisation on every window (fair comparisons), and the whole plan is
a function of the spec, the options and the month.
"""
from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from typing import Any, Iterator

from hpt.compiler.dates import Window
from hpt.schemas.manifest import TrialManifest, config_id, trial_id, validate_manifest
from hpt.schemas.version import __version__


def trial_seed(search_seed: int, repeat: int) -> int:
    digest = hashlib.sha256(f"hpt-trial-seed:{search_seed}:{repeat}".encode()).hexdigest()
    return int(digest[:8], 16) & 0x7FFFFFFF


@dataclass(frozen=True)
class TrialShape:
    """What every trial of a plan shares."""
    experiment: str
    architecture: str
    data_uri: str
    mode: str
    epochs: int
    metrics: list[str]
    objective: dict[str, str]
    image: str
    resources: dict[str, Any]
    kubernetes: dict[str, Any]
    search_seed: int
    repeats: int


def iter_trials(shape: TrialShape, configs: Iterator[dict[str, Any]], windows: list[Window]) -> Iterator[TrialManifest]:
    """Config-major order: each config on every window and repeat before the next config, so results
    read mid-run already say whether a config wins on every range."""
    seeds = [trial_seed(shape.search_seed, r) for r in range(shape.repeats)]
    budget = {"mode": shape.mode, "epochs": shape.epochs}
    data = {"uri": shape.data_uri}
    validated = 0
    for params in configs:
        config = config_id(shape.architecture, params)
        for window in windows:
            window_doc = window.to_dict()
            for repeat, seed in enumerate(seeds):
                doc = {"architecture": shape.architecture, "params": params, "data": data, "window": window_doc,
                       "budget": budget, "seed": seed}
                manifest = TrialManifest(
                    id=trial_id(doc), experiment=shape.experiment, architecture=shape.architecture, params=params,
                    data=data, window=window_doc, budget=budget, seed=seed, repeat=repeat, metrics=shape.metrics,
                    objective=shape.objective, image=shape.image, resources=shape.resources, hpt_version=__version__,
                    config=config, kubernetes=shape.kubernetes)
                # The full schema check costs more than everything else here; every trial has the
                # shape of the first config's trials (one per window and repeat), whose values
                # validation already bounded, so those are checked fully and the rest cheaply.
                if validated < len(windows) * len(seeds):
                    validate_manifest(manifest.to_dict(), where=f"trial {manifest.id}")
                    validated += 1
                else:
                    _check_params(params)
                yield manifest


def _check_params(params: dict[str, Any]) -> None:
    for name, value in params.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise AssertionError(f"bug: hyperparameter {name} resolved to {value!r}")
