"""W&B's sweep vocabulary, as written, in hpt's own words.

A W&B sweep config whose parameter names are hpt's compiles unchanged: `method: grid|random|bayes`
(bayes → tpe), `metric: {name, goal}` (→ objective), `run_cap` (→ search.trials),
`metric.target` (→ search.target: a reached target stops the search), `early_terminate: {type:
hyperband, ...}` (→ search.stopping rule hyperband, W&B's in-run stopping; with the spec's fidelities,
search.method halving over them), every
distribution W&B documents (docs/wandb.md: its exponent forms become value bounds, e.g. `log_uniform`
min -9.21 → log-uniform min 1e-4), W&B's inference (min/max without a distribution: int_uniform for two
integers, else uniform), `constant`/`value`, `categorical`, and nested `parameters` (the dotted names
OUTER.INNER). The schema accepts these words; `to_hpt` rewrites a schema-valid document into hpt's
spelling, so everything after it (meaning checks, defaults, the plan) knows one vocabulary and both
spellings give the same plan. `Translated.notes` says how each W&B key was read (`hpt compile --explain`).
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

from hpt.schemas.errors import UserError

import math

# W&B's name → hpt's, for the forms whose min/max (or mu/sigma) mean the same in both
DISTRIBUTIONS = {"log_uniform_values": "log-uniform", "int_uniform": "int-uniform", "q_uniform": "q-uniform",
                 "q_log_uniform_values": "q-log-uniform", "inv_log_uniform_values": "log-uniform",
                 "q_normal": "q-normal", "log_normal": "log-normal", "q_log_normal": "q-log-normal"}
# W&B's exponent forms: min and max are natural logs (of X; of 1/X for inv_): hpt's bounds are the values
EXPONENT_FORMS = {"log_uniform": "log-uniform", "q_log_uniform": "q-log-uniform", "inv_log_uniform": "log-uniform"}
METHODS = {"grid": "grid", "random": "random", "bayes": "tpe"}
METADATA = ("name", "project", "entity")   # W&B's bookkeeping: where the sweep shows in W&B's UI
# W&B's default command (docs: "command"): what the agent runs when the config gives none
DEFAULT_COMMAND = ("${env}", "${interpreter}", "${program}", "${args}")


def lift_program(doc: Any) -> tuple[Any, list[tuple[str, str]], list[UserError]]:
    """W&B's top-level `program` and `command` → the spec's `trainer` (before the schema sees the document):
    a config with neither `architecture` nor `trainer` runs its program, `command` with W&B's macros
    (hpt's renderer, compiler/macros.py), on no dated window (a W&B program reads its own data)."""
    if not isinstance(doc, dict) or not ("program" in doc or "command" in doc):
        return doc, [], []
    notes: list[tuple[str, str]] = []
    errors: list[UserError] = []
    if "architecture" in doc:
        notes.append(("program", "not applied: the spec names a built-in architecture, which every trial runs"))
        return {k: v for k, v in doc.items() if k not in ("program", "command")}, notes, errors
    out = dict(doc)
    program, command = out.pop("program", None), out.pop("command", None)
    trainer = dict(out.get("trainer") or {}) if isinstance(out.get("trainer", {}), dict) else out.get("trainer")
    if not isinstance(trainer, dict):
        return doc, notes, errors
    if program is not None:
        if "program" in trainer and trainer["program"] != program:
            errors.append(UserError("both 'program' (W&B's spelling) and trainer.program are given", where="program",
                                    hint="keep one"))
        trainer.setdefault("program", program)
    if command is not None and ("command" in trainer or "entrypoint" in trainer):
        errors.append(UserError("both 'command' (W&B's spelling) and the trainer's command or entrypoint are given",
                                where="command", hint="keep one"))
    elif "command" not in trainer and "entrypoint" not in trainer:
        trainer["command"] = list(command) if isinstance(command, list) else list(DEFAULT_COMMAND)
        trainer.setdefault("windows", False)   # W&B's program reads its own data
        # what a script that logs to W&B also prints, name=value lines, is what hpt can read without W&B
        trainer.setdefault("metrics_from", "stdout")
        notes.append(("command", "each trial runs it with W&B's macros rendered from its config" if command is not None
                      else "W&B's default command: ${env} ${interpreter} ${program} ${args}"))
    if "trainer" not in doc:
        notes.append(("program", f"the trainer: {program} in the config's folder (its content hash is part of every "
                                 "trial id), on no dated window"))
    out["trainer"] = trainer
    return out, notes, errors


@dataclass
class Translated:
    doc: dict[str, Any]
    # hpt path → the path the user wrote, so a later error names the key in the spec
    written: dict[str, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    errors: list[UserError] = field(default_factory=list)
    notes: list[tuple[str, str]] = field(default_factory=list)   # (key as written, how hpt read it): --explain
    broken: set[str] = field(default_factory=set)                # names whose error is already said

    def where(self, path: str) -> str:
        for hpt_path, user_path in self.written.items():
            if path == hpt_path or path.startswith(hpt_path + ".") or path.startswith(hpt_path + "["):
                return user_path + path[len(hpt_path):]
        return path


def to_hpt(doc: dict[str, Any]) -> Translated:
    """`doc` (schema-valid) in hpt's spelling; conflicting spellings of one key are errors."""
    out = copy.deepcopy(doc)
    result = Translated(out)
    search = dict(out.get("search", {}))

    def move(wandb_key: str, hpt_key: str, value: Any) -> None:
        if hpt_key in search:
            result.errors.append(UserError(f"both {wandb_key!r} (W&B's spelling) and search.{hpt_key} are given",
                                           where=wandb_key, hint="keep one"))
            return
        search[hpt_key] = value
        result.written[f"search.{hpt_key}"] = wandb_key

    if "method" in out:
        method = out.pop("method")
        move("method", "method", METHODS[method])
        result.notes.append(("method", f"{method}: search.method {METHODS[method]}" + (
            " (Optuna's TPE: a model-based search like W&B's Gaussian-process bayes, not the same model)"
            if method == "bayes" else "")))
    if "run_cap" in out:
        move("run_cap", "trials", out.pop("run_cap"))
        result.notes.append(("run_cap", f"search.trials {search.get('trials')}: the plan holds that many configs"))
    if "early_terminate" in out:
        _early_terminate(out.pop("early_terminate"), "fidelities" in out, search, result)
    if search:
        out["search"] = search
    if "metric" in out:
        metric = out.pop("metric")
        if "objective" in out:
            result.errors.append(UserError("both 'metric' (W&B's spelling) and 'objective' are given",
                                           where="metric", hint="keep one"))
        else:
            out["objective"] = {"metric": metric["name"]} | ({"goal": metric["goal"]} if "goal" in metric else {})
            result.written["objective.metric"] = "metric.name"
            result.written["objective.goal"] = "metric.goal"
            result.notes.append(("metric", f"the objective: {metric.get('goal', 'minimize')} {metric['name']}"))
            if "target" in metric:   # W&B: no new runs once a run reaches it; the running ones finish
                if "target" in search:
                    result.errors.append(UserError("both metric.target (W&B's spelling) and search.target are given",
                                                   where="metric.target", hint="keep one"))
                else:
                    search["target"] = metric["target"]
                    out["search"] = search
                    result.written["search.target"] = "metric.target"
                    result.notes.append(("metric.target", f"search.target {metric['target']}: once a trial's "
                                                          f"{metric['name']} reaches it, apply starts no new trial "
                                                          "(the running ones finish), as W&B's sweep does"))
    for key in METADATA:
        if key in out:
            result.notes.append((key, f"W&B's {key} {out.pop(key)!r}: metadata, changes no trial"))
    if "description" in out:
        result.notes.append(("description", "metadata, changes no trial"))
    if isinstance(out.get("parameters"), dict):
        out["parameters"] = _parameters(out["parameters"], "parameters", "", result)
    return result


def _early_terminate(early: dict[str, Any], fidelities: bool, search: dict[str, Any], result: Translated) -> None:
    """W&B's hyperband: with the spec's fidelities, successive halving over them (hpt's rungs); else what W&B
    does, in-trial stopping by the metric each run logs at its brackets (search.stopping, rule hyperband)."""
    if search.get("method") == "halving":
        result.errors.append(UserError("early_terminate cannot be combined with search.method halving",
                                       where="early_terminate", hint="they say the same: keep one"))
        return
    if fidelities and search.get("method") != "tpe":
        search["method"] = "halving"
        result.written["search.method"] = "early_terminate"
        result.notes.append(("early_terminate", "hyperband: successive halving over the spec's fidelities "
                                                "(W&B stops runs by the metric they log at min_iter·eta^k)"))
        if "eta" in early:
            search["eta"] = early["eta"]
            result.written["search.eta"] = "early_terminate.eta"
        unused = [k for k in ("min_iter", "max_iter", "s", "strict") if k in early]
        if unused:
            result.warnings.append(f"early_terminate: {', '.join(unused)} ignored; hpt's rungs are the spec's fidelities")
        return
    if "stopping" in search:
        result.errors.append(UserError("both early_terminate (W&B's spelling) and search.stopping are given",
                                       where="early_terminate", hint="keep one"))
        return
    from hpt.compiler.stopping import STOPPING

    given = {"rule": "hyperband", **{k: v for k, v in early.items() if k != "type"}}
    try:   # the rule's own checks, naming W&B's key (its settings are W&B's words)
        settings = STOPPING.get("hyperband").resolve(given, "early_terminate")
    except UserError as err:
        result.errors.append(err)
        return
    search["stopping"] = given
    result.written["search.stopping"] = "early_terminate"
    at = (f"min_iter {settings['min_iter']}" if settings["min_iter"] is not None
          else f"max_iter {settings['max_iter']}, s {settings['s']}")
    result.notes.append(("early_terminate", f"hyperband ({at}, eta {settings['eta']}, strict "
                                            f"{str(settings['strict']).lower()}): search.stopping rule hyperband — a "
                                            "running trial is stopped at a bracket step when its objective there is "
                                            "outside the best ⌊n/eta⌋+1 of the trials that reported that step, as W&B "
                                            "stops runs" + (" (halving over the fidelities does not combine with bayes)"
                                                            if fidelities else "")))


def _parameters(params: dict[str, Any], where: str, prefix: str, result: Translated) -> dict[str, Any]:
    """W&B's parameter forms → hpt's; nested `parameters` flattened to dotted names, in order."""
    flat: dict[str, Any] = {}
    for name, value in params.items():
        at, full = f"{where}.{name}", prefix + name
        if isinstance(value, dict) and set(value) == {"parameters"}:
            result.notes.append((at, f"nested: its parameters are {full}.NAME (rendered back nested for the program)"))
            inner = _parameters(value["parameters"], f"{at}.parameters", full + ".", result)
            clash = [k for k in inner if k in flat]
            for key in clash:
                result.errors.append(UserError(f"the nested name {key!r} is also given as a dotted name", where=at))
            flat.update(inner)
            continue
        if full in flat:
            result.errors.append(UserError(f"{full!r} is also a nested parameter", where=at))
            continue
        if prefix:
            result.written[f"parameters.{full}"] = at
        flat[full] = _parameter(value, at, result) if isinstance(value, dict) else value
    return flat


def _num(value: float) -> float:
    return float(f"{value:.12g}")


def _parameter(value: dict[str, Any], at: str, result: Translated) -> dict[str, Any]:
    kind = value.get("distribution")
    if kind is None and "min" in value and "max" in value:   # W&B's inference
        integers = all(isinstance(value[k], int) and not isinstance(value[k], bool) for k in ("min", "max"))
        kind = "int-uniform" if integers else "uniform"
        result.notes.append((at, f"min/max without a distribution: {kind} (W&B infers int_uniform for two integers, "
                                 "else uniform)"))
        return {"distribution": kind, "min": value["min"], "max": value["max"]}
    if kind == "categorical":
        return {"values": value["values"]}
    if kind == "constant":
        return {"value": value["value"]}
    if kind in EXPONENT_FORMS:
        out = {k: v for k, v in value.items() if k not in ("min", "max")} | {"distribution": EXPONENT_FORMS[kind]}
        low, high = value["min"], value["max"]
        if kind == "inv_log_uniform":   # log(1/X) uniform in [min, max]: X in [e^-max, e^-min]
            low, high = -high, -low
        if max(low, high) > 700:        # e^709 is the largest double
            result.errors.append(UserError(f"{kind}'s min and max are natural logs: e^{max(low, high):g} is too large",
                                           where=at, hint="log_uniform_values takes the values themselves"))
            return value
        out["min"], out["max"] = _num(math.exp(low)), _num(math.exp(high))
        result.notes.append((at, f"{kind} min {value['min']:g}, max {value['max']:g} are natural logs: hpt's "
                                 f"{out['distribution']} over [{out['min']:g}, {out['max']:g}], the same distribution"))
        return out
    if kind in DISTRIBUTIONS:
        if kind == "inv_log_uniform_values":
            result.notes.append((at, "inv_log_uniform_values: log(1/X) uniform over [log(1/max), log(1/min)] is "
                                     "log(X) uniform over [log(min), log(max)]: hpt's log-uniform"))
        return value | {"distribution": DISTRIBUTIONS[kind]}
    return value
