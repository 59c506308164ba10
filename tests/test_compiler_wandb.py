"""W&B's sweep vocabulary compiles as written, to the same plan as hpt's own spelling; and a spec's
every error is reported in one run."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from hpt.cli import app
from hpt.compiler.validation import validate_spec
from hpt.schemas.errors import UserError, UserErrors

runner = CliRunner()
TODAY = "2026-11-26"
RANGE = [["2010-01-01", "2010-03-01"]]


@pytest.fixture(autouse=True)
def _isolated(monkeypatch, tmp_path):
    monkeypatch.setenv("HPT_DEMO_DATA", str(tmp_path / "demo-not-built"))


def compile_cli(tmp_path: Path, doc, name: str):
    spec = tmp_path / f"{name}.json"
    spec.write_text(json.dumps(doc), encoding="utf-8")
    return runner.invoke(app, ["compile", str(spec), "--out", str(tmp_path / name), "--today", TODAY, "--format", "json"])


def tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


WANDB = {
    "name": "lr-sweep", "project": "retail", "program": "train.py",
    "method": "random", "run_cap": 6,
    "metric": {"name": "mse", "goal": "minimize"},
    "architecture": "lstm", "date-range": RANGE,
    "parameters": {
        "learning_rate": {"distribution": "log_uniform_values", "min": 0.0001, "max": 0.03},
        "num_layers": {"distribution": "int_uniform", "min": 1, "max": 3},
        "dropout": {"distribution": "q_uniform", "min": 0, "max": 0.5, "q": 0.1},
        "hidden_size": {"distribution": "categorical", "values": [32, 64]},
        "lr_decay": {"value": 0.9},
        "batch_size": {"values": [64, 128]},
    },
}
HPT = {
    "architecture": "lstm", "date-range": RANGE,
    "search": {"method": "random", "trials": 6},
    "objective": {"metric": "mse", "goal": "minimize"},
    "parameters": {
        "learning_rate": {"distribution": "log-uniform", "min": 0.0001, "max": 0.03},
        "num_layers": {"distribution": "int-uniform", "min": 1, "max": 3},
        "dropout": {"distribution": "q-uniform", "min": 0, "max": 0.5, "q": 0.1},
        "hidden_size": [32, 64],
        "lr_decay": 0.9,
        "batch_size": {"values": [64, 128]},
    },
}


def test_a_wandb_sweep_compiles_to_the_same_plan_as_hpts_spelling(tmp_path):
    wandb, ours = compile_cli(tmp_path, WANDB, "wandb"), compile_cli(tmp_path, HPT, "hpt")
    assert wandb.exit_code == 0, wandb.output
    assert ours.exit_code == 0, ours.output
    assert "program: not applied: the spec names a built-in architecture" in wandb.stderr
    plan = json.loads((tmp_path / "wandb" / "plan.json").read_text())
    assert plan["counts"]["trials"] == 6 and plan["spec"]["search"]["method"] == "random"
    a, b = tree(tmp_path / "wandb"), tree(tmp_path / "hpt")
    assert a.keys() == b.keys()
    # the plans differ only in the warning that W&B's program was ignored
    assert {k for k in a if a[k] != b[k]} == {"plan.json"}
    pa, pb = json.loads(a["plan.json"]), json.loads(b["plan.json"])
    assert pa.pop("warnings") != pb.pop("warnings") and pa == pb


def test_wandb_grid_method_and_metric_goal():
    doc = validate_spec({"architecture": "lstm", "method": "grid", "metric": {"name": "mae", "goal": "minimize"},
                         "parameters": {"num_layers": {"values": [1, 2]}}})
    assert doc["search"] == {"method": "grid"}
    assert doc["objective"] == {"metric": "mae", "goal": "minimize"}
    assert "method" not in doc and "metric" not in doc


@pytest.mark.parametrize("doc, where, words", [
    ({"architecture": "lstm", "method": "random", "search": {"method": "grid"}}, "method", "both 'method'"),
    ({"architecture": "lstm", "metric": {"name": "mse"}, "objective": {"metric": "mse"}}, "metric", "both 'metric'"),
    ({"architecture": "lstm", "metric": {"name": "accuracy"}}, "metric.name", "unknown metric"),
    ({"architecture": "lstm", "metrics": ["loss"], "metric": {"name": "mse"}}, "metric.name", "not among the reported"),
    ({"architecture": "lstm", "method": "bayesian"}, "method", "did you mean 'bayes'"),
    ({"architecture": "lstm", "parameters": {"learning_rate": {"distribution": "log_uniform", "min": 900, "max": 901}}},
     "parameters.learning_rate", "natural logs"),
    ({"architecture": "lstm", "parameters": {"dropout": {"distribution": "normal", "min": 0, "max": 1}}},
     "parameters.dropout.min", "unbounded"),
])
def test_wandb_spellings_are_checked_where_written(doc, where, words):
    with pytest.raises(UserError) as info:
        validate_spec(doc)
    assert info.value.where == where, str(info.value)
    assert words in str(info.value)


def test_every_error_of_a_spec_in_one_run():
    doc = {"architecture": "lstm", "epochs": "many", "paramters": {}, "repeats": 0,
           "parameters": {"learning_rat": [0.1], "num_layers": [1, 2.5], "dropout": {"distribution": "uniform", "min": 0.4, "max": 0.1}},
           "metrics": ["mse", "msee"], "objective": {"metric": "accuracy"}, "kubernetes": {"namespace": "ML_Team"}}
    with pytest.raises(UserErrors) as info:
        validate_spec(doc)
    wheres = [e.where for e in info.value.each()]
    assert wheres[0] == "epochs"   # the first in document order comes first
    assert set(wheres) == {"epochs", "paramters", "repeats", "parameters.learning_rat", "parameters.num_layers[1]",
                           "parameters.dropout", "metrics[1]", "objective.metric", "kubernetes.namespace"}


def test_every_error_is_one_line_each_exit_2(tmp_path):
    result = compile_cli(tmp_path, {"architecture": "lstm-atention", "epochs": 0, "metrics": ["msee"]}, "bad")
    assert result.exit_code == 2
    assert result.exception is None or isinstance(result.exception, SystemExit)
    lines = result.stderr.strip().splitlines()
    assert lines == ["error: architecture: unknown architecture 'lstm-atention' (did you mean 'lstm-attention'?)",
                     "error: epochs: 0 is less than the minimum of 1",
                     "error: metrics[0]: unknown metric 'msee' (did you mean 'mse'?)"], result.stderr
    assert not (tmp_path / "bad").exists()


def test_wandb_program_and_command_become_the_trainer():
    from hpt.compiler.wandb import lift_program

    doc, notes, errors = lift_program({"program": "train.py", "command": ["${env}", "${interpreter}", "${program}", "${args}"],
                                       "method": "bayes", "parameters": {"lr": {"min": 0.001, "max": 0.1}}})
    assert not errors and doc["trainer"] == {"program": "train.py", "windows": False, "metrics_from": "stdout",
                                             "command": ["${env}", "${interpreter}", "${program}", "${args}"]}
    assert "program" not in doc and "command" not in doc and doc["method"] == "bayes"
    doc, _, _ = lift_program({"program": "train.py", "parameters": {}})
    assert doc["trainer"]["command"] == ["${env}", "${interpreter}", "${program}", "${args}"]   # W&B's default
    doc, _, _ = lift_program({"program": "train.py", "trainer": {"source": "src"}, "parameters": {}})
    assert doc["trainer"] == {"source": "src", "program": "train.py", "windows": False, "metrics_from": "stdout",
                              "command": ["${env}", "${interpreter}", "${program}", "${args}"]}
    _, _, errors = lift_program({"command": ["python", "x.py"], "trainer": {"command": ["python", "y.py"]}})
    assert errors and errors[0].where == "command"


def test_compile_explain_for_a_wandb_config(tmp_path):
    spec = tmp_path / "sweep.yaml"
    spec.write_text("program: train.py\nmethod: bayes\nmetric: {name: mse, goal: minimize}\nrun_cap: 4\n"
                    "architecture: lstm\ndate-range: [[2010-01-01, 2010-03-01]]\nparameters:\n"
                    "  learning_rate: {distribution: log_uniform, min: -9.2, max: -3}\n  num_layers: {min: 1, max: 3}\n")
    result = runner.invoke(app, ["compile", str(spec), "--explain", "--out", str(tmp_path / "p"), "--today", TODAY,
                                 "--format", "json"])
    assert result.exit_code == 0, result.output
    said = {k["key"]: k["read"] for k in json.loads(result.stdout)["explain"]["keys"]}
    assert json.loads(result.stdout)["explain"]["origin"] == "wandb"
    assert said["method"].startswith("bayes: search.method tpe")
    assert "natural logs" in said["parameters.learning_rate"] and "[0.000101039, 0.0497871]" in said["parameters.learning_rate"]
    assert said["parameters.num_layers"].startswith("min/max without a distribution: int-uniform")
    assert said["run_cap"].startswith("search.trials 4")


@pytest.mark.parametrize("extra", [{"method": "bayes"}, {"method": "random"}])
def test_early_terminate_without_fidelities_is_w_and_b_s_in_run_hyperband_stopping(tmp_path, extra):
    # W&B's hyperband (docs: early_terminate): brackets at min_iter·eta^k over the steps a run logs; with
    # method bayes too. The plan records it as search.stopping rule hyperband, W&B's keys as its settings.
    doc = {"architecture": "lstm", "date-range": RANGE, "run_cap": 3, **extra,
           "early_terminate": {"type": "hyperband", "min_iter": 3, "eta": 3},
           "metric": {"name": "mse", "goal": "minimize"},
           "parameters": {"learning_rate": {"distribution": "log_uniform_values", "min": 1e-4, "max": 1e-2}}}
    result = compile_cli(tmp_path, doc, "et")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["method"] == ("tpe" if extra["method"] == "bayes" else "random") and summary["trials"] == 3
    assert not any("early_terminate" in w for w in summary["warnings"])
    expected = {"rule": "hyperband", "min_iter": 3, "max_iter": None, "s": None, "eta": 3, "strict": False}
    assert summary["stopping"] == expected
    assert json.loads((tmp_path / "et" / "plan.json").read_text())["spec"]["search"]["stopping"] == expected


def test_early_terminate_max_iter_form_and_strict_are_kept():
    doc = validate_spec({"architecture": "lstm", "date-range": RANGE, "method": "random", "run_cap": 2,
                         "early_terminate": {"type": "hyperband", "max_iter": 27, "s": 2, "eta": 3, "strict": True},
                         "parameters": {"learning_rate": [0.01, 0.1]}})
    assert doc["search"]["stopping"] == {"rule": "hyperband", "max_iter": 27, "s": 2, "eta": 3, "strict": True}
    from hpt.compiler.stopping.hyperband import brackets
    assert brackets({"max_iter": 27, "s": 2, "eta": 3}) == [3, 9]   # W&B: max_iter/eta^i for i = 1…s


@pytest.mark.parametrize("early, where, says", [
    ({"type": "hyperband", "eta": 3}, "early_terminate", "needs min_iter, or max_iter with s"),
    ({"type": "hyperband", "min_iter": 1, "max_iter": 9}, "early_terminate.max_iter", "not both"),
    ({"type": "hyperband", "max_iter": 2, "s": 1, "eta": 3}, "early_terminate.s", "give no bracket"),
])
def test_early_terminate_that_gives_no_brackets_exits_2_naming_w_and_b_s_key(tmp_path, early, where, says):
    doc = {"architecture": "lstm", "date-range": RANGE, "method": "random", "run_cap": 2, "early_terminate": early,
           "parameters": {"learning_rate": [0.01, 0.1]}}
    result = compile_cli(tmp_path, doc, "bad")
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert f"{where}:" in result.stderr and says in result.stderr


def test_metric_target_is_search_target_and_the_dry_run_says_it(tmp_path):
    doc = {"architecture": "lstm", "date-range": RANGE, "method": "random", "run_cap": 2,
           "metric": {"name": "mse", "goal": "minimize", "target": 0.5}, "parameters": {"learning_rate": [0.01, 0.1]}}
    result = compile_cli(tmp_path, doc, "t")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["target"] == 0.5 and not any("target" in w for w in summary["warnings"])
    assert json.loads((tmp_path / "t" / "plan.json").read_text())["spec"]["search"]["target"] == 0.5
    (tmp_path / "t.json").write_text(json.dumps(doc))
    text = runner.invoke(app, ["compile", str(tmp_path / "t.json"), "--out", str(tmp_path / "t2"), "--today", TODAY])
    assert "target mse ≤ 0.5: apply starts no new trial once a finished trial reaches it" in text.stdout


def test_explain_of_stdin_is_exit_2():
    result = runner.invoke(app, ["compile", "-", "--explain"], input="{}")
    assert result.exit_code == 2 and "--explain: needs the spec as a file" in result.stderr


# W&B's values of any JSON type (docs: sweep-config-keys, `values`/`value`): a list or object is one value. The
# agent (wandb/sdk/launch/sweeps/utils.py create_sweep_command_args) writes `--name={value}` with Python's
# str() and ${args_json} with json.dumps; the manifest keeps the JSON value, rows show canonical JSON.
JSON_VALUES = [
    # (parameter as written, the values the plan holds, ${args} word of the first, ${args_json} fragment of it)
    ({"values": [[64, 64], [128, 64, 32]]}, [[64, 64], [128, 64, 32]], "--p=[64, 64]", '"p": [64, 64]'),
    ({"distribution": "categorical", "values": [{"a": 1}, {"a": 2, "b": [True, None]}]},
     [{"a": 1}, {"a": 2, "b": [True, None]}], "--p={'a': 1}", '"p": {"a": 1}'),
    ({"value": [1, 2.5, "x"]}, [[1, 2.5, "x"]], "--p=[1, 2.5, 'x']", '"p": [1, 2.5, "x"]'),
    ({"distribution": "constant", "value": {"parameters": 3}}, [{"parameters": 3}], "--p={'parameters': 3}",
     '"p": {"parameters": 3}'),   # inside `value`, an object is a value, even one with a "parameters" key
    ({"values": ["relu", ["relu", "tanh"]]}, ["relu", ["relu", "tanh"]], "--p=relu", '"p": "relu"'),
    ({"values": [[], {}]}, [[], {}], "--p=[]", '"p": []'),
]


def json_program(tmp_path: Path, parameter, method: str = "grid", command=None, **extra) -> dict:
    (tmp_path / "train.py").write_text("print('loss=1')\n")
    return {"program": "train.py", "method": method, "metric": {"name": "loss"},
            **({"command": command} if command else {}), **extra,
            "parameters": {"p": parameter, "lr": {"values": [0.1, 0.01]}}}


def manifests(folder: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((folder / "trials").glob("*.json"))]


@pytest.mark.parametrize("parameter, values, flag, fragment", JSON_VALUES)
def test_values_of_any_json_type_compile_render_and_show(tmp_path, parameter, values, flag, fragment):
    from hpt.schemas.manifest import canonical_json, config_id

    doc = json_program(tmp_path, parameter, command=["${env}", "${interpreter}", "${program}", "${args}",
                                                      "${args_no_hyphens}", "${args_json}"])
    result = compile_cli(tmp_path, doc, "plan")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["trials"] == 2 * len(values)   # grid: every value of p beside each lr
    got = manifests(tmp_path / "plan")
    assert sorted(canonical_json(m["params"]["p"]) for m in got) == sorted(canonical_json(v) for v in values for _ in "lr")
    assert len({m["id"] for m in got}) == len(got) and len({m["config"] for m in got}) == len(got)
    for m in got:
        p, argv = m["params"]["p"], m["trainer"]["argv"]
        assert m["config"] == config_id(m["architecture"], m["params"])   # hashed as canonical JSON
        assert f"--p={p}" in argv and f"p={p}" in argv                    # W&B: Python's str() of the value
        assert json.loads(argv[-1]) == m["params"]                        # ${args_json}: the JSON value itself
    first = next(m for m in got if m["params"]["p"] == values[0])
    assert flag in first["trainer"]["argv"] and fragment in first["trainer"]["argv"][-1]
    # the dry run names each value as canonical JSON text
    shown = runner.invoke(app, ["compile", str(tmp_path / "plan.json"), "--out", str(tmp_path / "again"), "--today", TODAY])
    assert shown.exit_code == 0, shown.output
    from hpt.schemas.catalog import format_value
    assert all(format_value(v) in shown.stdout for v in values if isinstance(v, (list, dict)) and v)


def test_a_json_value_hashes_canonically_whatever_its_object_key_order(tmp_path):
    ids = {}
    for name, value in [("a", {"x": 1, "y": [1, 2]}), ("b", {"y": [1, 2], "x": 1}), ("c", {"x": 1, "y": [2, 1]})]:
        (tmp_path / "src").mkdir(exist_ok=True)   # the program's folder (its content is part of every trial id)
        doc = json_program(tmp_path / "src", {"value": value}) | {"trainer": {"source": "src"}}
        result = compile_cli(tmp_path, doc, name)
        assert result.exit_code == 0, result.output
        ids[name] = sorted(m["id"] for m in manifests(tmp_path / name))
        if name == "b":   # the argv is rendered from the manifest's value: keys sorted, as for "a"
            assert all("--p={'x': 1, 'y': [1, 2]}" in m["trainer"]["argv"] for m in manifests(tmp_path / name))
    assert ids["a"] == ids["b"] and len(ids["a"]) == 2
    assert set(ids["a"]).isdisjoint(ids["c"])   # a list's order is part of its value


@pytest.mark.parametrize("method", ["random", "bayes"])
def test_random_and_tpe_choose_among_json_values(tmp_path, method):
    values = [[64, 64], [128, 64, 32], {"kind": "cnn"}, [16]]
    result = compile_cli(tmp_path, json_program(tmp_path, {"values": values}, method=method, run_cap=6), "plan")
    assert result.exit_code == 0, result.output
    got = manifests(tmp_path / "plan")
    assert got and all(m["params"]["p"] in values for m in got)
    keys = [json.dumps([m["params"]["p"], m["params"]["lr"]], sort_keys=True) for m in got]
    assert len(keys) == len(set(keys))   # no config drawn twice


def test_tpe_later_rounds_propose_json_values():
    # Optuna's categoricals take scalars only: the choices go to it as canonical JSON and come back decoded
    from hpt.compiler.proposers.tpe import propose
    from hpt.compiler.search import Values
    from hpt.schemas.catalog import value_key

    values = ([64, 64], [128, 64, 32], {"kind": "cnn"})
    domains = {"p": Values(values), "lr": Values((0.1, 0.01))}
    history = [({"p": [64, 64], "lr": 0.1}, 1.0), ({"p": {"kind": "cnn"}, "lr": 0.01}, 0.5)]
    taken = {(value_key(c["p"]), c["lr"]) for c, _ in history}
    out = propose(domains, {"p": "json", "lr": "float"}, {}, "minimize", history, taken, 3, 1, seed=7)
    assert len(out) == 3 and all(c["p"] in values for c in out)
    assert not {(value_key(c["p"]), c["lr"]) for c in out} & taken


@pytest.mark.parametrize("parameter, where, says", [
    ({"values": [[1, 2], [1, 2]]}, "parameters.p.values[1]", "duplicate value [1,2]"),
    ({"values": [{"a": 1, "b": 2}, {"b": 2, "a": 1}]}, "parameters.p.values[1]", 'duplicate value {"a":1,"b":2}'),
])
def test_duplicate_json_values_are_refused_where_written(tmp_path, parameter, where, says):
    result = compile_cli(tmp_path, json_program(tmp_path, parameter), "bad")
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert f"error: {where}: {says}" in result.stderr, result.stderr


def test_nested_parameters_still_mean_nested_not_an_object_value(tmp_path):
    (tmp_path / "train.py").write_text("print('loss=1')\n")
    doc = {"program": "train.py", "method": "grid", "metric": {"name": "loss"},
           "command": ["${env}", "${interpreter}", "${program}", "${args_json}"],
           "parameters": {"opt": {"parameters": {"kind": {"values": ["adam", "sgd"]}, "betas": {"value": [0.9, 0.99]}}},
                          "head": {"value": {"parameters": {"kind": "x"}}}}}
    result = compile_cli(tmp_path, doc, "plan")
    assert result.exit_code == 0, result.output
    got = manifests(tmp_path / "plan")
    assert len(got) == 2
    for m in got:
        assert set(m["params"]) == {"opt.kind", "opt.betas", "head"}
        assert m["params"]["opt.betas"] == [0.9, 0.99] and m["params"]["head"] == {"parameters": {"kind": "x"}}
        assert json.loads(m["trainer"]["argv"][-1]) == {"opt": {"kind": m["params"]["opt.kind"], "betas": [0.9, 0.99]},
                                                        "head": {"parameters": {"kind": "x"}}}


def test_an_object_value_is_never_merged_into_by_a_dotted_name():
    from hpt.schemas.protocol import nested_params

    assert nested_params({"a": {"x": 1}, "a.b": 2}) == {"a": {"x": 1}, "a.b": 2}
    assert nested_params({"a.b": 2, "a": {"x": 1}}) == {"a.b": 2, "a": {"x": 1}}


def test_a_built_in_hyperparameter_still_refuses_a_list_value():
    with pytest.raises(UserError) as info:
        validate_spec({"architecture": "lstm", "parameters": {"hidden_size": {"values": [[32, 32]]}}})
    assert info.value.where == "parameters.hidden_size.values[0]" and "is a number" in str(info.value)
