"""GPU check for the Docker backend, on a machine with NVIDIA GPUs (skips cleanly elsewhere).

Runs a plan of GPU trials (1 GPU each, twice as many trials as GPUs, so GPUs are handed out again)
with `hpt apply --backend docker`, and checks, while the trials run and after:
- no GPU is given to two running containers at once (their device requests, by `docker inspect`);
- inside each container exactly ONE GPU is visible, and it is the host GPU it was assigned
  (`nvidia-smi -L` UUIDs inside vs on the host, via `docker exec`);
- every trial trained on CUDA (its row's `device` column says cuda:...), and finished.
Then a shared GPU: two trials of `gpus` 0.5 on a one-device pool (HPT_GPUS=<the first GPU>) must run on
that device at the same time, and each must cap its memory at half of it (its log says
`GPU memory capped at 0.5`: torch.cuda.set_per_process_memory_fraction, docs/trainer.md).

    python bench/gpu_check.py [--image hpt-trainer:latest] [--trials N] [--epochs 2] [--data DIR] [--share 0.5]

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
from fractions import Fraction
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
    """Polls the experiment's running containers: their device ids, what they see, overlaps beyond the
    shares (a device held by more than a whole GPU's worth of trials), and how many shared one at once."""

    def __init__(self, client, experiment: str):
        super().__init__(daemon=True)
        self.client, self.experiment = client, experiment
        self.seen: dict[str, dict] = {}        # container id → {"trial", "devices", "visible"}
        self.overlaps: list[str] = []
        self.most_on_one_device = 0            # the most trials seen running on one device at once
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            running = self.client.containers.list(filters={"label": f"hpt.experiment={self.experiment}",
                                                           "status": "running"})
            held: dict[str, list[tuple[str, Fraction]]] = {}
            for c in running:
                requests = (c.attrs.get("HostConfig") or {}).get("DeviceRequests") or []
                devices = [d for r in requests for d in (r.get("DeviceIDs") or [])]
                share = Fraction(c.labels.get("hpt.gpu-share", "1"))
                for d in devices:
                    held.setdefault(d, []).append((c.name, share))
                    if sum(s for _, s in held[d]) > 1:
                        self.overlaps.append(f"GPU {d} held by {', '.join(n for n, _ in held[d])} at once")
                    self.most_on_one_device = max(self.most_on_one_device, len(held[d]))
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
    parser.add_argument("--share", type=float, default=0.5, help="the shared-GPU check's resources.gpus (1/n; 0: skip it)")
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
    if args.share and not 0 < args.share < 1:
        skip(f"--share {args.share:g} is not a share of one GPU (0.5, 0.25, ...; 0 skips the shared-GPU check)")

    work = Path(tempfile.mkdtemp(prefix="hpt-gpu-check-"))
    work.chmod(0o755)
    data = Path(args.data) if args.data else None
    if data is None:
        from hpt.trainer.demo import build_demo_dataset

        data = build_demo_dataset(work / "data", rows_per_month=3000, seed=0)
        for p in [data, *data.rglob("*")]:
            p.chmod(0o755 if p.is_dir() else 0o644)
    whole = check_plan(client, gpus, work, data, args, n=args.trials or 2 * len(gpus), share=1)
    shared = check_plan(client, gpus, work, data, args, n=round(1 / args.share), share=args.share) if args.share else []
    if whole or shared:
        print("FAIL:\n  " + "\n  ".join(whole + shared))
        return 1
    print("PASS: every trial saw exactly its own GPU and trained on CUDA"
          + (f"; {round(1 / args.share)} trials of {args.share:g} shared one GPU, each capped at its share" if args.share else ""))
    shutil.rmtree(work, ignore_errors=True)
    return 0


def check_plan(client, gpus: dict[str, str], work: Path, data: Path, args, n: int, share: float) -> list[str]:
    """Apply a plan of n trials of `share` GPUs each and return the problems found (none: passed). A share
    < 1 runs on a pool of one device (the first GPU), so that its n trials must share it."""
    from executor_support import write_plan
    from trial_factory import make_manifest

    experiment = "e-" + uuid.uuid4().hex[:12]
    gpus_option = share if share < 1 else 1
    manifests = [make_manifest(data, "lstm", epochs=args.epochs, seed=i, experiment=experiment, image=args.image,
                               resources={"gpus": gpus_option, "cpus": 2, "memory": "8Gi"}) for i in range(n)]
    plan = write_plan(work / f"plan-{experiment}", manifests)
    results = work / f"results-{experiment}"
    env = dict(os.environ)
    pool = sorted(gpus, key=int)
    if share < 1:
        env["HPT_GPUS"] = pool[0]

    watcher = Watcher(client, experiment)
    watcher.start()
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "hpt.cli", "apply", str(plan), "--backend", "docker",
                           "--results", str(results), "-f", "json"], capture_output=True, text=True, env=env)
    wall = time.monotonic() - started
    watcher.done.set()
    watcher.join(timeout=5)

    from hpt.store import LOGS, open_store
    from hpt.schemas.row import parse_row_csv

    store = open_store(str(results))
    rows = {k[5:-4]: parse_row_csv(store.get(k).decode()) for k in store.list("rows/") if k.endswith(".csv")}
    problems = list(watcher.overlaps)
    if proc.returncode != 0:
        problems.append(f"hpt apply exited {proc.returncode}: {proc.stderr[-2000:]}")
    capped = f"GPU memory capped at {float(Fraction(1, round(1 / share))):.4g} of"
    for m in manifests:
        row = rows.get(m.id)
        if row is None or row.get("status") != "done":
            problems.append(f"{m.id}: no done row ({row and row.get('reason')})")
        elif not str(row.get("device", "")).startswith("cuda"):
            problems.append(f"{m.id}: trained on {row.get('device')!r}, not CUDA")
        if share < 1:
            log = store.get(f"{LOGS}{m.id}.log").decode(errors="replace") if store.exists(f"{LOGS}{m.id}.log") else ""
            if capped not in log:
                problems.append(f"{m.id}: its log does not say {capped!r} (gpus {share:g})")
    for info in watcher.seen.values():
        expected = [gpus.get(d, d) for d in info["devices"]]
        if len(info["visible"]) != 1 or info["visible"] != expected:
            problems.append(f"{info['trial']}: assigned {info['devices']} {expected}, saw {info['visible']}")
        if share < 1 and info["devices"] != pool[:1]:
            problems.append(f"{info['trial']}: assigned {info['devices']}, not the one-device pool {pool[:1]}")
    if share < 1 and watcher.most_on_one_device < n:
        problems.append(f"the {n} trials of gpus {share:g} never ran on one device at once "
                        f"(at most {watcher.most_on_one_device} seen together)")
    if len(watcher.seen) < len(manifests):
        print(f"note: {len(manifests) - len(watcher.seen)} container(s) ended before the watcher looked inside")

    print(json.dumps({"gpus": len(gpus), "share": share, "trials": n, "watched": len(watcher.seen),
                      "most_on_one_device": watcher.most_on_one_device, "wall_s": round(wall, 1),
                      "devices": sorted({r.get("device", "") for r in rows.values()}),
                      "assignments": {v["trial"]: v["devices"] for v in watcher.seen.values()}}, indent=1))
    return problems


if __name__ == "__main__":
    sys.exit(main())
