"""YAML is read with YAML 1.2's core schema: every YAML 1.1 trap PyYAML falls into, one test each; and
duplicate keys are reported together with the spec's other errors."""
from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from hpt.cli import app
from hpt.compiler.loading import parse_spec_text
from hpt.schemas.errors import UserError

runner = CliRunner()


def value(text: str):
    return parse_spec_text(f"x: {text}\n", "s.yaml", "yaml")["x"]


# text → what YAML 1.2 core says (the YAML 1.1 reading PyYAML's SafeLoader gives, for the record)
TRAPS = [
    ("1e-5", 1e-5),            # 1.1: the string '1e-5' (its float needs a dot)
    ("1E+3", 1000.0),          # 1.1: a string
    ("-2.5e-3", -2.5e-3),
    ("on", "on"),              # 1.1: True
    ("off", "off"),            # 1.1: False
    ("yes", "yes"),            # 1.1: True
    ("no", "no"),              # 1.1: False (the Norway problem)
    ("Y", "Y"), ("n", "n"),    # 1.1: booleans too
    ("0o17", 15),              # 1.1: the string '0o17'
    ("017", 17),               # 1.1: octal 15
    ("0x1F", 31),
    ("0b101", "0b101"),        # 1.1: 5
    ("1_000", "1_000"),        # 1.1: 1000
    ("1:30", "1:30"),          # 1.1: sexagesimal 90
    ("190:20:30", "190:20:30"),  # 1.1: 685230
    ("2010-01-01", "2010-01-01"),  # 1.1: a date (hpt turned it back into the same string)
    ("2010-1-1", "2010-1-1"),  # 1.1: the date 2010-01-01, not what was written
    ("true", True), ("False", False), ("null", None), ("~", None),
    ("1", 1), ("-3", -3), ("+7", 7), ("1.5", 1.5), (".5", 0.5), ("5.", 5.0),
]


@pytest.mark.parametrize("text, expected", TRAPS, ids=[t for t, _ in TRAPS])
def test_yaml_1_2_core_schema(text, expected):
    got = value(text)
    assert got == expected and type(got) is type(expected), (text, got)


def test_yaml_1_1_would_have_read_them_otherwise():
    """The oracle for the table above: PyYAML's own 1.1 reading differs on the traps."""
    import yaml
    assert yaml.safe_load("x: 1e-5")["x"] == "1e-5"
    assert yaml.safe_load("x: on")["x"] is True and yaml.safe_load("x: no")["x"] is False
    assert yaml.safe_load("x: 1_000")["x"] == 1000 and yaml.safe_load("x: 1:30")["x"] == 90
    assert yaml.safe_load("x: 0o17")["x"] == "0o17"


@pytest.mark.parametrize("text", [".inf", "-.Inf", ".NaN"])
def test_non_finite_yaml_floats_are_refused(text):
    with pytest.raises(UserError, match="NaN and infinity"):
        value(text)


def test_quoted_and_tagged_scalars():
    assert value("'1e-5'") == "1e-5" and value('"on"') == "on"
    assert value("!!str 15") == "15" and value("!!float 1") == 1.0 and value("!!int 0o17") == 15
    with pytest.raises(UserError, match="not a YAML 1.2 integer"):
        value("!!int 1_000")


def test_merge_keys_still_work():
    doc = parse_spec_text("base: &b {a: 1}\nx:\n  <<: *b\n  c: 2\n", "s.yaml", "yaml")
    assert doc["x"] == {"a": 1, "c": 2}


def test_a_wandb_learning_rate_in_exponent_form_compiles(tmp_path, monkeypatch):
    monkeypatch.setenv("HPT_DEMO_DATA", str(tmp_path / "none"))
    spec = tmp_path / "s.yaml"
    spec.write_text("architecture: lstm\ndate-range: [[2010-01-01, 2010-03-01]]\n"
                    "parameters:\n  learning_rate:\n    values: [1e-4, 3e-4]\n  clip_gradients:\n    values: [on, off]\n")
    result = runner.invoke(app, ["compile", str(spec), "--out", str(tmp_path / "p"), "--today", "2026-11-26",
                                 "--format", "json"])
    # 1e-4 is a number now; `on`/`off` are strings, and a boolean hyperparameter says so (not True/False)
    assert result.exit_code == 2, result.output
    assert "parameters.learning_rate" not in result.stderr
    assert "clip_gradients" in result.stderr, result.stderr


def test_duplicate_keys_are_reported_with_the_specs_other_errors(tmp_path, monkeypatch):
    monkeypatch.setenv("HPT_DEMO_DATA", str(tmp_path / "none"))
    spec = tmp_path / "s.yaml"
    spec.write_text("architecture: lstm\nepochs: 0\nparameters:\n  dropout: [0.1]\n  dropout: [0.2]\nmetrics: [msee]\n"
                    "architecture: cnn\n")
    result = runner.invoke(app, ["compile", str(spec), "--out", str(tmp_path / "p"), "--today", "2026-11-26"])
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert lines[0].startswith("error: ") and "duplicate key 'dropout' at line 5, column 3" in lines[0]
    assert "duplicate key 'architecture' at line 7, column 1" in lines[1]
    assert any("epochs: 0 is less than the minimum" in line for line in lines)
    assert any("unknown metric 'msee'" in line for line in lines)
    assert not (tmp_path / "p").exists()


def test_json_duplicate_keys_too(tmp_path, monkeypatch):
    monkeypatch.setenv("HPT_DEMO_DATA", str(tmp_path / "none"))
    spec = tmp_path / "s.json"
    spec.write_text(json.dumps({"architecture": "lstm", "epochs": 0})[:-1] + ', "epochs": 3}')
    result = runner.invoke(app, ["compile", str(spec), "--out", str(tmp_path / "p"), "--today", "2026-11-26"])
    assert result.exit_code == 2
    assert "duplicate key 'epochs'" in result.stderr and "epochs: 0 is less than the minimum" in result.stderr


from hypothesis import given, settings, strategies as st  # noqa: E402

scalars = st.one_of(st.none(), st.booleans(), st.integers(-10**12, 10**12),
                    st.floats(allow_nan=False, allow_infinity=False, width=64), st.text(max_size=12))
documents = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                          st.dictionaries(st.text(max_size=8), inner, max_size=4)),
                         max_leaves=20)


@settings(max_examples=150, deadline=None)
@given(doc=st.dictionaries(st.text(min_size=1, max_size=8), documents, max_size=5))
def test_json_text_read_as_yaml_is_the_same_document(doc):
    """YAML 1.2 is a superset of JSON: a JSON spec read by the YAML reader means the same (under 1.1 it
    would not: 1e-05 and the like turned into strings)."""
    text = json.dumps(doc)
    assert parse_spec_text(text, "s.yaml", "yaml") == json.loads(text)


@settings(max_examples=150, deadline=None)
@given(number=st.one_of(st.integers(-10**15, 10**15), st.floats(allow_nan=False, allow_infinity=False)))
def test_a_number_written_plainly_in_yaml_is_that_number(number):
    assert value(repr(number)) == number and type(value(repr(number))) is type(number)
