"""A user's trainer, run under the trial protocol (docs/trial-protocol.md; names in hpt.schemas.protocol).

`hpt-trial` starts the user's program in its source folder with the trial in its environment, keeps
its output (to stderr for the executor's log and to trial.log beside the artifacts), turns its
per-epoch reports into TensorBoard scalars, reads its result, uploads its output folder to
models/<trial-id>/, and returns the row; the caller writes it last, create-only. A program that
crashes, exits 0 without a result, reports NaN or prints a malformed report line fails the trial
with a one-line reason. torch is never imported here: a user trial pays only for its own imports.
"""
from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from hpt.schemas import protocol
from hpt.schemas.manifest import TrialManifest
from hpt.schemas.trainer import UserTrainer, source_digest
from hpt.store import TENSORBOARD, Store

log = logging.getLogger(__name__)

PYTHON_WORDS = ("python", "python3")   # a command's first word meaning "the trial's own interpreter"


class UserTrialFailed(Exception):
    """The user's program did not produce a valid result; the message is the row's reason."""


def command_for(trainer: UserTrainer) -> list[str]:
    if trainer.entrypoint:
        return [sys.executable, "-m", "hpt.trial", trainer.entrypoint]
    argv = list(trainer.command)
    if argv[0] in PYTHON_WORDS:
        argv[0] = sys.executable
    return argv


def source_folder(trainer: UserTrainer) -> Path:
    """The image's copy ($HPT_TRAINER_SOURCE) or the folder the plan was compiled from; same content either way."""
    folder = Path(os.environ.get(protocol.ENV_SOURCE) or trainer.source)
    found = source_digest(folder) if folder.is_dir() else "no such folder"
    if found != trainer.digest:
        raise UserTrialFailed(f"the trainer's source {folder} is not what the plan was compiled from ({found} != "
                              f"{trainer.digest}); recompile the spec")
    return folder


class _Curves:
    """Per-epoch reports → TensorBoard scalars (tensorboard's own writer: no torch)."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.writer = None

    def add(self, report: protocol.EpochReport) -> None:
        try:
            if self.writer is None:
                from tensorboard.summary.writer.event_file_writer import EventFileWriter

                self.writer = EventFileWriter(str(self.folder))
            from tensorboard.compat.proto.event_pb2 import Event
            from tensorboard.compat.proto.summary_pb2 import Summary

            summary = Summary(value=[Summary.Value(tag=tag, simple_value=float(v)) for tag, v in report.values.items()])
            self.writer.add_event(Event(wall_time=time.time(), step=report.epoch, summary=summary))
        except ImportError as err:
            log.warning("no TensorBoard curves: %s", err)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def run_user_program(manifest: TrialManifest, scratch: Path, tb_dir: Path) -> tuple[dict[str, float], Path]:
    """Run the program to its end; return its final metrics and its output folder. Raises UserTrialFailed."""
    trainer = manifest.user_trainer
    assert trainer is not None
    folder = source_folder(trainer)
    output = scratch / "output"
    output.mkdir()
    manifest_path = scratch / "manifest.json"
    manifest_path.write_text(manifest.to_json(), encoding="utf-8")
    env = dict(os.environ, PYTHONUNBUFFERED="1", **{
        protocol.ENV_VERSION: protocol.PROTOCOL_VERSION, protocol.ENV_MANIFEST: str(manifest_path),
        protocol.ENV_OUTPUT: str(output), protocol.ENV_METRICS: str(output / protocol.METRICS_FILE)})
    argv = command_for(trainer)
    log.info("running %s in %s", " ".join(argv), folder)
    curves = _Curves(tb_dir)
    problem = ""
    result_line: dict[str, float] | None = None
    last_line = ""
    try:
        proc = subprocess.Popen(argv, cwd=folder, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT)
    except OSError as err:
        raise UserTrialFailed(f"cannot start {argv[0]}: {err.strerror}") from None
    with proc, open(scratch / protocol.LOG_FILE, "wb") as kept:
        assert proc.stdout is not None
        for number, raw in enumerate(proc.stdout, start=1):
            kept.write(raw)
            sys.stderr.buffer.write(raw)
            sys.stderr.buffer.flush()
            line = raw.decode("utf-8", errors="replace")
            if line.strip():
                last_line = line.strip()
            if problem:
                continue
            try:
                parsed = protocol.parse_line(line, f"output line {number}")
            except protocol.ReportError as err:
                problem = str(err)
                continue
            if parsed is None:
                continue
            kind, value = parsed
            if kind == "epoch":
                curves.add(value)
            else:
                result_line = value
        code = proc.wait()
    curves.close()
    (output / protocol.LOG_FILE).write_bytes((scratch / protocol.LOG_FILE).read_bytes())
    if code != 0:
        how = f"was killed by signal {-code}" if code < 0 else f"exited with code {code}"
        raise UserTrialFailed(f"the trainer {how}" + (f": {last_line[:300]}" if last_line else ""))
    if problem:
        raise UserTrialFailed(problem)
    metrics = _final_metrics(output / protocol.METRICS_FILE, result_line)
    objective = manifest.objective["metric"]
    if objective not in metrics:
        raise UserTrialFailed(f"the trainer's result has no {objective!r} (the objective); it reported "
                              f"{', '.join(sorted(metrics)) or 'nothing'}")
    return metrics, output


def _final_metrics(path: Path, result_line: dict[str, float] | None) -> dict[str, float]:
    if path.is_file():
        text = path.read_text(encoding="utf-8", errors="replace")
        try:
            return protocol.numbers(protocol.parse_json(text, protocol.METRICS_FILE), protocol.METRICS_FILE)
        except protocol.ReportError as err:
            raise UserTrialFailed(str(err)) from None
    if result_line is not None:
        return result_line
    raise UserTrialFailed(f"the trainer exited 0 without reporting a result (no {protocol.METRICS_FILE} in its "
                          f"output folder and no {protocol.RESULT_PREFIX} line)")


def store_outputs(manifest: TrialManifest, store: Store, output: Path, tb_dir: Path) -> str:
    """The output folder (with the manifest and the program's log) → models/<trial-id>/; curves → tensorboard/."""
    from hpt.store import MODELS

    (output / "manifest.json").write_text(manifest.to_json(), encoding="utf-8")
    prefix = f"{MODELS}{manifest.id}"
    store.put_tree(prefix, output)
    if tb_dir.is_dir() and any(tb_dir.iterdir()):
        store.put_tree(f"{TENSORBOARD}{manifest.id}", tb_dir)
    return store.url(prefix + "/")


def describe(metrics: dict[str, Any]) -> str:
    return json.dumps(metrics, sort_keys=True)
