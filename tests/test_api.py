"""The Python API (hpt/api.py, docs/api.md): docs/api.md's tour runs as written on real data and real
trials; errors are exceptions; the CLI's commands call these same functions."""
from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

import hpt
from hpt.cli import app

DOC = Path(__file__).resolve().parents[1] / "docs" / "api.md"


def test_the_documented_tour_runs_as_written(small_dataset, tmp_path, monkeypatch, capsys):
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(encoding="utf-8"), flags=re.S)
    assert blocks, "docs/api.md shows no Python"
    # The tour builds a 1,500-rows-a-month slice of the demo data; the session's one (same settings) is reused.
    shutil.copytree(small_dataset, tmp_path / "data")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HPT_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("HPT_CPUS", "1")
    exec(compile("\n".join(blocks), str(DOC), "exec"), {})  # noqa: S102 — the documentation's own code
    out = capsys.readouterr().out
    assert "optimizer=" in out and "refused: no-such-spec.json" in out
    rows = list((tmp_path / "results" / "rows").glob("*.csv"))
    assert len(rows) == 4 and (tmp_path / "report.html").is_file()


def test_errors_are_exceptions_naming_what_and_where(tmp_path):
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({"architecture": "lstm", "parameters": {"optimizer": ["adamx"]}}))
    with pytest.raises(hpt.UserError) as err:
        hpt.compile(spec, out=tmp_path / "plan", today="2026-11-26")
    assert err.value.where == "parameters.optimizer[0]" and "not one of optimizer's choices" in err.value.message
    with pytest.raises(hpt.UserError, match="not a date"):
        hpt.compile(spec, out=tmp_path / "plan", today="26/11/2026")
    with pytest.raises(hpt.UserError, match="no such results folder"):
        hpt.read_results(str(tmp_path / "no-store"))
    from results_fixtures import RANGES, put_trial

    from hpt.store import open_store

    put_trial(open_store(str(tmp_path / "store")), "lstm", {"learning_rate": 0.01}, RANGES[0], mse=0.5)
    with pytest.raises(hpt.UserError, match="no fidelity 'm1'.*carry no fidelity"):
        hpt.read_results(str(tmp_path / "store"), fidelity="m1")
    with pytest.raises(hpt.UserError, match="unknown backend"):
        hpt.apply(tmp_path / "plan", backend="slurm")


def test_the_cli_calls_the_api(small_dataset, tmp_path, monkeypatch):
    """`hpt compile`, `hpt apply`, `hpt results` and `hpt report` go through hpt.api: replacing a function
    there changes what the command does."""
    from hpt import api

    calls: list[tuple[str, tuple, dict]] = []

    def spy(name):
        real = getattr(api, name)

        def wrapper(*args, **kwargs):
            calls.append((name, args, kwargs))
            return real(*args, **kwargs)
        return wrapper

    for name in ("compile", "apply", "compare", "trends", "report", "read_results", "fidelity"):
        monkeypatch.setattr(api, name, spy(name))
    monkeypatch.setenv("HPT_CACHE", str(tmp_path / "cache"))
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({"architecture": "bag-of-words", "data": str(small_dataset), "epochs": 1,
                                "date-range": [["2010-06-01", "2010-07-01"]], "parameters": {"hidden_size": 8}}))
    runner = CliRunner()
    assert runner.invoke(app, ["compile", str(spec), "--out", str(tmp_path / "plan"), "--today", "2026-11-26"]).exit_code == 0
    store = tmp_path / "store"
    result = runner.invoke(app, ["apply", str(tmp_path / "plan"), "--results", str(store), "--retries", "0", "-f", "json"])
    assert result.exit_code == 0, result.output
    for args in (["results", str(store)], ["results", str(store), "--by", "config", "--trends"],
                 ["report", str(store), "--out", str(tmp_path / "r.html"), "--no-curves"]):
        assert runner.invoke(app, args).exit_code == 0, args
    runner.invoke(app, ["fidelity", str(store), str(store)])  # one config: refused, but only after asking api.fidelity
    called = [name for name, _, _ in calls]
    assert called[:2] == ["compile", "apply"]
    assert {"read_results", "compare", "trends", "report", "fidelity"} <= set(called)
    assert calls[1][2]["results"] == str(store) and calls[1][2]["retries"] == 0
