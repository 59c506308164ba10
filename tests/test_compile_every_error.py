"""`hpt compile` reports every error of a spec in one run: one case per way one error used to mask others.

Each case is a spec and ALL the errors it has, as (where, words of the message); compile must exit 2 and
print exactly those, one line each, in document order, no traceback.
"""
from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from hpt.cli import app

runner = CliRunner()
LSTM = "lstm"

CASES = {
    "two bad date ranges": (
        {"architecture": LSTM, "date-range": [["2010-05-01", "2010-01-01"], ["2010-13-01", "2011-01-01"]]},
        [("date-range[0]", "is not before end"), ("date-range[1][0]", "'2010-13-01' is not a valid date")]),
    "one pair with two bad dates, and a repeated range": (
        {"architecture": LSTM, "date-range": [["2010-02-30", "2010-99-01"], ["2010-01-01", "2010-03-01"],
                                               ["2010-01-01", "2010-03-01"]]},
        [("date-range[0][0]", "not a valid date"), ("date-range[0][1]", "not a valid date"),
         ("date-range[2]", "the same date range as date-range[1]")]),
    "date errors and parameter errors": (
        {"architecture": LSTM, "date-range": [["2010-05-01", "2010-01-01"]],
         "parameters": {"num_layer": [1], "hidden_size": [3]}},
        [("date-range[0]", "is not before end"), ("parameters.num_layer", "no hyperparameter 'num_layer'"),
         ("parameters.hidden_size[0]", "outside hidden_size's range")]),
    "windows outside the data and a parameter error": (
        {"architecture": LSTM, "date-range": [["2017-01-01", "2017-04-01"], ["2010-01-01", "2010-04-01"],
                                               ["2018-01-01", "2018-02-01"]],
         "parameters": {"num_layer": [1]}},
        [("date-range[0]", "after the data's last day 2011-12-09"), ("date-range[2]", "after the data's last day"),
         ("parameters.num_layer", "no hyperparameter 'num_layer'")]),
    "no architecture": (
        {"date-range": [["2010-05-01", "2010-01-01"]], "parameters": {"num_layers": [100], "hiden_size": [16]},
         "metrics": ["msee"]},
        [("(top level)", "missing required key 'architecture'"), ("date-range[0]", "is not before end"),
         ("parameters.num_layers[0]", "100 is outside num_layers's range"),
         ("parameters.hiden_size", "no built-in architecture has a hyperparameter 'hiden_size'"),
         ("metrics[0]", "unknown metric 'msee'")]),
    "an unknown architecture": (
        {"architecture": "lstmm", "parameters": {"num_layers": [100], "dropout": [0.1]}},
        [("architecture", "unknown architecture 'lstmm'"), ("parameters.num_layers[0]", "outside num_layers's range")]),
    "a schema error in one parameter": (
        {"architecture": LSTM, "parameters": {"num_layers": {"distribution": "uniform"}, "hidden_size": [100000],
                                             "nope": [1], "dropout": [0.1]}},
        [("parameters.num_layers", "needs min and max"), ("parameters.hidden_size[0]", "outside hidden_size's range"),
         ("parameters.nope", "no hyperparameter 'nope'")]),
    "an invalid metric.goal (W&B)": (
        {"architecture": LSTM, "metric": {"name": "msee", "goal": "minimise"}},
        [("metric.goal", "'minimise' is not one of minimize, maximize"), ("metric.name", "unknown metric 'msee'")]),
    "a duplicate key (JSON)": (
        '{"architecture": "lstm", "architecture": "cnn", "parameters": {"nope": [1]}, "metrics": ["msee"]}',
        [("spec.json", "duplicate key 'architecture'"), ("parameters.nope", "no hyperparameter 'nope'"),
         ("metrics[0]", "unknown metric 'msee'")]),
    "a duplicate key (YAML)": (
        "architecture: lstm\nparameters:\n  hidden_size: [16]\n  hidden_size: [3]\n  nope: [1]\n",
        [("spec.yaml", "duplicate key 'hidden_size'"), ("parameters.nope", "no hyperparameter 'nope'")]),
}


@pytest.fixture(autouse=True)
def demo_not_built(tmp_path, monkeypatch):
    monkeypatch.setenv("HPT_DEMO_DATA", str(tmp_path / "demo-not-built"))   # its known coverage stands in
    monkeypatch.setenv("NO_GCE_CHECK", "True")


@pytest.mark.parametrize("case", list(CASES))
def test_compile_reports_every_error_at_once(case, tmp_path):
    spec, expected = CASES[case]
    path = tmp_path / ("spec.yaml" if isinstance(spec, str) and not spec.startswith("{") else "spec.json")
    path.write_text(spec if isinstance(spec, str) else json.dumps(spec), encoding="utf-8")
    result = runner.invoke(app, ["compile", str(path), "--out", str(tmp_path / "plan"), "--today", "2026-11-26"])
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    lines = result.stderr.strip().splitlines()
    assert all(line.startswith("error: ") for line in lines), result.stderr
    got = [line.removeprefix("error: ") for line in lines]
    assert len(got) == len(expected), "\n".join(got)
    for line, (where, words) in zip(got, expected):
        shown_where = line.split(": ", 1)[0]
        assert shown_where == where or (where.startswith("spec.") and shown_where.endswith(where)), (where, line)
        assert words in line, (words, line)
    assert not (tmp_path / "plan").exists()
