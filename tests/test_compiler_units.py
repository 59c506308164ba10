"""The compiler's parts, one concept at a time: loading, validation, dates, search, trials."""
from __future__ import annotations

import datetime as dt
import itertools
import json
import random
from fractions import Fraction
from pathlib import Path

import pytest

from hpt.compiler.dates import Window, add_months, check_inside, explicit_windows, quick_window, rotating_windows
from hpt.compiler.defaults import resolve
from hpt.compiler.loading import load_spec, normalize_dashes, parse_spec_text
from hpt.compiler.paths import did_you_mean, json_path
from hpt.compiler.search import Distribution, SearchSpace, Values
from hpt.compiler.trials import TrialShape, iter_trials, trial_seed
from hpt.compiler.validation import validate_spec
from hpt.schemas.catalog import architecture
from hpt.schemas.errors import UserError
from hpt.schemas.resources import Resources
from hpt.schemas.manifest import TrialManifest, canonical_json, config_id, trial_id
from hpt.schemas.plan import Plan

D = dt.date


def error_of(doc) -> UserError:
    with pytest.raises(UserError) as info:
        validate_spec(doc)
    return info.value


# --- loading ----------------------------------------------------------------------------------

def test_dashes_become_hyphens_with_one_warning_naming_the_fields():
    doc, warnings = normalize_dashes({"date-range": [["2017\u201301\u201301", "2017\u201404\u221201"]], "architecture": "lstm"})
    assert doc["date-range"] == [["2017-01-01", "2017-04-01"]]
    assert len(warnings) == 1
    assert "date-range[0][0], date-range[0][1]" in warnings[0]
    assert "en dash" in warnings[0] and "em dash" in warnings[0] and "minus sign" in warnings[0]


def test_no_dashes_no_warning():
    assert normalize_dashes({"a": ["x-y"]}) == ({"a": ["x-y"]}, [])


@pytest.mark.parametrize("text, where", [
    ('{"architecture": "lstm",\n  "epochs": }', "line 2, column 13"),
    ('{"architecture": "lstm"', "line 1, column 24"),
])
def test_malformed_json_names_line_and_column(text, where):
    with pytest.raises(UserError) as info:
        parse_spec_text(text, "s.json", "json")
    assert where in str(info.value) and "malformed JSON" in str(info.value)


def test_malformed_yaml_names_line_and_column():
    with pytest.raises(UserError) as info:
        parse_spec_text("architecture: lstm\nparameters: [1, 2\n", "s.yaml", "yaml")
    assert "malformed YAML at line 3" in str(info.value)


@pytest.mark.parametrize("text, fmt", [('{"a": 1, "a": 2}', "json"), ("a: 1\na: 2\n", "yaml")])
def test_duplicate_keys_are_errors(text, fmt):
    with pytest.raises(UserError, match="duplicate key 'a'"):
        parse_spec_text(text, "s", fmt)


def test_nan_is_rejected():
    with pytest.raises(UserError, match="NaN"):
        parse_spec_text('{"epochs": NaN}', "s.json", "json")


def test_yaml_dates_stay_strings(tmp_path):
    spec = tmp_path / "s.yml"
    spec.write_text("architecture: lstm\ndate-range:\n  - [2010-01-01, 2010-03-01]\n")
    loaded = load_spec(str(spec))
    assert loaded.doc["date-range"] == [["2010-01-01", "2010-03-01"]]
    validate_spec(loaded.doc)


def test_missing_file_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="no such spec file"):
        load_spec(str(tmp_path / "nope.json"))


def test_json_path_and_suggestions():
    assert json_path(["parameters", "num_of_attentions", 1]) == "parameters.num_of_attentions[1]"
    assert json_path([]) == ""
    assert "'learning_rate'" in did_you_mean("learning_rat", ["learning_rate", "lr_decay"])


# --- validation -------------------------------------------------------------------------------

@pytest.mark.parametrize("doc, where, words", [
    ({"architecture": "lstm-atention"}, "architecture", "did you mean 'lstm-attention'"),
    ({"architecture": "lstm", "paramters": {}}, "paramters", "did you mean 'parameters'"),
    ({"architecture": "lstm", "search": {"metod": "grid"}}, "search.metod", "did you mean 'method'"),
    ({"architecture": "lstm", "parameters": {"learning_rat": [0.1]}}, "parameters.learning_rat", "did you mean 'learning_rate'"),
    ({"architecture": "lstm-attention", "parameters": {"num_of_attentions": [1, "2"]}}, "parameters.num_of_attentions[1]", "is a number (int), got \"2\""),
    ({"architecture": "lstm-attention", "parameters": {"num_of_attentions": [1, 2.5]}}, "parameters.num_of_attentions[1]", "is an integer"),
    ({"architecture": "lstm-attention", "parameters": {"num_of_attentions": [1, 99]}}, "parameters.num_of_attentions[1]", "outside"),
    ({"architecture": "lstm", "parameters": {"num_layers": []}}, "parameters.num_layers", "must not be empty"),
    ({"architecture": "lstm", "parameters": {"num_layers": [2, 2.0]}}, "parameters.num_layers[1]", "duplicate value"),
    ({"architecture": "lstm", "parameters": {"num_layers": True}}, "parameters.num_layers", "num_layers is a number (int), got true"),
    ({"architecture": "lstm", "parameters": {"optimizer": ["adam", 1]}}, "parameters.optimizer[1]", "not one of optimizer's choices: adam, adamw, sgd"),
    ({"architecture": "lstm", "parameters": {"clip_gradients": {"values": [True, 0]}}}, "parameters.clip_gradients.values[1]", "clip_gradients is a bool"),
    ({"architecture": "lstm", "parameters": {"optimizer": ["sgd", "sgd"]}}, "parameters.optimizer[1]", "duplicate value"),
    ({"architecture": "lstm", "parameters": {"clip_gradients": {"distribution": "uniform", "min": 0, "max": 1}}}, "parameters.clip_gradients", "not a uniform distribution"),
    ({"architecture": "lstm", "date-range": [["2017-02-01", "2017-01-01"]]}, "date-range[0]", "not before end"),
    ({"architecture": "lstm", "date-range": [["2017-01-01", "2017-01-01"]]}, "date-range[0]", "not before end"),
    ({"architecture": "lstm", "date-range": [["2017-02-30", "2017-03-01"]]}, "date-range[0][0]", "not a valid date"),
    ({"architecture": "lstm", "date-range": [["2017/01/01", "2017-03-01"]]}, "date-range[0][0]", "expected YYYY-MM-DD"),
    ({"architecture": "lstm", "date-range": [["2017-01-01"]]}, "date-range[0]", "pair"),
    ({"architecture": "lstm", "date-range": []}, "date-range", "must not be empty"),
    ({"architecture": "lstm", "date-range": [["2017-01-01", "2017-02-01"], ["2017-01-01", "2017-02-01"]]}, "date-range[1]", "same date range"),
    ({"architecture": "lstm", "date-range": {"count": 3, "month": 3}}, "date-range.month", "did you mean 'months'"),
    ({"architecture": "lstm", "parameters": {"learning_rate": {"distribution": "uniform", "min": 0.1, "max": 0.01}}},
     "parameters.learning_rate", "min 0.1 must be less than max 0.01"),
    ({"architecture": "lstm", "parameters": {"dropout": {"distribution": "log-uniform", "min": 0, "max": 0.5}}},
     "parameters.dropout.min", "log-uniform needs min > 0"),
    ({"architecture": "lstm", "parameters": {"learning_rate": {"distribution": "loguniform", "min": 0.001, "max": 0.1}}},
     "parameters.learning_rate.distribution", "'log-uniform'"),
    ({"architecture": "lstm", "parameters": {"learning_rate": {"distrbution": "uniform", "min": 0.001, "max": 0.1}}},
     "parameters.learning_rate.distrbution", "did you mean 'distribution'"),
    ({"architecture": "lstm", "parameters": {"learning_rate": {"distribution": "uniform", "min": 0.001, "max": 0.1}},
      "search": {"method": "grid"}}, "parameters.learning_rate", "random search"),
    ({"architecture": "lstm", "parameters": {"num_layers": {"distribution": "int-uniform", "min": 1.5, "max": 4}}},
     "parameters.num_layers.min", "integers"),
    ({"architecture": "lstm", "metrics": ["mse", "msee"]}, "metrics[1]", "did you mean 'mse'"),
    ({"architecture": "lstm", "metrics": ["loss"], "objective": {"metric": "mse"}}, "objective.metric", "not among the reported"),
    ({"architecture": "lstm", "objective": {"metric": "accuracy"}}, "objective.metric", "unknown metric"),
    ({"architecture": "lstm", "kubernetes": {"tolerations": [{"key": "a", "efect": "NoSchedule"}]}},
     "kubernetes.tolerations[0].efect", "did you mean 'effect'"),
    ({"architecture": "lstm", "kubernetes": {"namespce": "x"}}, "kubernetes.namespce", "did you mean 'namespace'"),
    ({"architecture": "lstm", "resources": {"gpus": -1}}, "resources.gpus", "minimum"),
    ({"architecture": "lstm", "resources": {"gpus": 1.5}}, "resources.gpus", "whole number"),
    ({"architecture": "lstm", "resources": {"gpus": 0.3}}, "resources.gpus", "1/n"),
    ({"architecture": "lstm", "resources": {"gpus": 0.05}}, "resources.gpus", "1/n (n = 2…16)"),
    ({"architecture": "lstm", "epochs": 0}, "epochs", "minimum"),
    ({"architecture": "lstm", "mode": "fast"}, "mode", "not one of"),
    ({"architecture": 3}, "architecture", "expected a string"),
    ({}, "(top level)", "missing required key 'architecture'"),
    ([], "(top level)", "expected an object"),
])
def test_errors_name_the_path_and_the_problem(doc, where, words):
    err = error_of(doc)
    assert err.where == where, str(err)
    assert words in str(err)


def test_the_first_error_in_document_order_is_reported():
    err = error_of({"architecture": "lstm", "epochs": "many", "repeats": "two"})
    assert err.where == "epochs"


def test_valid_forms_of_parameters():
    validate_spec({"architecture": "lstm", "parameters": {
        "learning_rate": {"distribution": "log-uniform", "min": 1e-4, "max": 0.1},
        "num_layers": {"values": [1, 2]}, "dropout": {"value": 0.2}, "hidden_size": 128,
        "batch_size": {"distribution": "q-uniform", "min": 32, "max": 256, "q": 32}}})


# --- dates ------------------------------------------------------------------------------------

def test_add_months_clamps_the_day():
    assert add_months(D(2017, 3, 31), -1) == D(2017, 2, 28)
    assert add_months(D(2016, 1, 31), 1) == D(2016, 2, 29)
    assert add_months(D(2017, 11, 15), 3) == D(2018, 2, 15)


def test_explicit_windows_validate_right_after_training():
    (w,) = explicit_windows([(D(2017, 1, 1), D(2017, 4, 1))], 30)
    assert w.train == ["2017-01-01", "2017-04-01"] and w.validation == ["2017-04-01", "2017-05-01"]


COVERAGE = (D(2009, 12, 1), D(2011, 12, 9))


def test_rotating_windows_same_month_same_set_other_month_other_set():
    a = rotating_windows(3, 3, 30, COVERAGE, D(2026, 11, 1))
    assert a == rotating_windows(3, 3, 30, COVERAGE, D(2026, 11, 1))
    others = {tuple((w.train_start, w.train_end) for w in rotating_windows(3, 3, 30, COVERAGE, D(2026, m, 1))) for m in range(1, 13)}
    assert len(others) >= 10  # nearly every month picks a new set
    for w in a:
        assert w.train_start.day == 1 and add_months(w.train_start, 3) == w.train_end
        assert check_inside(w, COVERAGE) is None
    spans = sorted((w.train_start, w.valid_end) for w in a)
    assert all(spans[i][1] <= spans[i + 1][0] for i in range(len(spans) - 1))  # disjoint when possible


def test_rotating_windows_end_before_the_run_month_minus_validation():
    windows = rotating_windows(2, 2, 30, COVERAGE, D(2010, 9, 1))
    assert all(w.valid_end <= D(2010, 9, 1) for w in windows)
    # Run month 2010-08: a 2-month window plus 30 days must end by 2010-08-01 → it starts 2009-12 … 2010-05.
    assert len(rotating_windows(6, 2, 30, COVERAGE, D(2010, 8, 1))) == 6
    with pytest.raises(UserError, match="only 6 window"):
        rotating_windows(7, 2, 30, COVERAGE, D(2010, 8, 1))


def test_quick_window_is_the_last_month_with_the_same_validation():
    w = Window(2, D(2010, 1, 1), D(2010, 4, 1), D(2010, 5, 1))
    q = quick_window(w)
    assert (q.index, q.train_start, q.train_end, q.valid_end) == (0, D(2010, 3, 1), D(2010, 4, 1), D(2010, 5, 1))
    short = quick_window(Window(0, D(2010, 1, 10), D(2010, 1, 20), D(2010, 2, 1)))
    assert short.train_start == D(2010, 1, 10)


def test_coverage_problems_are_described():
    assert "before the data's first day" in check_inside(Window(0, D(2009, 1, 1), D(2010, 1, 1), D(2010, 2, 1)), COVERAGE)
    assert "validation period" in check_inside(Window(0, D(2011, 9, 1), D(2011, 12, 1), D(2011, 12, 31)), COVERAGE)
    assert "after the data's last day" in check_inside(Window(0, D(2017, 1, 1), D(2017, 4, 1), D(2017, 5, 1)), COVERAGE)


# --- search -----------------------------------------------------------------------------------

def space(method="grid", trials=None, seed=0, **domains) -> SearchSpace:
    return SearchSpace(architecture=architecture("lstm-attention"), domains=domains, method=method, trials=trials, seed=seed, proposer=method)


def test_grid_is_the_whole_product_in_seeded_random_order():
    s = space(num_of_attentions=Values((1, 2, 3)), attention_regularization=Values((0.1, 0.01)))
    configs = list(s.configs())
    pairs = [(c["num_of_attentions"], c["attention_regularization"]) for c in configs]
    assert sorted(pairs) == sorted(itertools.product((1, 2, 3), (0.1, 0.01)))
    assert pairs != sorted(pairs) or pairs != list(itertools.product((1, 2, 3), (0.1, 0.01)))
    assert pairs == [(c["num_of_attentions"], c["attention_regularization"]) for c in s.configs()]
    other = space(seed=1, num_of_attentions=Values((1, 2, 3)), attention_regularization=Values((0.1, 0.01)))
    assert pairs != [(c["num_of_attentions"], c["attention_regularization"]) for c in other.configs()]
    assert configs[0]["learning_rate"] == 0.003 and set(configs[0]) == set(architecture("lstm-attention").param_names)


def test_grid_trials_cap_to_a_seeded_subset():
    s = space(trials=4, num_of_attentions=Values((1, 2, 3)), hidden_size=Values((16, 32, 64)))
    configs = [tuple(sorted(c.items())) for c in s.configs()]
    assert len(configs) == 4 == len(set(configs)) == s.count()
    assert configs == [tuple(sorted(c.items())) for c in s.configs()]


def test_huge_grids_need_a_cap():
    values = Values(tuple(range(1, 33)))
    big = space(num_of_attentions=values, attention_hidden_layer_size=Values(tuple(range(1, 101))),
                embedding_dim=Values(tuple(range(4, 404))))
    with pytest.raises(UserError, match="more than"):
        big.check()


def test_random_draws_are_seeded_in_range_and_distinct():
    arch = architecture("lstm-attention")
    s = space("random", 50, 3, learning_rate=Distribution("log-uniform", 1e-4, 1e-1),
              num_of_attentions=Distribution("int-uniform", 1, 4), dropout=Distribution("q-uniform", 0.0, 0.5, 0.1),
              attention_regularization=Distribution("uniform", 0.0, 1.0), hidden_size=Values((16, 32)))
    configs = list(s.configs())
    assert len(configs) == 50
    assert configs == list(s.configs())
    assert len({tuple(sorted(c.items())) for c in configs}) == 50
    for c in configs:
        assert 1e-4 <= c["learning_rate"] <= 0.1 and isinstance(c["learning_rate"], float)
        assert c["num_of_attentions"] in (1, 2, 3, 4) and isinstance(c["num_of_attentions"], int)
        assert round(c["dropout"] * 10, 9) == int(round(c["dropout"] * 10)) and 0 <= c["dropout"] <= 0.5
        assert c["hidden_size"] in (16, 32)
        assert set(c) == set(arch.param_names)
    lrs = sorted(c["learning_rate"] for c in configs)
    assert lrs[len(lrs) // 2] < 0.03  # log-uniform: the median sits near the geometric middle, not the arithmetic one


def test_random_search_stops_at_the_number_of_distinct_configs():
    s = space("random", 20, 0, num_of_attentions=Distribution("int-uniform", 1, 3))
    assert sorted(c["num_of_attentions"] for c in s.configs()) == [1, 2, 3]


def test_auto_mode_uses_the_learning_rate_family():
    resolved = resolve({"architecture": "cnn"})
    assert resolved.auto
    assert list(resolved.space.domains) == ["learning_rate", "lr_decay", "early_stopping_patience"]
    assert resolved.space.count() == 4 * 3 * 2
    assert resolved.epochs == 20 and resolved.mode == "full"


def test_defaults_and_overrides():
    r = resolve({"architecture": "mdn", "objective": {"metric": "mae"}}, mode="quick", seed=9)
    assert r.epochs == 5 and r.space.seed == 9
    assert "mae" in r.metrics and r.objective == {"metric": "mae", "goal": "minimize"}
    assert r.image == "hpt-trainer:latest" and r.resources == Resources(gpus=0, cpus=1, memory="4Gi")
    assert resolve({"architecture": "mdn", "epochs": 7, "mode": "quick", "resources": {"gpus": 1}}).epochs == 7
    assert resolve({"architecture": "mdn", "resources": {"gpus": 1}}).resources == Resources(gpus=1, cpus=1, memory="4Gi")


# --- trials -----------------------------------------------------------------------------------

def test_rendered_trials_are_exactly_trial_manifests():
    arch = architecture("lstm-attention")
    s = space("random", 15, 4, learning_rate=Distribution("log-uniform", 1e-4, 1e-1),
              num_of_attentions=Distribution("int-uniform", 1, 8), attention_regularization=Values((0.0, 0.5)))
    windows = explicit_windows([(D(2010, 1, 1), D(2010, 3, 1)), (D(2010, 6, 1), D(2010, 7, 15))], 14)
    shape = TrialShape(experiment="e-0123456789ab", architecture=arch.name, data_uri="/data/x", mode="full", epochs=3,
                       metrics=["mse", "loss"], objective={"metric": "mse", "goal": "minimize"}, image="img:1",
                       resources=Resources(gpus=0, cpus=1, memory="1Gi"), kubernetes={"namespace": "ns"},
                       search_seed=4, repeats=2)
    rendered = list(iter_trials(shape, s.configs(), windows))
    assert len(rendered) == 15 * 2 * 2 == len({t.id for t in rendered})
    for t in rendered:
        manifest = TrialManifest.from_json(t.text)  # schema + id
        assert manifest.to_json() == t.text
        doc = manifest.to_dict()
        assert trial_id(doc) == t.id and manifest.config == config_id(arch.name, manifest.params)
        assert manifest.seed == trial_seed(4, manifest.repeat)
        assert manifest.kubernetes == {"namespace": "ns"}
    assert {t.id for t in rendered[:4]} and json.loads(rendered[0].text)["window"]["index"] == 0


def test_equal_values_that_write_differently_keep_their_own_text():
    # 0.0 and -0.0 are equal, so are 1, 1.0 and True: each config's params keep their own text (no cache may merge them)
    arch = architecture("lstm-attention")
    defaults = arch.defaults()
    values = [(0.0, 1), (-0.0, 1.0), (0.0, True), (-0.0, 1), (0.5, 1.0), (0.5, 1)]
    configs = [defaults | {"learning_rate": lr, "num_of_attentions": n} for lr, n in values]
    shape = TrialShape(experiment="e-0123456789ab", architecture=arch.name, data_uri="/data/x", mode="full", epochs=3,
                       metrics=["mse"], objective={"metric": "mse", "goal": "minimize"}, image="img:1",
                       resources=Resources(gpus=0, cpus=1, memory="1Gi"), kubernetes={}, search_seed=4, repeats=1)
    windows = explicit_windows([(D(2010, 1, 1), D(2010, 3, 1))], 14)
    rendered = list(iter_trials(shape, iter(configs), windows))
    assert len({t.id for t in rendered}) == len(values)
    for (lr, n), t in zip(values, rendered):
        params = json.loads(t.text)["params"]
        assert repr(params["learning_rate"]) == repr(lr) and repr(params["num_of_attentions"]) == repr(n)
        assert canonical_json(json.loads(t.text)) + "\n" == t.text


def test_plan_json_is_json_dumps_with_a_two_space_indent():
    odd = ["", "é\"\\\n\t\u2028", "t-0123456789abcdef"]
    plan = Plan(experiment="e-0123456789ab", hpt_version="0", month="2026-11", reference_date="2026-11-01",
                spec={"é": [1, {"b": odd}], "none": None, "empty": {}}, windows=[], counts={"trials": 3},
                values={"x": [1.5, -0.0, True, "s", [1], {"k": 2}]}, warnings=odd, trials=odd,
                digests={t: t for t in odd}, rounds=[{"trials": []}], halving={})
    empty = Plan(experiment="e-0123456789ab", hpt_version="0", month="2026-11", reference_date="2026-11-01", spec={},
                 windows=[], counts={}, values={}, warnings=[], trials=[], digests={})
    ids = [f"t-{i:016x}" for i in range(9000, 0, -1)]   # more than one piece of lines, written unsorted
    big = Plan(experiment="e-0123456789ab", hpt_version="0", month="2026-11", reference_date="2026-11-01", spec={},
               windows=[], counts={}, values={}, warnings=[], trials=ids, digests={t: t[2:] * 4 for t in ids})
    for p in (plan, empty, big):
        assert p.to_json() == json.dumps(p.to_dict(), indent=2, sort_keys=True, ensure_ascii=False, allow_nan=False) + "\n"


def test_trial_seeds_depend_on_search_seed_and_repeat_only():
    assert trial_seed(0, 0) == trial_seed(0, 0)
    assert len({trial_seed(s, r) for s in range(5) for r in range(5)}) == 25
    assert all(0 <= trial_seed(random.randrange(10**6), r) < 2**31 for r in range(10))


def test_spec_order_of_parameters_does_not_matter(tmp_path):
    a = resolve({"architecture": "lstm", "parameters": {"num_layers": [1, 2], "dropout": [0.1, 0.2]}})
    b = resolve({"architecture": "lstm", "parameters": {"dropout": [0.1, 0.2], "num_layers": [1, 2]}})
    assert list(a.space.configs()) == list(b.space.configs())
    assert isinstance(Path(tmp_path), Path)


@pytest.mark.parametrize("gpus, share", [(0, Fraction(0)), (1, Fraction(1)), (3, Fraction(3)), (0.5, Fraction(1, 2)),
                                         (0.25, Fraction(1, 4)), (0.33, Fraction(1, 3)), (0.0625, Fraction(1, 16))])
def test_a_gpu_share_compiles_into_the_manifest_as_written(gpus, share):
    from hpt.schemas.resources import gpu_share

    r = resolve({"architecture": "mdn", "resources": {"gpus": gpus}})
    assert r.resources.gpus == gpus and gpu_share(r.resources.gpus) == share
