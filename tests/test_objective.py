"""Open metrics and the recorded objective: the spec's objective (any metric, with a declared goal) is in the
plan, in every manifest and every row, and the analysis ranks by it with no --objective."""
from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from typer.testing import CliRunner

from hpt.cli import app
from hpt.results.junit import write_junit
from hpt.results.table import load_table
from hpt.schemas.manifest import TrialManifest
from hpt.schemas.row import EXTRA_METRICS, ROW_SCHEMA, build_row, extra_metrics, parse_row_csv, row_csv
from hpt.store import open_store, row_key

RANGES = [["2010-03-01", "2010-06-01"], ["2010-06-01", "2010-09-01"]]


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


def _compile(runner: CliRunner, spec: dict, folder: Path) -> list[TrialManifest]:
    (folder / "spec.json").write_text(json.dumps(spec))
    result = runner.invoke(app, ["compile", str(folder / "spec.json"), "--out", str(folder / "plan")])
    assert result.exit_code == 0, result.output
    plan = json.loads((folder / "plan" / "plan.json").read_text())
    return [TrialManifest.load(folder / "plan" / "trials" / f"{t}.json") for t in plan["trials"]]


def _store_rows(store, manifests: list[TrialManifest], values) -> None:  # noqa: ANN001
    for manifest in manifests:
        row = build_row(manifest, status="done", metrics=values(manifest), started_at="2026-01-01T00:00:00Z",
                        finished_at="2026-01-01T00:00:05Z")
        store.put_once(row_key(manifest.id), row_csv(row).encode())


def test_a_builtin_spec_whose_objective_is_mae_is_ranked_by_mae_everywhere(runner, tmp_path):
    """mse and mae disagree on purpose: the results, the report and JUnit follow the recorded mae."""
    spec = {"architecture": "bag-of-words", "date-range": RANGES, "parameters": {"learning_rate": [0.001, 0.01, 0.1]},
            "metrics": ["mse", "mae"], "objective": {"metric": "mae"}}
    manifests = _compile(runner, spec, tmp_path)
    plan = json.loads((tmp_path / "plan" / "plan.json").read_text())
    assert plan["spec"]["objective"] == {"metric": "mae", "goal": "minimize"}
    assert all(m.objective == {"metric": "mae", "goal": "minimize"} for m in manifests)
    store = open_store(str(tmp_path / "results"))
    # lr 0.1 is best by mae, worst by mse
    mae = {0.001: 0.9, 0.01: 0.7, 0.1: 0.5}
    mse = {0.001: 0.2, 0.01: 0.3, 0.1: 0.9}
    _store_rows(store, manifests, lambda m: {"mse": mse[m.params["learning_rate"]], "mae": mae[m.params["learning_rate"]],
                                             "n_train": 1000})
    row = parse_row_csv(store.get(row_key(manifests[0].id)).decode())
    assert (row["objective"], row["goal"], row["row_schema"]) == ("mae", "minimize", str(ROW_SCHEMA))
    assert extra_metrics(row) == {"n_train": 1000.0}          # undeclared numbers are kept, not lost

    out = runner.invoke(app, ["results", store.uri, "--by", "config", "--format", "json"])
    assert out.exit_code == 0, out.output
    doc = json.loads(out.stdout)["by_config"]
    assert doc["objective"] == {"metric": "mae", "goal": "minimize"}
    assert [c["params"]["param.learning_rate"] for c in doc["configs"]][0] in (0.1, "0.1")
    trials = json.loads(runner.invoke(app, ["results", store.uri, "--format", "json"]).stdout)
    assert [r["mae"] for r in trials["rows"]] == sorted(r["mae"] for r in trials["rows"])

    report = tmp_path / "report.html"
    assert runner.invoke(app, ["report", store.uri, "--out", str(report), "--no-curves"]).exit_code == 0
    assert "mae (lower is better)" in report.read_text()

    junit = tmp_path / "junit.xml"
    write_junit([parse_row_csv(store.get(row_key(m.id)).decode()) for m in manifests], junit)
    ranks = []
    for case in ET.parse(junit).getroot().iter("testcase"):
        props = {p.get("name"): p.get("value") for p in case.iter("property")}
        assert props["objective"] == "mae"
        ranks.append((float(props["objective_value"]), int(props["rank"])))
    assert sorted(ranks) == [(0.5, 1), (0.5, 2), (0.7, 3), (0.7, 4), (0.9, 5), (0.9, 6)]

    # --objective still overrides
    forced = json.loads(runner.invoke(app, ["results", store.uri, "--by", "config", "--objective", "mse",
                                            "--format", "json"]).stdout)["by_config"]
    assert forced["configs"][0]["params"]["param.learning_rate"] in (0.001, "0.001")


def test_a_user_metric_with_goal_maximize_is_the_recorded_objective(runner, tmp_path):
    project = tmp_path / "src"
    project.mkdir()
    (project / "train.py").write_text("print('hpt:result {\"accuracy\": 0.5}')\n")
    spec = {"trainer": {"command": ["python", "train.py"], "source": "src"}, "date-range": RANGES,
            "parameters": {"depth": [1, 2, 3]}, "metric": {"name": "val_accuracy", "goal": "maximize"},
            "metrics": [{"name": "val_accuracy", "goal": "maximize"}, {"name": "wape", "goal": "minimize"}, "mse"]}
    manifests = _compile(runner, spec, tmp_path)
    assert manifests[0].objective == {"metric": "val_accuracy", "goal": "maximize"}
    assert manifests[0].metrics == ["val_accuracy", "wape", "mse"]
    store = open_store(str(tmp_path / "results"))
    _store_rows(store, manifests, lambda m: {"val_accuracy": 0.5 + 0.1 * m.params["depth"], "wape": 0.3,
                                             "mse": 1.0 / m.params["depth"], "pinball@0.9": 0.25})
    row = parse_row_csv(store.get(row_key(manifests[0].id)).decode())
    assert row["val_accuracy"] and row["wape"] == "0.3" and json.loads(row[EXTRA_METRICS]) == {"pinball@0.9": 0.25}

    table = load_table(store.uri)
    assert table.objective().metric == "val_accuracy" and table.objective().goal == "maximize"
    assert {"val_accuracy", "wape", "pinball@0.9"} <= set(table.metrics)
    trials = json.loads(runner.invoke(app, ["results", store.uri, "--format", "json"]).stdout)
    assert trials["objective"] == {"metric": "val_accuracy", "goal": "maximize"}
    assert [r["val_accuracy"] for r in trials["rows"]] == sorted((r["val_accuracy"] for r in trials["rows"]), reverse=True)
    by_config = json.loads(runner.invoke(app, ["results", store.uri, "--by", "config", "--format", "json"]).stdout)
    assert by_config["by_config"]["configs"][0]["params"]["param.depth"] in (3, "3")
    report = tmp_path / "report.html"
    assert runner.invoke(app, ["report", store.uri, "--out", str(report), "--no-curves"]).exit_code == 0
    assert "val_accuracy (higher is better)" in report.read_text()
    junit = tmp_path / "junit.xml"
    write_junit([parse_row_csv(store.get(row_key(m.id)).decode()) for m in manifests], junit)
    best = [c for c in ET.parse(junit).getroot().iter("testcase")
            if {p.get("name"): p.get("value") for p in c.iter("property")}.get("rank") == "1"]
    assert len(best) == 1 and "val_accuracy=0.8" in best[0].find("system-out").text
    assert "rank 1 by val_accuracy (higher is better)" in best[0].find("system-out").text

    # an undeclared metric is rankable too, by naming its goal
    cmp = json.loads(runner.invoke(app, ["results", store.uri, "--by", "config", "--objective", "mse",
                                         "--format", "json"]).stdout)["by_config"]
    assert cmp["objective"]["metric"] == "mse"


def test_a_store_of_two_objectives_is_refused_unless_one_is_chosen(runner, tmp_path):
    store = open_store(str(tmp_path / "results"))
    for name, objective in (("a", "mae"), ("b", "mse")):
        folder = tmp_path / name
        folder.mkdir()
        spec = {"architecture": "bag-of-words", "date-range": RANGES, "parameters": {"learning_rate": [0.001, 0.01]},
                "objective": {"metric": objective}, "metrics": ["mse", "mae"], "epochs": 2 if name == "a" else 3}
        _store_rows(store, _compile(runner, spec, folder), lambda m: {"mse": 0.5, "mae": 0.4})
    out = runner.invoke(app, ["results", store.uri])
    assert out.exit_code == 2 and "rows of different objectives" in out.stderr and "--objective" in out.stderr
    assert "Traceback" not in out.output
    for command in (["report", store.uri, "--out", str(tmp_path / "r.html")], ["results", store.uri, "--by", "config"]):
        assert runner.invoke(app, command).exit_code == 2
    assert runner.invoke(app, ["results", store.uri, "--objective", "mae"]).exit_code == 0


@pytest.mark.parametrize("spec, where, words", [
    ({"metrics": ["smape"]}, "metrics[0]", "unknown metric 'smape'"),
    ({"objective": {"metric": "acuracy"}}, "objective.metric", "unknown metric"),
])
def test_a_builtin_architecture_reports_the_catalog_metrics_only(runner, tmp_path, spec, where, words):
    (tmp_path / "spec.json").write_text(json.dumps({"architecture": "lstm", "date-range": RANGES, **spec}))
    out = runner.invoke(app, ["compile", str(tmp_path / "spec.json"), "--out", str(tmp_path / "plan")])
    assert out.exit_code == 2 and where in out.stderr and words in out.stderr, out.output


@pytest.mark.parametrize("spec, where, words", [
    ({"objective": {"metric": "smape"}}, "objective", "has no declared goal"),
    ({"metrics": ["wape"]}, "objective", "'wape' has no declared goal"),
    ({"metrics": [{"name": "status", "goal": "minimize"}]}, "metrics[0].name", "a column hpt writes itself"),
    ({"metrics": [{"name": "f1", "goal": "maximize"}], "objective": {"metric": "f1", "goal": "minimize"}},
     "objective.goal", "declared to maximize elsewhere"),
    ({"metrics": ["a b"]}, "metrics[0]", "not a metric name"),
])
def test_a_user_metric_needs_a_goal_and_a_name(runner, tmp_path, spec, where, words):
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "t.sh").write_text("echo\n")
    doc = {"trainer": {"command": ["sh", "t.sh"], "source": "src"}, "date-range": RANGES, "parameters": {"x": [1, 2]}}
    (tmp_path / "spec.json").write_text(json.dumps({**doc, **spec}))
    out = runner.invoke(app, ["compile", str(tmp_path / "spec.json"), "--out", str(tmp_path / "plan")])
    assert out.exit_code == 2 and where in out.stderr and words in out.stderr, out.output
    assert "Traceback" not in out.output


def test_the_trainer_catalog_declares_goals_once(runner, tmp_path):
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "t.sh").write_text("echo\n")
    (tmp_path / "catalog.json").write_text(json.dumps({
        "metrics": [{"name": "smape", "goal": "minimize"}, {"name": "coverage", "goal": "maximize"}],
        "parameters": [{"name": "x", "type": "int", "default": 1}]}))
    spec = {"trainer": {"command": ["sh", "t.sh"], "source": "src", "catalog": "catalog.json"}, "date-range": RANGES,
            "parameters": {"x": [1, 2]}, "metrics": ["coverage", "smape"], "objective": {"metric": "smape"}}
    manifests = _compile(runner, spec, tmp_path)
    assert manifests[0].objective == {"metric": "smape", "goal": "minimize"}
    spec.pop("objective")                    # default: the first metric listed, with its declared goal
    (tmp_path / "plan").rename(tmp_path / "plan-1")
    assert _compile(runner, spec, tmp_path)[0].objective == {"metric": "coverage", "goal": "maximize"}


def test_rows_of_schema_1_still_read_and_rank_by_mse(tmp_path):
    from results_fixtures import DOMINATE, put_matrix

    store = open_store(str(tmp_path / "old"))
    put_matrix(store, DOMINATE)   # rows as an older hpt wrote them: no objective, no row_schema
    table = load_table(store.uri)
    assert table.recorded == [] and table.objective().metric == "mse"


def test_the_builtin_trainer_keeps_the_epoch_best_by_the_objective(small_dataset):
    from trial_factory import make_manifest

    from hpt.trainer.data import prepare
    from hpt.trainer.train import fit

    manifest = make_manifest(small_dataset, "bag-of-words", epochs=3, learning_rate=0.01, early_stopping_patience=5)
    prepared = prepare(manifest.data["uri"], manifest.window, int(manifest.params["vocab_size"]),
                       int(manifest.params["max_tokens"]))
    worst = fit(manifest.architecture, manifest.params, prepared, seed=0, max_epochs=3,
                objective={"metric": "mse", "goal": "maximize"})
    best = fit(manifest.architecture, manifest.params, prepared, seed=0, max_epochs=3,
               objective={"metric": "mse", "goal": "minimize"})
    history = [r.val_mse for r in best.history]
    assert len(set(history)) == 3       # the three epochs differ, so the choice is visible
    assert best.metrics["best_epoch"] == 1 + history.index(min(history))
    assert worst.metrics["best_epoch"] == 1 + history.index(max(history))
    assert worst.metrics["mse"] == pytest.approx(max(history)) and best.metrics["mse"] == pytest.approx(min(history))
