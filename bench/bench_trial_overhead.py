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
  --warm      the same 30 quick trials through `hpt apply --parallel 1` with --no-warm (a process per trial) and
              --warm (a worker that imported torch once forks each trial): wall times and the ratio
  --docker-warm N  the same for the docker backend: N quick trials through `hpt apply --backend docker --parallel 1`,
              a container per trial (--no-warm) vs --warm (one slot container that imported torch once forks each trial);
              needs a Docker daemon and the trainer image (images/build-offline.sh)
  --default N  the fixed cost per trial of a default `hpt apply PLAN` (no flags) on N quick bag-of-words trials, one at a
              time (the spec's 2 cpus per trial on this 2-core machine): (wall − Σ train_time_s) / N, beside the
              import-torch floor and beside the same apply with --no-warm, a fresh process per trial (target
              ≤ 1.0 s by default; the default is warm since issue 24)
  --adam      what EagerAdam saves, paired in one run: a process that imports torch and takes one optimizer
              step with torch.optim.Adam (which imports torch._dynamo and sympy) vs with hpt's EagerAdam

  --baseline-bin DIR   also run the per-arch and --example measurements with another installation's `hpt` and
              `hpt-trial` (e.g. a checkout of the commit before a change, installed in its own venv), interleaved
              with this one's: before/after in one run

Medians of --runs runs, interleaved with the floor so drift on a shared machine hits both alike. Usage:
    .venv/bin/python bench/bench_trial_overhead.py [--arch bag-of-words,lstm] [--runs 5]
    .venv/bin/python bench/bench_trial_overhead.py --arch none --example examples/quick.json
    .venv/bin/python bench/bench_trial_overhead.py --arch none --warm 30
    .venv/bin/python bench/bench_trial_overhead.py --arch none --default 6 --rounds 2
    flock /tmp/hpt-docker.lock .venv/bin/python bench/bench_trial_overhead.py --arch none --docker-warm 30
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


def one_trial(manifest: Path, results: Path, bin_dir: Path = BIN) -> tuple[float, float]:
    """(wall to row written, train_time_s) of one `hpt-trial` process."""
    t0 = time.time()
    run([str(bin_dir / "hpt-trial"), str(manifest), "--results", str(results)])
    rows = list((results / "rows").glob("*.csv"))
    assert len(rows) == 1, rows
    row = next(csv.DictReader(rows[0].open(encoding="utf-8")))
    assert row["status"] == "done", row
    return rows[0].stat().st_mtime - t0, float(row["train_time_s"])


def bench_arch(work: Path, arch: str, runs: int, bins: dict[str, Path]) -> dict[str, dict]:
    plan = quick_plan(work, arch)
    manifest = next((plan / "trials").glob("*.json"))
    one_trial(manifest, work / f"warmup-{arch}")  # fills the preprocessing cache
    walls: dict[str, list[float]] = {label: [] for label in bins}
    trains: dict[str, list[float]] = {label: [] for label in bins}
    floors = []
    for i in range(runs):
        floors.append(floor_s())
        for label, bin_dir in bins.items():
            wall, train = one_trial(manifest, work / f"r-{arch}-{label}-{i}", bin_dir)
            walls[label].append(wall)
            trains[label].append(train)
    out = {}
    for label in bins:
        fixed = [w - t for w, t in zip(walls[label], trains[label])]
        out[label] = {"wall": statistics.median(walls[label]), "train": statistics.median(trains[label]),
                      "fixed": statistics.median(fixed), "floor": statistics.median(floors), "fixed_all": fixed}
    return out


def bench_example(work: Path, spec: Path, bins: dict[str, Path]) -> None:
    for label, bin_dir in bins.items():
        plan, results = work / f"plan-example-{label}", work / f"results-example-{label}"
        start = time.perf_counter()
        run([str(bin_dir / "hpt"), "compile", str(spec), "--out", str(plan), "--today", "2011-12-01", "--force"])
        run([str(bin_dir / "hpt"), "apply", str(plan), "--results", str(results)])
        wall = time.perf_counter() - start
        _print_example(spec, label, wall, results)


def _print_example(spec: Path, label: str, wall: float, results: Path) -> None:
    rows = [next(csv.DictReader(p.open(encoding="utf-8"))) for p in (results / "rows").glob("*.csv")]
    print(f"{spec} ({label}): compile + apply {wall:.1f} s for {len(rows)} trials")
    for row in sorted(rows, key=lambda r: float(r["param.learning_rate"])):
        print(f"  learning_rate {row['param.learning_rate']:>8}  mse {row['mse']!r}  train_time_s {float(row['train_time_s']):.2f}")


def bench_warm(work: Path, trials: int, rounds: int, backend: str = "local") -> None:
    """`hpt apply --parallel 1` of `trials` quick trials, cold (a process, or a container, per trial) vs --warm,
    alternating; with the same results both ways (checked: every row done, the same MSEs)."""
    plan = quick_plan(work, "bag-of-words", trials)
    manifest = next((plan / "trials").glob("*.json"))
    one_trial(manifest, work / f"warmup-{backend}")  # the shared preprocessing cache entry (docker mounts it)
    cold_label = "process per trial" if backend == "local" else "container per trial"
    times: dict[str, list[float]] = {cold_label: [], "--warm": []}
    mses: dict[str, dict[str, str]] = {}
    for r in range(rounds):
        for label, extra in ((cold_label, ["--no-warm"]), ("--warm", ["--warm"])):
            results = work / f"w-{backend}-{label.replace(' ', '-')}-{r}"
            start = time.perf_counter()
            run([str(BIN / "hpt"), "apply", str(plan), "--backend", backend, "--parallel", "1", "--results",
                 str(results), *extra])
            times[label].append(time.perf_counter() - start)
            rows = [next(csv.DictReader(p.open(encoding="utf-8"))) for p in (results / "rows").glob("*.csv")]
            assert len(rows) == trials and all(row["status"] == "done" for row in rows), results
            mses[label] = {row["trial_id"]: row["mse"] for row in rows}
    cold, warm = statistics.median(times[cold_label]), statistics.median(times["--warm"])
    print(f"{trials} quick bag-of-words trials, hpt apply --backend {backend} --parallel 1, median of {rounds}:")
    print(f"  {cold_label:<19} {cold:7.1f} s  ({cold / trials:.2f} s/trial)   runs: {_fmt(times[cold_label])}")
    print(f"  {'--warm':<19} {warm:7.1f} s  ({warm / trials:.2f} s/trial)   runs: {_fmt(times['--warm'])}")
    print(f"  ratio warm / {cold_label}: {warm / cold:.3f}; every MSE the same both ways: "
          f"{mses[cold_label] == mses['--warm']}")


def bench_default(work: Path, trials: int, rounds: int) -> None:
    """A default `hpt apply PLAN` (no flags): its fixed cost per trial, (wall − Σ train_time_s) / trials, beside
    `python -c "import torch"` and beside `--no-warm` (a fresh process per trial), alternating rounds."""
    plan = quick_plan(work, "bag-of-words", trials)
    manifest = next((plan / "trials").glob("*.json"))
    one_trial(manifest, work / "warmup-default")  # the shared preprocessing cache entry
    fixed: dict[str, list[float]] = {"default (no flags)": [], "--no-warm": []}
    floors: list[float] = []
    mses: dict[str, dict[str, str]] = {}
    for r in range(rounds):
        floors.append(floor_s())
        for label, extra in (("default (no flags)", []), ("--no-warm", ["--no-warm"])):
            results = work / f"d-{label[:7].strip('-( ')}-{r}"
            start = time.perf_counter()
            run([str(BIN / "hpt"), "apply", str(plan), "--results", str(results), *extra])
            wall = time.perf_counter() - start
            rows = [next(csv.DictReader(p.open(encoding="utf-8"))) for p in (results / "rows").glob("*.csv")]
            assert len(rows) == trials and all(row["status"] == "done" for row in rows), results
            fixed[label].append((wall - sum(float(row["train_time_s"]) for row in rows)) / trials)
            mses[label] = {row["trial_id"]: row["mse"] for row in rows}
    floor = statistics.median(floors)
    print(f"{trials} quick bag-of-words trials, `hpt apply PLAN` one at a time, median of {rounds}:")
    print(f"  import torch alone           {floor:.2f} s   runs: {_fmt(floors)}")
    for label, values in fixed.items():
        median = statistics.median(values)
        print(f"  {label:<20} fixed {median:.2f} s/trial ({median / floor:.2f}x import torch; target <= 1.0 s: "
              f"{'met' if median <= 1.0 else 'NOT met'})   runs: {_fmt(values)}")
    print(f"  every MSE the same both ways: {mses['default (no flags)'] == mses['--no-warm']}")


ADAM_STEP = ("import torch\nfrom {module} import {cls} as Adam\nm = torch.nn.Linear(4, 1)\nopt = Adam(m.parameters())\n"
             "m(torch.ones(2, 4)).sum().backward()\nopt.step()\n")


def bench_adam(runs: int) -> None:
    times: dict[str, list[float]] = {"torch.optim.Adam": [], "EagerAdam": []}
    for _ in range(runs):
        for label, module, cls in (("torch.optim.Adam", "torch.optim", "Adam"), ("EagerAdam", "hpt.trainer.optim", "EagerAdam")):
            start = time.perf_counter()
            run([sys.executable, "-c", ADAM_STEP.format(module=module, cls=cls)])
            times[label].append(time.perf_counter() - start)
    adam, eager = statistics.median(times["torch.optim.Adam"]), statistics.median(times["EagerAdam"])
    print(f"import torch + one optimizer step, median of {runs}: torch.optim.Adam {adam:.2f} s, EagerAdam {eager:.2f} s, "
          f"saved {adam - eager:.2f} s per trial process")


def _fmt(values: list[float]) -> str:
    return " ".join(f"{v:.2f}" for v in values)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="bag-of-words,lstm", help="comma-separated architectures, or 'none'")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--example", type=Path, default=None, help="a spec to compile and apply end to end")
    parser.add_argument("--warm", type=int, default=0, metavar="TRIALS", help="warm workers vs process per trial")
    parser.add_argument("--docker-warm", type=int, default=0, metavar="TRIALS",
                        help="docker: warm slot containers vs a container per trial")
    parser.add_argument("--rounds", type=int, default=1, help="--warm, --docker-warm: alternating rounds of each")
    parser.add_argument("--default", type=int, default=0, metavar="TRIALS",
                        help="fixed cost per trial of a default hpt apply (no flags), beside import torch and --no-warm")
    parser.add_argument("--adam", action="store_true", help="torch.optim.Adam vs EagerAdam in a fresh process")
    parser.add_argument("--baseline-bin", type=Path, default=None, help="another installation's bin folder to compare")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="hpt-bench-overhead-") as tmp:
        work = Path(tmp)
        archs = [] if args.arch == "none" else args.arch.split(",")
        bins = {"this": BIN}
        if args.baseline_bin:
            bins["baseline"] = args.baseline_bin.resolve()
        if archs:
            print(f"median of {args.runs} runs; HPT_CPUS={ENV['HPT_CPUS']}; {os.cpu_count()} cores "
                  f"(load {os.getloadavg()[0]:.1f} at start)")
            print(f"{'architecture':<14}{'install':<10}{'wall':>8}{'train':>8}{'fixed':>8}{'floor':>8}   fixed per run")
        for arch in archs:
            for label, r in bench_arch(work, arch, args.runs, bins).items():
                print(f"{arch:<14}{label:<10}{r['wall']:8.2f}{r['train']:8.2f}{r['fixed']:8.2f}{r['floor']:8.2f}   "
                      f"{_fmt(r['fixed_all'])}")
        if archs:
            print("wall: start → row written; train: train_time_s; fixed = wall − train; floor: python -c 'import torch'")
        if args.example:
            bench_example(work, args.example, bins)
        if args.warm:
            bench_warm(work, args.warm, args.rounds)
        if args.default:
            bench_default(work, args.default, args.rounds)
        if args.docker_warm:
            bench_warm(work, args.docker_warm, args.rounds, backend="docker")
        if args.adam:
            bench_adam(args.runs)


if __name__ == "__main__":
    main()
