"""Trainer speed: samples/s of hpt's training loop vs a minimal hand-written PyTorch loop, same run.

Same model (built by hpt's registry), same encoded data already on the device, same batch size,
same seed and optimizer; only the loop differs. Runs alternate (baseline, hpt, baseline, hpt, ...)
and the medians are compared, so a noisy shared machine hurts both alike. Target: ratio ≥ 0.9.
It also prints where a trial's time goes: reading + preprocessing (cold and cached), training
steps, per-epoch validation and bookkeeping.

    .venv/bin/python bench/bench_trainer.py                       # full demo data, bag-of-words + lstm
    .venv/bin/python bench/bench_trainer.py --arch cnn --rows-per-month 5000 --repeats 5
    .venv/bin/python bench/bench_trainer.py --output json

Uses CUDA when present (then also samples GPU utilization with nvidia-smi), else the CPU.
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
import threading
import time
from pathlib import Path
from typing import Any


def hand_written_loop(model, x, y, *, batch_size: int, lr: float, epochs: int, seed: int) -> tuple[float, float]:
    """The baseline: the loop anyone would write (with the model's own objective, so both loops do the
    same arithmetic). Returns training samples per wall second and per CPU second."""
    import torch

    torch.manual_seed(seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(seed)
    n = len(x)
    model.train()
    _sync(x.device)
    start, cpu = time.perf_counter(), time.process_time()
    for _ in range(epochs):
        order = torch.randperm(n, generator=gen).to(x.device)
        for i in range(0, n, batch_size):
            idx = order[i:i + batch_size]
            loss = model.loss(model(x[idx]), y[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    _sync(x.device)
    return n * epochs / (time.perf_counter() - start), n * epochs / (time.process_time() - cpu)


def _sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


class GpuSampler:
    """Mean GPU utilization (%) while active, from nvidia-smi; None without one."""

    def __init__(self) -> None:
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                out = subprocess.run(["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits", "-i", "0"],
                                     capture_output=True, text=True, timeout=5).stdout.strip()
                self.samples.append(float(out.splitlines()[0]))
            except Exception:
                return
            self._stop.wait(0.2)

    def __enter__(self) -> "GpuSampler":
        if shutil.which("nvidia-smi"):
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    @property
    def mean(self) -> float | None:
        return statistics.mean(self.samples) if self.samples else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=None, help="dataset folder (default: the demo dataset, built if missing)")
    parser.add_argument("--rows-per-month", type=int, default=None, help="build/use a subsampled demo dataset instead")
    parser.add_argument("--arch", action="append", help="architecture(s) to bench (default: bag-of-words, lstm)")
    parser.add_argument("--train", default="2011-03-01,2011-04-01", help="training window START,END (default: one month, quick mode)")
    parser.add_argument("--validation", default="2011-04-01,2011-05-01", help="validation window START,END")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=5, help="alternating runs of each loop (medians compared)")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: CUDA when present)")
    parser.add_argument("--output", choices=["text", "json"], default="text")
    args = parser.parse_args(argv)

    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as hpt-trial does; must precede importing torch
    import torch

    from hpt.schemas.catalog import architecture as catalog_architecture
    from hpt.trainer.data import prepare
    from hpt.trainer.demo import build_demo_dataset
    from hpt.trainer.models import build_model
    from hpt.trainer.train import configure, cpu_limit, fit, select_device

    scratch = Path(tempfile.mkdtemp(prefix="hpt-bench-"))
    os.environ["HPT_CACHE"] = str(scratch / "cache")  # cold cache for the first prepare
    try:
        if args.data:
            data = args.data
        elif args.rows_per_month:
            data = str(build_demo_dataset(scratch / "demo", rows_per_month=args.rows_per_month))
        else:
            data = str(build_demo_dataset())
        window = {"train": args.train.split(","), "validation": args.validation.split(",")}
        device = select_device(args.device)
        report: dict[str, Any] = {"device": str(device), "threads": cpu_limit(), "torch": torch.__version__,
                                  "data": data, "window": window, "epochs": args.epochs, "batch_size": args.batch_size,
                                  "architectures": {}}
        if device.type == "cuda":
            report["gpu"] = torch.cuda.get_device_name(device)

        t = time.perf_counter()
        prepared = prepare(data, window, 4000, 12)
        report["prepare_cold_s"] = time.perf_counter() - t
        t = time.perf_counter()
        prepared = prepare(data, window, 4000, 12)
        report["prepare_cached_s"] = time.perf_counter() - t
        report["n_train"], report["n_valid"] = prepared.n_train, prepared.n_valid

        for arch in args.arch or ["bag-of-words", "lstm"]:
            params = dict(catalog_architecture(arch).defaults(), batch_size=args.batch_size, early_stopping_patience=10**6)
            configure(0, device)
            x = torch.from_numpy(prepared.train_tokens).to(device)
            y = torch.from_numpy(prepared.train_targets).to(device)
            hpt_rates, base_rates, hpt_cpu, base_cpu, fits = [], [], [], [], []

            def run_baseline() -> None:
                configure(0, device)
                model = build_model(arch, params, len(prepared.prep.vocab), len(prepared.prep.targets) - 1).to(device)
                wall, cpu = hand_written_loop(model, x, y[:, :model.n_targets], batch_size=args.batch_size,
                                              lr=params["learning_rate"], epochs=args.epochs, seed=0)
                base_rates.append(wall)
                base_cpu.append(cpu)

            def run_hpt() -> None:
                result = fit(arch, params, prepared, seed=0, max_epochs=args.epochs, device=device)
                hpt_rates.append(result.metrics["samples_per_s"])
                hpt_cpu.append(prepared.n_train * result.metrics["epochs"] / result.step_cpu_seconds)
                fits.append(result)

            with GpuSampler() as gpu:
                for i in range(args.repeats):  # pairs, in alternating order, so drift and warm-up hit both
                    for run in ((run_baseline, run_hpt) if i % 2 == 0 else (run_hpt, run_baseline)):
                        run()
            median_fit = sorted(fits, key=lambda r: r.metrics["samples_per_s"])[len(fits) // 2]
            step_s = prepared.n_train * median_fit.metrics["epochs"] / median_fit.metrics["samples_per_s"]
            entry = {
                "hpt_samples_per_s": statistics.median(hpt_rates),
                "baseline_samples_per_s": statistics.median(base_rates),
                "ratio": statistics.median(hpt_rates) / statistics.median(base_rates),
                "ratio_paired": statistics.median(h / b for h, b in zip(hpt_rates, base_rates)),
                "ratio_best": max(hpt_rates) / max(base_rates),
                "hpt_samples_per_cpu_s": statistics.median(hpt_cpu),
                "baseline_samples_per_cpu_s": statistics.median(base_cpu),
                "ratio_cpu": statistics.median(hpt_cpu) / statistics.median(base_cpu),
                "hpt_runs": hpt_rates, "baseline_runs": base_rates,
                "fit_s": median_fit.metrics["train_time_s"],
                "train_steps_s": step_s,
                "validation_and_bookkeeping_s": median_fit.metrics["train_time_s"] - step_s,
                "valid_mse": median_fit.metrics["mse"], "baseline_mse": median_fit.metrics["baseline_mse"],
            }
            if gpu.mean is not None:
                entry["gpu_utilization_pct"] = gpu.mean
            report["architectures"][arch] = entry
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

    if args.output == "json":
        print(json.dumps(report, indent=2))
        return 0
    where = report.get("gpu", f"{report['threads']} CPU threads")
    print(f"hpt trainer bench — device {report['device']} ({where}), torch {report['torch']}")
    print(f"data: {report['n_train']:,} training / {report['n_valid']:,} validation rows, window {window['train']} → "
          f"{window['validation']}, {args.epochs} epochs, batch {args.batch_size}, {args.repeats} alternating runs")
    print(f"data preparation: {report['prepare_cold_s']:.2f} s cold (read + fit vocabulary/scaler + encode), "
          f"{report['prepare_cached_s']:.3f} s from the per-window cache")
    for arch, e in report["architectures"].items():
        print(f"\n{arch}:")
        print(f"  hand-written loop  {e['baseline_samples_per_s']:>12,.0f} samples/s   (runs: "
              + ", ".join(f"{v:,.0f}" for v in e["baseline_runs"]) + ")")
        print(f"  hpt trainer        {e['hpt_samples_per_s']:>12,.0f} samples/s   (runs: "
              + ", ".join(f"{v:,.0f}" for v in e["hpt_runs"]) + ")")
        verdict = "meets" if e["ratio"] >= 0.9 else "BELOW"
        print(f"  ratio hpt/baseline {e['ratio']:.3f}  ({verdict} the 0.9 target)   "
              f"median of paired runs {e['ratio_paired']:.3f}, best vs best {e['ratio_best']:.3f}")
        print(f"  one fit: {e['fit_s']:.2f} s = {e['train_steps_s']:.2f} s training steps + "
              f"{e['validation_and_bookkeeping_s']:.2f} s per-epoch validation/bookkeeping; "
              f"valid MSE {e['valid_mse']:.4f} vs mean {e['baseline_mse']:.4f}")
        print(f"  per CPU-second     {e['baseline_samples_per_cpu_s']:>12,.0f} vs {e['hpt_samples_per_cpu_s']:,.0f} "
              f"samples/CPU-s: ratio {e['ratio_cpu']:.3f} (steadier than wall time when other work shares the cores)")
        if "gpu_utilization_pct" in e:
            print(f"  GPU utilization while training: {e['gpu_utilization_pct']:.0f}% (nvidia-smi, mean)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
