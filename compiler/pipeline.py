"""spec → plan, end to end: load, validate, resolve, choose windows, search, write.

    >>> from hpt.compiler import compile_spec, CompileOptions
    >>> result = compile_spec("examples/seed.json", CompileOptions(out=Path("plan")))  # doctest: +SKIP
    >>> result.summary()["trials"]                                                     # doctest: +SKIP
    27
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hpt.compiler.confirm import confirm_window
from hpt.compiler.dataset import DatasetRef, data_identity, resolve_dataset
from hpt.compiler.dates import Window, check_inside, explicit_windows, month_start, quick_window, rotating_windows
from hpt.compiler.defaults import DEFAULT_VALIDATION_DAYS, Resolved, Rotating, resolve
from hpt.compiler.fidelities import check_fidelities, continued
from hpt.compiler.proposers import PROPOSERS
from hpt.compiler.schedulers import SCHEDULERS
from hpt.compiler.schedulers.halving import HALVING, budget
from hpt.compiler.limits import MAX_DATE, MAX_TRIALS, MIN_DATE
from hpt.compiler.loading import load_spec
from hpt.compiler.plan import check_target, existing_plan, write_plan
from hpt.compiler.trials import TrialShape, iter_trials
from hpt.compiler.validation import check_date_pairs, in_document_order, validate_and_load
from hpt.schemas.catalog import value_key
from hpt.schemas.dataset import EMPTY_PARTITION, months_between
from hpt.schemas.errors import UserError, raise_all
from hpt.schemas.manifest import canonical_json
from hpt.schemas.plan import PLAN_FILE, Plan
from hpt.schemas.version import __version__


@dataclass
class CompileOptions:
    out: Path = Path("plan")
    today: dt.date | None = None         # default: today (UTC); only its month matters
    data: str | None = None              # overrides the spec's `data`
    mode: str | None = None              # overrides the spec's `mode`
    seed: int | None = None              # overrides `search.seed`
    force: bool = False


@dataclass
class CompileResult:
    out: Path
    experiment: str
    resolved: Resolved
    dataset: DatasetRef
    windows: list[Window]
    trial_ids: list[str]
    configs: int
    written: bool
    month: str
    warnings: list[str] = field(default_factory=list)
    values: dict[str, list[Any]] = field(default_factory=dict)   # tuned values seen, per hyperparameter
    rungs: list[dict[str, Any]] = field(default_factory=list)    # halving: the worst-case budget per rung

    def summary(self) -> dict[str, Any]:
        """What `hpt compile --output json` prints."""
        return {
            "experiment": self.experiment, "out": str(self.out), "plan": str(self.out / PLAN_FILE),
            "written": self.written, "architecture": self.resolved.architecture.name, "mode": self.resolved.mode,
            "epochs": self.resolved.epochs, "method": self.resolved.space.method, "auto": self.resolved.auto,
            "month": self.month, "data": self.dataset.uri, "configs": self.configs, "windows": [w.to_dict() for w in self.windows],
            "repeats": self.resolved.repeats, "trials": len(self.trial_ids),
            "trials_per_window": {str(w.index): self.configs * self.resolved.repeats * self.n_fidelities for w in self.windows},
            "parameters": {name: d.to_json() for name, d in self.resolved.space.domains.items()},
            "warnings": self.warnings,
        } | ({"fidelities": [f.to_dict() for f in self.resolved.fidelities]} if self.resolved.fidelities else {}) \
          | ({"halving": {"eta": self.resolved.space.eta, "promotion": self.resolved.space.promotion, "rungs": self.rungs}}
             if self.rungs else {}) \
          | ({"stopping": self.resolved.stopping} if self.resolved.stopping else {}) \
          | ({"target": self.resolved.target} if self.resolved.target is not None else {})

    @property
    def n_fidelities(self) -> int:
        """Fidelities each config runs at in this plan as written (halving: round 1, the cheapest only)."""
        return 1 if self.rungs else max(1, len(self.resolved.fidelities))


def compile_spec(spec_path: str, options: CompileOptions) -> CompileResult:
    loaded = load_spec(spec_path)
    warnings = list(loaded.warnings)
    doc = loaded.doc
    try:
        doc, user = validate_and_load(doc, loaded.directory, warnings, loaded.errors)   # in hpt's own words from here on
    except UserError as err:   # the windows' coverage is checked anyway, so one run reports everything
        errors = err.each() + windows_outside_anyway(doc, options, loaded.directory)
        raise_all(in_document_order(errors, doc) if isinstance(doc, dict) else errors)
    resolved = resolve(doc, mode=options.mode, seed=options.seed, warnings=warnings, user=user)
    today = options.today or dt.datetime.now(dt.timezone.utc).date()
    if not MIN_DATE <= today <= MAX_DATE:
        raise UserError(f"{today} is outside {MIN_DATE} to {MAX_DATE}", where="--today")
    run_month = month_start(today)
    dataset = resolve_dataset(resolved.data, options.data, loaded.directory, warnings)
    if user is None and dataset.info is not None and not dataset.info.text:  # the built-ins read a text column; a user trainer reads what it likes
        raise UserError(f"{dataset.uri}/dataset.json names no text column, and architecture "
                        f"{resolved.architecture.name!r} reads one", where="--data" if options.data else "data",
                        hint="import the data with `hpt data import ... --text COLUMN`")
    if resolved.windowed:
        windows = choose_windows(resolved, dataset, run_month, warnings)
        rotating_months = resolved.date_range.months if isinstance(resolved.date_range, Rotating) else None
        check_fidelities(resolved.fidelities, windows, rotating_months, resolved.mode)
    else:
        windows = no_windows(resolved, doc)
    check_plan_size(resolved, windows)
    held_out = confirmation_window(resolved, dataset, windows, warnings)

    # the confirmation window's months too: its round is compiled later from the resolved spec's identity
    identity = identity_of(resolved, dataset, windows + ([held_out] if held_out else []), warnings)
    spec_doc = resolved_spec(resolved, dataset, windows, identity, held_out)
    experiment = "e-" + hashlib.sha256(canonical_json({"spec": spec_doc, "month": f"{run_month:%Y-%m}"}).encode()).hexdigest()[:12]
    out = options.out
    unchanged = check_target(out, experiment, __version__, options.force)

    def rung_zero() -> int:
        """Configs that enter halving's cheapest rung: round 1's, or all an adaptive proposer may give."""
        return resolved.space.count() if proposer.adaptive else configs_seen

    tuned = list(resolved.space.domains)
    seen_values: dict[str, dict] = {name: {} for name in tuned}   # value_key → value (a list value is unhashable)
    configs_seen = 0
    proposer, scheduler = PROPOSERS.get(resolved.space.proposer), SCHEDULERS.get(resolved.space.scheduler)
    halving = resolved.space.scheduler == HALVING
    adaptive = halving or proposer.adaptive or held_out is not None   # rounds: the journal a later round joins
    config_ids: list[str] = []    # adaptive: round 1's configs

    def counted_configs():
        nonlocal configs_seen
        source = proposer.first(resolved.space)
        seen = [(name, seen_values[name]) for name in tuned]
        for config in source:
            configs_seen += 1
            for name, values in seen:
                value = config[name]
                try:
                    values.setdefault(value, value)   # value_key(value) is the value itself, when it is hashable
                except TypeError:
                    values.setdefault(value_key(value), value)
            yield config

    def trials_of(rendered):  # noqa: ANN001, ANN202 — halving: note round 1's configs as their manifests say
        for trial in rendered:
            if adaptive:
                config = json.loads(trial.text)["config"]
                if not config_ids or config_ids[-1] != config:   # config-major order
                    config_ids.append(config)
            yield trial

    if unchanged:
        previous = existing_plan(out) or {}
        ids = list(previous.get("trials", []))
        configs_seen = int(previous.get("counts", {}).get("configs", 0))
        values = {k: list(v) for k, v in previous.get("values", {}).items()}
        warnings += [w for w in previous.get("warnings", []) if w not in warnings]  # e.g. the search's, not rerun
    else:
        shape = TrialShape(experiment=experiment, architecture=resolved.architecture.name, data_uri=dataset.uri,
                           mode=resolved.mode, epochs=resolved.epochs, metrics=resolved.metrics,
                           objective=resolved.objective, image=resolved.image, resources=resolved.resources,
                           kubernetes=resolved.kubernetes, search_seed=resolved.space.seed, repeats=resolved.repeats,
                           # halving: round 1 runs at the cheapest fidelity; later rounds are decided at apply
                           fidelities=scheduler.first_fidelities(resolved.fidelities),
                           trainer=resolved.trainer, data_identity=identity,
                           keep_checkpoint=bool(resolved.space.continues) and continued(resolved.fidelities, 1) is not None)
        expected = resolved.space.count()

        def make_plan(digests: dict[str, str]) -> Plan:
            if resolved.space.proposer == "random" and configs_seen < expected:
                warnings.append(f"search: only {configs_seen} distinct configs exist among the {expected} draws asked for")
            counts = {"configs": configs_seen, "windows": len(windows), "repeats": resolved.repeats, "trials": len(digests)}
            if resolved.fidelities:  # only then: plans without fidelities stay byte-identical
                counts["fidelities"] = len(resolved.fidelities)
            extra: dict[str, Any] = {}
            if adaptive:
                extra["rounds"] = [scheduler.first_round(config_ids, list(digests), resolved.fidelities)]
            if proposer.settings(resolved.space) is not None:
                extra[proposer.name] = proposer.settings(resolved.space)
            if halving:
                extra["halving"] = {"eta": resolved.space.eta, "promotion": resolved.space.promotion,
                                    "rungs": budget(rung_zero(), resolved.space.eta, resolved.fidelities, windows,
                                                    resolved.repeats, bool(resolved.space.continues))}
            return Plan(experiment=experiment, hpt_version=__version__, trials=list(digests), digests=digests,
                        month=f"{run_month:%Y-%m}", reference_date=run_month.isoformat(), spec=spec_doc,
                        windows=[w.to_dict() for w in windows], counts=counts,
                        values={name: _sorted(seen_values[name]) for name in tuned}, warnings=warnings, **extra)

        result = write_plan(out, trials_of(iter_trials(shape, counted_configs(), windows)), make_plan)
        ids = result.trial_ids
        values = {name: _sorted(seen_values[name]) for name in tuned}
    if unchanged and adaptive:
        ids = list(previous.get("rounds", [{}])[0].get("trials", ids))   # round 1: what compile wrote
    rungs = budget(rung_zero(), resolved.space.eta, resolved.fidelities, windows, resolved.repeats,
                   bool(resolved.space.continues)) if halving else []
    return CompileResult(out=out, experiment=experiment, resolved=resolved, dataset=dataset, windows=windows,
                         trial_ids=ids, configs=configs_seen, written=not unchanged, month=f"{run_month:%Y-%m}",
                         warnings=warnings, values=values, rungs=rungs)


def no_windows(resolved: Resolved, doc: dict[str, Any]) -> list[Window]:
    """A trainer that splits its data itself: one trial per config × repeat (× fidelity), no window; the spec's
    date settings would mean nothing, so they are refused."""
    for key in ("date-range", "validation-days"):
        if key in doc:
            raise UserError(f"the trainer uses no dated windows (trainer.windows is false), so {key} means nothing",
                            where=key, hint=f"drop {key!r}, or let the trainer train on dated windows")
    for i, fidelity in enumerate(resolved.fidelities):
        if fidelity.months is not None:
            raise UserError("months shorten a dated window; this trainer uses none", where=f"fidelities[{i}].months",
                            hint="a fidelity of epochs only")
    return []


def check_plan_size(resolved: Resolved, windows: list[Window]) -> None:
    """The whole plan's trials, counted before one is written (each is a file, a run and a row)."""
    configs = resolved.space.count()
    fidelities = max(1, len(resolved.fidelities))
    total = configs * max(1, len(windows)) * resolved.repeats * fidelities
    if total > MAX_TRIALS:
        fid_text = f" × {fidelities} fidelities" if resolved.fidelities else ""
        ranges = f" × {len(windows)} date range(s)" if windows else ""   # none: trainer.windows false
        raise UserError(f"{configs:,} configs{ranges} × {resolved.repeats} repeat(s){fid_text} = "
                        f"{total:,} trials, more than {MAX_TRIALS:,}", where="search.trials" if resolved.space.trials else "parameters",
                        hint="ask for fewer configs (search.trials), date ranges or repeats")


def choose_windows(resolved: Resolved, dataset: DatasetRef, run_month: dt.date, warnings: list[str]) -> list[Window]:
    spec_range = resolved.date_range
    if isinstance(spec_range, Rotating):
        if dataset.coverage is None:
            raise UserError(f"rotating date ranges are chosen inside the data's coverage, and {dataset.uri}/dataset.json "
                            "cannot be read here", where="date-range",
                            hint="give explicit [start, end] pairs, or compile where the dataset is readable")
        windows = rotating_windows(spec_range.count, spec_range.months, resolved.validation_days, dataset.coverage, run_month)
    else:
        windows = explicit_windows(spec_range, resolved.validation_days)  # type: ignore[arg-type]
    if resolved.mode == "quick":
        if len(windows) > 1:
            warnings.append(f"mode quick: training on the last month of the first of {len(windows)} date ranges only")
        windows = [quick_window(windows[0])]
    raise_all(windows_outside(windows, dataset, rotating=isinstance(spec_range, Rotating)))
    return windows


def windows_outside(windows: list[Window], dataset: DatasetRef, rotating: bool = False) -> list[UserError]:
    """One error per window (with its validation period) outside the dataset's coverage, if that is known."""
    if dataset.coverage is None:
        return []
    problems = []
    for window in windows:
        problem = check_inside(window, dataset.coverage)
        if problem is not None:
            problems.append(UserError(f"[{window.train_start}, {window.train_end}) {problem}",
                                      where="date-range" if rotating else f"date-range[{window.index}]",
                                      hint=coverage_hint(dataset)))
    if len(problems) > _WINDOWS_NAMED:   # a line each for the first ones, then one for the rest
        rest = [p.where for p in problems[_WINDOWS_NAMED - 1:]]
        problems[_WINDOWS_NAMED - 1:] = [UserError(f"and {len(rest)} more window(s) outside the data "
                                                   f"({', '.join(rest[:3])}{', …' if len(rest) > 3 else ''})",
                                                   where="date-range", hint=coverage_hint(dataset))]
    return problems


_WINDOWS_NAMED = 3


def windows_outside_anyway(doc: Any, options: CompileOptions, spec_dir: Path) -> list[UserError]:
    """For a spec with other errors: its explicit windows outside the data, where what they need (the pairs,
    validation-days, mode, the dataset's coverage) is itself sound; nothing where it is not (that part's own
    error is already among the others)."""
    try:
        if not isinstance(doc, dict) or not isinstance(doc.get("date-range"), list):
            return []
        days = doc.get("validation-days", DEFAULT_VALIDATION_DAYS)
        mode = options.mode or doc.get("mode", "full")
        data = doc.get("data")
        if not isinstance(days, int) or isinstance(days, bool) or days < 1 or mode not in ("full", "quick") \
                or not (data is None or isinstance(data, str)):
            return []
        windows = explicit_windows(check_date_pairs(doc["date-range"]), days)
        if mode == "quick" and windows:
            windows = [quick_window(windows[0])]
        return windows_outside(windows, resolve_dataset(data, options.data, spec_dir, []))
    except (UserError, TypeError, ValueError):
        return []


def coverage_hint(dataset: DatasetRef) -> str:
    """What to change when a window falls outside the data: the windows, or the data (the same words for
    the demo dataset, a named one and a user trainer's)."""
    first, last = dataset.coverage  # type: ignore[misc]
    if dataset.named:
        return f"the dataset {dataset.uri} covers {first} to {last}: change date-range, or --data to a dataset that covers it"
    return (f"the demo dataset, which trials read because the spec names no data, covers {first} to {last}: "
            "change date-range, or --data PATH|gs://... (or \"data\" in the spec) to a dataset that covers it")


def identity_of(resolved: Resolved, dataset: DatasetRef, windows: list[Window], warnings: list[str]) -> dict[str, Any]:
    """What the trial ids know of the data (TrialShape.data_identity), from dataset.json alone: the digests of
    every month a window (or a fidelity's shorter one) reads, else dataset.json's digest; a user trainer's
    declared data version besides."""
    identity: dict[str, Any] = data_identity(dataset)
    partitions = dataset.partitions
    if partitions is not None and not windows:  # a trainer without windows reads every month
        identity["partitions"] = dict(partitions)
    elif partitions is not None:
        months = sorted({m for w in windows for f in (resolved.fidelities or (None,))
                         for m in months_between((f.window(w) if f else w).train_start, w.valid_end)} |
                        {m for w in windows for m in months_between(w.train_start, w.valid_end)})
        identity["partitions"] = {m: partitions.get(m) or EMPTY_PARTITION for m in months}
    elif dataset.info is None and not dataset.named:
        warnings.append("the demo dataset is not built on this machine, so trial ids do not cover its content "
                        "(`hpt data demo` builds it; compile again after)")
    if resolved.data_version:
        identity["version"] = resolved.data_version
    return identity


def confirmation_window(resolved: Resolved, dataset: DatasetRef, windows: list[Window], warnings: list[str]) -> Window | None:
    """The untouched window of `search.confirm` (compiler/confirm.py), inside the data like every window."""
    if resolved.confirm_top is None:
        return None
    window = confirm_window(windows, resolved.validation_days)
    if dataset.coverage is not None:
        problem = check_inside(window, dataset.coverage)
        if problem is not None:
            text = (f"the confirmation window [{window.train_start}, {window.train_end}) validated until {window.valid_end} "
                    f"{problem}")
            if dataset.named:
                raise UserError(text, where="search.confirm",
                                hint=f"it follows every tuning window; the dataset {dataset.uri} covers {dataset.coverage[0]} "
                                     f"to {dataset.coverage[1]}: end the date ranges earlier")
            warnings.append(f"search.confirm: {text} of the demo dataset")
    return window


def resolved_spec(resolved: Resolved, dataset: DatasetRef, windows: list[Window],
                  identity: dict[str, Any] | None = None, held_out: Window | None = None) -> dict[str, Any]:
    """The spec with every default filled in: what the plan records and the experiment id hashes."""
    space = resolved.space
    spec: dict[str, Any] = {
        "architecture": resolved.architecture.name,
        "date-range": [w.train for w in windows],
        "parameters": {name: d.to_json() for name, d in space.domains.items()},
        "auto": resolved.auto,
        "search": {"method": space.method, "proposer": space.proposer, "scheduler": space.scheduler,
                   "trials": space.trials, "seed": space.seed}
        | ({"eta": space.eta, "promotion": space.promotion, "continue": space.continues} if space.scheduler == HALVING else {})
        | ({"batch": space.batch} if space.proposer == "tpe" else {})
        | ({"stopping": resolved.stopping} if resolved.stopping else {})
        | ({"target": resolved.target} if resolved.target is not None else {})
        | ({"confirm": {"top": resolved.confirm_top, "window": held_out.to_dict()}} if held_out else {}),
        "mode": resolved.mode, "epochs": resolved.epochs, "metrics": resolved.metrics, "objective": resolved.objective,
        "data": dataset.uri, "results": resolved.results, "image": resolved.image, "resources": resolved.resources.to_dict(),
        "validation-days": resolved.validation_days, "repeats": resolved.repeats,
    }
    if not resolved.windowed:
        del spec["date-range"], spec["validation-days"]
        spec["windows"] = False
    elif isinstance(resolved.date_range, Rotating):
        spec["rotating"] = {"count": resolved.date_range.count, "months": resolved.date_range.months}
    if resolved.kubernetes:
        spec["kubernetes"] = resolved.kubernetes
    if resolved.fidelities:
        spec["fidelities"] = [f.to_dict() for f in resolved.fidelities]
    if resolved.trainer:
        spec["trainer"] = resolved.trainer.to_dict()
    if identity:  # the data's digests: a changed month is a changed spec (and later rounds read them here)
        spec["data-identity"] = identity
    return spec


def _sorted(values: dict[Any, Any]) -> list[Any]:
    """A hyperparameter's values seen, in order (lists and objects by their canonical JSON)."""
    if any(isinstance(v, (list, dict)) for v in values.values()):
        return [values[k] for k in sorted(values, key=str)]
    return sorted(values.values())
