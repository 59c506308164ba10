"""Where each trial of a plan stands: done / failed (from its row), running (from the live run), pending.

Rows are the truth for done and failed. "Running" comes from runs/<experiment>.json, which `hpt apply`
keeps up to date in the store (so any machine can see it), and, for the local backend, from the pid
records of trials that outlived their `hpt apply` (kill -9) and still run.
"""
from __future__ import annotations

import json
import socket
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from hpt.executor.plan import LoadedPlan
from hpt.executor.target import Target
from hpt.store import Store
from hpt.store.index import snapshot_columns
from hpt.schemas.row import STATUS_DONE, STATUS_STOPPED


# The run's status hint in the store, runs/<experiment>.json: `hpt apply` (hpt.executor.loop) writes it, status
# reads it. Kept here so that `hpt status` does not import the loop to find it.
RUNS = "runs/"


@dataclass(frozen=True)
class TrialState:
    trial_id: str
    state: str               # pending | running | done | stopped | failed | skipped (the target was reached)
    detail: str = ""         # failed: the reason; done: the objective; running: since when
    attempt: int = 0
    score: float | None = None  # done: the objective's value, lower is better (negated for a maximised one)

    def to_dict(self) -> dict[str, Any]:
        # By hand, not asdict (which deep-copies every field): `hpt status --format json` makes 20,000 of these.
        return {"trial_id": self.trial_id, "state": self.state, "detail": self.detail, "attempt": self.attempt}


@dataclass(frozen=True)
class ApplyState:
    """The last `hpt apply` of an experiment, from its runs/<experiment>.json."""
    host: str
    pid: int
    backend: str
    updated_at: str
    finished: bool           # it ended (done, failed, stopped or interrupted) and said so
    alive: bool | None       # still running; None: it runs on another host, so this one cannot tell
    running: dict[str, Any]  # what it last said it was running

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if k != "running"}


def apply_state(store: Store, experiment_id: str) -> ApplyState | None:
    try:
        doc = json.loads(store.get(f"{RUNS}{experiment_id}.json"))
        pid = int(doc.get("pid", 0) or 0)
    except (KeyError, ValueError, TypeError, AttributeError):  # none, or damaged: no apply known to run
        return None
    from hpt.executor.backends.local import process_alive

    finished, host = bool(doc.get("finished")), str(doc.get("host", ""))
    alive = False if finished else process_alive(pid) if host == socket.gethostname() else None
    return ApplyState(host, pid, str(doc.get("backend", "")), str(doc.get("updated_at", "")), finished, alive,
                      doc["running"] if isinstance(doc.get("running"), dict) else {})


def _live_run(run: ApplyState | None) -> dict[str, dict[str, Any]]:
    if run is None or run.alive is False:
        return {}  # ended, or died here: the local pid records below say what still runs
    return {tid: {**info, "since": str(info.get("started_at", "")),
                  "attempt": info["attempt"] if isinstance(info.get("attempt"), int) else 1}
            for tid, info in run.running.items() if isinstance(info, dict)}  # a damaged record's entries: not trusted


def _local_survivors(state_dir: Path | None, experiment_id: str, results_uri: str) -> dict[str, dict[str, Any]]:
    """Local trials that outlived their apply and still run (a record whose process has ended is not running)."""
    if state_dir is None or not (state_dir / experiment_id).is_dir():
        return {}
    from hpt.executor.backends.local import LocalBackend

    backend = LocalBackend.with_options(state_dir=state_dir)
    return {tid: {"attempt": h.attempt, "since": "outlived its hpt apply (pid %d)" % h.pid}
            for tid, h in backend.adopt(experiment_id, results_uri).items() if not backend.poll(h).finished}


def _rounded(value: str) -> str:
    """A metric as people read it, to 4 significant digits (the row keeps every digit)."""
    try:
        return f"{float(value):.4g}"
    except ValueError:
        return value


def _score(value: str, goal: str) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    if number != number:
        return None
    return -number if goal == "maximize" else number


def trial_states(plan: LoadedPlan, store: Store, local_state_dir: Path | None = None,
                 run: ApplyState | None = None) -> list[TrialState]:
    """Each trial's state; `run` is the experiment's apply_state (read here when not given)."""
    columns = snapshot_columns(store)  # the row index, verified against one listing of rows/ (hpt.store.index)
    at = {tid: i for i, tid in enumerate(columns.ids)}   # read by column below: no mapping built per row
    run = run if run is not None else apply_state(store, plan.experiment_id)
    running = {**_local_survivors(local_state_dir, plan.experiment_id, store.uri), **_live_run(run)}
    states = []
    target = Target.of(plan.plan.spec)
    reached = target.first(columns.view()) if target is not None else None
    # What compile decided for every trial (plan.json's resolved spec records it; each manifest copies it).
    recorded = plan.plan.spec.get("objective") if isinstance(plan.plan.spec.get("objective"), dict) else {}
    objectives = {s.trial_id: s.manifest.objective for s in plan.submissions} if plan.parsed else {}
    nothing: list[str | None] = [None] * len(columns.ids)
    statuses, reasons = columns.data.get("status", nothing), columns.data.get("reason", nothing)
    for tid in plan.trial_ids:
        i = at.get(tid)
        status = None if i is None else statuses[i]
        reason = "" if i is None else reasons[i] or ""
        if status == STATUS_DONE:
            chosen = objectives.get(tid, recorded)
            objective = chosen.get("metric", "")
            value = (columns.data.get(objective, nothing)[i] or "") if objective else ""
            states.append(TrialState(tid, "done", f"{objective}={_rounded(value)}" if objective and value else "done",
                                     score=_score(value, chosen.get("goal", "minimize"))))
        elif status == STATUS_STOPPED:   # a result, shown apart from done and failed
            states.append(TrialState(tid, "stopped", reason or "stopped"))
        elif tid in running:
            info = running[tid]
            states.append(TrialState(tid, "running", f"since {info.get('since', '')}".strip(), int(info.get("attempt", 1))))
        elif i is not None:
            states.append(TrialState(tid, "failed", reason or "failed"))
        elif reached is not None:   # hpt apply starts no new trial once the target is reached
            states.append(TrialState(tid, "skipped", target.says(*reached)))  # type: ignore[union-attr]
        else:
            states.append(TrialState(tid, "pending"))
    return states
