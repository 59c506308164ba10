"""The training loop: the chosen optimizer, per-epoch exponential learning-rate decay, early stopping on the objective.

- Optimizer: `optimizer` (adam, adamw or sgd; hpt.trainer.optim: torch's, without the torch.compile hooks
  that cost each trial process seconds of imports) with the initial `learning_rate`; `clip_gradients`
  clips the gradients' global norm to 0.25 before each step.
- Decay: `lr_decay` multiplies the learning rate after EVERY epoch (torch ExponentialLR; 1.0 = none) —
  per epoch, not on plateau, so a config's schedule does not depend on its own noise.
- Early stopping: training stops after `early_stopping_patience` epochs without a strictly better
  validation value of the manifest's objective (mse, mae, loss or nll, by its goal; validation MSE for
  an objective not measured every epoch), or at the manifest's epoch budget; the best epoch's weights are kept.
- Batching: the encoded windows live on the device as tensors; each epoch shuffles them with a
  generator seeded from the manifest (no DataLoader workers), so a CPU run is bit-for-bit reproducible.
- Device: the CPU for a trial with `resources.gpus` 0; otherwise CUDA when available (bf16 autocast
  where supported, else fp16 with a grad scaler; a trial of a share 1/n may allocate at most 1/n of the
  device's memory, since up to n trials share it), CPU when not, with torch's threads set from the CPU limit the trial really has (cgroup quota,
  affinity, HPT_CPUS) — inside a container `nproc` reports the host's cores.
"""
from __future__ import annotations

import contextlib
import logging
import math
import os
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import numpy as np
import torch

from hpt.schemas.catalog import EPOCH_METRICS
from hpt.schemas.resources import gpu_share
from hpt.trainer.data import Prepared
from hpt.trainer.models import TextRegressor, build_model
from hpt.trainer.optim import make_optimizer

log = logging.getLogger(__name__)

EVAL_BATCH = 8192
# The global gradient norm `clip_gradients` clips to: the losses are means over a batch of standardized
# targets, whose gradient norms run ~0.2–1 (the built-ins on the demo data), so 0.25 bites.
CLIP_NORM = 0.25


class TrainingFailed(Exception):
    """The optimization broke down (NaN/inf loss): a result to record, not a bug."""


# ------------------------------------------------------------------------------ resources
def cpu_limit(requested: float | None = None) -> int:
    """CPUs this process may really use: min of HPT_CPUS, the cgroup quota, the affinity mask, `requested`."""
    candidates: list[float] = []
    if os.environ.get("HPT_CPUS"):
        try:
            candidates.append(float(os.environ["HPT_CPUS"]))
        except ValueError:
            log.warning("ignoring HPT_CPUS=%r (not a number)", os.environ["HPT_CPUS"])
    quota = _cgroup_quota()
    if quota:
        candidates.append(quota)
    try:
        candidates.append(float(len(os.sched_getaffinity(0))))
    except (AttributeError, OSError):
        candidates.append(float(os.cpu_count() or 1))
    if requested:
        candidates.append(float(requested))
    return max(1, int(min(candidates)))


def _cgroup_quota() -> float | None:
    try:  # cgroup v2: "max 100000" or "150000 100000"
        quota, period = open("/sys/fs/cgroup/cpu.max").read().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    try:  # cgroup v1
        quota = int(open("/sys/fs/cgroup/cpu/cpu.cfs_quota_us").read())
        period = int(open("/sys/fs/cgroup/cpu/cpu.cfs_period_us").read())
        return quota / period if quota > 0 else None
    except (OSError, ValueError):
        return None


def select_device(prefer: str | None = None, gpus: float | None = None) -> torch.device:
    """Where a trial trains: `prefer` or $HPT_DEVICE ("cpu", "cuda", "cuda:1") when given; else the CPU for
    a trial that asked for no GPU (`resources.gpus` 0, on every backend, even where a GPU is visible);
    else CUDA when present (the first of the devices the backend made visible), else the CPU."""
    wanted = prefer or os.environ.get("HPT_DEVICE")
    if wanted:
        return torch.device(wanted)
    if gpus is not None and gpus <= 0:
        return torch.device("cpu")
    return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")


def gpu_memory_fraction(gpus: float | None) -> float | None:
    """The share of its device's memory a trial may allocate: 1/n for a trial of `resources.gpus` 1/n (0.33
    → 1/3), whose device up to n trials share; None (no cap) for whole GPUs or none."""
    if gpus is None or not 0 < gpus < 1:
        return None
    return float(gpu_share(gpus))


def cap_gpu_memory(device: torch.device, gpus: float | None) -> float | None:
    """On CUDA, limit this process's allocator to the trial's share of the device, so that a trial sharing it
    fails with out-of-memory instead of taking its neighbours' memory. Returns the fraction set, or None."""
    fraction = gpu_memory_fraction(gpus)
    if fraction is None or device.type != "cuda":
        return None
    torch.cuda.set_per_process_memory_fraction(fraction, device)
    log.info("GPU memory capped at %.4g of %s (resources.gpus %g)", fraction, device, gpus)
    return fraction


def describe_device(device: torch.device, cpus: float | None = None) -> str:
    """For the row: 'cuda:NVIDIA H100 80GB HBM3' or 'cpu:2threads'."""
    if device.type == "cuda":
        return f"cuda:{torch.cuda.get_device_name(device)}"
    return f"cpu:{cpu_limit(cpus)}threads"


def configure(seed: int, device: torch.device, cpus: float | None = None, gpus: float | None = None) -> None:
    """Seeds, determinism, threads and the GPU memory cap, before the model is built (its init draws from
    the seed; its weights are the first CUDA allocation)."""
    cap_gpu_memory(device, gpus)
    threads = cpu_limit(cpus)
    torch.set_num_threads(threads)
    try:
        torch.set_num_interop_threads(max(1, min(threads, 4)))
    except RuntimeError:  # only settable before the first parallel op; harmless when repeated in-process
        pass
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    # set_deterministic_debug_mode is use_deterministic_algorithms without its import of
    # torch._inductor (2+ s per trial, for a compiler we do not use).
    if device.type == "cpu":
        torch.set_deterministic_debug_mode("error")
    else:
        torch.set_deterministic_debug_mode("default")
        torch.backends.cudnn.benchmark = True


# ---------------------------------------------------------------------------------- fitting
@dataclass
class EpochRecord:
    epoch: int
    lr: float
    train_loss: float
    train_mse: float
    val_loss: float
    val_mse: float
    seconds: float


MAX_KEPT_BESTS = 8   # improvements whose weights a late-seen stop record can truncate back to


@dataclass
class FitResult:
    model: TextRegressor
    metrics: dict[str, Any]
    history: list[EpochRecord] = field(default_factory=list)
    device: str = ""
    step_seconds: float = 0.0       # wall time in optimizer steps (what samples_per_s divides by)
    step_cpu_seconds: float = 0.0   # process CPU time in them: steadier than wall time on a busy machine
    stopped_at: int | None = None   # ended by a stop record (in-trial stopping) after this epoch
    checkpoint: dict[str, Any] | None = None   # keep_checkpoint: the training state a longer run continues from
    continued_at: int | None = None            # resumed: the epochs the checkpoint had trained


CHECKPOINT_FORMAT = 1


def _cpu(value: Any) -> Any:
    """A copy of a state (dicts, lists, tensors) on the CPU, detached from what training changes next."""
    if isinstance(value, torch.Tensor):
        return value.detach().to("cpu", copy=True)
    if isinstance(value, dict):
        return {k: _cpu(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_cpu(v) for v in value)
    return value


def check_checkpoint(state: Any, params: Mapping[str, Any], n_train: int, max_epochs: int) -> str:
    """Why `state` cannot be continued by this run ("" when it can): a checkpoint is data from the store."""
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        return "not a checkpoint of this format"
    if state.get("n_train") != n_train:
        return f"it trained on {state.get('n_train')} rows, this trial has {n_train}"
    if dict(state.get("params") or {}) != dict(params):
        return "its hyperparameters differ"
    epoch = state.get("epoch")
    if not isinstance(epoch, int) or not 1 <= epoch <= max_epochs or len(state.get("history") or ()) != epoch:
        return f"it stopped at epoch {epoch!r}, not within this trial's {max_epochs}"
    return ""


def _autocast(device: torch.device):
    if device.type != "cuda" or os.environ.get("HPT_AMP", "1") == "0":
        return contextlib.nullcontext(), None  # fp32 (CPU, or HPT_AMP=0); a disabled autocast still costs per batch
    if torch.cuda.is_bf16_supported():
        return torch.autocast("cuda", dtype=torch.bfloat16), None
    return torch.autocast("cuda", dtype=torch.float16), torch.amp.GradScaler("cuda")


@torch.no_grad()
def evaluate(model: TextRegressor, tokens: torch.Tensor, targets: torch.Tensor, std: float,
             device: torch.device) -> dict[str, float]:
    """Validation numbers in TARGET units (MSE scaled back by std²): mse, mae, loss, nll (or NaN)."""
    model.eval()
    n = len(tokens)
    sq = ab = loss_sum = nll_sum = torch.zeros((), dtype=torch.float64, device=device)
    has_nll = False
    ctx, _ = _autocast(device)
    for start in range(0, n, EVAL_BATCH):
        x, y = tokens[start:start + EVAL_BATCH], targets[start:start + EVAL_BATCH]
        with ctx:
            out = model(x)
        diff = model.mean(out).float() - y[:, 0]
        sq = sq + (diff.double() ** 2).sum()
        ab = ab + diff.double().abs().sum()
        loss_sum = loss_sum + model.loss(out, y).double() * len(x)
        nll = model.nll(out, y)
        if nll is not None:
            has_nll = True
            nll_sum = nll_sum + nll.double().sum()
    result = {"mse": sq.item() / n * std * std, "mae": ab.item() / n * std, "loss": loss_sum.item() / n}
    # NLL of the target in its own units: a density over y = std·z + mean has log-density log p(z) − log std.
    result["nll"] = nll_sum.item() / n + math.log(std) if has_nll else float("nan")
    return result


def fit(architecture: str, params: dict[str, Any], prepared: Prepared, *, seed: int, max_epochs: int,
        device: torch.device | None = None, cpus: float | None = None, gpus: float | None = None,
        on_epoch: Callable[[EpochRecord], None] | None = None,
        objective: Mapping[str, str] | None = None,
        stop_after: Callable[[int], int | None] | None = None,
        resume: Mapping[str, Any] | None = None, keep_checkpoint: bool = False,
        verdict: Callable[[int], int | None] | None = None) -> FitResult:
    """Train one model on the prepared windows; returns it with the best epoch's weights and its metrics.
    The best epoch (kept weights, early stopping) is the best by `objective` (the manifest's) when it is
    measured every epoch (schemas.catalog.EPOCH_METRICS), else by validation mse.

    `stop_after(epoch)` (asked after each epoch) is the step of a stop record, or None: once the epoch
    reaches it, training ends and the result is the run truncated at that step — its best epoch up to
    there, its weights, its history — whichever later epoch the record was first seen at. `verdict(last)`,
    asked once when training ended with no stop seen, may still give a stop's step (the apply judged the last
    reports late: trainer/trial.StopWatch.verdict); the result is truncated the same way.

    `keep_checkpoint`: the result carries the whole training state after the last epoch trained (weights,
    optimizer, learning-rate schedule, the shuffling and dropout generators, the best epoch so far, the history)
    — before a stop record's truncation, so it is the state of an unstopped run. `resume` (such a state, from a
    run of the same params, seed and data for fewer epochs) continues from there: its epochs are reported
    again through `on_epoch`, and the result is, on the CPU, bit for bit that of one uninterrupted run of
    `max_epochs` (check_checkpoint says whether a state fits)."""
    chosen = str((objective or {}).get("metric", "mse"))
    by, sign = (chosen, -1.0 if (objective or {}).get("goal") == "maximize" else 1.0) if chosen in EPOCH_METRICS \
        else ("mse", 1.0)
    device = device or select_device()
    configure(seed, device, cpus, gpus)
    prep = prepared.prep
    model = build_model(architecture, params, len(prep.vocab), n_aux=len(prep.targets) - 1).to(device)
    k = model.n_targets
    x_train = torch.from_numpy(prepared.train_tokens).to(device)
    y_train = torch.from_numpy(prepared.train_targets[:, :k]).to(device)
    x_valid = torch.from_numpy(prepared.valid_tokens).to(device)
    y_valid = torch.from_numpy(prepared.valid_targets[:, :k]).to(device)
    std = prep.std[0]

    batch_size = int(params["batch_size"])
    patience = int(params["early_stopping_patience"])
    optimizer = make_optimizer(str(params["optimizer"]), model.parameters(), lr=float(params["learning_rate"]))
    clip = bool(params["clip_gradients"])
    scheduler = torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=float(params["lr_decay"]))
    shuffle = torch.Generator().manual_seed(seed)
    ctx, scaler = _autocast(device)

    n = len(x_train)
    history: list[EpochRecord] = []
    best_score, best_epoch, best_state, best_val = math.inf, 0, None, {}
    bests: list[tuple[int, float, dict, dict]] = []   # (epoch, score, val, state) at each improvement: a stop's truncation
    stopped_at: int | None = None
    step_seconds = step_cpu_seconds = earlier_time = 0.0
    started = time.perf_counter()
    checkpoint: dict[str, Any] | None = None

    def snapshot(epoch: int) -> dict[str, Any] | None:
        """The training state after `epoch` (keep_checkpoint), taken before a stop's truncation."""
        if not keep_checkpoint:
            return None
        return {"format": CHECKPOINT_FORMAT, "epoch": epoch, "params": dict(params), "n_train": n,
                "model": _cpu(model.state_dict()), "optimizer": _cpu(optimizer.state_dict()),
                "scheduler": _cpu(scheduler.state_dict()), "shuffle": shuffle.get_state(), "rng": torch.get_rng_state(),
                "cuda_rng": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
                "scaler": _cpu(scaler.state_dict()) if scaler is not None else None,
                "best": {"score": best_score, "epoch": best_epoch, "val": dict(best_val), "state": _cpu(best_state)},
                "bests": [[e, s, dict(v), _cpu(st)] for e, s, v, st in bests],
                "history": [vars(r).copy() for r in history], "step_seconds": step_seconds,
                "step_cpu_seconds": step_cpu_seconds, "train_time_s": earlier_time + time.perf_counter() - started}

    first = 1
    if resume is not None:
        model.load_state_dict(resume["model"])
        optimizer.load_state_dict(resume["optimizer"])
        scheduler.load_state_dict(resume["scheduler"])
        shuffle.set_state(resume["shuffle"])
        torch.set_rng_state(resume["rng"])
        if device.type == "cuda" and resume.get("cuda_rng") is not None:
            torch.cuda.set_rng_state(resume["cuda_rng"], device)
        if scaler is not None and resume.get("scaler"):
            scaler.load_state_dict(resume["scaler"])
        history = [EpochRecord(**r) for r in resume["history"]]
        best = resume["best"]
        best_score, best_epoch, best_val = float(best["score"]), int(best["epoch"]), dict(best["val"])
        best_state = {k: t.to(device) for k, t in best["state"].items()}
        bests = [(int(e), float(s), dict(v), {k: t.to(device) for k, t in st.items()}) for e, s, v, st in resume["bests"]]
        step_seconds, step_cpu_seconds = float(resume["step_seconds"]), float(resume["step_cpu_seconds"])
        earlier_time = float(resume["train_time_s"])
        first = int(resume["epoch"]) + 1
        log.info("continuing from a checkpoint after epoch %d of %d", first - 1, max_epochs)
        for record in history:
            if on_epoch:
                on_epoch(record)   # what an uninterrupted run reported for them
    for epoch in range(first - 1 if resume is not None else 1, max_epochs + 1):
        if epoch < first:   # the resumed epoch: only the checks that end a run after it (below)
            ended = _ended(epoch, best_epoch, patience, stop_after)
            if ended:
                checkpoint = snapshot(epoch)
                if ended == "patience":
                    break
                stopped_at = ended
                kept = [b for b in bests if b[0] <= stopped_at] or bests[:1]
                best_epoch, best_score, best_val, best_state = kept[-1]
                history = history[:stopped_at]
                break
            continue
        epoch_start, epoch_cpu = time.perf_counter(), time.process_time()
        lr = optimizer.param_groups[0]["lr"]
        model.train()
        order = torch.randperm(n, generator=shuffle).to(device)
        losses: list[torch.Tensor] = []
        predictions: list[torch.Tensor] = []
        for start in range(0, n, batch_size):
            idx = order[start:start + batch_size]
            x, y = x_train[idx], y_train[idx]
            with ctx:
                out = model(x)
                loss = model.loss(out, y)
            optimizer.zero_grad(set_to_none=True)
            if scaler is not None:
                scaler.scale(loss).backward()
                if clip:
                    scaler.unscale_(optimizer)  # clip the true gradients, not the scaled ones
                    torch.nn.utils.clip_grad_norm_(model.parameters(), CLIP_NORM)
                scaler.step(optimizer)
                scaler.update()
            else:
                loss.backward()
                if clip:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), CLIP_NORM)
                optimizer.step()
            # Keep references only: the epoch's running numbers are computed once, after the loop
            # (no extra kernels per batch, no sync).
            losses.append(loss.detach())
            with torch.no_grad():
                predictions.append(model.mean(out))
        with torch.no_grad():
            sizes = torch.full((len(losses),), float(batch_size), dtype=torch.float64, device=device)
            sizes[-1] = n - batch_size * (len(losses) - 1)
            train_loss = (torch.stack(losses).double() * sizes).sum().item() / n  # syncs CUDA: honest timing
            diff = torch.cat(predictions).float() - y_train[order, 0]
            train_sq = (diff.double() ** 2).sum().item()
        step_seconds += time.perf_counter() - epoch_start
        step_cpu_seconds += time.process_time() - epoch_cpu
        if not math.isfinite(train_loss):
            raise TrainingFailed(f"training loss became {train_loss} in epoch {epoch} (learning rate {lr:g})")
        val = evaluate(model, x_valid, y_valid, std, device)
        if not math.isfinite(val["mse"]):
            raise TrainingFailed(f"validation MSE became {val['mse']} in epoch {epoch} (learning rate {lr:g})")
        scheduler.step()
        record = EpochRecord(epoch=epoch, lr=lr, train_loss=train_loss, train_mse=train_sq / n * std * std,
                             val_loss=val["loss"], val_mse=val["mse"], seconds=time.perf_counter() - epoch_start)
        history.append(record)
        log.info("epoch %d/%d  lr %.3g  train loss %.4f mse %.4f  valid loss %.4f mse %.4f  (%.2fs)", epoch, max_epochs,
                 lr, record.train_loss, record.train_mse, record.val_loss, record.val_mse, record.seconds)
        if on_epoch:
            on_epoch(record)
        score = sign * val[by] if math.isfinite(val[by]) else math.inf   # nll is NaN outside mdn
        if score < best_score or best_state is None:
            best_score, best_epoch, best_val = score, epoch, val
            best_state = {name: t.detach().clone() for name, t in model.state_dict().items()}
            if stop_after is not None:
                bests = bests[-(MAX_KEPT_BESTS - 1):] + [(epoch, best_score, best_val, best_state)]
        stop = stop_after(epoch) if stop_after is not None else None
        if stop is not None and epoch >= stop:
            checkpoint = snapshot(epoch)
            stopped_at = stop
            kept = [b for b in bests if b[0] <= stop] or bests[:1]
            best_epoch, best_score, best_val, best_state = kept[-1]
            history = history[:stop]
            log.info("stopped after epoch %d by a stop record (step %d): best %s %.4f at epoch %d", epoch, stop,
                     by, best_val[by], best_epoch)
            break
        if epoch - best_epoch >= patience:
            log.info("early stopping: no better validation %s for %d epochs (best %.4f at epoch %d)",
                     by, patience, best_val[by], best_epoch)
            checkpoint = snapshot(epoch)
            break
    else:
        checkpoint = snapshot(len(history)) if history else None
    late = verdict(len(history)) if verdict is not None and stopped_at is None and history else None
    if late is not None:
        stopped_at = late
        kept = [b for b in bests if b[0] <= late] or bests[:1]
        if kept:
            best_epoch, best_score, best_val, best_state = kept[-1]
        history = history[:late]
        log.info("stopped by the verdict on its last steps (step %d): best %s %.4f at epoch %d", late, by,
                 best_val[by], best_epoch)
    train_time = earlier_time + time.perf_counter() - started
    assert best_state is not None
    model.load_state_dict(best_state)
    train_eval = evaluate(model, x_train, y_train, std, device)
    metrics: dict[str, Any] = {
        "mse": best_val["mse"],
        "loss": best_val["loss"],
        "train_mse": train_eval["mse"],
        "mae": best_val["mae"],
        "baseline_mse": prepared.baseline_mse(),
        "nll": best_val["nll"] if math.isfinite(best_val["nll"]) else None,
        "train_time_s": train_time,
        "epochs": len(history),
        "best_epoch": best_epoch,
        "n_params": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "samples_per_s": n * len(history) / step_seconds if step_seconds > 0 else None,
        "n_train": n,
        "n_valid": len(x_valid),
    }
    return FitResult(model=model, metrics=metrics, history=history, device=describe_device(device, cpus),
                     step_seconds=step_seconds, step_cpu_seconds=step_cpu_seconds, stopped_at=stopped_at,
                     checkpoint=checkpoint, continued_at=first - 1 if resume is not None else None)


def _ended(epoch: int, best_epoch: int, patience: int, stop_after: Callable[[int], int | None] | None) -> int | str | None:
    """What ends a run right after `epoch`, as the loop decides it: a stop record's step reached, or patience."""
    stop = stop_after(epoch) if stop_after is not None else None
    if stop is not None and epoch >= stop:
        return stop
    return "patience" if epoch - best_epoch >= patience else None
