"""A spec's `fidelities`: one plan runs every config × range × repeat at each, on shortened windows / fewer epochs."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from hpt.cli import app
from hpt.schemas.manifest import TrialManifest, trial_id

TODAY = "2026-11-26"
SPEC = {"architecture": "bag-of-words", "date-range": [["2010-03-01", "2010-06-01"], ["2010-07-01", "2010-10-01"]],
        "parameters": {"learning_rate": [0.001, 0.01, 0.1]}, "repeats": 2, "epochs": 6,
        "fidelities": [{"name": "cheap", "months": 1, "epochs": 2}, {"months": 2}, {"epochs": 9}]}
runner = CliRunner()


@pytest.fixture(autouse=True)
def no_demo_here(tmp_path, monkeypatch):
    monkeypatch.setenv("HPT_DEMO_DATA", str(tmp_path / "demo-not-built"))


def _compile(tmp_path: Path, spec: dict, out: str = "plan", *extra: str):
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(spec), encoding="utf-8")
    return runner.invoke(app, ["compile", str(path), "--out", str(tmp_path / out), "--today", TODAY, "--format", "json", *extra])


def _manifests(folder: Path) -> list[TrialManifest]:
    plan = json.loads((folder / "plan.json").read_text())
    return [TrialManifest.load(folder / "trials" / f"{t}.json") for t in plan["trials"]]


def test_every_config_range_repeat_runs_at_every_fidelity(tmp_path):
    result = _compile(tmp_path, SPEC)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["trials"] == 3 * 2 * 2 * 3 and summary["trials_per_window"] == {"0": 18, "1": 18}
    assert [f["name"] for f in summary["fidelities"]] == ["cheap", "m2", "e9"]
    manifests = _manifests(tmp_path / "plan")
    assert len({m.id for m in manifests}) == 36
    by_fidelity: dict[str, set] = {}
    for m in manifests:
        assert trial_id(m.to_dict()) == m.id  # still a content hash of the manifest, fidelity included
        by_fidelity.setdefault(m.fidelity, set()).add((m.window["index"], tuple(m.train_range), m.validation_range, m.epochs))
    # shortened train windows end where the range ends; validation periods are the same for every fidelity
    assert by_fidelity["cheap"] == {(0, ("2010-05-01", "2010-06-01"), ("2010-06-01", "2010-07-01"), 2),
                                    (1, ("2010-09-01", "2010-10-01"), ("2010-10-01", "2010-10-31"), 2)}
    assert by_fidelity["m2"] == {(0, ("2010-04-01", "2010-06-01"), ("2010-06-01", "2010-07-01"), 6),
                                 (1, ("2010-08-01", "2010-10-01"), ("2010-10-01", "2010-10-31"), 6)}
    assert by_fidelity["e9"] == {(0, ("2010-03-01", "2010-06-01"), ("2010-06-01", "2010-07-01"), 9),
                                 (1, ("2010-07-01", "2010-10-01"), ("2010-10-01", "2010-10-31"), 9)}
    plan = json.loads((tmp_path / "plan" / "plan.json").read_text())
    assert plan["counts"]["fidelities"] == 3 and plan["spec"]["fidelities"][1] == {"name": "m2", "months": 2, "epochs": 6}
    # deterministic: the same spec compiles to the same bytes elsewhere
    assert _compile(tmp_path, SPEC, "again").exit_code == 0
    for p in (tmp_path / "plan").rglob("*.json"):
        assert p.read_bytes() == (tmp_path / "again" / p.relative_to(tmp_path / "plan")).read_bytes()


def test_the_table_names_the_fidelities(tmp_path):
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(SPEC), encoding="utf-8")
    result = runner.invoke(app, ["compile", str(path), "--out", str(tmp_path / "p"), "--today", TODAY])
    assert result.exit_code == 0 and "× 3 fidelities = 36 trials" in result.stdout and "cheap" in result.stdout
    assert "epochs ≤ 2/6/9 (per fidelity)" in " ".join(result.stdout.split())  # not the spec's 6 for every trial


@pytest.mark.parametrize("fidelities, extra, where, words", [
    ([{"months": 1}], {}, "fidelities", "list 2 to 8 fidelities"),
    ([{"months": 1}, {"name": "x"}], {}, "fidelities[1]", "needs months, epochs or both"),
    ([{"months": 1}, {"mnths": 2}], {}, "fidelities[1].mnths", "did you mean 'months'"),
    ([{"months": 1}, {"months": 0}], {}, "fidelities[1].months", "minimum"),
    ([{"months": 1}, {"months": 4}], {}, "fidelities[1].months", "4 month(s) is longer than date-range[0]"),
    ([{"name": "a", "months": 1}, {"name": "a", "epochs": 3}], {}, "fidelities[1].name", "'a' is taken by fidelities[0]"),
    ([{"months": 1}, {"name": "m1", "epochs": 3}], {}, "fidelities[1].name", "'m1' is taken"),
    ([{"months": 3}, {"epochs": 6}], {}, "fidelities[1]", "same data for the same epochs as fidelities[0]"),
    ([{"months": 1}, {"months": 2}], {"mode": "quick"}, "fidelities", "quick mode and fidelities do not mix"),
    ([{"months": 1}, {"months": 4}], {"date-range": {"count": 2, "months": 3}}, "fidelities[1].months",
     "longer than the rotating windows of 3 month(s)"),
])
def test_errors_name_the_path(tmp_path, fidelities, extra, where, words):
    spec = {**SPEC, "date-range": [["2010-03-01", "2010-06-01"]], "fidelities": fidelities, **extra}
    result = _compile(tmp_path, spec)
    assert result.exit_code == 2, result.output
    line = result.stderr.strip()
    assert line.startswith(f"error: {where}: ") and words in line and "\n" not in line, line
