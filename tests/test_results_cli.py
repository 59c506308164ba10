"""`hpt results`, `hpt fidelity`, `hpt report` end to end through the real CLI (typer's CliRunner)."""
from __future__ import annotations

import base64
import csv
import io
import json
import re

import pytest
from results_fixtures import DOMINATE, LR, RANGES, make_row, put_matrix, put_row, put_trial
from typer.testing import CliRunner

from hpt.cli import app
from hpt.store import open_store


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


@pytest.fixture
def store(tmp_path):
    s = open_store(str(tmp_path / "store"))
    put_matrix(s, DOMINATE, skip={("C", 2)})
    put_row(s, make_row("lstm", {"learning_rate": LR["C"], "hidden_size": 64}, RANGES[2], status="failed",
                        reason="CUDA out of memory"))
    return s


def _ok(result):
    assert result.exit_code == 0, (result.output, getattr(result, "stderr", ""))
    return result.stdout


def test_results_table_shows_the_baseline_and_says_what_mse_is_measured_on(runner, tmp_path):
    store = open_store(str(tmp_path / "b"))
    for i, letter in enumerate("AB"):
        put_trial(store, "lstm", {"learning_rate": LR[letter]}, RANGES[0], mse=1.0 + i, baseline_mse=3.25)
    out = _ok(runner.invoke(app, ["results", store.uri]))
    header = next(line for line in out.splitlines() if "mse" in line and "trial_id" in line)
    assert header.index("baseline_mse") > header.index(" mse ")  # the baseline next to the objective
    assert out.count("3.25") == 2
    assert "the days right after the training window" in out and "training window's mean" in out
    page = tmp_path / "r.html"
    _ok(runner.invoke(app, ["report", store.uri, "--out", str(page), "--no-curves"]))
    assert "<b>3.25</b><span>mean baseline_mse (predicting the training mean)</span>" in page.read_text()


def test_results_table_sorted_with_failed_apart(runner, store):
    out = _ok(runner.invoke(app, ["results", store.uri]))
    assert "8 finished trial(s)" in out and "sorted by mse" in out
    assert "learning_rate" in out and "hidden_size" not in out  # only the parameters that vary
    assert "1 failed trial(s)" in out and "CUDA out of memory" in out
    first_rows = [line for line in out.splitlines() if re.match(r"^│\s+\d+ │", line)]
    assert "0.5 " in first_rows[0] and "0.95" in first_rows[-1]


def test_results_csv_and_json_parse(runner, store):
    out = _ok(runner.invoke(app, ["results", store.uri, "--format", "csv", "--metrics", "mse,train_time_s"]))
    rows = list(csv.DictReader(io.StringIO(out)))
    assert len(rows) == 9
    assert [r["status"] for r in rows].count("failed") == 1 and rows[-1]["reason"] == "CUDA out of memory"
    done = [float(r["mse"]) for r in rows if r["status"] == "done"]
    assert done == sorted(done) and set(rows[0]) >= {"trial_id", "param.learning_rate", "mse", "train_time_s"}
    assert "loss" not in rows[0]

    doc = json.loads(_ok(runner.invoke(app, ["results", store.uri, "--format", "json", "--top", "2"])))
    assert doc["n_done"] == 8 and doc["n_failed"] == 1 and len(doc["rows"]) == 2
    assert doc["rows"][0]["mse"] == 0.5 and doc["objective"] == {"metric": "mse", "goal": "minimize"}


def test_results_by_config_and_trends(runner, store):
    out = _ok(runner.invoke(app, ["results", store.uri, "--by", "config"]))
    assert "★" in out and "3/3" in out and "smallest two-sided" in out
    doc = json.loads(_ok(runner.invoke(app, ["results", store.uri, "--by", "config", "--trends", "-f", "json"])))
    best = doc["by_config"]["configs"][0]
    assert best["best_everywhere"] and best["wins"] == 3 and best["params"]["param.learning_rate"] == LR["A"]
    assert any("p < 0.05 is out of reach" in n for n in doc["by_config"]["notes"])
    trends = {t["value"]: t for t in doc["trends"]}
    assert trends[LR["A"]]["mean"] == pytest.approx(0.55) and trends[LR["C"]]["count"] == 2
    rows = list(csv.DictReader(io.StringIO(_ok(runner.invoke(app, ["results", store.uri, "--by", "config", "-f", "csv"])))))
    assert rows[0]["best_on_every_range"] == "True" and rows[1]["sign_p"] == "0.25"
    out = _ok(runner.invoke(app, ["results", store.uri, "--by", "config", "--metrics", "train_time_s", "-f", "json"]))
    assert [c["metrics"] for c in json.loads(out)["by_config"]["configs"]] == [{"train_time_s": 42.0}] * 3
    rows = list(csv.DictReader(io.StringIO(_ok(runner.invoke(app, ["results", store.uri, "--trends", "-f", "csv"])))))
    assert [r["value"] for r in rows] == ["0.001", "0.01", "0.1"]


def test_fidelity_command(runner, tmp_path):
    low, high = open_store(str(tmp_path / "low")), open_store(str(tmp_path / "high"))
    for i, letter in enumerate("ABCDE"):
        params = {"learning_rate": LR[letter]}
        put_trial(low, "lstm", params, RANGES[0], mse=1.0 + i, mode="quick")
        put_trial(high, "lstm", params, RANGES[0], mse=5.0 - i)
    doc = json.loads(_ok(runner.invoke(app, ["fidelity", low.uri, high.uri, "-k", "2", "-f", "json"])))
    assert doc["spearman"] == pytest.approx(-1.0) and doc["kendall"] == pytest.approx(-1.0) and doc["overlap"] == 0
    out = _ok(runner.invoke(app, ["fidelity", low.uri, low.uri]))
    assert "Spearman" in out and "1 (p" in out and "Strong agreement" in out


def test_user_errors_exit_2(runner, tmp_path, store):
    for args, message in [
        (["results", str(tmp_path / "nope")], "no such results folder"),
        (["results", "s3://bucket/x"], "unsupported results URI scheme"),
        (["results", str(tmp_path)], "no results in this store"),
        (["fidelity", str(tmp_path), str(tmp_path)], "no results in this store"),
        (["report", str(tmp_path / "nope"), "--out", str(tmp_path / "r.html")], "no such results folder"),
        (["results", store.uri, "--objective", "accuracy"], "unknown metric"),
    ]:
        result = runner.invoke(app, args)
        assert result.exit_code == 2, (args, result.output)
        assert message in result.stderr and "Traceback" not in result.output
    store = open_store(str(tmp_path / "s"))
    put_matrix(store, DOMINATE)
    result = runner.invoke(app, ["results", store.uri, "--metrics", "mse,accuracy"])
    assert result.exit_code == 2 and "no such metric column: accuracy" in result.stderr
    result = runner.invoke(app, ["results", store.uri, "--by", "config", "--trends", "-f", "csv"])
    assert result.exit_code == 2 and "one table" in result.stderr


def test_report_is_self_contained_with_images_and_curves(runner, store, tmp_path):
    from results_fixtures import write_curves

    from hpt.results.table import load_table

    done = load_table(store.uri).done
    for i, trial in enumerate(sorted(done["trial_id"])[:4]):
        write_curves(store, trial, [2.0 / (e + 1) + 0.1 * i for e in range(6)], tmp_path / "tb")
    out = tmp_path / "out" / "report.html"
    result = runner.invoke(app, ["report", store.uri, "--out", str(out)])
    assert result.exit_code == 0, result.output
    page = out.read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>")
    # self-contained: every src/href is a data: URI, nothing external
    refs = re.findall(r'(?:src|href)\s*=\s*"([^"]*)"', page)
    assert refs and all(r.startswith("data:image/png;base64,") for r in refs)
    assert "<link" not in page and "<script" not in page
    images = [base64.b64decode(r.split(",", 1)[1]) for r in refs]
    assert len(images) == 4  # best so far, per-range, trends, learning curves
    assert all(img.startswith(b"\x89PNG\r\n\x1a\n") and len(img) > 5000 for img in images)
    assert "Is it real?" in page and "★" in page and "CUDA out of memory" in page and "tags: mse/valid, loss/train" in page


def test_report_from_gcs_store(runner, gcs_bucket, tmp_path):
    from results_fixtures import write_curves

    store = open_store(gcs_bucket + "/exp")
    put_matrix(store, DOMINATE)
    trial = sorted(k[len("rows/"):-4] for k in store.list("rows/"))[0]
    write_curves(store, trial, [1.0, 0.8, 0.7], tmp_path / "tb")
    out = tmp_path / "r.html"
    result = runner.invoke(app, ["report", gcs_bucket + "/exp", "--out", str(out)])
    assert result.exit_code == 0, result.output
    page = out.read_text()
    assert page.count("data:image/png;base64,") == 4 and "1 trial(s) of the top" in page


def test_store_with_only_failed_trials(runner, tmp_path):
    store = open_store(str(tmp_path / "s"))
    for lr in (0.1, 0.2):
        put_row(store, make_row("lstm", {"learning_rate": lr}, RANGES[0], status="failed", reason=f"boom {lr}"))
    out = _ok(runner.invoke(app, ["results", store.uri, "--by", "config", "--trends"]))
    assert "No finished trial yet (2 failed)" in out and "boom 0.2" in out
    doc = json.loads(_ok(runner.invoke(app, ["results", store.uri, "-f", "json"])))
    assert doc["n_done"] == 0 and len(doc["failed"]) == 2
    report = tmp_path / "r.html"
    _ok(runner.invoke(app, ["report", store.uri, "--out", str(report)]))
    assert "boom 0.1" in report.read_text() and "No finished trial" in report.read_text()


def test_report_shows_user_text_as_text(runner, tmp_path):
    store = open_store(str(tmp_path / "s"))
    put_matrix(store, DOMINATE)
    put_row(store, make_row("lstm", {"learning_rate": 0.5}, RANGES[0], status="failed", reason="<b>bad</b> & <script>x</script>"))
    out = tmp_path / "r.html"
    _ok(runner.invoke(app, ["report", store.uri, "--out", str(out), "--no-curves"]))
    page = out.read_text()
    assert "&lt;b&gt;bad&lt;/b&gt; &amp; &lt;script&gt;x&lt;/script&gt;" in page and "<script" not in page


def test_report_with_one_date_range(runner, tmp_path):
    store = open_store(str(tmp_path / "one"))
    for i, letter in enumerate("ABC"):
        put_trial(store, "lstm", {"learning_rate": LR[letter]}, RANGES[0], mse=1.0 + i)
    out = tmp_path / "r.html"
    _ok(runner.invoke(app, ["report", store.uri, "--out", str(out), "--no-curves"]))
    page = out.read_text()
    assert "ranking, not yet evidence" in page and "Only one date range" in page and 'class="star"' not in page
    assert "★" not in page  # no config can be best on every range of one: no caption promises the mark either
    assert "baseline" not in page  # its rows carry no baseline_mse: no card
    assert page.count("data:image/png;base64,") == 3 and "Skipped (--no-curves)" in page


def test_categorical_and_boolean_hyperparameters_through_every_view(runner, tmp_path):
    """Rows with an `optimizer` choice and a `clip_gradients` bool, as the trainer writes them (true/false):
    `--by config`, `--trends`, `hpt fidelity` and the report name and rank them; the known answer is
    adamw without clipping, best on every range."""
    base = {"adam": 0.60, "adamw": 0.50, "sgd": 0.90}
    low, high = open_store(str(tmp_path / "low")), open_store(str(tmp_path / "high"))
    for optimizer, mse in base.items():
        for clip in ("false", "true"):
            params = {"optimizer": optimizer, "clip_gradients": clip, "learning_rate": 0.01}
            for j, rng in enumerate(RANGES):
                value = mse + (0.05 if clip == "true" else 0.0) + 0.01 * j
                put_trial(high, "lstm", params, rng, mse=value)
                put_trial(low, "lstm", params, rng, mse=value * 2, mode="quick")
    doc = json.loads(_ok(runner.invoke(app, ["results", high.uri, "--by", "config", "--trends", "-f", "json"])))
    configs = doc["by_config"]["configs"]
    assert configs[0]["best_everywhere"] and configs[0]["wins"] == 3
    assert (configs[0]["params"]["param.optimizer"], configs[0]["params"]["param.clip_gradients"]) == ("adamw", "false")
    assert [c["params"]["param.optimizer"] for c in configs] == ["adamw", "adamw", "adam", "adam", "sgd", "sgd"]
    trends = {(t["param"], t["value"]): t for t in doc["trends"]}
    assert set(trends) == {("optimizer", "adam"), ("optimizer", "adamw"), ("optimizer", "sgd"),
                           ("clip_gradients", "false"), ("clip_gradients", "true")}  # learning_rate never varied
    assert trends["optimizer", "adamw"]["best_value"] and trends["clip_gradients", "false"]["best_value"]
    assert trends["optimizer", "sgd"]["mean"] == pytest.approx(0.90 + 0.025 + 0.01)
    table = _ok(runner.invoke(app, ["results", high.uri, "--by", "config"]))
    assert "clip_gradients=false optimizer=adamw" in table and "★" in table
    fidelity = json.loads(_ok(runner.invoke(app, ["fidelity", low.uri, high.uri, "-f", "json"])))
    assert fidelity["spearman"] == pytest.approx(1.0) and fidelity["n_common"] == 6
    out = tmp_path / "report.html"
    _ok(runner.invoke(app, ["report", high.uri, "--out", str(out)]))
    page = out.read_text(encoding="utf-8")
    assert "clip_gradients=false optimizer=adamw" in page and page.count("data:image/png;base64,") >= 2
