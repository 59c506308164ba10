"""Build valid trial manifests for tests (trainer, executor, docker and k8s tests share this).

    from trial_factory import make_manifest   # tests/ is on sys.path under pytest (rootdir conftest)
    manifest = make_manifest(small_dataset, "lstm", epochs=2, hidden_size=16)
    path.write_text(manifest.to_json())

The manifest is a real `TrialManifest` (schema-validated, id computed from its content), with the
catalog's defaults for every hyperparameter not given. The default windows train on three months of
the demo dataset (2010-09 … 2010-11) and validate on the month after (2010-12).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from hpt.schemas.catalog import architecture as catalog_architecture
from hpt.schemas.catalog import default_metrics
from hpt.schemas.manifest import API_VERSION, TrialManifest, config_id, trial_id
from hpt.schemas.version import __version__

TRAIN = ("2010-09-01", "2010-12-01")
VALIDATION = ("2010-12-01", "2011-01-01")


def make_manifest(dataset_dir: Path | str, architecture: str = "bag-of-words", epochs: int = 2, *,
                  train: tuple[str, str] = TRAIN, validation: tuple[str, str] = VALIDATION,
                  seed: int = 0, repeat: int = 0, mode: str = "quick", metrics: list[str] | None = None,
                  experiment: str = "e-000000000000", image: str = "hpt-trainer:test",
                  resources: dict[str, Any] | None = None, **params: Any) -> TrialManifest:
    """A valid manifest for `architecture` on `dataset_dir`; **params override catalog defaults."""
    arch = catalog_architecture(architecture)
    unknown = set(params) - set(arch.param_names)
    if unknown:
        raise ValueError(f"{architecture} has no hyperparameter(s) {sorted(unknown)}; it has {list(arch.param_names)}")
    resolved = {name: arch.param(name).coerce(params.get(name, default)) for name, default in arch.defaults().items()}
    doc: dict[str, Any] = {
        "apiVersion": API_VERSION, "kind": "Trial", "id": "",
        "experiment": experiment, "architecture": architecture, "params": resolved,
        "data": {"uri": str(dataset_dir)},
        "window": {"train": list(train), "validation": list(validation), "index": 0},
        "budget": {"mode": mode, "epochs": int(epochs)},
        "seed": seed, "repeat": repeat, "config": config_id(architecture, resolved),
        "metrics": list(metrics) if metrics is not None else default_metrics(),
        "objective": {"metric": "mse", "goal": "minimize"},
        "image": image,
        "resources": resources if resources is not None else {"gpus": 0, "cpus": 1, "memory": "2Gi"},
        "hpt_version": __version__,
    }
    doc["id"] = trial_id(doc)
    return TrialManifest.from_dict(doc)
