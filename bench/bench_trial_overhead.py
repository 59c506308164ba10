"""What does a trial cost besides its training? Wall time from process start to row written, minus train_time_s.

Measured in one run, against a floor measured in the same run:
  floor       `python -c "import torch"`: a fresh interpreter that imports torch and exits
  per arch    `hpt-trial MANIFEST --results DIR` on a quick-mode manifest compiled from a one-line spec
              (one month of the demo data, the mode's epochs), a fresh store each run; the first run fills the
              preprocessing cache and is not counted (every config of a grid shares its windows' cache entry)
                wall     process start → the row file's mtime (the row is the trial's last write)
                train    the row's train_time_s (fit's own clock: the epochs, nothing else)
                fixed    wall − train: what every trial pays besides training (target ≤ 1.0 s)
  --example   `hpt compile SPEC && hpt apply PLAN` end to end (default examples/quick.json): wall time and
              every trial's MSE, so a before/after pair shows the same results
  --warm      the same 30 quick trials through `hpt apply --parallel 1` with and without --warm (a worker that
              imported torch once forks each trial): wall times and the ratio

Medians of --runs runs, interleaved with the floor so drift on a shared machine hits both alike. Usage:
    .venv/bin/python bench/bench_trial_overhead.py [--arch bag-of-words,lstm] [--runs 5]
    .venv/bin/python bench/bench_trial_overhead.py --arch none --example examples/quick.json
    .venv/bin/python bench/bench_trial_overhead.py --arch none --warm 30
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
ENV = {**os.environ, "HPT_CPUS": os.environ.get("HPT_CPUS", "2")}


def run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, check=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV, **kw)


def floor_s() -> float:
    start = time.perf_counter()
    run([sys.executable, "-c", "import torch"])
    return time.perf_counter() - start


def quick_plan(work: Path, arch: str, trials: int = 1) -> Path:
    """A quick-mode plan for `arch` on the demo data, compiled by `hpt compile` as a user would."""
    spec = {"architecture": arch, "mode": "quick", "date-range": {"count": 1, "months": 1}, "validation-days": 14,
            "resources": {"cpus": 2, "memory": "2Gi"}}
    if trials > 1:  # distinct learning rates, one trial each
        spec["parameters"] = {"learning_rate": [round(0.001 * (1 + i / 10), 6) for i in range(trials)]}
    path = work / f"{arch}.json"
    path.write_text(json.dumps(spec), encoding="utf-8")
    plan = work / f"plan-{arch}-{trials}"
    run([str(BIN / "hpt"), "compile", str(path), "--out", str(plan), "--today", "2011-12-01", "--force"])
    return plan


def one_trial(manifest: Path, results: Path) -> tuple[float, float]:
    """(wall to row written, train_time_s) of one `hpt-trial` process."""
    t0 = time.time()
    run([str(BIN / "hpt-trial"), str(manifest), "--results", str(results)])
    rows = list((results / "rows").glob("*.csv"))
    assert len(rows) == 1, rows
    row = next(csv.DictReader(rows[0].open(encoding="utf-8")))
    assert row["status"] == "done", row
    return rows[0].stat().st_mtime - t0, float(row["train_time_s"])


def bench_arch(work: Path, arch: str, runs: int) -> dict:
    plan = quick_plan(work, arch)
    manifest = next((plan / "trials").glob("*.json"))
    one_trial(manifest, work / f"warmup-{arch}")  # fills the preprocessing cache
    walls, trains, floors = [], [], []
    for i in range(runs):
        floors.append(floor_s())
        wall, train = one_trial(manifest, work / f"r-{arch}-{i}")
        walls.append(wall)
        trains.append(train)
    fixed = [w - t for w, t in zip(walls, trains)]
    return {"arch": arch, "wall": statistics.median(walls), "train": statistics.median(trains),
            "fixed": statistics.median(fixed), "floor": statistics.median(floors), "fixed_all": fixed}


def bench_example(work: Path, spec: Path) -> None:
    plan, results = work / "plan-example", work / "results-example"
    start = time.perf_counter()
    run([str(BIN / "hpt"), "compile", str(spec), "--out", str(plan), "--today", "2011-12-01", "--force"])
    run([str(BIN / "hpt"), "apply", str(plan), "--results", str(results)])
    wall = time.perf_counter() - start
    rows = [next(csv.DictReader(p.open(encoding="utf-8"))) for p in (results / "rows").glob("*.csv")]
    print(f"{spec}: compile + apply {wall:.1f} s for {len(rows)} trials")
    for row in sorted(rows, key=lambda r: float(r["param.learning_rate"])):
        print(f"  learning_rate {row['param.learning_rate']:>8}  mse {row['mse']!r}  train_time_s {float(row['train_time_s']):.2f}")


def bench_warm(work: Path, trials: int, rounds: int) -> None:
    plan = quick_plan(work, "bag-of-words", trials)
    manifest = next((plan / "trials").glob("*.json"))
    one_trial(manifest, work / "warmup-warm")  # the shared preprocessing cache entry
    times: dict[str, list[float]] = {"process-per-trial": [], "warm": []}
    for r in range(rounds):
        for label, extra in (("process-per-trial", []), ("warm", ["--warm"])):
            start = time.perf_counter()
            run([str(BIN / "hpt"), "apply", str(plan), "--parallel", "1", "--results", str(work / f"w-{label}-{r}"),
                 *extra])
            times[label].append(time.perf_counter() - start)
    cold, warm = statistics.median(times["process-per-trial"]), statistics.median(times["warm"])
    print(f"{trials} quick bag-of-words trials, hpt apply --parallel 1, median of {rounds}:")
    print(f"  process per trial {cold:7.1f} s  ({cold / trials:.2f} s/trial)   runs: {_fmt(times['process-per-trial'])}")
    print(f"  --warm            {warm:7.1f} s  ({warm / trials:.2f} s/trial)   runs: {_fmt(times['warm'])}")
    print(f"  ratio warm / process-per-trial: {warm / cold:.3f}")


def _fmt(values: list[float]) -> str:
    return " ".join(f"{v:.2f}" for v in values)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="bag-of-words,lstm", help="comma-separated architectures, or 'none'")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--example", type=Path, default=None, help="a spec to compile and apply end to end")
    parser.add_argument("--warm", type=int, default=0, metavar="TRIALS", help="warm workers vs process per trial")
    parser.add_argument("--rounds", type=int, default=1, help="--warm: alternating rounds of each")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="hpt-bench-overhead-") as tmp:
        work = Path(tmp)
        archs = [] if args.arch == "none" else args.arch.split(",")
        if archs:
            print(f"median of {args.runs} runs; HPT_CPUS={ENV['HPT_CPUS']}; {os.cpu_count()} cores "
                  f"(load {os.getloadavg()[0]:.1f} at start)")
            print(f"{'architecture':<14}{'wall':>8}{'train':>8}{'fixed':>8}{'floor':>8}   fixed per run")
        for arch in archs:
            r = bench_arch(work, arch, args.runs)
            print(f"{arch:<14}{r['wall']:8.2f}{r['train']:8.2f}{r['fixed']:8.2f}{r['floor']:8.2f}   {_fmt(r['fixed_all'])}")
        if archs:
            print("wall: start → row written; train: train_time_s; fixed = wall − train; floor: python -c 'import torch'")
        if args.example:
            bench_example(work, args.example)
        if args.warm:
            bench_warm(work, args.warm, args.rounds)


if __name__ == "__main__":
    main()
