"""Search methods side by side on a space large enough to separate them: hpt vs Optuna vs Ray Tune.

The space: 432 configs of the built-in bag-of-words model's hyperparameters (learning_rate × 6,
hidden_size × 4, dropout × 3, embedding_dim × 3, batch_size × 2), each with a learning curve over up
to 27 epochs from a SYNTHETIC surrogate (below): a smooth bowl in the hyperparameters, a per-config
ruggedness, and curves whose speed varies by config, so that early values rank configs only roughly
(a slow learner can finish best). It is not fitted on measured runs: it makes thousands of trials cheap
and the comparison exact (every method sees the same function, the grid's best is known).

Compute is counted in epochs trained (a stopped trial costs the epochs it ran; a promotion costs the epochs it
adds: hpt's continues from its lower rung's checkpoint, search.continue, as Optuna's and Ray's trials go on).
Each method's incumbent is its best config measured at the full 27 epochs. Printed per method, the
median over SEEDS seeds: the epochs it spent before its incumbent was within 0.5% of the grid's best
(∞ if never), and its final regret (incumbent / grid's best − 1) within the budget; then hpt's best
method's ratios to the peers.

Methods (the same budget: BUDGET configs started):
  hpt tpe+asha      `search: {method: tpe, batch: 4, stopping: {rule: asha, ...}}`, compiled by hpt,
                    its rounds decided by hpt's own code (compiler/rounds.next_round) and each trial's
                    stop by hpt's own rule (compiler/stopping), as `hpt apply --parallel 1` runs them:
                    one trial at a time, told the finished ones.
  hpt tpe+median    the same with `stopping: {rule: median}` (Katib's defaults).
  hpt bohb          `search: {method: bohb}` over fidelities of 3, 9 and 27 epochs (eta 3); a promotion
                    continues from its lower rung (search.continue, the default).
  hpt bohb-restart  the same with `continue: false`: each promotion retrains its lower rung's epochs.
  optuna            TPESampler(seed) + HyperbandPruner(min_resource 1, max_resource 27, reduction_factor 3),
                    trial.report / should_prune at every epoch.
  ray asha          Ray Tune's ASHAScheduler(max_t 27, grace_period 1, reduction_factor 3) with its
                    OptunaSearch (TPE) searcher, one trial at a time, when `ray[tune]` is installed (the
                    `bench` extra, never a test dependency: it adds click beside typer, so install it in an
                    environment of its own, e.g. a venv whose .pth files add the project's site-packages);
                    skipped with the reason otherwise (not installed, or its node did not start: Ray waits
                    a fixed 30 s for its raylet, which a loaded machine misses; the bench tries 3 times).

Usage:  .venv/bin/python bench/bench_methods.py [--seeds 5] [--budget 120] [--methods tpe+asha,tpe+median,bohb,bohb-restart]
                                               [--no-ray] [--no-optuna]

Measured here (2 shared cores, load 8–14; ray 2.60, optuna 5.0; `--seeds 5 --budget 100 --methods
bohb,bohb-restart`, 234 s): epochs to within 0.5% of the grid's best, median of 5 seeds (per seed in the
output) — hpt bohb 480, hpt bohb-restart 612, Optuna TPE + HyperbandPruner 824, Ray Tune ASHA never (∞: no
seed got within 0.5%; its final regrets 0.71–2.02%, ASHA over steps stopping the slow learners this surrogate
makes, as hpt tpe+asha does: 1.07% before). Ratios: hpt bohb / Optuna 0.58, / Ray ASHA — (Ray never reached
it); continuing instead of restarting: 480 / 612 = 0.78 of the epochs, 696 vs 894 spent in all. Final regret
0.000% (hpt bohb), 0.136% (Optuna), 1.704% (Ray). Optuna's figure moves between runs (1,009 in a run just
before: HyperbandPruner's brackets hash the study's random name); hpt's and Ray's did not.
"""
from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import math
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

MAX_EPOCHS = 27
SPACE = {"learning_rate": [0.0003, 0.001, 0.003, 0.01, 0.03, 0.1], "hidden_size": [16, 32, 64, 128],
         "dropout": [0.0, 0.25, 0.5], "embedding_dim": [16, 32, 64], "batch_size": [64, 256]}
NAMES = list(SPACE)
TARGET = 0.005
RAY_STARTS = 3
RAY_FAILURES: list[str] = []   # why Ray's node did not start, when it did not


def _noise(config: tuple, salt: str) -> float:
    digest = hashlib.sha256(f"{salt}:{config}".encode()).hexdigest()
    return int(digest[:8], 16) / 0xFFFFFFFF - 0.5


def final_value(config: tuple) -> float:
    lr, hidden, dropout, emb, batch = config
    # the best learning rate grows with the batch and shrinks with the width
    best_lr = -2.3 + 0.3 * math.log10(batch / 64) - 0.2 * math.log2(hidden / 16) / 3
    value = 0.80 + 0.05 * (math.log10(lr) - best_lr) ** 2
    value += 0.012 * (math.log2(hidden) - 5.5) ** 2 + 0.02 * (dropout - 0.25) ** 2 * (hidden / 64)
    value += 0.008 * abs(math.log2(emb) - 5)
    return value + 0.01 * _noise(config, "rugged")


def curve(config: tuple) -> list[float]:
    """The value after each epoch 1..27: the final value plus a gap that closes at a config's own speed."""
    lr = config[0]
    speed = 0.25 + 0.6 * (math.log10(lr) + 3.6) / 2.6 + 0.3 * _noise(config, "speed")   # fast lrs learn fast
    gap = 0.25 + 0.1 * _noise(config, "gap")
    return [final_value(config) + gap * math.exp(-speed * max(0.2, speed) * e / 3) + gap * 0.4 / e for e in range(1, MAX_EPOCHS + 1)]


def at(config: tuple, epochs: int) -> float:
    return curve(config)[epochs - 1]


class Trace:
    """A method's spending and its incumbent (best value measured at the full epochs) over time."""

    def __init__(self, grid_best: float):
        self.grid_best, self.epochs, self.best, self.reached = grid_best, 0, math.inf, math.inf

    def spend(self, epochs: int, full_value: float | None = None) -> None:
        self.epochs += epochs
        if full_value is not None and full_value < self.best:
            self.best = full_value
            if self.best <= self.grid_best * (1 + TARGET) and self.reached == math.inf:
                self.reached = self.epochs

    def regret(self) -> float:
        return self.best / self.grid_best - 1


# --- hpt ---------------------------------------------------------------------------------------
def _compile(work: Path, name: str, search: dict, fidelities: list | None = None) -> Path:
    from hpt.compiler import CompileOptions, compile_spec
    import datetime as dt

    spec = {"architecture": "bag-of-words", "date-range": [["2011-07-01", "2011-09-01"]], "epochs": MAX_EPOCHS,
            "parameters": SPACE, "search": search}
    if fidelities:
        spec["fidelities"] = fidelities
    path = work / f"{name}.json"
    path.write_text(json.dumps(spec))
    compile_spec(str(path), CompileOptions(out=work / name, today=dt.date(2026, 11, 26), force=True))
    return work / name


def _key(params: dict) -> tuple:
    return tuple(params[n] for n in NAMES)


def hpt_run(work: Path, seed: int, budget: int, grid_best: float, method: str) -> Trace:
    """hpt's own compile and round decisions, trials run one at a time in plan order (--parallel 1)."""
    from hpt.compiler.rounds import next_round
    from hpt.compiler.stopping import STOPPING

    trace = Trace(grid_best)
    continuing = method == "bohb"   # bohb-restart: the same with search.continue false (each promotion retrains)
    if method in ("bohb", "bohb-restart"):
        plan = _compile(work, f"{method}-{seed}", {"method": "bohb", "trials": budget, "batch": 9, "seed": seed, "eta": 3,
                                                   "promotion": "async", "continue": continuing},
                        [{"name": "e3", "epochs": 3}, {"name": "e9", "epochs": 9}, {"name": "e27", "epochs": 27}])
    else:
        rule = method.split("+")[1]
        settings = {"asha": {"rule": "asha", "grace_period": 1, "reduction_factor": 3, "max_t": MAX_EPOCHS},
                    "median": {"rule": "median"}}[rule]
        plan = _compile(work, f"{method}-{seed}", {"method": "tpe", "trials": budget, "batch": 4, "seed": seed,
                                                   "stopping": settings})
        stopping = STOPPING.get(rule)
        resolved = json.loads((plan / "plan.json").read_text())["spec"]["search"]["stopping"]
    rows: dict[str, dict] = {}
    finished: dict[str, list] = {}
    while True:
        doc = json.loads((plan / "plan.json").read_text())
        for tid in doc["trials"]:   # plan order: what --parallel 1 runs
            if tid in rows:
                continue
            manifest = json.loads((plan / "trials" / f"{tid}.json").read_text())
            config, epochs = _key(manifest["params"]), manifest["budget"]["epochs"]
            values = curve(config)[:epochs]
            if method.startswith("bohb"):
                rows[tid] = {"status": "done", "mse": repr(values[-1])}
                # a promotion continues from its lower rung's checkpoint (search.continue): only the epochs added
                already = (manifest.get("continuation") or {}).get("epochs", 0) if continuing else 0
                trace.spend(epochs - already, values[-1] if epochs == MAX_EPOCHS else None)
                continue
            points = list(enumerate(values, start=1))
            stop = stopping.first_stop(resolved, points, finished, {})
            if stop is None:
                rows[tid] = {"status": "done", "mse": repr(values[-1])}
                finished[tid] = points
                trace.spend(epochs, values[-1])
            else:
                rows[tid] = {"status": "stopped", "mse": repr(values[stop.step - 1])}
                finished[tid] = points[:stop.step]
                trace.spend(stop.step)
        if next_round(plan, rows, 1) is None:
            return trace


# --- peers -------------------------------------------------------------------------------------
def optuna_run(seed: int, budget: int, grid_best: float) -> Trace:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    trace = Trace(grid_best)
    study = optuna.create_study(direction="minimize", sampler=optuna.samplers.TPESampler(seed=seed),
                                pruner=optuna.pruners.HyperbandPruner(min_resource=1, max_resource=MAX_EPOCHS,
                                                                      reduction_factor=3))

    def objective(trial):  # noqa: ANN001, ANN202
        config = tuple(trial.suggest_categorical(n, SPACE[n]) for n in NAMES)
        values = curve(config)
        for epoch, value in enumerate(values, start=1):
            trial.report(value, epoch)
            if trial.should_prune():
                trace.spend(epoch)
                raise optuna.TrialPruned()
        trace.spend(MAX_EPOCHS, values[-1])
        return values[-1]

    study.optimize(objective, n_trials=budget)
    return trace


def ray_run(seed: int, budget: int, grid_best: float) -> Trace | None:
    try:
        from ray import tune
        from ray.tune.schedulers import ASHAScheduler
        from ray.tune.search.optuna import OptunaSearch
    except ImportError:
        return None
    import ray

    if not ray.is_initialized():   # once per bench run: a node takes ~30 s to start on the shared machine
        os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
        os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")   # no CSV/JSON/TensorBoard file per result
        for attempt in range(1, RAY_STARTS + 1):   # Ray waits a fixed 30 s for its raylet: a loaded machine misses it
            try:
                ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False, configure_logging=False)
                break
            except Exception as err:  # noqa: BLE001 — "The current node timed out during startup"
                ray.shutdown()
                RAY_FAILURES.append(f"start {attempt}: {err}")
        else:
            return None
    trace = Trace(grid_best)

    def trainable(config):  # noqa: ANN001, ANN202
        values = curve(tuple(config[n] for n in NAMES))
        for value in values:
            tune.report({"mse": value})

    seen: dict[str, list[float]] = {}   # trial → its reported values, in the order trials first reported

    class Record(tune.Callback):   # on the driver: every result as Tune's scheduler sees it (no result files)
        def on_trial_result(self, iteration, trials, trial, result, **info):  # noqa: ANN001, ANN003
            seen.setdefault(trial.trial_id, []).append(result["mse"])

    space = {n: tune.choice(v) for n, v in SPACE.items()}
    tuner = tune.Tuner(trainable, param_space=space, tune_config=tune.TuneConfig(
        metric="mse", mode="min", num_samples=budget, max_concurrent_trials=1, reuse_actors=True,
        search_alg=OptunaSearch(seed=seed),
        scheduler=ASHAScheduler(max_t=MAX_EPOCHS, grace_period=1, reduction_factor=3)),
        run_config=tune.RunConfig(storage_path=tempfile.mkdtemp(prefix="hpt-bench-ray-"), verbose=0, callbacks=[Record()]))
    tuner.fit()
    # replay in the order trials ran (one at a time): their epochs and, for complete ones, the full value
    for history in seen.values():
        trace.spend(len(history), history[-1] if len(history) == MAX_EPOCHS else None)
    return trace


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--budget", type=int, default=120, help="configs each method starts")
    parser.add_argument("--methods", default="tpe+asha,tpe+median,bohb")
    parser.add_argument("--no-ray", action="store_true")
    parser.add_argument("--no-optuna", action="store_true")
    args = parser.parse_args()
    configs = list(itertools.product(*SPACE.values()))
    finals = {c: at(c, MAX_EPOCHS) for c in configs}
    grid_best = min(finals.values())
    within = sum(v <= grid_best * (1 + TARGET) for v in finals.values())
    grid_epochs = len(configs) * MAX_EPOCHS
    print(f"space: {len(configs)} configs × up to {MAX_EPOCHS} epochs (grid: {grid_epochs:,} epochs); grid's best "
          f"{grid_best:.5f}; {within} configs within {TARGET:.1%} of it; budget {args.budget} configs per method, "
          f"{args.seeds} seeds")
    results: dict[str, list[Trace]] = {}
    work = Path(tempfile.mkdtemp(prefix="hpt-bench-methods-"))
    os.environ.setdefault("HPT_DEMO_DATA", str(work / "demo-not-built"))
    started = time.monotonic()
    for seed in range(args.seeds):
        for method in args.methods.split(","):
            results.setdefault(f"hpt {method}", []).append(hpt_run(work, seed, args.budget, grid_best, method))
        if not args.no_optuna:
            results.setdefault("optuna tpe+hyperband", []).append(optuna_run(seed, args.budget, grid_best))
        ray_trace = ray_run(seed, args.budget, grid_best) if not args.no_ray and len(RAY_FAILURES) < RAY_STARTS else None
        if ray_trace is not None:
            results.setdefault("ray asha", []).append(ray_trace)
    if "ray asha" not in results:
        why = "--no-ray" if args.no_ray else "; ".join(RAY_FAILURES[-1:]) if RAY_FAILURES else \
            "ray[tune] is not installed; it is a bench-only extra: pip install 'ray[tune]'"
        print(f"ray asha: skipped ({why})")
    print(f"\n{'method':<22}{'epochs to ≤ +0.5%':>20}{'final regret':>14}{'epochs spent':>14}  (median of {args.seeds} seeds)")
    summary = {}
    for name, traces in results.items():
        reach = statistics.median(t.reached for t in traces)
        regret = statistics.median(t.regret() for t in traces)
        spent = statistics.median(t.epochs for t in traces)
        summary[name] = (reach, regret, spent)
        print(f"{name:<22}{reach:>20,.0f}{regret:>13.3%}{spent:>14,.0f}   per seed: "
              + " ".join(f"{t.reached:,.0f}/{t.regret():.2%}" for t in traces))
    hpt_best = min((n for n in summary if n.startswith("hpt ")), key=lambda n: (summary[n][0], summary[n][1]))
    print(f"\nhpt's best method: {hpt_best}")
    for peer in [n for n in summary if not n.startswith("hpt ")]:
        a, b = summary[hpt_best][0], summary[peer][0]
        ratio = a / b if math.isfinite(a) and math.isfinite(b) and b else float("nan")
        print(f"  epochs to ≤ +0.5%: hpt / {peer} = {ratio:.2f}   final regret {summary[hpt_best][1]:.3%} vs {summary[peer][1]:.3%}")
    print(f"({time.monotonic() - started:.0f} s)")
    if "ray" in sys.modules:
        sys.modules["ray"].shutdown()


if __name__ == "__main__":
    main()
