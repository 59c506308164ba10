"""examples/fidelity.json end to end with the REAL trainer: compile against a small slice of the real data,
apply locally (epochs cut to 1 and 2 so it takes seconds), and `hpt fidelity STORE` compares the fidelities."""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from executor_support import hpt_exe

REPO = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow


def hpt(*args, timeout=300) -> subprocess.CompletedProcess:
    return subprocess.run([hpt_exe(), *map(str, args)], capture_output=True, text=True, timeout=timeout)


def test_one_plan_measures_two_fidelities(tmp_path, small_dataset):
    spec = json.loads((REPO / "examples" / "fidelity.json").read_text())
    for fid, epochs in zip(spec["fidelities"], (1, 2)):
        fid["epochs"] = epochs
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    compiled = hpt("compile", tmp_path / "spec.json", "--out", tmp_path / "plan", "--data", small_dataset, "--format", "json")
    assert compiled.returncode == 0, compiled.stderr
    assert json.loads(compiled.stdout)["trials"] == 8
    store = tmp_path / "store"
    applied = hpt("apply", tmp_path / "plan", "--results", store, "--parallel", "2")
    assert applied.returncode == 0, applied.stderr[-2000:]
    result = hpt("fidelity", store, "--format", "json")
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["high"] == "3m-8ep" and [p["low_fidelity"] for p in doc["pairs"]] == ["1m-3ep"]
    pair = doc["pairs"][0]
    assert pair["n_common"] == 4 and -1.0 <= pair["spearman"] <= 1.0 and pair["verdict"]
    table = hpt("results", store)
    assert table.returncode == 0 and "1m-3ep" in table.stdout and "3m-8ep" in table.stdout


def test_rows_carry_the_manifests_fidelity(tmp_path):
    """The one row builder copies budget.fidelity (empty without one), from the typed manifest (the trainer)
    and from the plan's manifest document (the executor's failure row)."""
    from hpt.schemas.manifest import TrialManifest, trial_id
    from hpt.schemas.row import build_row
    from trial_factory import make_manifest

    plain = make_manifest(tmp_path, epochs=2)
    doc = plain.to_dict()
    doc["budget"]["fidelity"] = "m1-e2"
    doc["id"] = trial_id(doc)
    assert doc["id"] != plain.id  # the fidelity is part of the budget, so of the id
    cheap = TrialManifest.from_dict(doc)
    for manifest, expected in ((plain, ""), (cheap, "m1-e2")):
        row = build_row(manifest, status="done", started_at="s", finished_at="f")
        failed = build_row(manifest.to_dict(), status="failed", reason="killed", started_at="s", finished_at="f")
        assert row["fidelity"] == failed["fidelity"] == expected
