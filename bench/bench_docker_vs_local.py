"""Docker trials vs local trials on the same plan: what running each trial in a container costs.

Compiles a spec (default: examples/quick.json — five short trials on the real demo data, one window),
then runs the plan with `hpt apply --backend local` and with `--backend docker`, one trial at a time,
each into a fresh results folder and a fresh preprocessing cache ($HPT_CACHE), so that each backend
fits the window's preprocessing once and the other trials take it from the cache (containers share
the host's cache). Rounds alternate the order. Prints each backend's wall time, how many trials fitted
vs took the cache, and the ratio docker / local (target ≤ 1.15).

    python bench/bench_docker_vs_local.py [--spec examples/quick.json] [--rounds 1]

Needs a Docker daemon and the trainer image (images/build-offline.sh), and the demo dataset
(`hpt data demo`). Everything it makes goes into a temporary folder that is removed at the end.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def hpt(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hpt.cli", *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})})


def run(plan: Path, backend: str, work: Path, tag: str) -> tuple[float, int, int]:
    """(wall seconds, trials that fitted the preprocessing, trials that took it from the cache)."""
    results, cache = work / f"results-{tag}", work / f"cache-{tag}"
    t = time.perf_counter()
    proc = hpt("apply", str(plan), "--backend", backend, "--results", str(results), "--parallel", "1",
               env={"HPT_CACHE": str(cache)})
    wall = time.perf_counter() - t
    if proc.returncode != 0:
        sys.exit(f"{backend} apply failed ({proc.returncode}): {proc.stderr[-2000:]}")
    logs = [p.read_text() for p in (results / "logs").glob("*.log")]
    return wall, sum("fitted," in text for text in logs), sum("cached," in text for text in logs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spec", default=str(ROOT / "examples" / "quick.json"))
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="hpt-dvl-") as tmp:
        work = Path(tmp)
        plan = work / "plan"
        proc = hpt("compile", args.spec, "--out", str(plan))
        if proc.returncode != 0:
            sys.exit(f"compile failed: {proc.stderr}")
        times: dict[str, list[float]] = {"local": [], "docker": []}
        for r in range(args.rounds):
            order = ("local", "docker") if r % 2 == 0 else ("docker", "local")
            for backend in order:
                wall, fitted, cached = run(plan, backend, work, f"{backend}-{r}")
                times[backend].append(wall)
                print(f"round {r + 1} {backend:6s}: {wall:6.1f} s  (preprocessing fitted {fitted}, from the cache {cached})",
                      flush=True)
        local, docker = statistics.median(times["local"]), statistics.median(times["docker"])
        print(f"median wall: local {local:.1f} s, docker {docker:.1f} s; docker / local = {docker / local:.3f} (target ≤ 1.15)")


if __name__ == "__main__":
    main()
