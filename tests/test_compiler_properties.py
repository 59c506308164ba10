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
    if spec.type == "int":
        return st.integers(int(spec.min), min(int(spec.max), int(spec.min) + 50))
    return st.floats(spec.min, spec.max, allow_nan=False, allow_infinity=False, allow_subnormal=False).map(lambda x: x + 0.0)


def parameter_of(spec: ParamSpec, random_ok: bool) -> st.SearchStrategy:
    forms = [st.lists(value_of(spec), min_size=1, max_size=2, unique_by=spec.coerce),
             value_of(spec),
             st.lists(value_of(spec), min_size=1, max_size=2, unique_by=spec.coerce).map(lambda v: {"values": v})]
    if random_ok:
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
        ["", "lstm", "2010-01-01", "2017\u201301\u201301", "grid", "random", "quick", "uniform", "log-uniform", "x" * 3]),
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
