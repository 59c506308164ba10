"""A trained model as files: what `models/<trial-id>/` holds, and how to load it back.

    model.pt              the state dict (best epoch)
    manifest.json         the trial manifest (architecture, params, windows, seed)
    preprocessing.json    vocabulary, max_tokens, target names and standardization
    metrics.json          the trial's metrics and per-epoch history
    checkpoint.pt         the training state after the last epoch (only when a higher rung continues from it)

    >>> model, prep, manifest = load_model("hpt-results", "t-0123456789abcdef")   # doctest: +SKIP
    >>> predict(model, prep, ["WHITE HANGING HEART T-LIGHT HOLDER"])               # doctest: +SKIP
    array([3.1...])   # log1p(revenue) of the line, in target units
"""
from __future__ import annotations

import io
import json
from dataclasses import asdict
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import torch

from hpt.store import MODELS, Store, open_store
from hpt.schemas.manifest import TrialManifest
from hpt.trainer.data import Preprocessing
from hpt.trainer.models import TextRegressor, build_model
from hpt.trainer.train import FitResult


CHECKPOINT_FILE = "checkpoint.pt"


def model_prefix(trial_id: str) -> str:
    return f"{MODELS}{trial_id}"


def write_model_folder(folder: Path, manifest: TrialManifest, prep: Preprocessing, result: FitResult) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    torch.save({name: t.detach().cpu() for name, t in result.model.state_dict().items()}, buf)
    (folder / "model.pt").write_bytes(buf.getvalue())
    (folder / "manifest.json").write_text(manifest.to_json(), encoding="utf-8")
    (folder / "preprocessing.json").write_text(prep.to_json(), encoding="utf-8")
    if result.checkpoint is not None:
        buf = io.BytesIO()
        torch.save(result.checkpoint, buf)
        (folder / CHECKPOINT_FILE).write_bytes(buf.getvalue())
    doc = {"metrics": result.metrics, "device": result.device, "history": [asdict(r) for r in result.history]}
    if result.continued_at is not None and manifest.continue_from:
        doc["continued"] = {"from": manifest.continue_from[0], "after_epoch": result.continued_at}
    (folder / "metrics.json").write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")


def load_model(store: Store | str, trial_id: str, device: str = "cpu") -> tuple[TextRegressor, Preprocessing, TrialManifest]:
    """Rebuild a stored trial's model (eval mode) with its preprocessing and manifest."""
    store = open_store(store) if isinstance(store, str) else store
    prefix = model_prefix(trial_id)
    manifest = TrialManifest.from_json(store.get(f"{prefix}/manifest.json").decode("utf-8"), where=f"{prefix}/manifest.json")
    prep = Preprocessing.from_json(store.get(f"{prefix}/preprocessing.json").decode("utf-8"))
    model = build_model(manifest.architecture, manifest.params, len(prep.vocab), n_aux=len(prep.targets) - 1)
    state = torch.load(io.BytesIO(store.get(f"{prefix}/model.pt")), map_location=device, weights_only=True)
    model.load_state_dict(state)
    return model.to(device).eval(), prep, manifest


@torch.no_grad()
def predict(model: TextRegressor, prep: Preprocessing, texts: Iterable[str], batch_size: int = 8192) -> np.ndarray:
    """Point predictions of the main target, in target units (e.g. log1p revenue)."""
    tokens = torch.from_numpy(prep.encode(texts))
    device = next(model.parameters()).device
    out: list[np.ndarray] = []
    for start in range(0, len(tokens), batch_size):
        out.append(model.mean(model(tokens[start:start + batch_size].to(device))).float().cpu().numpy())
    scaled = np.concatenate(out) if out else np.zeros(0, dtype=np.float32)
    return prep.unscale_main(scaled.astype(np.float64))


def metrics_of(store: Store | str, trial_id: str) -> dict[str, Any]:
    store = open_store(store) if isinstance(store, str) else store
    return json.loads(store.get(f"{model_prefix(trial_id)}/metrics.json"))
