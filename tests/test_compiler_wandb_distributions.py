"""Every distribution W&B documents, and its inference rules, against W&B's own definitions
(docs.wandb.ai "Sweep configuration options", the distribution table; wandb/sweeps params.py for the q
rounding, round(X / q) * q with an integer result for an integer q): sampled values in range, int/float
types, q steps, log bases. Each W&B form goes through the reader (compiler/wandb.py), hpt's type
inference for a program's own parameters (compiler/usertrainer.py) and hpt's sampler (compiler/search.py)."""
from __future__ import annotations

import json
import math
import random
import statistics
from pathlib import Path

import pytest
from typer.testing import CliRunner

from hpt.cli import app
from hpt.compiler.search import Distribution, Values, domain_from_spec
from hpt.compiler.usertrainer import _implied
from hpt.compiler.wandb import to_hpt

N = 3000
LN = math.log


def draws(wandb_param: dict, n: int = N, seed: int = 7) -> list:
    translated = to_hpt({"parameters": {"x": wandb_param}})
    assert not translated.errors, translated.errors
    value = translated.doc["parameters"]["x"]
    spec = _implied("x", value)
    domain = domain_from_spec(spec, value)
    rng = random.Random(seed)
    if isinstance(domain, Values):
        return [rng.choice(domain.values) for _ in range(n)]
    assert isinstance(domain, Distribution)
    return [domain.draw(rng, spec) for _ in range(n)]


def on_grid(values, q) -> bool:
    return all(abs(v / q - round(v / q)) < 1e-9 for v in values)


def uniform_in(values, low, high) -> bool:
    """In [low, high], and spread like a uniform: each quarter holds about a quarter (±4%)."""
    if not all(low <= v <= high for v in values):
        return False
    quarters = [sum(low + i * (high - low) / 4 <= v < low + (i + 1) * (high - low) / 4 for v in values) for i in range(4)]
    return all(abs(c / len(values) - 0.25) < 0.04 for c in quarters)


# W&B's definition of each form, as a check on the sample (the docs' sentence in the comment)
CASES = {
    # "Continuous uniform distribution. Must specify max and min as floats."
    "uniform": ({"distribution": "uniform", "min": 0.1, "max": 0.9}, float, lambda v: uniform_in(v, 0.1, 0.9)),
    # "Discrete uniform distribution on integers. Must specify max and min as integers." (both ends included)
    "int_uniform": ({"distribution": "int_uniform", "min": 1, "max": 5}, int, lambda v: set(v) == {1, 2, 3, 4, 5}),
    # inference: "int_uniform if min and max are integers"
    "inferred int_uniform": ({"min": 1, "max": 5}, int, lambda v: set(v) == {1, 2, 3, 4, 5}),
    # inference: "uniform if min and max are floats" (one float is enough: int_uniform needs both integers)
    "inferred uniform": ({"min": 0.5, "max": 2.5}, float, lambda v: uniform_in(v, 0.5, 2.5)),
    "inferred uniform, one float": ({"min": 1, "max": 5.0}, float, lambda v: uniform_in(v, 1, 5)),
    # "Quantized uniform. Returns round(X / q) * q where X is uniform. Q defaults to 1."
    "q_uniform": ({"distribution": "q_uniform", "min": 0, "max": 1, "q": 0.25}, float,
                  lambda v: on_grid(v, 0.25) and set(v) == {0.0, 0.25, 0.5, 0.75, 1.0}),
    "q_uniform, integer q": ({"distribution": "q_uniform", "min": 0, "max": 10, "q": 2}, int,
                             lambda v: set(v) == {0, 2, 4, 6, 8, 10}),
    "q_uniform, q defaults to 1": ({"distribution": "q_uniform", "min": 0, "max": 3}, float,
                                   lambda v: set(v) == {0.0, 1.0, 2.0, 3.0}),
    # "Returns a value X between exp(min) and exp(max) such that the natural logarithm is uniformly
    # distributed between min and max."
    "log_uniform": ({"distribution": "log_uniform", "min": LN(1e-4), "max": LN(1e-1)}, float,
                    lambda v: uniform_in([LN(x) for x in v], LN(1e-4) - 1e-5, LN(1e-1) + 1e-5)),
    # "Returns a value X between min and max such that log(X) is uniformly distributed between log(min) and log(max)."
    "log_uniform_values": ({"distribution": "log_uniform_values", "min": 1e-4, "max": 1e-1}, float,
                           lambda v: uniform_in([LN(x) for x in v], LN(1e-4) - 1e-5, LN(1e-1) + 1e-5)),
    # "Quantized log uniform. Returns round(X / q) * q where X is log_uniform." (integer q: integers)
    "q_log_uniform": ({"distribution": "q_log_uniform", "min": LN(32), "max": LN(256), "q": 1}, int,
                      lambda v: 32 <= min(v) and max(v) <= 256 and sum(x < 90.5 for x in v) / len(v) == pytest.approx(0.5, abs=0.04)),
    "q_log_uniform_values": ({"distribution": "q_log_uniform_values", "min": 32, "max": 256, "q": 8}, int,
                             lambda v: on_grid(v, 8) and 32 <= min(v) and max(v) <= 256
                             and sum(x <= 88 for x in v) / len(v) == pytest.approx(0.5, abs=0.05)),
    # "Returns X, where log(1/X) is uniformly distributed between min and max."
    "inv_log_uniform": ({"distribution": "inv_log_uniform", "min": 1, "max": 5}, float,
                        lambda v: uniform_in([LN(1 / x) for x in v], 1 - 1e-5, 5 + 1e-5)),
    # "Returns X, where log(1/X) is uniformly distributed between log(1/max) and log(1/min)."
    "inv_log_uniform_values": ({"distribution": "inv_log_uniform_values", "min": 1e-3, "max": 1e-1}, float,
                               lambda v: uniform_in([LN(1 / x) for x in v], LN(10) - 1e-5, LN(1000) + 1e-5)),
    # "Return value is normally distributed with mean mu (default 0) and standard deviation sigma (default 1)."
    "normal": ({"distribution": "normal", "mu": 2, "sigma": 0.5}, float,
               lambda v: statistics.mean(v) == pytest.approx(2, abs=0.05) and statistics.stdev(v) == pytest.approx(0.5, abs=0.03)),
    "normal, defaults": ({"distribution": "normal"}, float,
                         lambda v: statistics.mean(v) == pytest.approx(0, abs=0.08) and statistics.stdev(v) == pytest.approx(1, abs=0.05)),
    # "Quantized normal distribution. Returns round(X / q) * q where X is normal."
    "q_normal": ({"distribution": "q_normal", "mu": 10, "sigma": 3, "q": 0.5}, float,
                 lambda v: on_grid(v, 0.5) and statistics.mean(v) == pytest.approx(10, abs=0.2)),
    "q_normal, integer q": ({"distribution": "q_normal", "mu": 10, "sigma": 3, "q": 1}, int,
                            lambda v: statistics.mean(v) == pytest.approx(10, abs=0.2)),
    # "Returns a value X such that the natural logarithm log(X) is normally distributed with mean mu and sigma."
    "log_normal": ({"distribution": "log_normal", "mu": 0, "sigma": 0.5}, float,
                   lambda v: min(v) > 0 and statistics.mean(LN(x) for x in v) == pytest.approx(0, abs=0.04)
                   and statistics.stdev(LN(x) for x in v) == pytest.approx(0.5, abs=0.03)),
    # "Quantized log normal distribution. Returns round(X / q) * q where X is log_normal."
    "q_log_normal": ({"distribution": "q_log_normal", "mu": 3, "sigma": 0.5, "q": 2}, int,
                     lambda v: on_grid(v, 2) and statistics.median(v) == pytest.approx(math.exp(3), rel=0.06)),
    # "Constant distribution. Must specify the constant value (value) to use."
    "constant": ({"distribution": "constant", "value": 7}, int, lambda v: set(v) == {7}),
    "value": ({"value": 0.5}, float, lambda v: set(v) == {0.5}),
    # "Categorical distribution. Must specify all valid values (values) for this hyperparameter."
    "categorical": ({"distribution": "categorical", "values": ["adam", "sgd"]}, str, lambda v: set(v) == {"adam", "sgd"}),
    # inference: "categorical if values are given"
    "values": ({"values": [16, 32, 64]}, int, lambda v: set(v) == {16, 32, 64}),
}


@pytest.mark.parametrize("name", list(CASES))
def test_every_wandb_distribution_samples_as_wandb_defines_it(name):
    param, kind, check = CASES[name]
    values = draws(param)
    assert {type(v) for v in values} == {kind}, (name, {type(v) for v in values})
    assert check(values), (name, sorted(values)[:5], sorted(values)[-5:])


def test_the_exponent_forms_are_read_as_natural_logs():
    doc = to_hpt({"parameters": {"lr": {"distribution": "log_uniform", "min": -9.210340371976182, "max": -2.302585092994046},
                                 "wd": {"distribution": "inv_log_uniform", "min": 2.302585092994046, "max": 9.210340371976182}}})
    assert doc.doc["parameters"]["lr"] == {"distribution": "log-uniform", "min": pytest.approx(1e-4), "max": pytest.approx(0.1)}
    assert doc.doc["parameters"]["wd"] == {"distribution": "log-uniform", "min": pytest.approx(1e-4), "max": pytest.approx(0.1)}
    assert any("natural logs" in note for _, note in doc.notes)


def test_nested_parameters_become_dotted_names_in_order():
    doc = to_hpt({"parameters": {"optimizer": {"parameters": {"lr": {"min": 0.001, "max": 0.1},
                                                              "kind": {"values": ["adam", "sgd"]}}},
                                 "epochs": {"value": 3}}})
    assert list(doc.doc["parameters"]) == ["optimizer.lr", "optimizer.kind", "epochs"]
    assert doc.doc["parameters"]["optimizer.lr"] == {"distribution": "uniform", "min": 0.001, "max": 0.1}
    assert doc.where("parameters.optimizer.lr.min") == "parameters.optimizer.parameters.lr.min"


def test_a_dotted_name_that_clashes_with_a_nested_one_is_an_error():
    doc = to_hpt({"parameters": {"a.b": {"value": 1}, "a": {"parameters": {"b": {"value": 2}}}}})
    assert doc.errors and "also given as a dotted name" in str(doc.errors[0])


SCRIPT = "import json, sys\nprint('mse=1.0')\n"


def test_a_sweep_with_every_distribution_compiles_and_its_manifests_hold_wandbs_values(tmp_path, monkeypatch):
    monkeypatch.setenv("HPT_DEMO_DATA", str(tmp_path / "none"))
    (tmp_path / "train.py").write_text(SCRIPT)
    params = {name.replace(" ", "_").replace(",", ""): case[0] for name, case in CASES.items()}
    spec = {"trainer": {"command": ["python", "train.py"]}, "date-range": [["2010-01-01", "2010-03-01"]],
            "method": "random", "run_cap": 40, "metric": {"name": "mse", "goal": "minimize"}, "parameters": params}
    (tmp_path / "sweep.json").write_text(json.dumps(spec))
    result = CliRunner().invoke(app, ["compile", str(tmp_path / "sweep.json"), "--out", str(tmp_path / "plan"),
                                      "--today", "2026-11-26", "--format", "json"])
    assert result.exit_code == 0, result.output
    manifests = [json.loads(p.read_text()) for p in sorted((tmp_path / "plan" / "trials").glob("*.json"))]
    assert len(manifests) == 40
    for m in manifests:
        p = m["params"]
        assert type(p["int_uniform"]) is int and 1 <= p["int_uniform"] <= 5
        assert type(p["inferred_uniform_one_float"]) is float
        assert type(p["q_uniform_integer_q"]) is int and p["q_uniform_integer_q"] % 2 == 0
        assert 1e-4 <= p["log_uniform"] <= 0.1 and math.exp(-5) <= p["inv_log_uniform"] <= math.exp(-1)
        assert p["log_normal"] > 0 and type(p["q_log_normal"]) is int and p["q_log_normal"] % 2 == 0
        assert p["constant"] == 7 and p["categorical"] in ("adam", "sgd")


# --- properties: any W&B bounds and q, any seed ------------------------------------------------
from hypothesis import given, settings, strategies as st  # noqa: E402

bounds = st.tuples(st.floats(-50, 50, allow_nan=False), st.floats(0.01, 50, allow_nan=False)).map(lambda t: (t[0], t[0] + t[1]))
positive = st.tuples(st.floats(1e-6, 10), st.floats(1.01, 1e4)).map(lambda t: (t[0], t[0] * t[1]))


@settings(max_examples=60, deadline=None)
@given(low_high=bounds, q=st.one_of(st.none(), st.sampled_from([0.01, 0.5, 1, 2, 5])), seed=st.integers(0, 2**32))
def test_uniform_and_q_uniform_draws_stay_in_range_on_the_grid(low_high, q, seed):
    low, high = low_high
    if q is not None and q > high - low:
        return
    param = {"distribution": "uniform" if q is None else "q_uniform", "min": low, "max": high} | ({"q": q} if q else {})
    values = draws(param, n=50, seed=seed)
    assert all(low - 1e-9 <= v <= high + 1e-9 for v in values)
    if q is not None:
        assert on_grid(values, q)
        assert {type(v) for v in values} == {int if isinstance(q, int) else float}


@settings(max_examples=60, deadline=None)
@given(low_high=positive, kind=st.sampled_from(["log_uniform_values", "inv_log_uniform_values", "log_uniform", "inv_log_uniform"]),
       seed=st.integers(0, 2**32))
def test_log_forms_stay_inside_their_value_bounds(low_high, kind, seed):
    low, high = low_high
    if kind == "log_uniform":
        param, lo, hi = {"distribution": kind, "min": LN(low), "max": LN(high)}, low, high
    elif kind == "inv_log_uniform":   # log(1/X) in [min, max]
        param, lo, hi = {"distribution": kind, "min": LN(low), "max": LN(high)}, 1 / high, 1 / low
    else:
        param, lo, hi = {"distribution": kind, "min": low, "max": high}, low, high
    values = draws(param, n=50, seed=seed)
    assert all(lo * (1 - 1e-5) <= v <= hi * (1 + 1e-5) for v in values), (lo, hi, min(values), max(values))
