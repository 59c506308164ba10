"""GPU check for the Docker backend, on a machine with NVIDIA GPUs (skips cleanly elsewhere).

Runs a plan of GPU trials (1 GPU each, twice as many trials as GPUs, so GPUs are handed out again)
with `hpt apply --backend docker`, and checks, while the trials run and after:
- no GPU is given to two running containers at once (their device requests, by `docker inspect`);
- inside each container exactly ONE GPU is visible, and it is the host GPU it was assigned
  (`nvidia-smi -L` UUIDs inside vs on the host, via `docker exec`);
- every trial trained on CUDA (its row's `device` column says cuda:...), and finished.

    python bench/gpu_check.py [--image hpt-trainer:latest] [--trials N] [--epochs 2] [--data DIR]

The image must have CUDA torch: `hpt image build` (FROM a CUDA PyTorch runtime). Exit codes: 0 pass or
skipped (prints SKIP and why), 1 a check failed.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))


def host_gpus() -> dict[str, str]:
    """index → UUID of the host's GPUs, {} without a driver."""
    exe = shutil.which("nvidia-smi")
    if not exe:
        return {}
    out = subprocess.run([exe, "-L"], capture_output=True, text=True, check=False).stdout
    return {m.group(1): m.group(2) for m in re.finditer(r"^GPU (\d+):.*\(UUID: (\S+)\)", out, re.MULTILINE)}


def skip(why: str) -> None:
    print(f"SKIP: {why}")
    sys.exit(0)


class Watcher(threading.Thread):
    """Polls the experiment's running containers: their device ids, what they see, overlaps."""

    def __init__(self, client, experiment: str):
        super().__init__(daemon=True)
        self.client, self.experiment = client, experiment
        self.seen: dict[str, dict] = {}        # container id → {"trial", "devices", "visible"}
        self.overlaps: list[str] = []
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            running = self.client.containers.list(filters={"label": f"hpt.experiment={self.experiment}",
                                                           "status": "running"})
            held: dict[str, str] = {}
            for c in running:
                requests = (c.attrs.get("HostConfig") or {}).get("DeviceRequests") or []
                devices = [d for r in requests for d in (r.get("DeviceIDs") or [])]
                for d in devices:
                    if d in held:
                        self.overlaps.append(f"GPU {d} held by {held[d]} and {c.name} at once")
                    held[d] = c.name
                if c.id not in self.seen:
                    result = c.exec_run(["nvidia-smi", "-L"])
                    visible = re.findall(r"\(UUID: (\S+)\)", result.output.decode(errors="replace"))
                    self.seen[c.id] = {"trial": c.labels.get("hpt.trial"), "devices": devices, "visible": visible}
            time.sleep(0.2)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image", default="hpt-trainer:latest")
    parser.add_argument("--trials", type=int, default=None, help="default: 2 × the GPUs")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--data", default=None, help="dataset folder (default: a small demo slice built here)")
    args = parser.parse_args()

    gpus = host_gpus()
    if not gpus:
        skip("no NVIDIA GPU on this host (nvidia-smi -L lists none)")
    try:
        import docker

        client = docker.from_env(timeout=30)
        client.ping()
    except Exception as err:
        skip(f"no Docker daemon: {err}")
    try:
        client.images.get(args.image)
    except Exception:
        skip(f"image {args.image} missing: build it with `hpt image build` (CUDA PyTorch base)")

    from executor_support import write_plan
    from trial_factory import make_manifest

    work = Path(tempfile.mkdtemp(prefix="hpt-gpu-check-"))
    work.chmod(0o755)
    data = Path(args.data) if args.data else None
    if data is None:
        from hpt.trainer.demo import build_demo_dataset

        data = build_demo_dataset(work / "data", rows_per_month=3000, seed=0)
        for p in [data, *data.rglob("*")]:
            p.chmod(0o755 if p.is_dir() else 0o644)
    experiment = "e-" + uuid.uuid4().hex[:12]
    n = args.trials or 2 * len(gpus)
    manifests = [make_manifest(data, "lstm", epochs=args.epochs, seed=i, experiment=experiment, image=args.image,
                               resources={"gpus": 1, "cpus": 2, "memory": "8Gi"}) for i in range(n)]
    plan = write_plan(work / "plan", manifests)
    results = work / "results"

    watcher = Watcher(client, experiment)
    watcher.start()
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "hpt.cli", "apply", str(plan), "--backend", "docker",
                           "--results", str(results), "-f", "json"], capture_output=True, text=True)
    wall = time.monotonic() - started
    watcher.done.set()
    watcher.join(timeout=5)

    from hpt.store import open_store
    from hpt.schemas.row import parse_row_csv

    store = open_store(str(results))
    rows = {k[5:-4]: parse_row_csv(store.get(k).decode()) for k in store.list("rows/") if k.endswith(".csv")}
    problems = list(watcher.overlaps)
    if proc.returncode != 0:
        problems.append(f"hpt apply exited {proc.returncode}: {proc.stderr[-2000:]}")
    for m in manifests:
        row = rows.get(m.id)
        if row is None or row.get("status") != "done":
            problems.append(f"{m.id}: no done row ({row and row.get('reason')})")
        elif not str(row.get("device", "")).startswith("cuda"):
            problems.append(f"{m.id}: trained on {row.get('device')!r}, not CUDA")
    for info in watcher.seen.values():
        expected = [gpus.get(d, d) for d in info["devices"]]
        if len(info["visible"]) != 1 or info["visible"] != expected:
            problems.append(f"{info['trial']}: assigned {info['devices']} {expected}, saw {info['visible']}")
    if len(watcher.seen) < len(manifests):
        print(f"note: {len(manifests) - len(watcher.seen)} container(s) ended before the watcher looked inside")

    print(json.dumps({"gpus": len(gpus), "trials": n, "watched": len(watcher.seen), "wall_s": round(wall, 1),
                      "per_trial_s": round(wall * len(gpus) / n, 1),
                      "devices": sorted({r.get("device", "") for r in rows.values()}),
                      "assignments": {v["trial"]: v["devices"] for v in watcher.seen.values()}}, indent=1))
    if problems:
        print("FAIL:\n  " + "\n  ".join(problems))
        return 1
    print("PASS: every trial saw exactly its own GPU and trained on CUDA")
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
