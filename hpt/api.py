"""hpt from Python: what the CLI does, as functions — for a notebook or a pipeline that should not shell out.

Every `hpt` command that does work calls these same functions; the CLI adds only the printing.

    import hpt
    plan = hpt.compile("examples/quick.json", out="plan")        # plan.trial_ids, plan.summary()
    run = hpt.apply("plan", results="hpt-results")                # run.exit_code, run.done, run.failed
    table = hpt.read_results("hpt-results")                       # table.done, table.failed: DataFrames
    best = hpt.compare("hpt-results").configs[0]                  # best.label, best.mean, best.wins

A bad input raises hpt.UserError (what and where, as the CLI's exit-2 message says it); a store that
stays unreachable raises hpt.StoreUnavailable (a UserError). docs/api.md has the whole tour; the
examples there run in the test suite (tests/test_api.py).
"""
from __future__ import annotations

import datetime as dt
import os
import socket
from pathlib import Path
from typing import Any, Callable

from hpt.schemas.errors import UserError
from hpt.store import StoreUnavailable

DEFAULT_RESULTS = "./hpt-results"     # where `apply` writes when neither the call nor the spec names a store
LOCAL_STATE = Path(".hpt") / "local"  # beside the plan: the local backend's pid records (adopted on resume)
DOCKER_STATE = Path(".hpt") / "docker"  # beside the plan: the docker backend's warm slot folders


def __getattr__(name: str) -> Any:
    """api.import_dataset (a CSV or Parquet table → a dataset folder) is hpt.data_import's, loaded on first
    use (PEP 562): it imports the compiler's date limits, which `from hpt import api` alone must not load."""
    if name == "import_dataset":
        from hpt.data_import import import_dataset

        return import_dataset
    raise AttributeError(f"module 'hpt.api' has no attribute {name!r}")


# --------------------------------------------------------------------------------------------- compile
def compile(spec: str | os.PathLike[str], out: str | os.PathLike[str] = "plan", *, today: str | dt.date | None = None,
            data: str | None = None, mode: str | None = None, seed: int | None = None, force: bool = False):
    """Compile a spec (a JSON or YAML file, "-" for stdin) into a plan folder; returns the
    hpt.compiler.CompileResult (`experiment`, `trial_ids`, `configs`, `windows`, `warnings`, `summary()`).

    `today` (a date or "YYYY-MM-DD", default today in UTC) picks the month of rotating date ranges;
    `data`, `mode` and `seed` override the spec's; `force` replaces a different plan already in `out`.

        r = hpt.compile("examples/quick.json", out="plan", today="2026-11-26")
        r.summary()["trials"]
        5
    """
    from hpt.compiler import CompileOptions, compile_spec

    if isinstance(today, str):
        try:
            today = dt.date.fromisoformat(today)
        except ValueError:
            raise UserError(f"{today!r} is not a date (expected YYYY-MM-DD)", where="today") from None
    return compile_spec(str(spec), CompileOptions(out=Path(out), today=today, data=data, mode=mode, seed=seed, force=force))


# ----------------------------------------------------------------------------------------------- apply
def make_backend(name: str = "local", plan_dir: str | os.PathLike[str] | None = None, **options: Any):
    """The executor backend `name` (local, docker, k8s) built with its options (k8s: context, namespace,
    cancel_on_exit; local, docker: warm). The local backend keeps its pid records beside the plan, the docker
    backend its warm slots' folders."""
    from hpt.executor.backends import get_backend

    if name == "local" and plan_dir is not None:
        folder = Path(plan_dir).resolve()
        options = {"state_dir": folder / LOCAL_STATE, "plan_dir": folder, **options}
    elif name == "docker" and plan_dir is not None:
        options = {"state_dir": Path(plan_dir).resolve() / DOCKER_STATE, **options}
    return get_backend(name, **options)


def apply(plan_dir: str | os.PathLike[str], *, backend: str = "local", results: str | None = None,
          parallel: int | None = None, retries: int = 2, timeout: float | None = None, max_failures: int | None = None,
          skip_failed: bool = False, backoff: float = 5.0, junit: str | os.PathLike[str] | None = None,
          reporter: Any = None, on_round: Callable[[Any], None] | None = None, resume_hint: str = "",
          backend_options: dict[str, Any] | None = None, loaded: Any = None):
    """Run every trial of a compiled plan that has no row yet (safe to repeat: it resumes); returns the
    hpt.executor.loop.RunResult (`exit_code` 0 all done / 1 some failed, `done`, `failed`, `counts()`).

    `reporter` receives the run's events (hpt.executor.events: JsonLines, RichProgress, Collect; default:
    none kept). An adaptive plan (halving, tpe) is one run: its rounds are decided as trials finish (each
    recorded in the plan before its trials start) and queued in the same run; `on_round` hears each
    decision (hpt.compiler.rounds.Decision), and the rounds are copied into the store
    (rounds/<experiment>.json) for the analysis. `junit` also writes a JUnit XML file of
    the plan's trials. `loaded`: the plan folder already read (hpt.executor.plan.load_plan of `plan_dir`,
    as the CLI reads it to check it first), so its manifests are not read twice.

        run = hpt.apply("plan", results="hpt-results", parallel=2)
        run.exit_code, run.counts()
    """
    from hpt.executor.events import Collect
    from hpt.executor.loop import RunOptions, run_plan
    from hpt.executor.plan import load_plan
    from hpt.executor.publish import ResultsPublisher
    from hpt.store import open_store

    plan_dir = Path(plan_dir)
    runner = make_backend(backend, plan_dir, **(backend_options or {}))
    plan = loaded if loaded is not None else load_plan(plan_dir)
    store = open_store(results or plan.results or DEFAULT_RESULTS)
    plan = plan.with_results(store.uri, timeout)
    reporter = reporter if reporter is not None else Collect()
    options = RunOptions(parallel=parallel, retries=retries, timeout_s=timeout, max_failures=max_failures,
                         skip_failed=skip_failed, backoff_s=backoff, resume_hint=resume_hint,
                         owner=f"{socket.gethostname()}:{plan_dir.resolve()}")
    try:
        _publish_rounds(store, plan.plan)
        outcome = run_plan(plan, runner, store, options, reporter,
                           grow=_grow(plan_dir, store, on_round) if plan.plan.rounds else None,
                           stopper=_stopper(plan.plan.spec), log_reader=_log_reader(plan))
    except StoreUnavailable as err:  # trials already trained keep waiting for the store, up to the same deadline
        hint = f"{err.hint}; resume once it is back" + (f": {resume_hint}" if resume_hint else "")
        raise StoreUnavailable(err.message, where=err.where, hint=hint) from None
    except OSError as err:  # a results folder or state folder we cannot write: the user can fix it
        raise UserError(f"cannot write: {err.strerror or err}", where=err.filename or store.uri) from None
    finally:
        reporter.close()
    if junit is not None:
        from hpt.results.junit import write_junit

        rows = ResultsPublisher(store).sync()
        plan = load_plan(plan_dir)   # an adaptive search's rounds added trials
        # Every trial of the plan is a testcase: one that never ran (a stopped run) is <skipped>.
        write_junit([rows.get(tid) or {"trial_id": tid, "status": "not run", "reason": "not run by this apply"}
                     for tid in plan.trial_ids], Path(junit), **_confirmation_case(plan.plan, store))
    return outcome


def _grow(plan_dir: Path, store: Any, on_round: Callable[[Any], None] | None):  # noqa: ANN202 — hpt.executor.loop.Grow
    """The scheduler's grow hook for an adaptive plan: every round the rows now decide (hpt.compiler.rounds,
    recorded in the plan folder before this returns), announced to `on_round` and copied into the store."""
    from hpt.compiler.rounds import next_round
    from hpt.schemas.plan import Plan

    def grow(rows, parallel: int) -> list[str]:  # noqa: ANN001
        added: list[str] = []
        while (decision := next_round(plan_dir, rows, parallel)) is not None:
            added += decision.trials
            if on_round is not None:
                on_round(decision)
        if added:
            _publish_rounds(store, Plan.load(plan_dir))
        return added

    return grow


def _confirmation_case(plan: Any, store: Any) -> dict[str, Any]:
    """The JUnit testcase of a plan's confirmation round, once its trials are done: write_junit's keywords."""
    if not any(r.get("confirm") for r in plan.rounds or []):
        return {}
    from hpt.results.confirm import confirmation
    from hpt.results.table import Objective, load_table

    objective = Objective(plan.spec["objective"]["metric"], plan.spec["objective"]["goal"])
    found = confirmation(load_table(store.uri), objective)
    return {"confirmation": found, "metric": objective.metric} if found is not None else {}


def _stopper(spec: dict[str, Any]):  # noqa: ANN202 — hpt.executor.loop.Stopper, or None
    """The executor's in-trial stopping hook for a plan whose resolved spec names a stopping rule
    (hpt.compiler.stopping): each running trial's first stop, told every trial's reports of the objective
    (negated when it is maximised, so that a rule reads lower as better)."""
    settings = spec.get("search", {}).get("stopping")
    if not settings:
        return None
    from hpt.compiler.stopping import STOPPING
    from hpt.schemas.stopping import StopRecord

    rule = STOPPING.get(settings["rule"])
    metric, sign = spec["objective"]["metric"], 1.0 if spec["objective"]["goal"] == "minimize" else -1.0

    def curve(reports):  # noqa: ANN001, ANN202
        return [(r.epoch, sign * r.values[metric]) for r in reports if metric in r.values]

    def stopper(finished, running):  # noqa: ANN001, ANN202
        done = {tid: curve(reports) for tid, reports in finished.items()}
        live = {tid: curve(reports) for tid, reports in running.items()}
        out = {}
        for tid in sorted(live):
            stop = rule.first_stop(settings, live[tid], done, {t: c for t, c in live.items() if t != tid})
            if stop is not None:
                out[tid] = StopRecord(tid, stop.step, rule.name, stop.reason, sign * stop.value)
        return out

    return stopper


def _log_reader(plan: Any):  # noqa: ANN202 — hpt.executor.loop.LogReader, or None
    """Executor-side collection for trials whose image has no hpt (trainer.collect log): the trainer's own
    reading of a program's output (hpt.trainer.fromlog), handed to the executor, which never imports it."""
    from hpt.schemas.trainer import log_collected

    if not any(log_collected(s.manifest.trainer) for s in plan.submissions[:1]):
        return None
    from hpt.trainer.fromlog import read_log

    return read_log


def _publish_rounds(store: Any, plan: Any) -> None:
    """An adaptive plan's rounds, copied into the store (rounds/<experiment>.json) so that `hpt results`
    and the report, which read only the store, can say which round and promotion each row belongs to."""
    import json

    from hpt.store import ROUNDS

    if plan.rounds:
        store.put(f"{ROUNDS}{plan.experiment}.json", json.dumps({"experiment": plan.experiment, "rounds": plan.rounds},
                                                              indent=1, sort_keys=True).encode("utf-8"))


# --------------------------------------------------------------------------------------------- results
def read_results(store: Any, *, fidelity: str | None = None):
    """Every row of a results store (also mid-run) as an hpt.results.table.ResultTable: `done` and
    `failed` are pandas DataFrames (param.<name> and metric columns), `uri`, `source`.
    `fidelity` keeps one fidelity's trials (a spec with `fidelities`). `store` may be a table already.

        table = hpt.read_results("hpt-results")
        table.done.sort_values("mse")[["trial_id", "mse"]].head()
    """
    from hpt.results.fidelity import at_fidelity, fidelity_names
    from hpt.results.table import load_table

    table = load_table(store) if isinstance(store, (str, os.PathLike)) else store
    if fidelity is None:
        return table
    names = fidelity_names(table)
    if fidelity not in names:
        raise UserError(f"no fidelity {fidelity!r} in this store", where="fidelity",
                        hint=f"present: {', '.join(names)}" if names else "its rows carry no fidelity")
    return at_fidelity(table, fidelity)


def comparable(store: Any, fidelity: str | None = None, note: Callable[[str], None] | None = None):
    """The trials configs are compared on: `fidelity`'s, else, when the store holds several (a mean over
    cheap and full runs would mix two questions; `note` hears which), the most expensive one; after
    successive halving, whose top rung holds one config or two, the widest rung (the most configs; of
    equally wide ones the most expensive), where configs are comparable. Else all."""
    from hpt.results.fidelity import at_fidelity, fidelity_names

    table = read_results(store, fidelity=fidelity)
    names = fidelity_names(table)
    if fidelity is not None or len(names) < 2:
        return table
    tables = {name: at_fidelity(table, name) for name in names}
    chosen = names[-1]
    what = f"the most expensive, {chosen}"
    if any(r.get("fidelity") for r in table.rounds):   # an adaptive search over the fidelities: its rungs narrow
        width = {name: t.done["config"].nunique() if not t.done.empty else 0 for name, t in tables.items()}
        chosen = max(names, key=lambda name: (width[name], names.index(name)))
        what = (f"{chosen}, the widest rung ({', '.join(f'{n}: {width[n]} config(s)' for n in names)}); the configs "
                "promoted from it: `hpt status PLAN`, or the rounds of `hpt report`")
    if note is not None:
        note(f"the store holds {len(names)} fidelities ({', '.join(names)}): comparing configs at {what} "
             "(--fidelity NAME for another; `hpt fidelity STORE` compares them)")
    return tables[chosen]


def _objective(spec: Any, table: Any = None):
    """The metric results are ranked by: `spec` — a catalog metric, NAME:min / NAME:max, a name the rows
    recorded as their objective, or an hpt.results.table.Objective as it is — else (None) the objective the
    table's rows recorded (the spec's, decided at compile), else mse."""
    from hpt.results.table import Objective, objective as make_objective

    if isinstance(spec, Objective):
        return spec
    return table.objective(spec) if table is not None else make_objective(spec)


def compare(store: Any, *, objective: Any = None, metrics: list[str] | None = None,
            fidelity: str | None = None):
    """Is the winner real? Each config across date ranges and repeats (hpt.results.compare.Comparison:
    `configs` best first, each with `label`, `mean`, `per_range`, `wins`, `best_everywhere`, sign and
    Wilcoxon p against the best; `notes`). `store` is a URI or a table from `read_results()`.

        cmp = hpt.compare("hpt-results")
        [(c.label, round(c.mean, 4)) for c in cmp.configs]
    """
    from hpt.results.compare import compare as compare_configs

    table = comparable(store, fidelity)
    obj = _objective(objective, table)
    table.require(obj)
    return compare_configs(table, obj, list(metrics or []))


def trends(store: Any, *, objective: Any = None, fidelity: str | None = None):
    """Per hyperparameter value: count, mean, median and best of the objective (hpt.results.trends.TrendRow
    list; `record()` gives a dict). Categorical and boolean values are values like any other."""
    from hpt.results.trends import trends as value_trends

    table = comparable(store, fidelity)
    obj = _objective(objective, table)
    table.require(obj)
    return value_trends(table, obj)


def fidelity(low: str, high: str | None = None, *, objective: Any = None, k: int = 5,
             high_name: str | None = None, moved: int = 10):
    """Can the cheap run be trusted? With two stores: the rank agreement of their common configs
    (hpt.results.fidelity.Fidelity: spearman, kendall, overlap, p, verdict()). With one store whose rows
    carry several fidelities: each against the most expensive (or `high_name`), as a list."""
    from hpt.results.fidelity import fidelity as agreement, ladder
    from hpt.results.table import load_table

    low_table = load_table(low) if isinstance(low, (str, os.PathLike)) else low
    obj = _objective(objective, low_table)
    if high is None:
        return ladder(low_table, obj, high=high_name, k=k, moved=moved)
    if high_name is not None:
        raise UserError("high_name names a fidelity inside one store; with two stores the second is the high one",
                        where="--high")
    high_table = load_table(high) if isinstance(high, (str, os.PathLike)) else high
    if objective is None and high_table.objective() != obj:
        raise UserError(f"the two stores recorded different objectives ({obj.metric}, {high_table.objective().metric})",
                        where=f"{low_table.uri} vs {high_table.uri}", hint="compare them by one with --objective NAME")
    return agreement(low_table, high_table, obj, k=k, moved=moved)


def report(store: str, out: str | os.PathLike[str] = "report.html", *, objective: Any = None, top: int = 8,
           curves: bool = True, note: Callable[[str], None] | None = None) -> Path:
    """Write the one-page HTML report (per-range objective, trends, learning curves, the tables); returns its path."""
    from hpt.results.report import write_report

    table = comparable(store, note=note)
    obj = _objective(objective, table)
    try:
        return write_report(table, obj, Path(out), top=top, curves=curves)
    except OSError as err:  # `out` is a folder, or cannot be written: the user's to fix
        raise UserError(f"cannot write the report: {err.strerror or err}", where=str(out)) from None


# ---------------------------------------------------------------------------------------------- datasets
def demo_dataset(out: str | os.PathLike[str] | None = None, *, rows_per_month: int | None = None, seed: int = 0,
                 progress: Callable[[str], None] | None = None) -> Path:
    """Build (or reuse) the demo dataset, Online Retail II; returns its folder."""
    from hpt.trainer.demo import build_demo_dataset

    return build_demo_dataset(out, rows_per_month=rows_per_month, seed=seed, progress=progress)
