"""Property tests: every valid spec compiles deterministically; every mutated spec either compiles or
fails with exit code 2 and one message — never a traceback."""
from __future__ import annotations

import datetime as dt
import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from hpt.cli import app
from hpt.compiler import CompileOptions, compile_spec
from hpt.schemas.catalog import ParamSpec, architectures
from hpt.schemas.manifest import TrialManifest

TODAY = dt.date(2026, 11, 26)
SETTINGS = dict(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


def value_of(spec: ParamSpec) -> st.SearchStrategy:
    if not spec.numeric:  # a categorical's choices, or false and true
        return st.sampled_from(spec.options)
    if spec.type == "int":
        return st.integers(int(spec.min), min(int(spec.max), int(spec.min) + 50))
    return st.floats(spec.min, spec.max, allow_nan=False, allow_infinity=False, allow_subnormal=False).map(lambda x: x + 0.0)


def parameter_of(spec: ParamSpec, random_ok: bool) -> st.SearchStrategy:
    forms = [st.lists(value_of(spec), min_size=1, max_size=2, unique_by=spec.coerce),
             value_of(spec),
             st.lists(value_of(spec), min_size=1, max_size=2, unique_by=spec.coerce).map(lambda v: {"values": v})]
    if random_ok and not spec.numeric:  # W&B's categorical distribution: a uniform choice
        forms.append(st.lists(value_of(spec), min_size=1, max_size=3, unique=True)
                     .map(lambda v: {"distribution": "categorical", "values": v}))
    elif random_ok:
        forms.append(st.tuples(value_of(spec), value_of(spec)).filter(lambda p: spec.coerce(p[0]) < spec.coerce(p[1]))
                     .map(lambda p: {"distribution": "int-uniform" if spec.type == "int" else "uniform", "min": p[0], "max": p[1]}))
    return st.one_of(forms)


@st.composite
def date_ranges(draw) -> Any:
    if draw(st.booleans()):
        return {"count": draw(st.integers(1, 3)), "months": draw(st.integers(1, 3))}
    starts = draw(st.lists(st.integers(0, 600), min_size=1, max_size=3, unique=True))
    pairs = []
    for offset in starts:
        start = dt.date(2009, 12, 1) + dt.timedelta(days=offset)
        end = start + dt.timedelta(days=draw(st.integers(1, 90)))
        pairs.append([start.isoformat(), end.isoformat()])
    return pairs


@st.composite
def valid_specs(draw) -> dict[str, Any]:
    arch = draw(st.sampled_from(sorted(architectures())))
    params = architectures()[arch].parameters
    random = draw(st.booleans())
    chosen = draw(st.lists(st.sampled_from(params), max_size=3, unique_by=lambda p: p.name))
    spec: dict[str, Any] = {"architecture": arch}
    if chosen:
        spec["parameters"] = {p.name: draw(parameter_of(p, random)) for p in chosen}
    if draw(st.booleans()):
        spec["date-range"] = draw(date_ranges())
    if random:
        spec["search"] = {"method": "random", "trials": draw(st.integers(1, 6)), "seed": draw(st.integers(0, 99))}
    elif draw(st.booleans()):
        spec["search"] = {"trials": draw(st.integers(1, 6))}
    for key, strategy in (("mode", st.sampled_from(["full", "quick"])), ("epochs", st.integers(1, 30)),
                          ("repeats", st.integers(1, 2)), ("validation-days", st.integers(1, 40))):
        if draw(st.booleans()):
            spec[key] = draw(strategy)
    return spec


def tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@settings(max_examples=25, **SETTINGS)
@given(spec=valid_specs())
def test_every_valid_spec_compiles_deterministically(spec, monkeypatch):
    monkeypatch.setenv("HPT_DEMO_DATA", "/nonexistent/hpt-demo")
    root = Path(tempfile.mkdtemp(prefix="hpt-prop-"))
    try:
        path = root / "spec.json"
        path.write_text(json.dumps(spec))
        first = compile_spec(str(path), CompileOptions(out=root / "a", today=TODAY))
        second = compile_spec(str(path), CompileOptions(out=root / "b", today=TODAY + dt.timedelta(days=2)))
        assert tree(root / "a") == tree(root / "b")
        assert first.experiment == second.experiment
        ids = first.trial_ids
        assert len(ids) == len(set(ids)) == first.configs * len(first.windows) * first.resolved.repeats > 0
        sample = TrialManifest.load(root / "a" / "trials" / f"{ids[-1]}.json")
        assert sample.architecture == spec["architecture"]
        if spec.get("mode") == "quick":
            assert len(first.windows) == 1
    finally:
        shutil.rmtree(root, ignore_errors=True)


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-3, 8) | st.floats(-2, 5, allow_nan=False) | st.sampled_from(
        ["", "lstm", "2010-01-01", "2017\u201301\u201301", "grid", "random", "quick", "uniform", "log-uniform", "x" * 3,
         "adam", "sgd", "categorical"]),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.sampled_from(["count", "months", "min", "max", "values", "q", "zz"]), children, max_size=3),
    max_leaves=6)


def paths_of(doc: Any, prefix: tuple = ()) -> list[tuple]:
    out = [prefix]
    if isinstance(doc, dict):
        for key, value in doc.items():
            out += paths_of(value, prefix + (key,))
    elif isinstance(doc, list):
        for i, value in enumerate(doc):
            out += paths_of(value, prefix + (i,))
    return out


@st.composite
def mutated_specs(draw) -> Any:
    doc = draw(valid_specs())
    for _ in range(draw(st.integers(1, 3))):
        paths = paths_of(doc)
        path = draw(st.sampled_from(paths))
        kind = draw(st.sampled_from(["replace", "delete", "add", "rename"]))
        if not path:
            if kind == "replace":
                doc = draw(JSON_VALUES)
            continue
        parent = doc
        for part in path[:-1]:
            parent = parent[part]
        last = path[-1]
        if kind == "replace":
            parent[last] = draw(JSON_VALUES)
        elif kind == "delete":
            del parent[last]
        elif kind == "add" and isinstance(parent, dict):
            parent[draw(st.sampled_from(["paramters", "date_range", "seed", "trials", "min", "zz"]))] = draw(JSON_VALUES)
        elif kind == "rename" and isinstance(parent, dict):
            parent[str(last)[:-1] or "x"] = parent.pop(last)
        if not isinstance(doc, (dict, list)):
            break
    return doc


@settings(max_examples=60, **SETTINGS)
@given(doc=mutated_specs(), as_yaml=st.booleans())
def test_every_mutated_spec_compiles_or_fails_cleanly(doc, as_yaml, monkeypatch):
    monkeypatch.setenv("HPT_DEMO_DATA", "/nonexistent/hpt-demo")
    root = Path(tempfile.mkdtemp(prefix="hpt-mut-"))
    try:
        if as_yaml:
            import yaml

            path = root / "spec.yaml"
            path.write_text(yaml.safe_dump(doc, allow_unicode=True))
        else:
            path = root / "spec.json"
            path.write_text(json.dumps(doc, ensure_ascii=False))
        result = CliRunner().invoke(app, ["compile", str(path), "--out", str(root / "plan"), "--today", TODAY.isoformat()])
        assert result.exit_code in (0, 2), (result.output, result.exception)
        assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
        assert "Traceback" not in result.output
        if result.exit_code == 2:
            lines = result.stderr.strip().splitlines()
            assert lines and all(line.startswith("error: ") for line in lines), result.stderr  # one line per problem
            assert not (root / "plan").exists()
        else:
            assert (root / "plan" / "plan.json").exists()
    finally:
        shutil.rmtree(root, ignore_errors=True)


# --- categorical and boolean hyperparameters ----------------------------------------------------------
NON_NUMERIC = [(arch, p) for arch in sorted(architectures()) for p in architectures()[arch].parameters if not p.numeric]


def _compile(spec: dict[str, Any], root: Path, name: str = "plan"):
    path = root / f"{name}.json"
    path.write_text(json.dumps(spec))
    return compile_spec(str(path), CompileOptions(out=root / name, today=TODAY))


def _params(root: Path, result) -> list[dict[str, Any]]:
    return [TrialManifest.load(root / "plan" / "trials" / f"{tid}.json").params for tid in result.trial_ids]


@settings(max_examples=25, **SETTINGS)
@given(data=st.data())
def test_a_grid_over_choices_tries_each_combination_once(data, monkeypatch):
    monkeypatch.setenv("HPT_DEMO_DATA", "/nonexistent/hpt-demo")
    arch = data.draw(st.sampled_from(sorted(architectures())))
    specs = [p for p in architectures()[arch].parameters if not p.numeric]
    chosen = {p.name: data.draw(st.lists(st.sampled_from(p.options), min_size=1, unique=True)) for p in specs}
    numeric = data.draw(st.sampled_from([p for p in architectures()[arch].parameters if p.numeric]))
    chosen[numeric.name] = data.draw(st.lists(value_of(numeric), min_size=1, max_size=2, unique_by=numeric.coerce))
    root = Path(tempfile.mkdtemp(prefix="hpt-cat-"))
    try:
        result = _compile({"architecture": arch, "date-range": [["2010-01-01", "2010-03-01"]], "parameters": chosen}, root)
        params = _params(root, result)
        combos = [tuple((name, type(p[name]), p[name]) for name in chosen) for p in params]
        expected = 1
        for values in chosen.values():
            expected *= len(values)
        assert len(combos) == len(set(combos)) == expected == len(set(result.trial_ids))
        for spec in specs:  # exactly the listed values, in the hyperparameter's own type (a bool is never 0/1)
            assert {(type(p[spec.name]), p[spec.name]) for p in params} == {(type(v), v) for v in chosen[spec.name]}
    finally:
        shutil.rmtree(root, ignore_errors=True)


@settings(max_examples=25, **SETTINGS)
@given(data=st.data())
def test_random_categorical_draws_stay_in_their_values_and_repeat_nothing(data, monkeypatch):
    monkeypatch.setenv("HPT_DEMO_DATA", "/nonexistent/hpt-demo")
    arch, spec = data.draw(st.sampled_from(NON_NUMERIC))
    values = data.draw(st.lists(st.sampled_from(spec.options), min_size=1, unique=True))
    doc = {"architecture": arch, "date-range": [["2010-01-01", "2010-03-01"]],
           "parameters": {spec.name: {"distribution": "categorical", "values": values},
                          "learning_rate": {"distribution": "log-uniform", "min": 0.0001, "max": 0.1}},
           "search": {"method": "random", "trials": data.draw(st.integers(1, 8)), "seed": data.draw(st.integers(0, 99))}}
    root = Path(tempfile.mkdtemp(prefix="hpt-rnd-"))
    try:
        result = _compile(doc, root)
        params = _params(root, result)
        assert {(type(p[spec.name]), p[spec.name]) for p in params} <= {(type(v), v) for v in values}
        assert len({(p[spec.name], p["learning_rate"]) for p in params}) == len(params) == doc["search"]["trials"]
        again = _compile(doc, root, "again")
        assert again.trial_ids == result.trial_ids  # the same seed draws the same configs
    finally:
        shutil.rmtree(root, ignore_errors=True)


WRONG_TYPE = st.one_of(st.integers(-2, 3), st.floats(0, 1, allow_nan=False), st.booleans(),
                       st.sampled_from(["", "Adam", "adamw ", "true", "1", "sgd"]))


@settings(max_examples=40, **SETTINGS)
@given(data=st.data())
def test_a_value_of_the_wrong_type_is_one_line_naming_it(data, monkeypatch):
    monkeypatch.setenv("HPT_DEMO_DATA", "/nonexistent/hpt-demo")
    arch = data.draw(st.sampled_from(sorted(architectures())))
    spec = data.draw(st.sampled_from(architectures()[arch].parameters))
    bad = data.draw(WRONG_TYPE.filter(lambda v: spec.type_problem(v) is not None))
    form = data.draw(st.sampled_from(["bare", "list", "values", "categorical"]))
    value = {"bare": bad, "list": [bad], "values": {"values": [bad]}, "categorical": {"distribution": "categorical", "values": [bad]}}[form]
    root = Path(tempfile.mkdtemp(prefix="hpt-bad-"))
    try:
        path = root / "spec.json"
        path.write_text(json.dumps({"architecture": arch, "date-range": [["2010-01-01", "2010-03-01"]],
                                    "parameters": {spec.name: value}}))
        result = CliRunner().invoke(app, ["compile", str(path), "--out", str(root / "plan"), "--today", TODAY.isoformat()])
        assert result.exit_code == 2, result.output
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"error: parameters.{spec.name}") and spec.name in lines[0][7:], lines
        assert not (root / "plan").exists()
    finally:
        shutil.rmtree(root, ignore_errors=True)
