"""A trial's metrics read from its log, for a trial image with no hpt inside (the manifest's
`trainer.collect: log`, e.g. a Katib Experiment's own image): `hpt apply` runs the container's program as it
is and, from the log the backend already fetches (docker logs, the pod's log), reads the same reports
hpt-trial would have read from the program's output — hpt's own lines (hpt:epoch, hpt:result) and the
collector `trainer.metrics_from` names (trainer/collectors) — and their final values by the same rule
(collectors.final_metrics). hpt/api.py hands `read_log` to the executor, which builds the row
(schemas/row.build_row); the executor never imports the trainer.
"""
from __future__ import annotations

from typing import Any, Mapping

from hpt.schemas import protocol
from hpt.schemas.protocol import EpochReport
from hpt.trainer.collectors import collector, final_metrics

MAX_LOG_CHARS = 64 << 20   # a log larger than this is read from its end (its last reports decide)


def read_log(manifest: Mapping[str, Any], text: str) -> tuple[list[EpochReport], dict[str, float], str]:
    """(the per-step reports, the final metrics, a problem or ""): a malformed hpt line is a problem, as
    hpt-trial would fail the trial on it; values a collector cannot parse are skipped, as Katib skips them."""
    trainer = manifest.get("trainer") or {}
    settings = trainer.get("metrics_from")
    collect = collector(settings)
    reports: list[EpochReport] = []
    result: dict[str, float] = {}
    if len(text) > MAX_LOG_CHARS:
        text = text[-MAX_LOG_CHARS:]
    for number, line in enumerate(text.splitlines(), 1):
        if line.lstrip().startswith("hpt:"):
            try:
                parsed = protocol.parse_line(line, f"log line {number}")
            except protocol.ReportError as err:
                return reports, {}, str(err)
            if parsed is not None:
                kind, value = parsed
                if kind == "epoch":
                    reports.append(value)
                else:
                    result.update(value)
                continue
        reports.extend(collect.line(line))
    objective = manifest.get("objective") or {"metric": "", "goal": "minimize"}
    # hpt's own format: the hpt:result line is the result (no metrics.json can be read from outside the container)
    return reports, (final_metrics(reports, settings, objective) if settings else {}) | result, ""
