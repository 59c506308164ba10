"""Katib's own published example Experiments (tests/data/katib, kept as written) read into hpt's words:
every key read with Katib's meaning (pkg/apis/controller/experiments/v1beta1), or named where hpt differs."""
from __future__ import annotations

import copy
from pathlib import Path

import pytest

from hpt.compiler.katib import is_katib, read_experiment
from hpt.compiler.loading import load_spec

EXAMPLES = Path(__file__).parent / "data" / "katib"
COMMAND = ["python3", "/opt/mxnet-mnist/mnist.py", "--batch-size=64", "--lr=${trialParameters.lr}",
           "--num-layers=${trialParameters.num-layers}", "--optimizer=${trialParameters.optimizer}"]


def example(name: str) -> dict:
    loaded = load_spec(str(EXAMPLES / f"{name}.yaml"))
    assert not loaded.errors and is_katib(loaded.doc)
    return loaded.doc


def read(name: str):
    result = read_experiment(example(name))
    assert not result.errors, [str(e) for e in result.errors]
    return result


def test_random():
    result = read("random")
    doc = result.doc
    assert doc["search"] == {"method": "random", "trials": 12, "target": 0.99}
    assert doc["parameters"] == {"lr": {"distribution": "uniform", "min": 0.01, "max": 0.03},
                                 "num-layers": {"distribution": "int-uniform", "min": 2, "max": 5},
                                 "optimizer": {"values": ["sgd", "adam", "ftrl"]}}
    assert doc["objective"] == {"metric": "Validation-accuracy", "goal": "maximize"}
    assert doc["metrics"] == [{"name": "Validation-accuracy", "goal": "maximize"}, "Train-accuracy"]
    job = doc["trainer"].pop("job")
    assert doc["trainer"] == {"command": COMMAND, "windows": False, "metrics_from": "stdout", "collect": "log",
                              "container": "training-container",
                              "image": "docker.io/kubeflowkatib/mxnet-mnist:v0.15.0", "name": "random"}
    # the trialSpec as written, each ${trialParameters.NAME} standing for the parameter its reference names
    container = job["spec"]["template"]["spec"]["containers"][0]
    assert container["command"] == COMMAND and job["kind"] == "Job" and job["spec"]["template"]["spec"]["restartPolicy"] == "Never"
    assert "date-range" not in doc   # a Katib program gets no dated window
    said = dict(result.notes)
    assert "--parallel 3" in said["spec.parallelTrialCount"]
    # Katib's goal: once the objective reaches it, the Experiment tries no more trials (search.target)
    assert said["spec.objective.goal"].startswith("search.target 0.99")
    assert not any("spec.objective.goal" in w for w in result.warnings)


def test_grid_lists_the_steps_as_katib_does():
    doc = read("grid").doc
    assert doc["search"] == {"method": "grid", "trials": 12, "target": 0.99}
    assert doc["parameters"]["lr"] == {"values": [0.001, 0.002, 0.003, 0.004, 0.005, 0.006, 0.007, 0.008, 0.009, 0.01]}
    assert doc["parameters"]["num-layers"] == {"values": [2, 3, 4, 5]}   # an int's step defaults to 1


def test_tpe():
    result = read("tpe")
    assert result.doc["search"] == {"method": "tpe", "trials": 12, "target": 0.99}


def test_bayesianoptimization_is_read_as_tpe_and_says_so():
    doc = example("tpe")
    doc["spec"]["algorithm"] = {"algorithmName": "bayesianoptimization",
                                "algorithmSettings": [{"name": "random_state", "value": "10"}]}
    result = read_experiment(doc)
    assert result.doc["search"] == {"method": "tpe", "seed": 10, "trials": 12, "target": 0.99}
    assert "Gaussian-process" in dict(result.notes)["spec.algorithm.algorithmName"]


def test_hyperband_holds_its_resource_at_the_largest_value_and_says_so():
    result = read("hyperband")
    doc = result.doc
    assert doc["parameters"]["num-epochs"] == {"value": 1}
    assert doc["search"]["method"] == "random" and doc["search"]["trials"] == 2
    assert "--num-epochs=${trialParameters.num-epochs}" in doc["trainer"]["command"]
    assert any("hyperband's rungs over num-epochs" in w for w in result.warnings)


def test_median_stop_compiles_and_says_it_is_not_applied():
    result = read("median-stop")
    assert result.doc["parameters"]["num-epochs"] == {"distribution": "int-uniform", "min": 3, "max": 4}
    # Katib's medianstop settings (strings) become hpt's median rule's, which is the same rule
    assert result.doc["search"] == {"method": "random", "trials": 15, "target": 0.99,
                                    "stopping": {"rule": "median", "min_trials_required": 1, "start_step": 2}}
    assert not any("earlyStopping" in w for w in result.warnings)
    assert "medianstop → search.stopping rule median (min_trials_required 1, start_step 2)" in \
        dict(result.notes)["spec.earlyStopping"]


def test_medianstop_defaults_are_katib_s():
    doc = example("median-stop")
    del doc["spec"]["earlyStopping"]["algorithmSettings"]
    result = read_experiment(doc)
    assert result.doc["search"]["stopping"] == {"rule": "median"}
    assert "(min_trials_required 3, start_step 4)" in dict(result.notes)["spec.earlyStopping"]


@pytest.mark.parametrize("change, where, words", [
    (lambda s: s["algorithm"].update(algorithmName="cmaes"), "spec.algorithm.algorithmName", "CMA-ES"),
    (lambda s: s["algorithm"].update(algorithmName="randomm"), "spec.algorithm.algorithmName", "unknown algorithm"),
    (lambda s: s["parameters"][0]["feasibleSpace"].update(min="fast"), "spec.parameters[0].feasibleSpace.min", "a number"),
    (lambda s: s["parameters"][1]["feasibleSpace"].update(max="5.5"), "spec.parameters[1].feasibleSpace.max", "an integer"),
    (lambda s: s["parameters"][0]["feasibleSpace"].update(distribution="normal"), "spec.parameters[0].feasibleSpace.distribution", "suggestion service"),
    (lambda s: s["parameters"][1].update(parameterType="float"), "spec.parameters[1].parameterType", "one of int"),
    (lambda s: s["objective"].update(type="up"), "spec.objective.type", "minimize or maximize"),
    (lambda s: s["trialTemplate"].update(primaryContainerName="main"), "spec.trialTemplate.primaryContainerName", "no container"),
    (lambda s: s["trialTemplate"]["trialSpec"].update(kind="TFJob", apiVersion="kubeflow.org/v1"), "spec.trialTemplate.trialSpec", "batch/v1 Jobs"),
    (lambda s: s["trialTemplate"]["trialParameters"].pop(0), "spec.trialTemplate.trialSpec", "names no trialParameter"),
    (lambda s: s.update(nasConfig={}), "spec.nasConfig", "neural architecture search"),
    (lambda s: s.update(metricsCollectorSpec={"collector": {"kind": "PrometheusMetric"}}), "spec.metricsCollectorSpec.collector.kind", "not one hpt reads"),
    (lambda s: s.update(earlyStopping={"algorithmName": "medianstop", "algorithmSettings": [{"name": "burn_in", "value": "2"}]}),
     "spec.earlyStopping.algorithmSettings[0].name", "unknown medianstop setting 'burn_in'"),
    (lambda s: s.update(earlyStopping={"algorithmName": "medianstop", "algorithmSettings": [{"name": "start_step", "value": "0"}]}),
     "spec.earlyStopping.start_step", "start_step must be an integer ≥ 1"),
    (lambda s: s["objective"].update(goal="high"), "spec.objective.goal", "a number"),
])
def test_what_hpt_cannot_read_as_katib_means_it_is_an_error_naming_the_key(change, where, words):
    doc = copy.deepcopy(example("random"))
    change(doc["spec"])
    errors = read_experiment(doc).errors
    assert errors, "no error"
    assert errors[0].where == where and words in str(errors[0]), [str(e) for e in errors]


def test_every_problem_at_once():
    doc = copy.deepcopy(example("random"))
    doc["spec"]["algorithm"]["algorithmName"] = "sobol"
    doc["spec"]["objective"]["type"] = "best"
    doc["spec"]["parameters"][0]["feasibleSpace"]["min"] = "x"
    assert len(read_experiment(doc).errors) == 3


@pytest.mark.parametrize("collector, expected", [
    ({"collector": {"kind": "StdOut"}}, "stdout"),
    ({"collector": {"kind": "StdOut"}, "source": {"filter": {"metricsFormat": ["([\\w-]+):([0-9.]+)"]}}},
     {"format": "stdout", "regex": "([\\w-]+):([0-9.]+)"}),
    ({"collector": {"kind": "File"}, "source": {"fileSystemPath": {"path": "/katib/mnist.json", "kind": "File", "format": "JSON"}}},
     {"format": "json-lines", "file": "katib/mnist.json"}),
    ({"collector": {"kind": "File"}, "source": {"fileSystemPath": {"path": "/katib/mnist.log", "kind": "File"}}}, "stdout"),
    ({"collector": {"kind": "TensorFlowEvent"}, "source": {"fileSystemPath": {"path": "/log", "kind": "Directory"}}}, "tensorboard"),
])
def test_metrics_collectors(collector, expected):
    doc = copy.deepcopy(example("random"))
    doc["spec"]["metricsCollectorSpec"] = collector
    result = read_experiment(doc)
    assert not result.errors and result.doc["trainer"]["metrics_from"] == expected


def test_discrete_values_are_numbers():
    doc = copy.deepcopy(example("random"))
    doc["spec"]["parameters"][1] = {"name": "num-layers", "parameterType": "discrete", "feasibleSpace": {"list": ["2", "4", "8"]}}
    doc["spec"]["parameters"][0] = {"name": "lr", "parameterType": "double",
                                    "feasibleSpace": {"min": "0.0001", "max": "0.1", "distribution": "logUniform"}}
    result = read_experiment(doc)
    assert result.doc["parameters"]["num-layers"] == {"values": [2, 4, 8]}
    assert result.doc["parameters"]["lr"] == {"distribution": "log-uniform", "min": 0.0001, "max": 0.1}


def test_compile_explain_says_how_each_key_was_read(tmp_path, monkeypatch):
    import json

    from typer.testing import CliRunner

    from hpt.cli import app

    monkeypatch.setenv("HPT_DEMO_DATA", str(tmp_path / "none"))
    result = CliRunner().invoke(app, ["compile", str(EXAMPLES / "median-stop.yaml"), "--explain", "--out", str(tmp_path / "p"),
                                      "--today", "2026-11-26"])
    assert "How hpt read a Katib Experiment" in result.stdout
    assert "spec.earlyStopping" in result.stdout and "medianstop →" in result.stdout and "not applied: median" not in result.stdout
    from hpt.compiler.explain import explain_spec

    said = dict((k, v) for k, v in explain_spec(str(EXAMPLES / "grid.yaml")).notes)
    assert said["spec.parameters[0]"] == "lr (double): values [0.001, 0.002, 0.003, 0.004, 0.005, 0.006, 0.007, 0.008, 0.009, 0.01]"
    assert said["spec.parameters[2]"] == "optimizer (categorical): values ['sgd', 'adam', 'ftrl']"
    bad = tmp_path / "bad.yaml"
    bad.write_text((EXAMPLES / "random.yaml").read_text().replace("algorithmName: random", "algorithmName: sobol"))
    said = dict(explain_spec(str(bad)).notes)
    assert said["spec.algorithm.algorithmName"].startswith("refused: sobol (Sobol sequences)")
    assert json.loads(json.dumps(explain_spec(str(bad)).to_json()))["origin"] == "katib"


@pytest.mark.parametrize("collector, collect", [
    ({"collector": {"kind": "StdOut"}}, "log"),
    ({"collector": {"kind": "File"}, "source": {"fileSystemPath": {"path": "/var/log/katib/metrics.log", "kind": "File"}}}, "log"),
    ({"collector": {"kind": "File"}, "source": {"fileSystemPath": {"path": "/m.json", "kind": "File", "format": "JSON"}}}, None),
    ({"collector": {"kind": "TensorFlowEvent"}}, None),
])
def test_collectors_that_read_the_log_need_no_hpt_in_the_image(collector, collect):
    # executor-side collection reads the container's log: a collector of files inside it needs hpt-trial there
    doc = example("random")
    doc["spec"]["metricsCollectorSpec"] = collector
    trainer = read_experiment(doc).doc["trainer"]
    assert trainer.get("collect") == collect
    assert trainer["container"] == "training-container" and trainer["job"]["kind"] == "Job"
