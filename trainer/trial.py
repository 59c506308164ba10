"""One trial, start to finish: prepare data, train, store the model and curves, then the row — last.

A row exists only for a finished trial, so the row is written after everything else, create-only:
if it already exists the trial was done before (by this or another machine) and nothing is
overwritten. A trial that fails — bad data, an empty window, a NaN loss, an exception — still
leaves a row, with status `failed` and the reason: a failure is a result.

Exit codes: 0 done (or already done), 1 the trial failed, 2 a user error (bad manifest, bad data
location, no access to the store) — with one line on stderr, never a traceback; 75
(EXIT_STORE_UNAVAILABLE) the store stayed unreachable past its deadline, nothing was written, and
`hpt apply` runs the trial again; 73 (EXIT_NOT_OWNER) another process owns the trial, this one trained
nothing. A store that comes back within the deadline loses nothing: every
upload waits for it.
"""
from __future__ import annotations

import datetime as dt
import logging
import math
import os
import tempfile
import time
import traceback
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hpt.store import MODELS, TENSORBOARD, AlreadyExists, Store, StoreUnavailable, row_key
from hpt.store.ownership import EXIT_NOT_OWNER, TICKET_ENV, Ownership
from hpt.schemas.errors import UserError
from hpt.schemas.manifest import TrialManifest
from hpt.schemas.protocol import ENV_CONTINUE_FROM, EpochReport, epoch_line
from hpt.schemas.row import STATUS_DONE, STATUS_FAILED, STATUS_STOPPED, build_row, row_csv
from hpt.schemas.stopping import (AWAITS_VERDICT_ENV, VERDICT_WAIT_ENV, VERDICT_WAIT_S, StopRecord, curve_bytes, curve_key,
                                  end_line, stop_key, verdict_key)

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

EXIT_OK, EXIT_FAILED, EXIT_USER_ERROR = 0, 1, 2
CURVES_EVERY_S = 30.0  # upload the TensorBoard curves during training at most this often
VERDICT_POLL_S = 0.2   # how often a trial that awaits its verdict looks for it


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def run_trial(manifest: TrialManifest, store: Store, device: str | None = None) -> int:
    """Run one manifest against one store; returns the exit code (see module docstring).

    Nothing trains before this process owns the trial (hpt.store.ownership, with the ticket its apply gave
    it in $HPT_TRIAL_TICKET): a second copy of the trial exits EXIT_NOT_OWNER having trained nothing."""
    key = row_key(manifest.id)
    if store.exists(key):
        log.info("trial %s already has a row in %s; nothing to do", manifest.id, store.uri)
        return EXIT_OK
    try:
        owner = Ownership.from_env(store, manifest.id)
    except ValueError as err:
        raise UserError(str(err), where=TICKET_ENV) from None
    if not owner.take():
        log.error("trial %s is owned by another process (fence %d is taken or passed); this copy trains nothing",
                  manifest.id, owner.ticket.fence)
        return EXIT_NOT_OWNER
    try:
        if store.exists(key):  # finished by the previous owner between our look and our take
            log.info("trial %s already has a row in %s; nothing to do", manifest.id, store.uri)
            return EXIT_OK
        owner.start_heartbeat()
        return _run_owned(manifest, store, device, owner)
    finally:
        owner.end()


def _run_owned(manifest: TrialManifest, store: Store, device: str | None, owner: Ownership) -> int:
    started_at = _now()
    if manifest.user_trainer is not None:
        return _run_user_trial(manifest, store, started_at, owner)
    log.info("trial %s: %s, train %s … %s, validate %s … %s, up to %d epochs", manifest.id, manifest.architecture,
             *manifest.train_range, *manifest.validation_range, manifest.epochs)
    device_name = ""
    try:
        from hpt.trainer.train import TrainingFailed, describe_device, select_device

        chosen = select_device(device, manifest.resources.gpus)
        device_name = describe_device(chosen, manifest.resources.cpus)
    except ImportError as err:  # torch missing in the image: still a result
        return _finish(store, build_row(manifest, status=STATUS_FAILED, reason=f"trainer unavailable: {err}",
                                        started_at=started_at, finished_at=_now()), EXIT_FAILED, owner)
    with tempfile.TemporaryDirectory(prefix=f"hpt-{manifest.id}-") as scratch:
        tb_dir = Path(scratch) / "tensorboard"
        try:
            code, row = EXIT_OK, _train_and_store(manifest, store, Path(scratch), tb_dir, chosen, started_at)
        except StoreUnavailable:
            raise  # nothing can be stored, not even a failed row: hpt-trial exits EXIT_STORE_UNAVAILABLE
        except UserError as err:
            code, reason = EXIT_USER_ERROR, str(err)
        except TrainingFailed as err:
            code, reason = EXIT_FAILED, str(err)
        except Exception as err:  # a bug or an environment problem: recorded, with the traceback in the log
            log.error("trial %s failed:\n%s", manifest.id, traceback.format_exc())
            code, reason = EXIT_FAILED, f"{type(err).__name__}: {err}"
        if code != EXIT_OK:
            log.error("trial %s failed: %s", manifest.id, reason)
            _upload_best_effort(store, f"{TENSORBOARD}{manifest.id}", tb_dir)
            row = build_row(manifest, status=STATUS_FAILED, reason=reason, started_at=started_at,
                            finished_at=_now(), device=device_name)
        return _finish(store, row, code, owner)


class StopWatch:
    """The trial's view of in-trial stopping: whether `hpt apply` recorded a stop for it (stops/<id>.json),
    asked at each step but read from the store at most once per POLL_S (a script reporting 10,000 steps
    must not pay 10,000 store reads, bench/bench_user_trial.py; apply itself decides only every few tenths of
    a second); the record, once seen, is kept. Reading it late changes nothing in the result: a stopped
    trial's values are those of the record's step (the built-ins truncate to it, a user program's last
    report at or before it)."""

    POLL_S = 0.5

    def __init__(self, store: Store, trial_id: str):
        self.store, self.trial_id = store, trial_id
        self.record: StopRecord | None = None
        self.reached = 0          # the last step asked about
        self.read_at = -math.inf  # time.monotonic() of the last store read

    @property
    def obeyed(self) -> bool:
        """A stop record was seen and the trial reached its step (so it ended there)."""
        return self.record is not None and self.reached >= self.record.step

    def step(self, epoch: int) -> int | None:
        """The stop record's step, or None (none yet)."""
        self.reached = max(self.reached, epoch)
        if self.record is None:
            now = time.monotonic()
            if now - self.read_at < self.POLL_S:
                return None
            self.read_at = now
            try:
                data = self.store.get(stop_key(self.trial_id))
            except KeyError:
                return None
            self.record = StopRecord.parse(data, self.trial_id)
        return self.record.step if self.record else None

    def reason(self) -> str:
        assert self.record is not None
        return f"stopped at step {self.record.step} ({self.record.reason})"

    def verdict(self, last: int) -> int | None:
        """The trial ended after step `last` with no stop seen. When its apply judges it ($HPT_TRIAL_AWAITS_VERDICT),
        say so (`hpt:end`, in the output the apply reads) and wait for the verdict on every report: a stop
        record's step, or None (verdicts/<id>.json). Bounded by $HPT_VERDICT_WAIT_S: then None, logged."""
        if os.environ.get(AWAITS_VERDICT_ENV) != "1":
            return None
        print(end_line(last), flush=True)
        try:
            wait = float(os.environ.get(VERDICT_WAIT_ENV) or VERDICT_WAIT_S)
        except ValueError:
            wait = VERDICT_WAIT_S
        deadline = time.monotonic() + wait
        while True:
            step = self.step(last)
            if step is not None:
                return step
            if self.store.exists(verdict_key(self.trial_id)):
                return None
            if time.monotonic() >= deadline:
                log.warning("no verdict on trial %s's last step after %.0f s (no apply judged it): its row is written "
                            "as it ended", self.trial_id, wait)
                return None
            time.sleep(VERDICT_POLL_S)


def _report(record) -> EpochReport:  # noqa: ANN001 — hpt.trainer.train.EpochRecord
    return EpochReport(record.epoch, {"mse": record.val_mse, "loss": record.val_loss, "train_mse": record.train_mse,
                                      "train_loss": record.train_loss, "lr": record.lr})


def _train_and_store(manifest: TrialManifest, store: Store, scratch: Path, tb_dir: Path, device: torch.device,
                     started_at: str) -> dict[str, Any]:
    from hpt.trainer.artifacts import model_prefix, write_model_folder
    from hpt.trainer.data import prepare
    from hpt.trainer.train import fit

    params = manifest.params
    _check_params(manifest)
    prepared = prepare(manifest.data["uri"], manifest.window, int(params["vocab_size"]), int(params["max_tokens"]),
                       partitions=manifest.data.get("partitions"))
    log.info("data: %d training rows, %d validation rows, vocabulary %d (%s, %.2fs)", prepared.n_train, prepared.n_valid,
             len(prepared.prep.vocab), "cached" if prepared.cache_hit else "fitted", prepared.seconds)
    writer = _tensorboard_writer(tb_dir)
    last_upload = [time.monotonic()]

    watch = StopWatch(store, manifest.id)

    def on_epoch(record) -> None:
        print(epoch_line(record.epoch, _report(record).values), flush=True)   # what apply's stopping rule reads
        if writer is None:
            return
        for tag, value in (("loss/train", record.train_loss), ("loss/valid", record.val_loss),
                           ("mse/train", record.train_mse), ("mse/valid", record.val_mse), ("lr", record.lr)):
            writer.add_scalar(tag, value, record.epoch)
        writer.flush()
        if time.monotonic() - last_upload[0] >= CURVES_EVERY_S:  # long trials: curves visible while running
            _upload_best_effort(store, f"{TENSORBOARD}{manifest.id}", tb_dir)
            last_upload[0] = time.monotonic()

    resume = _checkpoint_to_continue(manifest, store, prepared.n_train, device)
    try:
        result = fit(manifest.architecture, params, prepared, seed=manifest.seed, max_epochs=manifest.epochs,
                     device=device, cpus=manifest.resources.cpus, gpus=manifest.resources.gpus, on_epoch=on_epoch,
                     objective=manifest.objective, stop_after=watch.step, resume=resume,
                     keep_checkpoint=manifest.keeps_checkpoint, verdict=watch.verdict)
    finally:
        if writer is not None:
            writer.close()
    log.info("best epoch %d of %d: validation MSE %.4f (predicting the mean: %.4f)", result.metrics["best_epoch"],
             result.metrics["epochs"], result.metrics["mse"], result.metrics["baseline_mse"])
    prefix = model_prefix(manifest.id)
    write_model_folder(scratch / "model", manifest, prepared.prep, result)
    store.put_tree(prefix, scratch / "model")
    if tb_dir.is_dir():
        store.put_tree(f"{TENSORBOARD}{manifest.id}", tb_dir)
    store.put(curve_key(manifest.id), curve_bytes([_report(r) for r in result.history]))
    stopped = result.stopped_at is not None
    return build_row(manifest, status=STATUS_STOPPED if stopped else STATUS_DONE, metrics=result.metrics,
                     reason=watch.reason() if stopped else "", started_at=started_at, finished_at=_now(),
                     model_uri=store.url(prefix + "/"), device=result.device)


def _lower_rung(manifest: TrialManifest, store: Store) -> TrialManifest | None:
    """The trial this one may continue from (manifest.continuation), as its stored model folder records it, when
    it is the same config, seed, window and data for fewer epochs; None (train from scratch, with the reason
    logged) otherwise. Only the id is taken from the manifest; the folder's own manifest must match it."""
    source = manifest.continue_from
    if source is None:
        return None
    lower_id, epochs = source
    where = f"{MODELS}{lower_id}/manifest.json"   # not artifacts.model_prefix: a user trial must not load torch
    try:
        lower = TrialManifest.from_json(store.get(where).decode("utf-8"), where=where)
    except KeyError:
        log.warning("no model folder of %s to continue from: training from scratch", lower_id)
        return None
    except (UserError, UnicodeDecodeError) as err:
        log.warning("cannot continue from %s (%s): training from scratch", lower_id, err)
        return None
    same = (lower.id == lower_id and lower.architecture == manifest.architecture and lower.params == manifest.params
            and lower.seed == manifest.seed and lower.data == manifest.data and lower.trainer == manifest.trainer
            and lower.train_range == manifest.train_range and lower.validation_range == manifest.validation_range
            and lower.epochs == epochs < manifest.epochs)
    if not same:
        log.warning("%s is not this trial at fewer epochs: training from scratch", lower_id)
        return None
    return lower


def _checkpoint_to_continue(manifest: TrialManifest, store: Store, n_train: int, device: torch.device) -> dict | None:
    """The lower rung's training state (models/<from>/checkpoint.pt) when this trial may continue from it."""
    import io

    import torch

    from hpt.trainer.artifacts import CHECKPOINT_FILE, model_prefix
    from hpt.trainer.train import check_checkpoint

    lower = _lower_rung(manifest, store)
    if lower is None:
        return None
    try:
        data = store.get(f"{model_prefix(lower.id)}/{CHECKPOINT_FILE}")
    except KeyError:
        log.warning("%s kept no checkpoint: training from scratch", lower.id)
        return None
    try:   # weights_only: tensors, numbers, strings and containers, never code
        state = torch.load(io.BytesIO(data), map_location=device, weights_only=True)
    except Exception as err:  # a damaged file is data, not a bug
        log.warning("cannot read the checkpoint of %s (%s): training from scratch", lower.id, err)
        return None
    problem = check_checkpoint(state, manifest.params, n_train, manifest.epochs)
    if problem:
        log.warning("cannot continue from %s: %s; training from scratch", lower.id, problem)
        return None
    log.info("continuing from %s after epoch %d (its checkpoint)", lower.id, state["epoch"])
    return state


def _lower_output(manifest: TrialManifest, store: Store, folder: Path) -> Path | None:
    """A user trainer's way to continue: the lower rung's stored output (models/<from>/) in a local folder."""
    lower = _lower_rung(manifest, store)
    if lower is None:
        return None
    folder.mkdir(parents=True, exist_ok=True)
    try:
        store.get_tree(f"{MODELS}{lower.id}", folder)   # not artifacts.model_prefix: that module loads torch
    except UserError as err:
        log.warning("cannot continue from %s (%s): the program starts from scratch", lower.id, err)
        return None
    log.info("the output of %s (%d epochs) is in $%s", lower.id, lower.epochs, ENV_CONTINUE_FROM)
    return folder


def _run_user_trial(manifest: TrialManifest, store: Store, started_at: str, owner: Ownership) -> int:
    """A user's program under the trial protocol (hpt.trainer.user): same row, same create-only write, same codes."""
    from hpt.trainer.user import UserTrialFailed, run_user_program, store_outputs

    log.info("trial %s: user trainer %s, train %s … %s, validate %s … %s, up to %d epochs", manifest.id,
             manifest.architecture, *manifest.train_range, *manifest.validation_range, manifest.epochs)
    with tempfile.TemporaryDirectory(prefix=f"hpt-{manifest.id}-") as scratch:
        tb_dir = Path(scratch) / "tensorboard"
        watch = StopWatch(store, manifest.id)
        try:
            earlier = _lower_output(manifest, store, Path(scratch) / "continue")
            metrics, output, reports = run_user_program(manifest, Path(scratch), tb_dir, stop_step=watch.step,
                                                        continue_from=earlier)
            if not watch.obeyed and reports:
                late = watch.verdict(reports[-1].epoch)
                kept = [r for r in reports if r.epoch <= late] if late is not None else []
                if kept:   # stopped by the verdict on its last steps: the result is its report at the stop's step
                    metrics, reports = dict(kept[-1].values), kept
                    watch.reached = max(watch.reached, late)
            model_uri = store_outputs(manifest, store, output, tb_dir)
            store.put(curve_key(manifest.id), curve_bytes(reports))
        except UserTrialFailed as err:
            log.error("trial %s failed: %s", manifest.id, err)
            _upload_best_effort(store, f"{TENSORBOARD}{manifest.id}", tb_dir)
            return _finish(store, build_row(manifest, status=STATUS_FAILED, reason=str(err), started_at=started_at,
                                            finished_at=_now()), EXIT_FAILED, owner)
        log.info("result: %s", ", ".join(f"{k} {v:.6g}" for k, v in sorted(metrics.items())))
        stopped = watch.obeyed
        return _finish(store, build_row(manifest, status=STATUS_STOPPED if stopped else STATUS_DONE, metrics=metrics,
                                        reason=watch.reason() if stopped else "", started_at=started_at,
                                        finished_at=_now(), model_uri=model_uri), EXIT_OK, owner)


def _check_params(manifest: TrialManifest) -> None:
    """The manifest must name a catalog architecture and give every one of its hyperparameters."""
    from hpt.schemas.catalog import architectures

    arch = architectures().get(manifest.architecture)
    if arch is None:
        raise UserError(f"unknown architecture {manifest.architecture!r} (known: {', '.join(sorted(architectures()))})",
                        where="manifest: architecture")
    missing = [name for name in arch.param_names if name not in manifest.params]
    if missing:
        raise UserError(f"missing hyperparameter(s) {', '.join(missing)} for {arch.name}", where="manifest: params",
                        hint="manifests are written by `hpt compile`, which resolves every default")
    for spec in arch.parameters:
        problem = spec.type_problem(manifest.params[spec.name])
        if problem:
            raise UserError(f"hyperparameter {problem}", where=f"manifest: params.{spec.name}")


def _tensorboard_writer(folder: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as err:
        log.warning("no TensorBoard curves: %s", err)
        return None
    return SummaryWriter(log_dir=str(folder))


def _upload_best_effort(store: Store, prefix: str, folder: Path) -> None:
    try:
        if folder.is_dir() and any(folder.iterdir()):
            store.put_tree(prefix, folder)
    except Exception as err:  # the failure row matters more than the curves
        log.warning("could not upload %s: %s", prefix, err)


def _finish(store: Store, row: dict[str, Any], code: int, owner: Ownership) -> int:
    if not owner.holds():  # the fence's second check: taken over, so not ours to record
        log.error("trial %s: another process took the trial over; its row is not written by this one", row["trial_id"])
        return EXIT_NOT_OWNER
    try:
        store.put_once(row_key(row["trial_id"]), row_csv(row).encode("utf-8"))
    except AlreadyExists:
        log.info("trial %s already has a row (finished elsewhere meanwhile); left it as it is", row["trial_id"])
        return EXIT_OK
    log.info("row written: %s (status %s)", store.url(row_key(row["trial_id"])), row["status"])
    return code
