"""The analysis on what the real pipeline writes: compile → apply (local, real trainer) → results, report, JUnit."""
from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import pytest
from typer.testing import CliRunner

from hpt.cli import app


@pytest.mark.slow
def test_real_run_feeds_results_report_and_junit(small_dataset, tmp_path):
    spec = {"architecture": "bag-of-words", "date-range": [["2010-03-01", "2010-05-01"], ["2010-06-01", "2010-08-01"]],
            "parameters": {"learning_rate": [0.0003, 0.03]}, "data": str(small_dataset), "epochs": 2}
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    runner = CliRunner()
    plan, store, junit = tmp_path / "plan", tmp_path / "store", tmp_path / "junit.xml"
    result = runner.invoke(app, ["compile", str(tmp_path / "spec.json"), "--out", str(plan)])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["apply", str(plan), "--results", str(store), "--junit", str(junit), "--format", "json"])
    assert result.exit_code == 0, result.output

    doc = json.loads(runner.invoke(app, ["results", str(store), "--by", "config", "-f", "json"]).stdout)["by_config"]
    assert len(doc["ranges"]) == 2 and len(doc["configs"]) == 2
    assert {c["n_trials"] for c in doc["configs"]} == {2}
    assert {c["params"]["param.learning_rate"] for c in doc["configs"]} == {0.0003, 0.03}
    assert all(c["mean"] > 0 for c in doc["configs"])

    out = tmp_path / "report.html"
    result = runner.invoke(app, ["report", str(store), "--out", str(out)])
    assert result.exit_code == 0, result.output
    page = out.read_text()
    # the report's plots, the best-so-far curve (added with hpt serve's Progress section) among them
    assert page.count("data:image/png;base64,") == 4 and "4 trial(s) of the top 2 configs" in page
    assert "mse/valid" in page  # the trainer's own TensorBoard tag was found

    suite = ET.parse(junit).getroot().find("testsuite")
    assert suite.get("tests") == "4" and suite.get("failures") == "0"
