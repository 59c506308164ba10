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

from hpt.executor.loop import RUNS
from hpt.executor.plan import Plan
from hpt.executor.publish import ResultsPublisher
from hpt.store import Store
from hpt.schemas.row import STATUS_DONE


@dataclass(frozen=True)
class TrialState:
    trial_id: str
    state: str               # pending | running | done | failed
    detail: str = ""         # failed: the reason; done: the objective; running: since when
    attempt: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _live_run(store: Store, experiment_id: str) -> dict[str, dict[str, Any]]:
    try:
        doc = json.loads(store.get(f"{RUNS}{experiment_id}.json"))
    except (KeyError, ValueError):
        return {}
    if doc.get("finished"):
        return {}
    from hpt.executor.backends.local import process_alive

    if doc.get("host") == socket.gethostname() and not process_alive(int(doc.get("pid", 0) or 0)):
        return {}  # that apply died here; the local pid records below say what still runs
    running = doc.get("running") or {}
    return {tid: {**info, "since": info.get("started_at", "")} for tid, info in running.items()}


def _local_survivors(state_dir: Path | None, experiment_id: str) -> dict[str, dict[str, Any]]:
    if state_dir is None or not (state_dir / experiment_id).is_dir():
        return {}
    from hpt.executor.backends.local import LocalBackend

    adopted = LocalBackend(state_dir=state_dir).adopt(experiment_id)
    return {tid: {"attempt": h.attempt, "since": "outlived its hpt apply (pid %d)" % h.pid} for tid, h in adopted.items()}


def _rounded(value: str) -> str:
    """A metric as people read it, to 4 significant digits (the row keeps every digit)."""
    try:
        return f"{float(value):.4g}"
    except ValueError:
        return value


def trial_states(plan: Plan, store: Store, local_state_dir: Path | None = None) -> list[TrialState]:
    rows = ResultsPublisher(store).sync()
    running = {**_local_survivors(local_state_dir, plan.experiment_id), **_live_run(store, plan.experiment_id)}
    states = []
    for sub in plan.submissions:
        tid = sub.trial_id
        row = rows.get(tid)
        if row is not None and row.get("status") == STATUS_DONE:
            objective = sub.manifest.objective["metric"]
            value = row.get(objective, "")
            states.append(TrialState(tid, "done", f"{objective}={_rounded(value)}" if objective and value else "done"))
        elif tid in running:
            info = running[tid]
            states.append(TrialState(tid, "running", f"since {info.get('since', '')}".strip(), int(info.get("attempt", 1))))
        elif row is not None:
            states.append(TrialState(tid, "failed", row.get("reason", "") or "failed"))
        else:
            states.append(TrialState(tid, "pending"))
    return states
