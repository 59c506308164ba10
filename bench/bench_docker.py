"""Per-trial overhead of `hpt apply --backend docker` against plain `docker run`, measured in one run.

Same image, same trials, same container settings: the baseline runs the very `docker run` lines that
`hpt apply --dry-run` prints (with --rm instead of -d, one after the other, waiting for each);
then `hpt apply --backend docker --parallel 1` runs the same plan into a fresh results folder.

Prints
- per-trial wall time of each and their ratio (target: apply ≤ 1.15 × plain docker run),
- the median container start (create + start through the docker API, as the backend does it,
  until the daemon reports the container running),
- the parallel speed-up: the same plan with --parallel P (default: the backend's capacity) vs 1.

    python bench/bench_docker.py [--trials 4] [--rounds 1] [--parallel P] [--epochs 1]

Needs a Docker daemon and the trainer image (images/build-offline.sh). Everything it makes goes
into a temporary folder that is removed at the end.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
IMAGE = "hpt-trainer:latest"


def hpt(*args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hpt.cli", *args], capture_output=True, text=True, **kw)


def plan_for(work: Path, data: Path, trials: int, epochs: int, tag: str) -> Path:
    from executor_support import write_plan
    from trial_factory import make_manifest

    experiment = "e-" + uuid.uuid4().hex[:12]
    ms = [make_manifest(data, "bag-of-words", epochs=epochs, seed=i, experiment=experiment, image=IMAGE,
                        resources={"gpus": 0, "cpus": 1, "memory": "2Gi"}) for i in range(trials)]
    return write_plan(work / f"plan-{tag}", ms)


def baseline(work: Path, plan: Path, tag: str) -> list[float]:
    """Each trial's `docker run` (the dry-run line, --rm, in the foreground): seconds per trial."""
    results = work / f"results-base-{tag}"
    proc = hpt("apply", str(plan), "--backend", "docker", "--results", str(results), "--dry-run", check=True)
    times = []
    for line in proc.stdout.strip().splitlines():
        assert line.startswith("docker run -d --rm ")
        cmd = "docker run --rm " + line[len("docker run -d --rm "):] + " >/dev/null 2>&1"
        t = time.perf_counter()
        subprocess.run(["bash", "-c", cmd], check=True)
        times.append(time.perf_counter() - t)
    rows = list((results / "rows").glob("*.csv"))
    assert len(rows) == len(times), f"baseline wrote {len(rows)} rows for {len(times)} trials"
    return times


def apply(work: Path, plan: Path, tag: str, parallel: int) -> float:
    results = work / f"results-apply-{tag}-{parallel}"
    t = time.perf_counter()
    proc = hpt("apply", str(plan), "--backend", "docker", "--results", str(results), "--parallel", str(parallel),
               "-f", "json")
    wall = time.perf_counter() - t
    if proc.returncode != 0:
        raise SystemExit(f"hpt apply failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    finished = [json.loads(x) for x in proc.stdout.splitlines() if '"run-finished"' in x][-1]
    assert finished["done"] == finished["total"], finished
    return wall


def container_starts(plan: Path, work: Path, n: int) -> list[float]:
    """create + start through the backend, until the daemon says running: seconds each."""
    from hpt.executor.backends.docker import DockerBackend
    from hpt.executor.plan import load_plan

    subs = load_plan(plan).with_results(str(work / "results-starts")).submissions[:n]
    backend = DockerBackend()
    backend.preflight(subs)
    client = backend._client()
    out = []
    for sub in subs:
        t = time.perf_counter()
        handle = backend.submit(sub)
        while client.api.inspect_container(handle.container_id)["State"]["Status"] == "created":
            time.sleep(0.005)
        out.append(time.perf_counter() - t)
        backend.cancel(handle)
        backend.release(handle)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--parallel", type=int, default=None, help="default: the backend's capacity")
    args = parser.parse_args()

    subprocess.run([str(ROOT / "images" / "build-offline.sh")], check=True)
    work = Path(tempfile.mkdtemp(prefix="hpt-bench-docker-"))
    work.chmod(0o755)
    try:
        from hpt.trainer.demo import build_demo_dataset

        data = build_demo_dataset(work / "data", rows_per_month=1500, seed=0)
        for p in [data, *data.rglob("*")]:
            p.chmod(0o755 if p.is_dir() else 0o644)
        from hpt.executor.backends.docker import DockerBackend

        parallel = args.parallel
        if parallel is None:
            probe = DockerBackend()
            from hpt.executor.plan import load_plan

            probe.preflight(load_plan(plan_for(work, data, 1, 1, "probe")).submissions)
            parallel = probe.capacity()

        baseline(work, plan_for(work, data, 1, args.epochs, "warm"), "warm")  # page cache, image layers
        base_per_trial, apply_per_trial, speedups = [], [], []
        for r in range(args.rounds):  # alternate the order, so drift on a shared machine hits both alike
            def run_base() -> None:
                times = baseline(work, plan_for(work, data, args.trials, args.epochs, f"b{r}"), f"b{r}")
                base_per_trial.append(sum(times) / len(times))

            def run_apply() -> float:
                wall = apply(work, plan_for(work, data, args.trials, args.epochs, f"s{r}"), f"s{r}", 1)
                apply_per_trial.append(wall / args.trials)
                return wall

            if r % 2 == 0:
                run_base()
                seq = run_apply()
            else:
                seq = run_apply()
                run_base()
            if parallel > 1:
                par = apply(work, plan_for(work, data, args.trials, args.epochs, f"p{r}"), f"p{r}", parallel)
                speedups.append(seq / par)
        starts = container_starts(plan_for(work, data, 5, 1, "starts"), work, 5)

        b, a = statistics.median(base_per_trial), statistics.median(apply_per_trial)
        print(f"trials per run: {args.trials}, rounds: {args.rounds}, epochs: {args.epochs}, cores: {os.cpu_count()}")
        print(f"plain docker run     : {b:6.2f} s per trial")
        print(f"hpt apply (docker)   : {a:6.2f} s per trial  (whole apply, CLI start included, / trials)")
        print(f"ratio apply / docker : {a / b:6.3f}   (target <= 1.15)")
        print(f"overhead per trial   : {a - b:+6.2f} s")
        print(f"median container start (create+start → running): {statistics.median(starts) * 1000:.0f} ms "
              f"(min {min(starts) * 1000:.0f}, max {max(starts) * 1000:.0f}, n={len(starts)})")
        if speedups:
            print(f"parallel speed-up    : {statistics.median(speedups):.2f}x with --parallel {parallel} vs 1")
        else:
            print("parallel speed-up    : n/a (capacity 1 on this host)")
        return 0
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
