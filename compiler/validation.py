"""Validating a spec: the JSON Schema first (shape), then what a schema cannot say (meaning).

Every problem becomes one UserError whose `where` is a JSON path (`parameters.num_of_attentions[1]`)
and whose message says what is wrong; unknown names come with the closest valid ones.
"""
from __future__ import annotations

import datetime as dt
import json
import math
import re
from pathlib import Path
from typing import Any

from jsonschema.exceptions import ValidationError

from hpt.compiler.limits import MAX_DATE, MAX_VALUES, MIN_DATE
from hpt.compiler.metrics import choose_metrics
from hpt.compiler.paths import did_you_mean, json_path
from hpt.compiler.usertrainer import SpecTrainer, load_trainer
from hpt.schemas.catalog import CATEGORICAL, Architecture, ParamSpec, Value, architectures, format_value, value_key
from hpt.compiler.katib import is_katib, read_experiment
from hpt.compiler.wandb import lift_program, to_hpt
from hpt.schemas.errors import UserError, raise_all
from hpt.schemas.kubernetes import ClusterSettings
from hpt.schemas.loader import load_json, schema_validator
from hpt.schemas.resources import check_gpus, check_memory

SPEC_SCHEMA = "spec.schema.json"
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}\Z")


def validate_spec(doc: Any, warnings: list[str] | None = None) -> dict[str, Any]:
    """Every problem in `doc` at once (UserErrors, first in document order first), or the document in
    hpt's own words (W&B's spellings translated, compiler/wandb.py) when it compiles. A `trainer`'s
    source and catalog resolve against the working folder (compile_spec: validate_and_load)."""
    return validate_and_load(doc, Path.cwd(), warnings)[0]


def validate_and_load(doc: Any, spec_dir: Path, warnings: list[str] | None = None,
                      parse_errors: list[UserError] | None = None,
                      notes: list[tuple[str, str]] | None = None) -> tuple[dict[str, Any], SpecTrainer | None]:
    """validate_spec, plus the spec's own trainer (its source hashed and its catalog read once, here), if any.
    `parse_errors`: what loading found (duplicate keys, LoadedSpec.errors), reported first with the rest.
    `notes`: filled with (key as written, how hpt read it) for a W&B or Katib file (`hpt compile --explain`)."""
    found_first = list(parse_errors or [])
    origin = None
    if is_katib(doc):   # a Katib Experiment: read into hpt's words first (compiler/katib.py)
        origin = read_experiment(doc)
        found_first += origin.errors
        doc = origin.doc
        if warnings is not None:
            warnings.extend(origin.warnings)
        if notes is not None:
            notes.extend(origin.notes)
    doc, lifted, lift_errors = lift_program(doc)   # W&B's program/command → the trainer
    found_first += lift_errors
    if notes is not None:
        notes.extend(lifted)
    if warnings is not None:
        warnings.extend(f"{where}: {text}" for where, text in lifted if text.startswith("not applied"))
    problems = schema_problems(doc)
    if not isinstance(doc, dict):
        raise_all(found_first + [error for _, error in problems])
    # The parts the schema accepted are checked for meaning too, so one run reports everything.
    translated = to_hpt(without_broken(doc, [path for path, _ in problems]))
    # top-level keys the schema refused as a whole (a key of parameters or metric goes alone: without_broken)
    broken = {path[0] for path, _ in problems if path and not (path[0] in _INDEPENDENT_KEYS and len(path) >= 2)}
    errors = [error for _, error in problems] + translated.errors
    user: SpecTrainer | None = None
    if "trainer" in translated.doc:
        try:
            user = load_trainer(translated.doc, spec_dir, warnings if warnings is not None else [])
        except UserError as err:
            errors.append(err)
    for error in meaning_problems(translated.doc, user.architecture if user else None, user.metrics if user else None):
        if error.where:
            error.where = translated.where(error.where)
        if _top_key(error.where) in broken or getattr(error, "about", None) in broken:
            continue  # a part the schema refused is one problem, said once (its meaning was not checked)
        errors.append(error)
    errors = in_document_order(errors, doc)
    if origin is not None:   # name the key as the Experiment wrote it
        for error in errors:
            error.where = origin.where(error.where) if error.where else error.where
    raise_all(found_first + errors)
    if warnings is not None:
        warnings.extend(translated.warnings)
    if notes is not None:
        notes.extend(translated.notes)
    return translated.doc, user


# --- shape ------------------------------------------------------------------------------------

def without_broken(doc: dict[str, Any], paths: list[list[str | int]]) -> dict[str, Any]:
    """`doc` less the parts the schema refused, so that the meaning of the rest is still checked: a key of
    `parameters` or `metric` whose shape is wrong goes alone (its siblings are independent of it); anywhere
    else the whole top-level key goes (its parts depend on each other: search.method and search.eta)."""
    out = dict(doc)
    for path in paths:
        if not path or path[0] not in out:
            continue
        top = path[0]
        if top in _INDEPENDENT_KEYS and len(path) >= 2 and isinstance(out[top], dict):
            out[top] = {k: v for k, v in out[top].items() if k != path[1]}
        else:
            del out[top]
    return out


_INDEPENDENT_KEYS = ("parameters", "metric")


def check_schema(doc: Any) -> None:
    """Raise UserError for the first problem of shape (in document order)."""
    problems = schema_problems(doc)
    if problems:
        raise problems[0][1]


def schema_problems(doc: Any) -> list[tuple[list[str | int], UserError]]:
    """Each problem of shape, in document order, one per JSON path, with its path (as a list)."""
    if isinstance(doc, dict) and ("architecture" in doc) == ("trainer" in doc):
        # The schema's top-level oneOf can only say "no form matches": say which key to give.
        first: list[str | int]
        if "trainer" in doc:
            first = ["trainer"]
            problem = UserError("give either a built-in architecture or a trainer of your own, not both", where="trainer")
        else:
            first = []
            problem = UserError("missing required key 'architecture'", where="(top level)",
                                hint="name a built-in architecture (`hpt architectures`) or bring your own \"trainer\"")
        return [(first, problem)] + [p for p in _schema_problems(doc) if p[1].where != "(top level)"]
    return _schema_problems(doc)


def _schema_problems(doc: Any) -> list[tuple[list[str | int], UserError]]:
    validator = schema_validator(SPEC_SCHEMA)
    # Document order; deeper first; at one path, a misspelt or missing key before what it causes.
    errors = sorted(validator.iter_errors(doc), key=lambda e: (_order(doc, list(e.absolute_path)), -len(e.absolute_path),
                                                               e.validator not in ("additionalProperties", "required")))
    # One problem per subtree: an error above a deeper one is usually its echo (an anyOf failing
    # because of a misspelt key), so the deeper, more precise one stands for both.
    paths = [tuple(e.absolute_path) for e in errors]
    errors = [e for e, p in zip(errors, paths) if not p or not any(len(q) > len(p) and q[:len(p)] == p for q in paths)]
    out: list[tuple[list[str | int], UserError]] = []
    seen: set[tuple] = set()
    for error in errors:
        path = list(error.absolute_path)
        if path and tuple(path) in seen:
            continue
        seen.add(tuple(path))
        explained = _explain(error)
        if not path and error.validator == "additionalProperties" and isinstance(error.instance, dict):
            # each unknown top-level key is its own problem (the schema reports them together)
            for key in _unknown_keys(error):
                known = list(error.schema.get("properties", {}))
                out.append(([key], UserError(f"unknown key {key!r}", where=json_path([key]), hint=did_you_mean(key, known))))
            continue
        out.append((path, explained))
    # A misspelt required key is one mistake, not two: its "unknown key (did you mean ...)" says it all.
    hints = " ".join(e.hint or "" for _, e in out)
    return [(path, e) for path, e in out
            if not (e.message.startswith("missing required key") and e.message.split()[-1] in hints)]


def in_document_order(errors: list[UserError], doc: dict[str, Any]) -> list[UserError]:
    """By top-level key as the spec wrote them (stable within one), so the first is the one a reader meets
    first; errors about no key of the spec (the file, the top level) come first."""
    keys = list(doc)
    return sorted(errors, key=lambda e: keys.index(_top_key(e.where)) if _top_key(e.where) in keys else -1)


def _top_key(where: str | None) -> str:
    return re.split(r"[.\[]", where or "", maxsplit=1)[0]


def _unknown_keys(error: ValidationError) -> list[str]:
    known = error.schema.get("properties", {})
    return [k for k in error.instance if k not in known]


def _order(doc: Any, path: list[str | int]) -> tuple:
    """Position of a path in document order (keys in the order they were written)."""
    out: list[int] = []
    node = doc
    for part in path:
        if isinstance(node, dict) and part in node:
            out.append(list(node).index(part))
        elif isinstance(node, list) and isinstance(part, int) and part < len(node):
            out.append(part)
        else:
            break
        node = node[part]
    return tuple(out)


def _explain(error: ValidationError) -> UserError:
    path = list(error.absolute_path)
    where = json_path(path) or "(top level)"
    instance = error.instance
    kind = error.validator
    if kind == "oneOf":
        branch = _matching_branch(error)
        if branch is not None:
            return _explain(branch)
        return UserError(_one_of_message(path, instance), where=where)
    if kind == "additionalProperties":
        known = list(error.schema.get("properties", {}))
        extra = [k for k in instance if k not in known]
        if extra:
            key = extra[0]
            key_where = json_path(path + [key])
            if not known:  # an open mapping (parameters): the schema cannot name choices
                return UserError(f"unexpected key {key!r}", where=key_where)
            return UserError(f"unknown key {key!r}", where=key_where, hint=did_you_mean(key, known))
    if kind == "required":
        missing = [k for k in error.validator_value if k not in instance]
        return UserError(f"missing required key {missing[0]!r}", where=where)
    if kind == "type":
        return UserError(f"expected {_type_words(error.validator_value)}, got {_describe(instance)}", where=where)
    if kind == "enum":
        choices = [str(c) for c in error.validator_value]
        return UserError(f"{instance!r} is not one of {', '.join(choices)}", where=where,
                         hint=did_you_mean(str(instance), choices) if isinstance(instance, str) else None)
    if kind == "pattern" and error.validator_value == load_json(SPEC_SCHEMA)["$defs"]["date"]["pattern"]:
        return UserError(f"{_short(instance)} is not a date (expected YYYY-MM-DD)", where=where)
    if kind == "pattern" and error.validator_value == load_json(SPEC_SCHEMA)["$defs"]["image"]["pattern"]:
        return UserError(f"{_short(instance)} is not an image reference", where=where,
                         hint="[registry[:port]/]name[:tag][@sha256:digest], lowercase name, e.g. hpt-trainer:latest")
    if kind == "minItems" and isinstance(instance, list) and not instance:
        return UserError("must not be empty", where=where)
    if kind in ("minItems", "maxItems") and path == ["fidelities"]:
        return UserError(f"list 2 to 8 fidelities to compare, got {len(instance)}", where=where)
    if kind == "anyOf" and path and path[0] == "fidelities":
        return UserError("a fidelity needs months, epochs or both", where=where)
    if kind in ("minItems", "maxItems") and len(path) >= 2 and path[0] == "date-range":
        return UserError(f"a date range is a pair [start, end], got {len(instance)} item(s)", where=where)
    if kind == "uniqueItems":
        return UserError("values must be unique", where=where)
    if kind in ("maxItems", "maxLength"):
        return UserError(f"{len(instance):,} {'items' if kind == 'maxItems' else 'characters'}, more than "
                         f"{error.validator_value:,}", where=where)
    if kind == "pattern":
        return UserError(f"{_short(instance)} does not match {error.validator_value!r}", where=where)
    return UserError(_clip(error.message, 200), where=where)


def _short(value: Any) -> str:
    """A value as it appears in a message: its repr, cut in the middle when long (a message is one line)."""
    return _clip(repr(value), 60)


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else f"{text[:limit // 2]}…{text[-limit // 2:]} ({len(text):,} characters)"


def _matching_branch(error: ValidationError) -> ValidationError | None:
    """For a `oneOf` failure, the errors of the branch the user evidently meant (by type and keys)."""
    by_branch: dict[int, list[ValidationError]] = {}
    for sub in error.context or ():
        by_branch.setdefault(sub.relative_schema_path[0], []).append(sub)
    root = load_json(SPEC_SCHEMA)
    candidates = []
    for index, subs in by_branch.items():
        branch = _deref(error.schema["oneOf"][index], root)
        if any(s.validator == "type" and not s.relative_path for s in subs):
            continue  # wrong JSON type for this branch
        props = set(branch.get("properties", {}))
        overlap = len(props & set(error.instance)) if isinstance(error.instance, dict) else 0
        candidates.append((overlap, index, subs))
    if not candidates:
        return None
    candidates.sort(key=lambda c: (-c[0], c[1]))
    if len(candidates) > 1 and candidates[0][0] == candidates[1][0]:
        return None  # ambiguous: describe the accepted forms instead
    subs = candidates[0][2]
    return min(subs, key=lambda e: (-len(e.absolute_path), e.validator == "type"))


def _deref(schema: dict[str, Any], root: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = root["$defs"][schema["$ref"].rsplit("/", 1)[-1]]
    return schema


def _one_of_message(path: list[str | int], instance: Any) -> str:
    if path and path[0] == "date-range":
        return ('expected a list of [start, end] date pairs, or {"count": N, "months": M}, '
                f"got {_describe(instance)}")
    if path and path[0] == "parameters":
        return ('expected a list of values, a number, {"values": [...]}, {"value": x}, {"min": ..., "max": ...}, '
                '{"distribution": KIND, ...} (a kind of hpt\'s or W&B\'s, docs/wandb.md) or {"parameters": {...}} '
                f"(nested), got {_describe(instance)}")
    return f"{_describe(instance)} does not match any accepted form"


def _type_words(expected: Any) -> str:
    names = expected if isinstance(expected, list) else [expected]
    words = {"object": "an object", "array": "a list", "string": "a string", "number": "a number",
             "integer": "an integer", "boolean": "true or false", "null": "null"}
    return " or ".join(words.get(n, n) for n in names)


def _describe(value: Any) -> str:
    if isinstance(value, bool):
        return f"{str(value).lower()} (a boolean)"
    if isinstance(value, str):
        return f"the string {_short(value)}"
    if isinstance(value, (int, float)):
        return f"the number {value!r}"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return "null" if value is None else type(value).__name__


# --- meaning ----------------------------------------------------------------------------------

def check_meaning(doc: dict[str, Any]) -> None:
    """Raise the first problem of meaning in a schema-valid document in hpt's words."""
    raise_all(meaning_problems(doc)[:1])


def meaning_problems(doc: dict[str, Any], arch: Architecture | None = None,
                     declared: dict[str, str] | None = None) -> list[UserError]:
    """What a schema cannot say, for every part of `doc` present (parts the schema refused are left out).
    `arch`: a user trainer's hyperparameters (compiler.usertrainer); default: the spec's built-in architecture.
    `declared`: a user trainer's declared metrics (name → goal; {} for none); None: a built-in architecture."""
    errors: list[UserError] = []
    if declared is None and "trainer" in doc:
        declared = {}

    def check(fn, *args) -> Any:  # noqa: ANN001 — one independent check; its error is collected
        try:
            return fn(*args)
        except UserError as err:
            errors.append(err)
            return None

    if arch is None and "architecture" in doc:
        arch = check(check_architecture, doc["architecture"])
    if "date-range" in doc and isinstance(doc["date-range"], list):
        check(check_date_pairs, doc["date-range"])
    if arch is not None:
        for name, value in doc.get("parameters", {}).items():
            check(check_parameter, arch, name, value)
    elif "trainer" not in doc:   # no architecture, or an unknown one: check what every built-in would
        for name, value in doc.get("parameters", {}).items():
            check(check_parameter_anywhere, name, value)
    check(check_search, doc)
    if "memory" in doc.get("resources", {}):
        check(check_memory, doc["resources"]["memory"])
    if isinstance(doc.get("resources", {}).get("gpus"), (int, float)):
        check(check_gpus, doc["resources"]["gpus"])
    errors += choose_metrics(doc, declared).errors
    if "kubernetes" in doc:   # checked here, once: the backend trusts a compiled manifest's section
        check(ClusterSettings.parse, doc["kubernetes"], "kubernetes")
    return errors


def check_search(doc: dict[str, Any]) -> None:
    """The search's parts exist, agree with `method`, and each setting belongs to a chosen part (each part
    checks its own settings: compiler/proposers/, compiler/schedulers/)."""
    from hpt.compiler.proposers import PROPOSERS
    from hpt.compiler.schedulers import SCHEDULERS
    from hpt.compiler.search import METHODS, search_parts

    search = doc.get("search", {})
    for key, registry in (("proposer", PROPOSERS), ("scheduler", SCHEDULERS)):
        if key in search and search[key] not in registry.names():
            raise UserError(f"unknown {key} {search[key]!r}", where=f"search.{key}",
                            hint=did_you_mean(search[key], registry.names()) or f"known: {', '.join(registry.names())}")
    method = search.get("method")
    if method:
        implied = METHODS[method]
        for key, value in (("proposer", implied[0]), ("scheduler", implied[1])):
            if key in search and value is not None and search[key] != value:
                raise UserError(f"method {method} means {key} {value}, and search.{key} is {search[key]}",
                                where=f"search.{key}", hint='give "method" alone, or "proposer" and "scheduler"')
    proposer_name, scheduler_name = search_parts(search, doc.get("parameters", {}))
    proposer, scheduler = PROPOSERS.get(proposer_name), SCHEDULERS.get(scheduler_name)
    for key in sorted(search):
        owners = [(kind, part.name) for kind, reg in (("proposer", PROPOSERS), ("scheduler", SCHEDULERS))
                  for part in (reg.get(n) for n in reg.names()) if key in part.settings_keys]
        if owners and not any(name in (proposer_name, scheduler_name) for _, name in owners):
            kind, name = owners[0]
            if key == "min_configs":
                raise UserError("min_configs applies to halving only (elsewhere: trials)", where="search.min_configs",
                                hint='set "search": {"method": "halving"}, or say "trials"')
            raise UserError(f"{key} applies to {name} only", where=f"search.{key}",
                            hint=f'set "search": {{"method": "{name}"}}')
    if proposer.adaptive and doc.get("fidelities") and not scheduler.needs_fidelities:
        raise UserError(f"{proposer_name} runs every config at the spec's budget; fidelities are halving's rungs",
                        where="fidelities", hint='drop "fidelities", or add "scheduler": "halving" (BOHB)')
    proposer.check(search, doc)
    scheduler.check(search, doc)


def check_architecture(name: str) -> Architecture:
    catalog = architectures()
    if name not in catalog:
        raise UserError(f"unknown architecture {name!r}", where="architecture", hint=did_you_mean(name, catalog))
    return catalog[name]


def parse_date(text: str, where: str) -> dt.date:
    if not _DATE.match(text):
        raise UserError(f"{text!r} is not a date (expected YYYY-MM-DD)", where=where)
    try:
        day = dt.date.fromisoformat(text)
    except ValueError as err:
        raise UserError(f"{text!r} is not a valid date: {err}", where=where) from None
    if not MIN_DATE <= day <= MAX_DATE:  # date arithmetic (validation days, months) must stay inside the calendar
        raise UserError(f"{text} is outside {MIN_DATE} to {MAX_DATE}", where=where)
    return day


def check_date_pairs(pairs: list[list[str]]) -> list[tuple[dt.date, dt.date]]:
    """The pairs as dates, or every problem of every pair at once."""
    seen: dict[tuple[dt.date, dt.date], int] = {}
    out = []
    errors: list[UserError] = []
    for i, (start_text, end_text) in enumerate(pairs):
        days = []
        for j, text in enumerate((start_text, end_text)):
            try:
                days.append(parse_date(text, f"date-range[{i}][{j}]"))
            except UserError as err:
                errors.append(err)
        if len(days) < 2:
            continue
        start, end = days
        if start >= end:
            errors.append(UserError(f"start {start} is not before end {end} (end is exclusive)", where=f"date-range[{i}]"))
        elif (start, end) in seen:
            errors.append(UserError(f"the same date range as date-range[{seen[(start, end)]}]", where=f"date-range[{i}]"))
        seen.setdefault((start, end), i)
        out.append((start, end))
    raise_all(errors)
    return out


def check_parameter(arch: Architecture, name: str, value: Any) -> None:
    where = f"parameters.{name}"
    if name not in arch.param_names:
        raise UserError(f"{arch.name} has no hyperparameter {name!r}", where=where, hint=did_you_mean(name, arch.param_names))
    spec = arch.param(name)
    if isinstance(value, (int, float, str)):  # bool is an int
        check_value(spec, value, where)
    elif isinstance(value, list):
        check_values(spec, value, where)
    elif "values" in value:
        check_values(spec, value["values"], where + ".values")
    elif "value" in value:
        check_value(spec, value["value"], where + ".value")
    elif not spec.numeric:
        raise UserError(f"{spec.name} is {spec.type}: give its values (a list), not a {value['distribution']} distribution",
                        where=where, hint=f"e.g. {json.dumps(list(spec.options))}")
    else:
        check_distribution(spec, value, where)


def check_parameter_anywhere(name: str, value: Any) -> None:
    """A parameter of a spec whose architecture is missing or unknown: a name no built-in architecture has
    is an error, and so is a value that no architecture with that name accepts (in the first one's words)."""
    catalog = architectures()
    having = [arch for arch in catalog.values() if name in arch.param_names]
    if not having:
        names = sorted({n for arch in catalog.values() for n in arch.param_names})
        raise UserError(f"no built-in architecture has a hyperparameter {name!r}", where=f"parameters.{name}",
                        hint=did_you_mean(name, names))
    first: UserError | None = None
    for arch in having:
        try:
            return check_parameter(arch, name, value)
        except UserError as err:
            first = first or err
    assert first is not None
    raise first


def check_values(spec: ParamSpec, values: list[Any], where: str) -> None:
    if len(values) > MAX_VALUES:
        raise UserError(f"{len(values):,} values, more than {MAX_VALUES:,}", where=where,
                        hint="a distribution with random search covers a range without listing it")
    seen: dict[Any, int] = {}
    for i, value in enumerate(values):
        coerced = check_value(spec, value, f"{where}[{i}]")
        # (type, value): True and 1 are equal in Python, but a bool never meets a number here
        key = (type(coerced), value_key(coerced))
        if key in seen:
            raise UserError(f"duplicate value {format_value(value)} (same as [{seen[key]}]); a duplicate would run "
                            "the same trial twice", where=f"{where}[{i}]")
        seen[key] = i


def check_value(spec: ParamSpec, value: Any, where: str) -> Value:
    problem = spec.type_problem(value)
    if problem:
        raise UserError(problem, where=where,
                        hint=did_you_mean(value, spec.choices) if spec.type == CATEGORICAL and isinstance(value, str) else None)
    if not spec.numeric:
        return value
    if not math.isfinite(value):
        raise UserError("must be a finite number", where=where)
    if spec.type == "int" and float(value) != int(value):
        raise UserError(f"{spec.name} is an integer, got {value!r}", where=where)
    if not spec.min <= value <= spec.max:
        raise UserError(f"{value!r} is outside {spec.name}'s range [{_num(spec.min)}, {_num(spec.max)}]", where=where)
    return spec.coerce(value)


def check_distribution(spec: ParamSpec, dist: dict[str, Any], where: str) -> None:
    """A distribution in hpt's spelling (compiler/wandb.py has turned W&B's into it)."""
    from hpt.compiler.search import NORMAL, QUANTIZED
    kind = dist["distribution"]
    if kind in NORMAL:
        for key in ("min", "max"):
            if key in dist:
                raise UserError(f"{kind} is unbounded: it takes mu and sigma, not {key}", where=f"{where}.{key}",
                                hint="for a bounded range use uniform or log-uniform")
    else:
        for key in ("mu", "sigma"):
            if key in dist:
                raise UserError(f"{key} applies to the normal kinds only, not {kind}", where=f"{where}.{key}")
        missing = [key for key in ("min", "max") if key not in dist]
        if missing:
            raise UserError(f"{kind} needs {' and '.join(missing)}", where=where)
        low, high = dist["min"], dist["max"]
        if low >= high:
            raise UserError(f"min {low!r} must be less than max {high!r}", where=where)
        for key in ("min", "max"):
            if not spec.min <= dist[key] <= spec.max:
                raise UserError(f"{dist[key]!r} is outside {spec.name}'s range [{_num(spec.min)}, {_num(spec.max)}]",
                                where=f"{where}.{key}")
        if kind in ("log-uniform", "q-log-uniform") and low <= 0:
            raise UserError(f"{kind} needs min > 0, got {low!r}", where=f"{where}.min")
        if spec.type == "int" and math.floor(high) < math.ceil(low):
            raise UserError(f"no integer lies in [{low!r}, {high!r}]", where=where)
    if kind == "int-uniform":
        for key in ("min", "max"):
            if float(dist[key]) != int(dist[key]):
                raise UserError(f"int-uniform bounds are integers, got {dist[key]!r}", where=f"{where}.{key}")
    if "q" in dist and kind not in QUANTIZED:
        raise UserError(f"q applies to the q kinds only ({', '.join(QUANTIZED)}), not {kind}", where=f"{where}.q")
    if kind in QUANTIZED:
        q = dist.get("q", 1)
        if kind in ("q-uniform", "q-log-uniform") and q > dist["max"] - dist["min"]:
            raise UserError(f"q {q!r} is larger than max - min", where=f"{where}.q")
        span = max(abs(float(dist.get(k, 0) or 0)) for k in ("min", "max", "mu", "sigma"))
        if not math.isfinite(span / q) or span / q > MAX_Q_STEPS:  # value / q overflows, or no grid at all
            raise UserError(f"q {q!r} is too fine: more than {MAX_Q_STEPS:.0e} steps of q to max", where=f"{where}.q")
        if spec.type == "int" and float(q) != int(q):
            raise UserError(f"{spec.name} is an integer: q must be an integer, got {q!r}", where=f"{where}.q")


MAX_Q_STEPS = 1e15   # a q grid finer than this is no grid (and value / q overflows at q 5e-324)


def _num(value: float) -> str:
    return f"{value:g}"
