"""kill -9 against `hpt apply`: does any trial ever train twice? (hpt.store.ownership; docs/executor.md)

For each mode (a fresh process per trial, and --warm), rounds of: compile a plan of --trials tiny real
trials (bag-of-words, 1 epoch, a small slice of the real demo data), then `hpt apply --parallel 2`
killed with SIGKILL after a random delay (0.05 to --max-delay s), again, 1 to --max-kills-per-plan times
(at random), then applied once more to its end; then wait
until every process of the round has ended and count, per trial, the processes that trained it (each
leaves its own TensorBoard event file, events.out.tfevents.<time>.<host>.<pid>.<n>, in the store) and
its rows. A trial trained twice, a trial with no row or two rows: each is counted and printed.

    .venv/bin/python bench/bench_kill9.py --kills 50            # 25 kills per mode
    .venv/bin/python bench/bench_kill9.py --kills 10 --modes warm
"""
from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BIN = Path(sys.executable).parent
ENV = {**os.environ, "HPT_CPUS": "1"}


def compile_plan(work: Path, data: Path, trials: int, tag: str) -> Path:
    spec = {"architecture": "bag-of-words", "data": str(data), "mode": "quick", "epochs": 1,
            "date-range": [["2010-09-01", "2010-11-01"]], "resources": {"cpus": 1, "memory": "1Gi"},
            "parameters": {"learning_rate": [round(0.001 * (1 + i / 10), 6) for i in range(trials)],
                           "hidden_size": [16]}}
    path = work / f"spec-{tag}.json"
    path.write_text(json.dumps(spec), encoding="utf-8")
    plan = work / f"plan-{tag}"
    subprocess.run([str(BIN / "hpt"), "compile", str(path), "--out", str(plan), "--today", "2011-12-01", "--force"],
                   check=True, capture_output=True, env=ENV)
    return plan


def apply(plan: Path, results: Path, warm: bool) -> subprocess.Popen:
    cmd = [str(BIN / "hpt"), "apply", str(plan), "--results", str(results), "--parallel", "2", "--format", "json"]
    return subprocess.Popen(cmd + (["--warm"] if warm else []), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env=ENV)


def settle(results: Path, ids: list[str], timeout: float = 300.0) -> None:
    """Wait until no process of the round runs: every owner gone, and past the start gate's 5 s."""
    from hpt.store import open_store
    from hpt.store.ownership import HERE, fences, process_alive, read_record

    store = open_store(str(results))
    deadline = time.monotonic() + timeout
    time.sleep(6.0)  # a launch that never owned its trial gives up at its gate within 5 s
    while time.monotonic() < deadline:
        alive = [t for t in ids for f in fences(store, t)
                 if (r := read_record(store, t, f)).here == HERE and process_alive(r.pid, r.ticks)]
        if not alive:
            return
        time.sleep(0.5)


def count(results: Path, ids: list[str]) -> dict[str, tuple[int, int]]:
    """trial → (training runs, rows)."""
    out = {}
    for tid in ids:
        tb = results / "tensorboard" / tid
        runs = len(list(tb.glob("events.out.tfevents.*"))) if tb.is_dir() else 0
        out[tid] = (runs, int((results / "rows" / f"{tid}.csv").is_file()))
    return out


def campaign(work: Path, data: Path, warm: bool, kills: int, trials: int, max_delay: float, max_kills_per_plan: int,
             rng: random.Random) -> dict:
    mode = "warm" if warm else "process"
    done_kills = rounds = twice = missing = 0
    t0 = time.monotonic()
    while done_kills < kills:
        rounds += 1
        plan = compile_plan(work, data, trials, f"{mode}-{rounds}")
        ids = json.loads((plan / "plan.json").read_text())["trials"]
        results = work / f"results-{mode}-{rounds}"
        budget = min(rng.randint(1, max_kills_per_plan), kills - done_kills)   # then the plan's last apply finishes
        while True:
            proc = apply(plan, results, warm)
            delay = rng.uniform(0.05, max_delay) if budget else None
            try:
                proc.wait(timeout=delay)
                break                                   # finished before the kill: the round is over
            except subprocess.TimeoutExpired:
                proc.send_signal(signal.SIGKILL)
                proc.wait()
                done_kills += 1
                budget -= 1
        settle(results, ids)
        counts = count(results, ids)
        twice += sum(1 for runs, _ in counts.values() if runs > 1)
        missing += sum(1 for _, rows in counts.values() if rows != 1)
        print(f"  {mode} round {rounds}: kills so far {done_kills}, training runs per trial "
              f"{sorted(r for r, _ in counts.values())}", flush=True)
    return {"mode": mode, "kills": done_kills, "rounds": rounds, "trials": rounds * trials, "trained_twice": twice,
            "without_one_row": missing, "seconds": round(time.monotonic() - t0, 1)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=50, help="kill -9s in all, shared by the modes")
    parser.add_argument("--trials", type=int, default=4, help="trials per plan")
    parser.add_argument("--max-delay", type=float, default=5.0, help="longest wait before a kill, in seconds")
    parser.add_argument("--max-kills-per-plan", type=int, default=8, help="kills of one plan's applies (1 to this, at random)")
    parser.add_argument("--modes", default="process,warm")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    from hpt.trainer.demo import build_demo_dataset

    rng = random.Random(args.seed)
    modes = [m for m in args.modes.split(",") if m]
    with tempfile.TemporaryDirectory(prefix="hpt-kill9-") as tmp:
        work = Path(tmp)
        data = work / "data"
        build_demo_dataset(data, rows_per_month=1500, seed=0)
        results = [campaign(work, data, mode == "warm", args.kills // len(modes), args.trials, args.max_delay,
                            args.max_kills_per_plan, rng)
                   for mode in modes]
    for r in results:
        print(f"{r['mode']:8s} {r['kills']} kill -9s over {r['rounds']} plans ({r['trials']} trials): "
              f"{r['trained_twice']} trained twice, {r['without_one_row']} without exactly one row ({r['seconds']} s)")
    total = sum(r["kills"] for r in results)
    twice = sum(r["trained_twice"] for r in results)
    print(f"total: {total} kill -9s, {twice} trials trained twice")
    return 1 if twice or any(r["without_one_row"] for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
