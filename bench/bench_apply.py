"""How much does `hpt apply --backend local` cost over running the trials by hand, and what does --parallel buy?

Measured in one run, on the same real trials (the real trainer on a slice of the real demo dataset):
  baseline   the plan's `hpt-trial MANIFEST --results URI` commands, one after another
  apply -j1  `hpt apply PLAN --parallel 1` (the same trials, fresh store)           target: ≤ 1.05× baseline
  apply -j2  `hpt apply PLAN --parallel 2`                                          speed-up over -j1
  latency    from a row appearing in the store to results.csv listing it (polled every 10 ms, in a run of its own)

Baseline and apply -j1 alternate (ROUNDS times each) so drift on a shared machine hits both alike; the
median is reported. Usage:
    .venv/bin/python bench/bench_apply.py [--trials 4] [--epochs 3] [--rows 3000] [--rounds 3]
    .venv/bin/python bench/bench_apply.py --stand-in 5 --trials 6   # apply's own overhead only: trials that
        # sleep 5 s and write a real row (no CPU contention, so a loaded machine does not blur the ratio)
"""
from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

BIN = Path(sys.executable).parent
CPU: list[float] = []  # CPU seconds each `hpt apply` itself used (not its trials)


def build(work: Path, trials: int, epochs: int, rows: int) -> tuple[Path, list[str]]:
    from executor_support import write_plan  # tests/: the same plan layout `hpt compile` writes
    from trial_factory import make_manifest

    from hpt.trainer.demo import build_demo_dataset

    data = work / "data"
    build_demo_dataset(data, rows_per_month=rows, seed=0)
    ms = [make_manifest(data, "bag-of-words", epochs=epochs, seed=i, experiment="e-bbbbbbbbbbbb") for i in range(trials)]
    plan = write_plan(work / "plan", ms)
    return plan, [m.id for m in ms]


def build_stand_in(work: Path, trials: int, seconds: float) -> tuple[Path, list[str]]:
    """Trials that only sleep, then write a real row: apply's own overhead, free of CPU contention."""
    import os

    from executor_support import fake_env, write_plan
    from trial_factory import make_manifest

    ms = [make_manifest("/data/none", "bag-of-words", epochs=1, seed=i, experiment="e-bbbbbbbbbbbb") for i in range(trials)]
    plan = write_plan(work / "plan", ms)
    os.environ.update(fake_env(work, {"*": f"sleep:{seconds}"}))  # HPT_TRIAL_COMMAND: apply runs the stand-in too
    return plan, [m.id for m in ms]


def trial_command() -> list[str]:
    import os
    import shlex

    return shlex.split(os.environ["HPT_TRIAL_COMMAND"]) if os.environ.get("HPT_TRIAL_COMMAND") else [str(BIN / "hpt-trial")]


def baseline(plan: Path, ids: list[str], results: Path) -> float:
    start = time.perf_counter()
    for tid in ids:
        subprocess.run([*trial_command(), str(plan / "trials" / f"{tid}.json"), "--results", str(results)],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**_env(), "HPT_CPUS": "1",
                       "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"})
    return time.perf_counter() - start


def _env() -> dict[str, str]:
    import os

    return dict(os.environ)


class LatencyProbe(threading.Thread):
    """Polls the store: when does each row appear, and when does results.csv first list it?"""

    def __init__(self, results: Path):
        super().__init__(daemon=True)
        self.results = results
        self.row_seen: dict[str, float] = {}
        self.csv_seen: dict[str, float] = {}
        self.stop = threading.Event()

    def run(self) -> None:
        rows, csv = self.results / "rows", self.results / "results.csv"
        while not self.stop.is_set():
            now = time.perf_counter()
            if rows.is_dir():
                for f in rows.glob("*.csv"):
                    self.row_seen.setdefault(f.stem, now)
            try:
                text = csv.read_text()
            except OSError:
                text = ""
            for tid in self.row_seen:
                if tid in text:
                    self.csv_seen.setdefault(tid, now)
            time.sleep(0.01)

    def latencies(self) -> list[float]:
        return [self.csv_seen[t] - self.row_seen[t] for t in self.row_seen if t in self.csv_seen]


def apply(plan: Path, results: Path, parallel: int, probe: bool = False) -> tuple[float, float, list[float]]:
    """Wall time of `hpt apply`, the sum of its trials' own durations (submit → exit seen), latencies."""
    watcher = LatencyProbe(results) if probe else None
    if watcher:
        watcher.start()
    start = time.perf_counter()
    proc = subprocess.run([str(BIN / "hpt"), "apply", str(plan), "--results", str(results), "--parallel", str(parallel),
                           "--format", "json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if proc.returncode != 0:
        failed = [line for line in proc.stdout.splitlines() if '"trial-failed"' in line]
        raise SystemExit(f"hpt apply exited {proc.returncode}: {failed or proc.stderr[-2000:]}")
    elapsed = time.perf_counter() - start
    events = [json.loads(line) for line in proc.stdout.splitlines()]
    in_trials = sum(e.get("seconds", 0.0) for e in events if e["event"] == "trial-finished")
    CPU.append(events[-1].get("apply_cpu_s", 0.0))
    if watcher:
        time.sleep(0.05)
        watcher.stop.set()
        watcher.join()
        return elapsed, in_trials, watcher.latencies()
    return elapsed, in_trials, []


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--trials", type=int, default=4)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--rows", type=int, default=3000, help="demo rows per month (trial length)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--json", action="store_true", help="print the figures as JSON too")
    ap.add_argument("--stand-in", type=float, default=None, metavar="SECONDS",
                    help="trials that sleep SECONDS instead of training: apply's pure overhead, immune to CPU load")
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="hpt-bench-apply-"))
    try:
        if args.stand_in is not None:
            plan, ids = build_stand_in(work, args.trials, args.stand_in)
        else:
            plan, ids = build(work, args.trials, args.epochs, args.rows)
        base, j1, outside, lat = [], [], [], []
        for r in range(args.rounds):
            base.append(baseline(plan, ids, work / f"base-{r}"))
            elapsed, in_trials, _ = apply(plan, work / f"j1-{r}", 1)
            j1.append(elapsed)
            outside.append(elapsed - in_trials)
            print(f"round {r + 1}: baseline {base[-1]:.2f} s, apply -j1 {j1[-1]:.2f} s "
                  f"(of which outside trials {outside[-1]:.2f} s)", file=sys.stderr)
        j2, _, _ = apply(plan, work / "j2", 2)
        # The probe polls in this process: a run of its own, so it never slows the timed runs.
        _, _, lat = apply(plan, work / "latency", 1, probe=True)
        b, a1 = statistics.median(base), statistics.median(j1)
        ratios = [a / x for a, x in zip(j1, base)]
        ratio = statistics.median(ratios)
        out = statistics.median(outside)
        figures = {
            "trials": args.trials, "per_trial_s": round(b / args.trials, 2),
            "baseline_s": round(b, 2), "apply_j1_s": round(a1, 2), "overhead_ratio": round(ratio, 3),
            "ratios": [round(x, 3) for x in ratios], "outside_trials_s": round(out, 3),
            "outside_trials_per_trial_s": round(out / args.trials, 3),
            "apply_j2_s": round(j2, 2), "speedup_j2_over_j1": round(a1 / j2, 2),
            "results_csv_latency_s": {"median": round(statistics.median(lat), 3), "max": round(max(lat), 3), "n": len(lat)}
            if lat else None,
        }
        kind = f"stand-in trials sleeping {args.stand_in:g} s" if args.stand_in is not None else "real trials"
        print(f"{args.trials} {kind}, ~{figures['per_trial_s']} s each by hand; median of {args.rounds} rounds")
        print(f"  baseline (hpt-trial one after another)  {b:8.2f} s")
        print(f"  hpt apply --parallel 1                  {a1:8.2f} s   ratio {ratio:.3f} (per round: "
              f"{', '.join(f'{x:.3f}' for x in ratios)}; target ≤ 1.05)")
        print(f"    of which apply's own time outside the trials: {out:.2f} s ({out / args.trials * 1000:.0f} ms per trial)")
        cpu = statistics.median(CPU[: args.rounds])
        figures["apply_cpu_s"] = round(cpu, 3)
        print(f"    apply's own CPU: {cpu:.2f} CPU-s per run ({cpu / args.trials * 1000:.0f} ms per trial)")
        print(f"  hpt apply --parallel 2                  {j2:8.2f} s   speed-up over -j1 {a1 / j2:.2f}×")
        if lat:
            print(f"  row → results.csv                       median {statistics.median(lat) * 1000:.0f} ms, "
                  f"max {max(lat) * 1000:.0f} ms over {len(lat)} trials (apply looks for rows of running trials every 0.25 s on a folder, 2 s on gs://)")
        if args.json:
            print(json.dumps(figures))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
