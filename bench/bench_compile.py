"""Benchmark: compile a 100,000-trial grid vs a naive baseline, in the same run.

The baseline does the least anyone could: itertools.product over the same values, json.dumps of a
small dict, one file per trial. `hpt compile` does full validation, resolves every hyperparameter,
hashes trial and config ids, writes canonical manifests, stages and swaps the folder.

    .venv/bin/python bench/bench_compile.py [--values 10] [--params 5]
    .venv/bin/python bench/bench_compile.py --processes     # whole processes, as a user runs them

Prints both times, the ratio (target ≤ 1.5×), and the compiler's peak traced memory at two plan
sizes, to show that memory grows only with the plan index (the trial ids), not with the manifests.
--processes times `hpt compile SPEC --out DIR` and the plain writer each as a process of its own
(interpreter start and imports included), with each one's peak RSS (measured by /usr/bin/time where there is one).

The bench dataset's dataset.json carries a digest per month (version 2), so every manifest carries the
digests of the months its window reads; the same grid on the same descriptor without them (version 1,
what every manifest had before) is timed in the same rounds, and their ratio printed (target ≤ 1.10×).
"""
from __future__ import annotations

import argparse
import datetime as dt
import gc
import itertools
import json
import math
import resource
import shutil
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

# Five bag-of-words hyperparameters with ten in-range values each.
PARAMS = {
    "learning_rate": lambda i: round(0.0001 * (1.6 ** i), 8),
    "lr_decay": lambda i: round(0.5 + 0.05 * i, 4),
    "dropout": lambda i: round(0.05 * i, 4),
    "embedding_dim": lambda i: 8 + 8 * i,
    "hidden_size": lambda i: 16 + 16 * i,
    "batch_size": lambda i: 16 + 16 * i,
    "vocab_size": lambda i: 500 + 500 * i,
}


def make_spec(folder: Path, n_values: int, n_params: int, digests: bool = True) -> Path:
    data = folder / "data"
    data.mkdir()
    from hpt.schemas.dataset import partition_digest  # here: the plain writer's process must not pay for it

    months = [f"{year}-{month:02d}" for year in (2010, 2011) for month in range(1, 13)]
    (data / "dataset.json").write_text(json.dumps({
        "name": "bench", "timestamp": "ts", "text": "text", "target": "y",
        "coverage": {"start": "2010-01-01", "end": "2011-12-31"}}
        | ({"version": 2, "partitions": {m: partition_digest({"part-0.parquet": m}) for m in months}} if digests else {})))
    names = list(PARAMS)[:n_params]
    spec = {"architecture": "bag-of-words", "date-range": [["2010-01-01", "2010-04-01"]], "data": str(data),
            "parameters": {name: [PARAMS[name](i) for i in range(n_values)] for name in names}}
    path = folder / "spec.json"
    path.write_text(json.dumps(spec))
    return path


def naive(spec_path: Path, out: Path) -> int:
    spec = json.loads(spec_path.read_text())
    names = list(spec["parameters"])
    (out / "trials").mkdir(parents=True)
    n = 0
    for values in itertools.product(*spec["parameters"].values()):
        doc = {"architecture": spec["architecture"], "params": dict(zip(names, values)), "window": spec["date-range"][0]}
        with open(out / "trials" / f"{n}.json", "w") as fh:
            fh.write(json.dumps(doc))
        n += 1
    return n


def compile_once(spec_path: Path, out: Path) -> int:
    from hpt.compiler import CompileOptions, compile_spec  # here: the plain writer's process must not pay for it

    result = compile_spec(str(spec_path), CompileOptions(out=out, today=dt.date(2026, 11, 1)))
    return len(result.trial_ids)


def timed(fn, *args) -> tuple[float, int]:
    gc.collect()
    start = time.perf_counter()
    n = fn(*args)
    return time.perf_counter() - start, n


def traced_peak(spec_path: Path, out: Path) -> tuple[int, float]:
    tracemalloc.start()
    n = compile_once(spec_path, out)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return n, peak / 2**20


GNU_TIME = "/usr/bin/time"


def run_process(cmd: list[str]) -> tuple[float, float]:
    """Wall seconds and peak RSS (MiB) of one child process. Linux folds the spawning process's high-water mark
    into a child's ru_maxrss (a plain writer started from this 36 MiB bench read 36 MiB, its own peak is ~10), so
    the child is started by GNU time, a process of a few MiB, which reports the child's own peak (%M)."""
    import os
    import subprocess

    gnu_time = os.access(GNU_TIME, os.X_OK)
    report = Path(tempfile.mkstemp(prefix="hpt-bench-rss-")[1])
    try:
        start = time.perf_counter()
        proc = subprocess.Popen([GNU_TIME, "-f", "%M", "-o", str(report), *cmd] if gnu_time else cmd,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        _, status, usage = os.wait4(proc.pid, 0)
        elapsed = time.perf_counter() - start
        if os.waitstatus_to_exitcode(status) != 0:
            raise SystemExit(f"{' '.join(cmd)} failed: {proc.stderr.read().decode()[-2000:]}")
        kib = int(report.read_text().split()[-1]) if gnu_time else usage.ru_maxrss   # without GNU time: an upper bound
    finally:
        report.unlink(missing_ok=True)
    return elapsed, kib / 1024


def processes(root: Path, spec: Path, rounds: int) -> None:
    hpt = Path(sys.executable).parent / "hpt"
    best = {"plain writer": (math.inf, 0.0), "hpt compile": (math.inf, 0.0)}
    for r in range(rounds):
        for name, cmd, out in (("plain writer", [sys.executable, __file__, "--naive", str(spec), str(root / f"naive-{r}")], root / f"naive-{r}"),
                               ("hpt compile", [str(hpt), "compile", str(spec), "--out", str(root / f"plan-{r}"), "--today", "2026-11-01"],
                                root / f"plan-{r}")):
            seconds, rss = run_process(cmd)
            shutil.rmtree(out, ignore_errors=True)
            print(f"round {r}: {name} {seconds:.2f} s, peak RSS {rss:.0f} MiB", flush=True)
            best[name] = (min(best[name][0], seconds), max(best[name][1], rss))
    (t_naive, rss_naive), (t_hpt, rss_hpt) = best["plain writer"], best["hpt compile"]
    print(f"whole processes, best of {rounds}: plain writer {t_naive:.2f} s ({rss_naive:.0f} MiB), "
          f"hpt compile {t_hpt:.2f} s ({rss_hpt:.0f} MiB) → {t_hpt / t_naive:.2f}× (target ≤ 1.5×)")


def main() -> None:
    if sys.argv[1:2] == ["--naive"]:  # the plain writer as a process of its own (--processes)
        naive(Path(sys.argv[2]), Path(sys.argv[3]))
        return
    parser = argparse.ArgumentParser()
    parser.add_argument("--values", type=int, default=10)
    parser.add_argument("--params", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3, help="alternate rounds; the best time of each counts")
    parser.add_argument("--dir", default=None, help="where to write (default: the temp folder; /dev/shm takes the disk out)")
    parser.add_argument("--processes", action="store_true", help="time whole processes (start-up and imports included)")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="hpt-bench-", dir=args.dir))
    try:
        spec = make_spec(root, args.values, args.params)
        if args.processes:
            processes(root, spec, args.rounds)
            return
        (root / "v1").mkdir()
        spec_v1 = make_spec(root / "v1", args.values, args.params, digests=False)
        best_hpt = best_naive = best_v1 = math.inf
        for r in range(args.rounds):
            t_naive, n_naive = timed(naive, spec, root / f"naive-{r}")
            t_hpt, n_hpt = timed(compile_once, spec, root / f"plan-{r}")
            t_v1, n_v1 = timed(compile_once, spec_v1, root / f"plan-v1-{r}")
            assert n_hpt == n_naive == n_v1, (n_hpt, n_naive, n_v1)
            for done in (f"naive-{r}", f"plan-{r}", f"plan-v1-{r}"):
                shutil.rmtree(root / done)
            best_naive, best_hpt, best_v1 = min(best_naive, t_naive), min(best_hpt, t_hpt), min(best_v1, t_v1)
            print(f"round {r}: naive {t_naive:.2f} s, hpt compile {t_hpt:.2f} s, without data digests {t_v1:.2f} s", flush=True)
        n = n_hpt
        print(f"trials: {n:,}")
        print(f"naive baseline : {best_naive:.2f} s ({best_naive / n * 1e6:.1f} µs/trial)")
        print(f"hpt compile    : {best_hpt:.2f} s ({best_hpt / n * 1e6:.1f} µs/trial)")
        print(f"ratio          : {best_hpt / best_naive:.2f}× (target ≤ 1.5×)")
        print(f"data digests   : {best_hpt:.2f} s with the months' digests in every manifest vs {best_v1:.2f} s "
              f"without (dataset.json version 1): {best_hpt / best_v1:.3f}× (target ≤ 1.10×)")
        # Memory: plans of 1,000 and 10,000 trials under tracemalloc (which slows everything down, so
        # not the 100,000 one); the growth per trial is the plan index (an id + its plan.json line).
        sizes = []
        for k in (args.params - 2, args.params - 1):
            folder = root / f"mem-{k}"
            folder.mkdir()
            sizes.append(traced_peak(make_spec(folder, args.values, k), folder / "plan"))
        (n_small, peak_small), (n_big, peak_big) = sizes
        per_trial = (peak_big - peak_small) / (n_big - n_small) * 2**20
        print(f"peak traced memory: {peak_small:.2f} MiB at {n_small:,} trials, {peak_big:.2f} MiB at {n_big:,} trials "
              f"→ {per_trial:.0f} bytes per extra trial (the plan index: an id in a list and a set, its plan.json line)")
        print(f"max RSS of this whole process: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
