"""Learning curves from the trials' TensorBoard logs (tensorboard/<trial-id>/ in the store).

The trainer writes them with torch.utils.tensorboard.SummaryWriter; here they are read back with
TensorBoard's own EventAccumulator (no TensorFlow needed). For gs:// stores the folder is fetched
with `Store.get_tree` into a scratch folder first.
"""
from __future__ import annotations

import logging
from pathlib import Path

from hpt.store import TENSORBOARD, Store

log = logging.getLogger(__name__)

Curve = list[tuple[int, float]]  # (step = epoch, value)


def read_scalars(folder: Path) -> dict[str, Curve]:
    """Every scalar tag under a TensorBoard log folder (its subfolders prefix their tags)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    folder = Path(folder)
    curves: dict[str, Curve] = {}
    run_dirs = sorted({p.parent for p in folder.rglob("events.out.tfevents*")})
    for run in run_dirs:
        acc = EventAccumulator(str(run), size_guidance={"scalars": 0})  # 0 = keep every point
        try:
            acc.Reload()
        except Exception as err:  # a truncated file from a killed trial: skip it, keep the rest
            log.warning("unreadable TensorBoard log %s: %s", run, err)
            continue
        prefix = run.relative_to(folder).as_posix()
        for tag in acc.Tags().get("scalars", []):
            name = tag if prefix == "." else f"{prefix}/{tag}"
            points = {e.step: float(e.value) for e in acc.Scalars(tag)}  # a resumed run may repeat steps: last wins
            curves[name] = sorted(points.items())
    return curves


def load_curves(store: Store, trial_ids: list[str], scratch: Path) -> dict[str, dict[str, Curve]]:
    """trial id → {tag: curve}, for the trials that have logs in the store."""
    out: dict[str, dict[str, Curve]] = {}
    for trial in trial_ids:
        target = Path(scratch) / trial
        try:
            store.get_tree(f"{TENSORBOARD}{trial}", target)
        except KeyError:
            continue
        if target.is_dir():
            curves = read_scalars(target)
            if curves:
                out[trial] = curves
    return out


def pick_tag(tags: list[str], metric: str) -> str | None:
    """The tag that best shows the objective per epoch on validation data.

    The trainer writes `<metric>/<split>` (mse/valid, loss/train, lr); `valid/<metric>` is accepted too.
    """
    for want in (f"{metric}/valid", f"{metric}/validation", f"valid/{metric}", f"validation/{metric}", f"val/{metric}"):
        if want in tags:
            return want
    named = [t for t in tags if metric in t.split("/") and "train" not in t]
    if named:
        return sorted(named)[0]
    for fallback in ("loss/valid", "valid/loss", "validation/loss", "val/loss"):
        if fallback in tags:
            return fallback
    return None


def pick_train_tag(tags: list[str]) -> str | None:
    """The training loss per epoch, to set beside the validation curve."""
    for want in ("loss/train", "train/loss", "mse/train", "train/mse", "train_loss", "loss"):
        if want in tags:
            return want
    return None
