"""W&B's sweep vocabulary, as written, in hpt's own words.

A W&B sweep config whose parameter names are hpt's compiles unchanged: `method: grid|random|bayes`
(bayes → tpe), `metric: {name, goal}` (→ objective), `run_cap` (→ search.trials),
`early_terminate: {type: hyperband, eta}` (→ search.method halving over the spec's fidelities), the
distributions `log_uniform_values`, `int_uniform`, `q_uniform` and `categorical`. The schema accepts
these words; `to_hpt` rewrites a schema-valid document into hpt's spelling, so everything after it
(meaning checks, defaults, the plan) knows one vocabulary and both spellings give the same plan.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

from hpt.schemas.errors import UserError

DISTRIBUTIONS = {"log_uniform_values": "log-uniform", "int_uniform": "int-uniform", "q_uniform": "q-uniform"}
METHODS = {"grid": "grid", "random": "random", "bayes": "tpe"}
IGNORED = ("name", "project", "entity", "program", "command")   # W&B's bookkeeping: hpt runs its own trainer


@dataclass
class Translated:
    doc: dict[str, Any]
    # hpt path → the path the user wrote, so a later error names the key in the spec
    written: dict[str, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    errors: list[UserError] = field(default_factory=list)

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
        move("method", "method", METHODS[out.pop("method")])
    if "run_cap" in out:
        move("run_cap", "trials", out.pop("run_cap"))
    if "early_terminate" in out:
        early = out.pop("early_terminate")
        if search.get("method") in ("tpe", "halving"):
            said = "method bayes" if search["method"] == "tpe" else "search.method halving"
            result.errors.append(UserError(f"early_terminate cannot be combined with {said}", where="early_terminate",
                                           hint="early_terminate is halving over a grid or random configs"))
        else:
            search["method"] = "halving"
            result.written["search.method"] = "early_terminate"
            if "eta" in early:
                search["eta"] = early["eta"]
                result.written["search.eta"] = "early_terminate.eta"
            unused = [k for k in ("min_iter", "max_iter", "s", "strict") if k in early]
            if unused:
                result.warnings.append(f"early_terminate: {', '.join(unused)} ignored; "
                                       "hpt's rungs are the spec's fidelities")
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
            if "target" in metric:
                result.warnings.append("metric.target ignored: hpt runs the whole budget")
    for key in IGNORED:
        if key in out:
            value = out.pop(key)
            if key in ("program", "command"):
                result.warnings.append(f"{key} {value!r} ignored: every trial runs hpt's trainer")
    for name, value in out.get("parameters", {}).items():
        if not isinstance(value, dict) or "distribution" not in value:
            continue
        if value["distribution"] == "categorical":
            out["parameters"][name] = {"values": value["values"]}
        elif value["distribution"] in DISTRIBUTIONS:
            value["distribution"] = DISTRIBUTIONS[value["distribution"]]
    return result
