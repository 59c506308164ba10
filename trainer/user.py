"""A user's trainer, run under the trial protocol (docs/trial-protocol.md; names in hpt.schemas.protocol).

`hpt-trial` starts the user's program in its source folder with the trial in its environment, keeps
its output (to stderr for the executor's log and to trial.log beside the artifacts), turns its
per-epoch reports into TensorBoard scalars, reads its result, uploads its output folder to
models/<trial-id>/, and returns the row; the caller writes it last, create-only. A program that
crashes, exits 0 without a result, reports NaN or prints a malformed report line fails the trial
with a one-line reason. torch is never imported here: a user trial pays only for its own imports.
"""
from __future__ import annotations

import functools
import json
import logging
import math
import os
import re
import select
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

from hpt.schemas import protocol
from hpt.schemas.dataset import local_data_uri
from hpt.schemas.manifest import TrialManifest
from hpt.schemas.trainer import RECOMPILE, UserTrainer, source_digest
from hpt.store import TENSORBOARD, Store
from hpt.trainer.collectors import collector, final_metrics

log = logging.getLogger(__name__)

PYTHON_WORDS = ("python", "python3")   # a command's first word meaning "the trial's own interpreter"


class UserTrialFailed(Exception):
    """The user's program did not produce a valid result; the message is the row's reason."""


_RUNTIME = re.compile(r"\$\{(HPT_TRIAL_[A-Z_]+)\}")


def command_for(trainer: UserTrainer, env: dict[str, str] | None = None) -> list[str]:
    """The argv to start: the manifest's rendered `argv` (a command template's) or its `command`, with what only
    the run knows filled in: W&B's ${args_json_file} → the trial's args file, ${HPT_TRIAL_OUTPUT} and the other
    protocol variables → their values. A first word python (also after /usr/bin/env) is this interpreter."""
    if trainer.entrypoint:
        return [sys.executable, "-m", "hpt.trial", trainer.entrypoint]
    argv = list(trainer.argv or trainer.command)
    env = env or {}
    argv = [env.get(protocol.ENV_ARGS, word) if word == protocol.ARGS_JSON_FILE
            else _RUNTIME.sub(lambda m: env.get(m.group(1), m.group(0)), word) for word in argv]
    first = 1 if argv[0] == "/usr/bin/env" and len(argv) > 1 else 0
    if argv[first] in PYTHON_WORDS:
        argv[first] = sys.executable
        argv = argv[first:]
    return argv


def source_folder(trainer: UserTrainer) -> Path:
    """The image's copy ($HPT_TRAINER_SOURCE) or the folder the plan was compiled from; same content either way."""
    folder = Path(os.environ.get(protocol.ENV_SOURCE) or trainer.source)
    found = source_digest(folder) if folder.is_dir() else "no such folder"
    if found != trainer.digest:
        raise UserTrialFailed(f"the trainer's source {folder} is not what the plan was compiled from ({found} != "
                              f"{trainer.digest}); {RECOMPILE}")
    return folder


class _Curves:
    """Per-step reports → TensorBoard scalars: an event file written here, byte for byte what TensorBoard's
    own writer writes (TFRecord framing, Event/Summary protobufs), without importing tensorboard, numpy or
    torch — a user trial's wrapper costs only its own few milliseconds (bench/bench_user_trial.py).

    Reports come in batches (what one read of the program's output held) and are encoded together: the
    Summary's bytes around the values are built once per set of tags, so a point costs one struct.pack, one
    CRC and one append (a script reporting 10,000 steps, bench_user_trial --stdout-lines)."""

    FLUSH_EVERY_S = 1.0   # a script reporting 10,000 steps must not pay a flush each

    def __init__(self, folder: Path):
        self.folder = folder
        self.file = None
        self.layouts: dict[tuple[str, ...], tuple[struct.Struct, list[bytes], bytes]] = {}
        self.headers: dict[int, bytes] = {}   # an event's length → its record header (length + its CRC)
        self.flushed = 0.0

    def add(self, reports: list[protocol.EpochReport]) -> None:
        if not reports:
            return
        if self.file is None:
            self.folder.mkdir(parents=True, exist_ok=True)
            name = f"events.out.tfevents.{int(time.time())}.{socket.gethostname()}.{os.getpid()}.0"
            self.file = open(self.folder / name, "wb")
            self.file.write(self._record(_field(1, 1, struct.pack("<d", time.time())) + _field(3, 2, b"brain.Event:2")))
        wall = b"\x09" + struct.pack("<d", time.time()) + b"\x10"   # wall_time (field 1, fixed64), then step's key
        records = []
        for report in reports:
            tags = tuple(report.values)
            layout = self.layouts.get(tags) or self._layout(tags)
            summary, prefixes, head = layout
            try:
                values = summary.pack(*[x for pair in zip(prefixes, report.values.values()) for x in pair])
            except (OverflowError, struct.error):   # beyond float32: TensorBoard's writer stores ±inf
                values = summary.pack(*[x for pair in zip(prefixes, map(_float32, report.values.values())) for x in pair])
            records.append(self._record(wall + _varint(report.epoch) + head + values))
        self.file.write(b"".join(records))
        now = time.monotonic()
        if now - self.flushed >= self.FLUSH_EVERY_S:
            self.file.flush()
            self.flushed = now

    def _layout(self, tags: tuple[str, ...]) -> tuple[struct.Struct, list[bytes], bytes]:
        """For one set of tags: the Summary (field 5) as a Struct of (its bytes before a value, the value as
        float32) pairs, those bytes, and the Summary's key and length."""
        prefixes = []
        for tag in tags:
            name = _field(1, 2, tag.encode())                                # Summary.Value.tag
            prefixes.append(b"\x0a" + _varint(len(name) + 5) + name + b"\x15")   # Summary.value; 0x15: simple_value
        summary = struct.Struct("<" + "".join(f"{len(p)}sf" for p in prefixes))
        layout = summary, prefixes, b"\x2a" + _varint(summary.size)
        if len(self.layouts) < 1024:   # a program's tag sets are few; a bound keeps odd ones from growing it
            self.layouts[tags] = layout
        return layout

    def _record(self, event: bytes) -> bytes:
        header = self.headers.get(len(event))
        if header is None:
            length = struct.pack("<Q", len(event))
            header = length + struct.pack("<I", _masked_crc(length))
            if len(self.headers) < 4096:
                self.headers[len(event)] = header
        return header + event + struct.pack("<I", _masked_crc(event))

    def close(self) -> None:
        if self.file is not None:
            self.file.close()


def _float32(value: float) -> float:
    return value if abs(value) <= 3.4028234663852886e38 else math.copysign(math.inf, value)


def _varint(value: int) -> bytes:
    if 0 <= value < 128:
        return _SMALL[value]
    out = bytearray()
    value &= (1 << 64) - 1
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _field(number: int, wire: int, value: bytes | int) -> bytes:
    """One protobuf field: varint (wire 0), fixed 64 (1) or 32 bits (5) as packed bytes, length-delimited (2)."""
    key = _varint(number << 3 | wire)
    if wire == 0:
        return key + _varint(int(value))
    assert isinstance(value, bytes)
    return key + (_varint(len(value)) + value if wire == 2 else value)


@functools.cache   # built on first use: where google-crc32c is installed, never
def _crc_table() -> list[int]:
    table = []
    for n in range(256):
        crc = n
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
        table.append(crc)
    return table


_SMALL = [bytes((n,)) for n in range(128)]


def _crc32c_python(data: bytes) -> int:
    table = _crc_table()
    crc = 0xFFFFFFFF
    for byte in data:
        crc = table[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


_crc32c = None


def _masked_crc(data: bytes) -> int:
    """TFRecord's masked CRC-32C (Castagnoli) of a record's length or body: google-crc32c's C code where it is
    installed (a google-cloud-storage dependency; imported on the first curve point only), else Python's loop."""
    global _crc32c
    if _crc32c is None:
        try:
            from google_crc32c import value as _crc32c
        except ImportError:
            _crc32c = _crc32c_python
    crc = _crc32c(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def run_user_program(manifest: TrialManifest, scratch: Path, tb_dir: Path,
                     on_report: Callable[[protocol.EpochReport], None] | None = None,
                     stop_step: Callable[[int], int | None] | None = None, continue_from: Path | None = None) \
        -> tuple[dict[str, float], Path, list[protocol.EpochReport]]:
    """Run the program to its end; return its final metrics, its output folder and its per-step reports.
    Raises UserTrialFailed. `on_report` hears every per-step report as it is collected (hpt:epoch lines, a
    collector's steps). `stop_step(epoch)`, asked at each report, is a stop record's step (in-trial
    stopping): once a report reaches it the program is ended (SIGTERM, then SIGKILL after
    STOP_GRACE_S) and the result is its last report at a step ≤ the record's. `continue_from`: the lower
    rung's output folder (downloaded), handed over as $HPT_TRIAL_CONTINUE_FROM for a program that continues."""
    trainer = manifest.user_trainer
    assert trainer is not None
    folder = source_folder(trainer)
    output = scratch / "output"
    output.mkdir()
    manifest_path = scratch / "manifest.json"
    manifest_path.write_text(manifest.to_json(), encoding="utf-8")
    args_path = scratch / protocol.ARGS_FILE
    args_path.write_text(json.dumps(protocol.nested_params(manifest.params)), encoding="utf-8")   # W&B's ${args_json_file}
    env = dict(os.environ, PYTHONUNBUFFERED="1", **{
        protocol.ENV_VERSION: protocol.PROTOCOL_VERSION, protocol.ENV_MANIFEST: str(manifest_path),
        protocol.ENV_OUTPUT: str(output), protocol.ENV_METRICS: str(output / protocol.METRICS_FILE),
        protocol.ENV_ARGS: str(args_path), protocol.ENV_DATA: local_data_uri(manifest.data["uri"]),
        protocol.ENV_EPOCHS: str(manifest.epochs)})
    for name in (protocol.ENV_CONTINUE_FROM, protocol.ENV_CONTINUE_EPOCHS, protocol.ENV_KEEP_CHECKPOINT):
        env.pop(name, None)   # never inherited from whatever started hpt-trial
    if continue_from is not None and manifest.continue_from:
        env[protocol.ENV_CONTINUE_FROM] = str(continue_from)
        env[protocol.ENV_CONTINUE_EPOCHS] = str(manifest.continue_from[1])
    if manifest.keeps_checkpoint:
        env[protocol.ENV_KEEP_CHECKPOINT] = "1"
    argv = command_for(trainer, env)
    log.info("running %s in %s", " ".join(argv), folder)
    curves = _Curves(tb_dir)
    collect = collector(trainer.metrics_from)
    reports: list[protocol.EpochReport] = []
    stopped_at: int | None = None

    def reported(batch: list[protocol.EpochReport], echo: list[protocol.EpochReport]) -> None:
        """One read's reports, in order: TensorBoard points, hpt:epoch lines in the trial's log for those a
        collector found (what a watcher reads: apply's stopping rules), and in-trial stopping: once a report
        reaches a stop record's step the program is ended."""
        nonlocal stopped_at
        if not batch:
            return
        reports.extend(batch)
        curves.add(batch)
        if on_report is not None:
            for report in batch:
                on_report(report)
        if echo:
            log_out.write(protocol.epoch_lines(echo).encode("utf-8"))
        if stop_step is not None and stopped_at is None:
            reached = max(r.epoch for r in batch)
            step = stop_step(reached)
            if step is not None and reached >= step:
                stopped_at = step
                _end(proc)

    problem = ""
    result_line: dict[str, float] | None = None
    last_line = ""
    try:
        from hpt.trainer.warm import fork_command

        # A Python entry point in a warm trial is forked from it (torch already imported); else a new process.
        proc = (trainer.entrypoint and fork_command(argv, folder, env)) or subprocess.Popen(
            argv, cwd=folder, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    except OSError as err:
        raise UserTrialFailed(f"cannot start {argv[0]}: {err.strerror}") from None
    log_out = sys.stderr.buffer
    with proc, open(scratch / protocol.LOG_FILE, "wb") as kept:
        assert proc.stdout is not None
        # Whatever the pipe holds is read at once, passed on in one write and decoded once (a script printing
        # 10,000 lines must not pay two writes and a flush per line); its complete lines are then looked at one
        # by one. Files the program writes (TensorBoard events) are read every FILES_EVERY_S meanwhile, also
        # while it prints nothing.
        fd, pending, number = proc.stdout.fileno(), b"", 0
        polls = collect.reads_files
        next_poll = time.monotonic() + FILES_EVERY_S
        while True:
            batch: list[protocol.EpochReport] = []
            echo: list[protocol.EpochReport] = []
            chunk = None
            if not polls or select.select([fd], [], [], max(0.0, next_poll - time.monotonic()))[0]:
                chunk = os.read(fd, READ_BYTES)
                kept.write(chunk)
                log_out.write(chunk)
            if chunk:
                lines = (pending + chunk).split(b"\n")
                pending = lines.pop()                 # an unfinished line waits for the rest of it
            elif chunk == b"":
                lines = [pending] if pending else []  # the end: a last line without its newline
            else:
                lines = []
            if lines:
                text = b"\n".join(lines).decode("utf-8", errors="replace")
                lines_text = text.split("\n")      # UTF-8 never holds a newline byte inside a character
                protocol_lines = "hpt:" in text
                for line in lines_text:
                    number += 1
                    if problem:
                        continue
                    parsed = None
                    if protocol_lines and line.lstrip().startswith("hpt:"):
                        try:
                            parsed = protocol.parse_line(line, f"output line {number}")
                        except protocol.ReportError as err:
                            problem = str(err)
                            continue
                    if parsed is None:
                        found = collect.line(line)
                        batch += found
                        echo += found
                    elif parsed[0] == "epoch":
                        batch.append(parsed[1])
                    else:
                        result_line = parsed[1]
                last_line = next((line.strip() for line in reversed(lines_text) if line.strip()), last_line)
            if polls and time.monotonic() >= next_poll and not problem:
                found = collect.poll(output)
                batch += found
                echo += found
                next_poll = time.monotonic() + FILES_EVERY_S
            reported(batch, echo)
            log_out.flush()
            if chunk == b"":
                break
            if chunk and len(chunk) < READ_BYTES // 2:
                time.sleep(GATHER_S)   # let a chatty program's lines gather: one pass per read, not per line
        code = proc.wait()
    if code == 0 and not problem:
        found = collect.finish(output)
        reported(found, found)
        log_out.flush()
    curves.close()
    (output / protocol.LOG_FILE).write_bytes((scratch / protocol.LOG_FILE).read_bytes())
    if stopped_at is not None and not problem:
        kept = [r for r in reports if r.epoch <= stopped_at]
        if not kept:
            raise UserTrialFailed(f"stopped at step {stopped_at} before any report at or before it")
        return dict(kept[-1].values), output, kept
    if code != 0:
        how = f"was killed by signal {-code}" if code < 0 else f"exited with code {code}"
        raise UserTrialFailed(f"the trainer {how}" + (f": {last_line[:300]}" if last_line else ""))
    if problem:
        raise UserTrialFailed(problem)
    explicit = _final_metrics(output / protocol.METRICS_FILE, result_line, required=trainer.metrics_from is None)
    metrics = final_metrics(reports, trainer.metrics_from, manifest.objective) | explicit \
        if trainer.metrics_from else explicit
    objective = manifest.objective["metric"]
    if objective not in metrics:
        raise UserTrialFailed(f"the trainer's result has no {objective!r} (the objective); it reported "
                              f"{', '.join(sorted(metrics)) or 'nothing'}")
    return metrics, output, reports


STOP_GRACE_S = 5.0
FILES_EVERY_S = 1.0   # how often files a running program writes (TensorBoard events) are read for its reports
READ_BYTES = 1 << 16  # one read of the program's output (a pipe's whole buffer on Linux)
# After a read that did not fill half the buffer, wait this long before the next: a program printing a line per
# write (PYTHONUNBUFFERED) would otherwise be read, logged and flushed once per line, and even a pass every 20 ms
# cost more than its lines (bench_user_trial --stdout-lines); a log line is at most this late.
GATHER_S = 0.1


def _end(proc: subprocess.Popen) -> None:
    """End a stopped program: SIGTERM, and SIGKILL if it is still there after STOP_GRACE_S."""
    proc.terminate()
    try:
        proc.wait(timeout=STOP_GRACE_S)
    except subprocess.TimeoutExpired:
        proc.kill()


def _final_metrics(path: Path, result_line: dict[str, float] | None, required: bool = True) -> dict[str, float]:
    if path.is_file():
        text = path.read_text(encoding="utf-8", errors="replace")
        try:
            return protocol.numbers(protocol.parse_json(text, protocol.METRICS_FILE), protocol.METRICS_FILE)
        except protocol.ReportError as err:
            raise UserTrialFailed(str(err)) from None
    if result_line is not None:
        return result_line
    if not required:   # a collector's reports are the result
        return {}
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
