"""Result sets with KNOWN answers, written as real row files into a real store (folder or gs://).

    from results_fixtures import put_trial, DOMINATE
    put_trial(store, "lstm", {"learning_rate": 0.001}, RANGES[0], mse=0.5)

Rows are built with hpt.schemas.row.row_csv and written create-only under rows/<trial-id>.csv, so
the analysis reads exactly what the trainer and executor write.
"""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from hpt.store import Store, row_key
from hpt.schemas.manifest import canonical_json, config_id
from hpt.schemas.row import param_column, row_csv

RANGES = [("2010-03-01", "2010-06-01"), ("2010-06-01", "2010-09-01"), ("2010-09-01", "2010-12-01")]
LR = {"A": 0.001, "B": 0.01, "C": 0.1, "D": 0.0003, "E": 0.03}

# config letter → mse per range (lower is better). A is best on every range.
DOMINATE = {"A": [0.50, 0.60, 0.55], "B": [0.70, 0.65, 0.80], "C": [0.90, 0.95, 0.85]}
# A and B identical on both ranges: a tie, no winner.
TIE = {"A": [0.50, 0.60], "B": [0.50, 0.60], "C": [0.90, 0.95]}
# A best on the first range, B on the second: no mark.
REVERSAL = {"A": [0.50, 0.80], "B": [0.70, 0.60], "C": [0.90, 0.95]}


def make_row(architecture: str, params: dict[str, Any], rng: tuple[str, str], *, repeat: int = 0,
             status: str = "done", reason: str = "", mode: str = "full", fidelity: str = "", max_epochs: int = 20,
             **metrics: Any) -> dict[str, Any]:
    cid = config_id(architecture, params)
    ident = {"c": cid, "r": list(rng), "repeat": repeat, "mode": mode} | ({"f": fidelity} if fidelity else {})
    key = canonical_json(ident)
    tid = "t-" + hashlib.sha256(key.encode()).hexdigest()[:16]
    row: dict[str, Any] = {
        "trial_id": tid, "experiment_id": "e-fixture00000", "config_id": cid, "architecture": architecture,
        "repeat": repeat, "seed": 1000 + repeat, "train_start": rng[0], "train_end": rng[1],
        "valid_start": rng[1], "valid_end": "", "mode": mode, "max_epochs": max_epochs,
        "fidelity": fidelity, "status": status, "reason": reason,
        "started_at": "2026-11-26T10:00:00+00:00", "finished_at": "2026-11-26T10:00:42+00:00",
        "model_uri": f"models/{tid}/" if status == "done" else "", "device": "cpu", "hpt_version": "0.1.0",
    }
    row.update({param_column(k): v for k, v in params.items()})
    if status == "done":
        row.update({"loss": metrics.get("mse", 0.0), "train_time_s": 42.0, "epochs": 20, "best_epoch": 17})
        row.update(metrics)
    return row


def put_row(store: Store, row: dict[str, Any]) -> str:
    store.put_once(row_key(row["trial_id"]), row_csv(row).encode("utf-8"))
    return row["trial_id"]


def put_trial(store: Store, architecture: str, params: dict[str, Any], rng: tuple[str, str], **kw: Any) -> str:
    return put_row(store, make_row(architecture, params, rng, **kw))


def put_matrix(store: Store, matrix: dict[str, list[float]], *, repeats: int = 1, repeat_offset: float = 0.0,
               skip: set[tuple[str, int]] = frozenset(), mode: str = "full") -> dict[str, str]:
    """configs × ranges from a {letter: [mse per range]} table; returns {letter: config_id}."""
    ids = {}
    for letter, values in matrix.items():
        params = {"learning_rate": LR[letter], "hidden_size": 64}
        ids[letter] = config_id("lstm", params)
        for j, value in enumerate(values):
            if (letter, j) in skip:
                continue
            for rep in range(repeats):
                put_trial(store, "lstm", params, RANGES[j], repeat=rep, mse=value + rep * repeat_offset, mode=mode)
    return ids


def write_curves(store: Store, trial: str, values: list[float], scratch: Path) -> None:
    """Per-epoch TensorBoard scalars as the trainer writes them (torch's SummaryWriter), uploaded to the store."""
    from torch.utils.tensorboard import SummaryWriter

    folder = scratch / trial
    writer = SummaryWriter(log_dir=str(folder))
    for epoch, value in enumerate(values, 1):
        # the trainer's tags (trainer/trial.py): <metric>/<split>, and the learning rate
        writer.add_scalar("mse/valid", value, epoch)
        writer.add_scalar("loss/train", value * 0.9, epoch)
        writer.add_scalar("lr", 0.001, epoch)
    writer.close()
    store.put_tree(f"tensorboard/{trial}", folder)
