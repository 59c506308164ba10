"""Helpers for the executor tests: a plan folder from manifests, and a scripted stand-in trainer.

The stand-in is a real program run by the real local backend (via HPT_TRIAL_COMMAND); it writes real
rows to the real store but skips the training, so the loop's edge cases (failures, kills, hangs,
flaky trials) take a fraction of a second each. The end-to-end tests use the real trainer.
"""
from __future__ import annotations

import json
import os
import sys
import textwrap
from pathlib import Path
from typing import Iterable

from hpt.schemas.manifest import TrialManifest
from hpt.schemas.plan import PLAN_FILE, TRIALS_DIR, Plan, manifest_digest, manifest_path
from hpt.schemas.version import __version__

FAKE_TRIAL = textwrap.dedent('''
    """Stand-in trainer: behaviour per trial id from $FAKE_TRIAL (JSON), attempts counted in $FAKE_TRIAL_COUNTS."""
    import json, os, signal, sys, time

    path, results = sys.argv[1], sys.argv[sys.argv.index("--results") + 1]
    m = json.load(open(path))
    tid = m["id"]
    plan = json.loads(os.environ.get("FAKE_TRIAL", "{}"))
    behaviour = plan.get(tid, plan.get("*", "ok"))
    counts = os.environ["FAKE_TRIAL_COUNTS"]
    os.makedirs(counts, exist_ok=True)
    with open(os.path.join(counts, tid), "a") as fh:
        fh.write(f"{os.getpid()}\\n")
    n = len(open(os.path.join(counts, tid)).read().split())
    print(f"fake trial {tid} attempt {n} behaviour {behaviour} cpus {os.environ.get('HPT_CPUS')}", flush=True)
    from hpt.store import open_store, row_key   # after the pid is counted: a kill (a timeout) may come early
    from hpt.schemas.row import row_csv
    kind, _, arg = behaviour.partition(":")
    if kind == "sleep":
        time.sleep(float(arg)); kind = "ok"
    if kind == "flaky":
        kind = "die" if n <= int(arg) else "ok"
    if kind == "failfirst":
        kind = "fail" if n == 1 else "ok"
    if kind == "die":
        os.kill(os.getpid(), signal.SIGKILL)
    if kind == "exit":
        print("boom: bad manifest", flush=True); sys.exit(int(arg))
    if kind == "hang":
        time.sleep(3600)
    if kind == "gate":   # wait until the test creates the file `arg` (a test's own timing, not the machine's)
        deadline = time.monotonic() + 300
        while not os.path.exists(arg) and time.monotonic() < deadline:
            time.sleep(0.05)
        kind = "ok"
    status = "failed" if kind == "fail" else "done"
    row = {"trial_id": tid, "experiment_id": m["experiment"], "architecture": m["architecture"], "status": status,
           "reason": "loss became NaN" if status == "failed" else "", "mse": 0.5 + m["seed"] / 100}
    row.update({"param." + k: v for k, v in m["params"].items()})
    open_store(results).put_once(row_key(tid), row_csv(row).encode())
    sys.exit(1 if status == "failed" else 0)
''')


def write_plan(folder: Path, manifests: Iterable[TrialManifest], results: str | None = None) -> Path:
    """A plan folder as `hpt compile` writes it: plan.json (trial ids, manifest digests) + trials/<id>.json."""
    manifests = list(manifests)
    (folder / TRIALS_DIR).mkdir(parents=True, exist_ok=True)
    digests = {}
    for m in manifests:
        data = m.to_json().encode("utf-8")
        manifest_path(folder, m.id).write_bytes(data)
        digests[m.id] = manifest_digest(data)
    plan = Plan(experiment=manifests[0].experiment, hpt_version=__version__, month="2011-01", reference_date="2011-01-01",
                spec={"results": results} if results else {}, windows=[], counts={"trials": len(manifests)}, values={},
                warnings=[], trials=list(digests), digests=digests)
    (folder / PLAN_FILE).write_text(plan.to_json(), encoding="utf-8")
    return folder


def fake_env(tmp: Path, behaviour: dict[str, str] | None = None) -> dict[str, str]:
    """Environment that makes the local backend run the stand-in trainer."""
    script = tmp / "fake_trial.py"
    script.write_text(FAKE_TRIAL, encoding="utf-8")
    return {"HPT_TRIAL_COMMAND": f"{sys.executable} {script}", "FAKE_TRIAL": json.dumps(behaviour or {}),
            "FAKE_TRIAL_COUNTS": str(tmp / "counts")}


def attempts(tmp: Path, trial_id: str) -> int:
    f = tmp / "counts" / trial_id
    return len(f.read_text().split()) if f.exists() else 0


def hpt_exe() -> str:
    return str(Path(sys.executable).parent / "hpt")


def child_env(extra: dict[str, str]) -> dict[str, str]:
    return {**os.environ, **extra}


def kill_leftovers(tmp: Path) -> None:
    """Kill every stand-in trial a test started (a failing test must not leave `hang` trials behind)."""
    import signal

    counts = tmp / "counts"
    for f in counts.iterdir() if counts.is_dir() else []:
        for pid in f.read_text().split():
            try:  # only if that pid is still a stand-in trial, or one forked by a warm worker (pids get reused)
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
                if b"fake_trial.py" in cmdline or b"hpt.trainer.warm" in cmdline:
                    os.killpg(int(pid), signal.SIGKILL)
            except (OSError, ValueError):
                pass


def training_runs(results: str | Path, trial_id: str) -> int:
    """How many processes trained the trial to its end: each leaves its own TensorBoard event file
    (events.out.tfevents.<time>.<host>.<pid>.<n>) under tensorboard/<id>/ in the store."""
    folder = Path(results) / "tensorboard" / trial_id
    return len(list(folder.glob("events.out.tfevents.*"))) if folder.is_dir() else 0


def owner_fences(results: str | Path, trial_id: str) -> list[int]:
    """The fences taken of a trial in a local store (hpt.store.ownership)."""
    from hpt.store import open_store
    from hpt.store.ownership import fences

    return fences(open_store(str(results)), trial_id)
