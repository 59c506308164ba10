"""In-trial stopping's records in the store, shared by `hpt apply` (which writes stops) and the trial
(which writes its curve and obeys a stop): the names, the formats, and nothing that imports torch.

- stops/<trial-id>.json — a stop record: `hpt apply` decided to end the running trial after `step`
  (an in-trial stopping rule, compiler/stopping/). Written once, before the trial can see it; a trial
  that sees it ends at the first step ≥ `step` it reaches, with a row of status `stopped` whose values
  are those of `step` (so the row is the same however late the trial saw the record).
- curves/<trial-id>.json — the trial's per-step reports (hpt:epoch values), written by the trial before
  its row: what a later apply's stopping rule reads of a finished trial.
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from typing import Any

from hpt.schemas.protocol import EpochReport, report_objects

STOPS = "stops/"
CURVES = "curves/"
MAX_RECORD_BYTES = 64 << 10
MAX_CURVE_BYTES = 16 << 20


def stop_key(trial_id: str) -> str:
    return f"{STOPS}{trial_id}.json"


def curve_key(trial_id: str) -> str:
    return f"{CURVES}{trial_id}.json"


@dataclass(frozen=True)
class StopRecord:
    trial_id: str
    step: int
    rule: str
    reason: str
    value: float | None = None

    def to_bytes(self) -> bytes:
        return (json.dumps(asdict(self), sort_keys=True, allow_nan=False) + "\n").encode("utf-8")

    @classmethod
    def parse(cls, data: bytes, trial_id: str) -> "StopRecord | None":
        """The record for `trial_id`, or None when the bytes are not one (data, never trusted: bounded and checked)."""
        if len(data) > MAX_RECORD_BYTES:
            return None
        try:
            doc = json.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError):
            return None
        if not isinstance(doc, dict) or doc.get("trial_id") != trial_id:
            return None
        step = doc.get("step")
        if isinstance(step, bool) or not isinstance(step, int) or step < 1:
            return None
        value = doc.get("value")
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value)):
            value = None
        return cls(trial_id, step, str(doc.get("rule", ""))[:64], str(doc.get("reason", ""))[:500], value)


def curve_bytes(reports: list[EpochReport]) -> bytes:
    """The reports as a JSON list, keys sorted, non-finite values left out (a script's 10,000 steps take
    report_objects' fast way: the same text)."""
    texts = [text if text is not None else json.dumps(
                 {"epoch": r.epoch, **{k: v for k, v in r.values.items() if isinstance(v, (int, float)) and math.isfinite(v)}},
                 sort_keys=True, allow_nan=False)
             for r, text in zip(reports, report_objects(reports, sort_keys=True))]
    return ("[" + ", ".join(texts) + "]\n").encode("utf-8")


def parse_curve(data: bytes) -> list[EpochReport]:
    """A curves/<id>.json file → its reports; [] for anything that is not one."""
    if len(data) > MAX_CURVE_BYTES:
        return []
    try:
        doc: Any = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        return []
    out = []
    for item in doc if isinstance(doc, list) else []:
        if not isinstance(item, dict):
            continue
        epoch = item.get("epoch")
        if isinstance(epoch, bool) or not isinstance(epoch, int):
            continue
        values = {str(k): float(v) for k, v in item.items()
                  if k != "epoch" and not isinstance(v, bool) and isinstance(v, (int, float)) and math.isfinite(v)}
        out.append(EpochReport(epoch, values))
    return out


def reports_in(text: str) -> list[EpochReport]:
    """The hpt:epoch reports in a trial's output (its log), in order; malformed lines are skipped (the
    trial itself fails on them)."""
    from hpt.schemas.protocol import EPOCH_PREFIX, ReportError, parse_line

    out = []
    for line in text.splitlines():
        if EPOCH_PREFIX not in line:
            continue
        start = line.find(EPOCH_PREFIX)
        try:
            parsed = parse_line(line[start:], "log")
        except ReportError:
            continue
        if parsed is not None and parsed[0] == "epoch":
            out.append(parsed[1])
    return out


# --- the verdict on a trial's last step ------------------------------------------------------------------
# A trial that `hpt apply` judges (search.stopping: the apply's launch sets AWAITS_VERDICT_ENV) does not write
# its row as soon as it ends: it prints `hpt:end {"epoch": N}` after its last report and waits until the apply
# has judged every report — a stop record (stops/<id>.json: it ends as stopped at that step) or a verdict of
# none (verdicts/<id>.json). So a trial that ran on while its apply was dead (kill -9 before a stop was
# decided or recorded) is judged by the re-apply, which adopts it, and ends as the uninterrupted run would.
VERDICTS = "verdicts/"
AWAITS_VERDICT_ENV = "HPT_TRIAL_AWAITS_VERDICT"
VERDICT_WAIT_ENV = "HPT_VERDICT_WAIT_S"     # how long a trial waits for its verdict (default VERDICT_WAIT_S)
VERDICT_WAIT_S = 600.0                      # then it writes its row as it ended (no apply judged it)
END_PREFIX = "hpt:end"


def verdict_key(trial_id: str) -> str:
    return f"{VERDICTS}{trial_id}.json"


def verdict_bytes(trial_id: str, step: int) -> bytes:
    """A verdict of none: the stopping rule saw the trial's reports up to `step` and stopped it nowhere."""
    return (json.dumps({"trial_id": trial_id, "step": step, "stop": None}, sort_keys=True) + "\n").encode("utf-8")


def end_line(step: int) -> str:
    return f'{END_PREFIX} {{"epoch": {int(step)}}}'


def ended_in(text: str) -> int | None:
    """The step of a trial's `hpt:end` line in its output (its log), or None while it has not ended."""
    at = text.rfind(END_PREFIX + " ")
    if at < 0:
        return None
    try:
        doc = json.loads(text[at + len(END_PREFIX):].splitlines()[0])
    except (ValueError, IndexError, RecursionError):
        return None
    step = doc.get("epoch") if isinstance(doc, dict) else None
    return step if isinstance(step, int) and not isinstance(step, bool) and step >= 0 else None
