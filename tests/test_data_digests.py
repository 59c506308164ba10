"""A trial's id covers the data it reads (issue 26), through the CLI: dataset.json's partition digests from
`hpt data import`/`demo`/`index` (a folder and fake-gcs-server), the months a trial's windows read in its
manifest and id, and the run-time check that fails a trial whose months changed after compile."""
from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from executor_support import hpt_exe
from hpt.cli import app
from hpt.schemas.dataset import DESCRIPTOR, DatasetInfo, partition_digest
from hpt.store import DATA_CHANGED, DataChanged, DatasetStore, open_store
from test_data_import import BEIJING

runner = CliRunner()
TODAY = "2026-11-26"
IMPORT = ("--timestamp", "year,month,day,hour", "--target", "pm2.5", "--text", "cbwd", "--features", "DEWP,TEMP")
# Window 0 validates on January 2013, window 1 trains on it, window 2 reads neither.
RANGES = [["2012-11-01", "2013-01-01"], ["2013-01-01", "2013-03-01"], ["2013-03-01", "2013-05-01"]]


def hpt(*args) -> "object":
    return runner.invoke(app, [str(a) for a in args])


def ok(*args) -> dict:
    result = hpt(*args, "--format", "json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def digests(uri) -> dict[str, str]:
    return DatasetStore(str(uri)).info().partitions


def compiled_ids(spec: Path, plan: Path) -> dict[int, set[str]]:
    """Trial ids per window index."""
    ok("compile", spec, "--out", plan, "--today", TODAY)
    out: dict[int, set[str]] = {}
    for path in (plan / "trials").glob("*.json"):
        doc = json.loads(path.read_text())
        out.setdefault(doc["window"]["index"], set()).add(doc["id"])
    return out


def test_reimport_changes_exactly_the_trials_that_read_the_changed_month(tmp_path):
    raw = pd.read_csv(BEIJING)
    data = tmp_path / "pm25"
    ok("data", "import", BEIJING, "--out", data, *IMPORT)
    first = digests(data)
    info = DatasetInfo.from_json((data / DESCRIPTOR).read_text())
    assert json.loads((data / DESCRIPTOR).read_text())["version"] == 2
    assert len(first) == 60 and first == info.partitions
    assert first["2013-01"] == partition_digest(
        {"part-0.parquet": __import__("hashlib").md5((data / "month=2013-01" / "part-0.parquet").read_bytes()).hexdigest()})

    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({"architecture": "bag-of-words", "data": "pm25", "epochs": 1, "date-range": RANGES,
                                "parameters": {"hidden_size": [16, 32]}}))
    before = compiled_ids(spec, tmp_path / "plan-before")
    manifest = json.loads(next((tmp_path / "plan-before" / "trials").glob("*.json")).read_text())
    months = {0: ["2012-11", "2012-12", "2013-01"], 1: ["2013-01", "2013-02", "2013-03"], 2: ["2013-03", "2013-04", "2013-05"]}
    assert manifest["data"]["partitions"] == {m: first[m] for m in months[manifest["window"]["index"]]}

    # The same file again: the same digests, the same ids.
    ok("data", "import", BEIJING, "--out", data, *IMPORT, "--replace")
    assert digests(data) == first
    assert compiled_ids(spec, tmp_path / "plan-same") == before

    # January 2013 corrected: its digest and only its digest changes, and so do the ids of the windows reading it.
    corrected = raw.copy()
    january = (corrected["year"] == 2013) & (corrected["month"] == 1)
    corrected.loc[january, "pm2.5"] = corrected.loc[january, "pm2.5"].fillna(0) + 1
    source = tmp_path / "beijing-corrected.csv"
    corrected.to_csv(source, index=False)
    ok("data", "import", source, "--out", data, *IMPORT, "--replace")
    now = digests(data)
    assert {m for m in first if first[m] != now[m]} == {"2013-01"}
    after = compiled_ids(spec, tmp_path / "plan-after")
    assert after[0].isdisjoint(before[0]) and after[1].isdisjoint(before[1]) and after[2] == before[2]
    assert len(after[0]) == len(after[1]) == 2


def test_index_adds_the_digests_to_a_folder_made_by_other_means_here_and_on_gcs(tmp_path, gcs_bucket, monkeypatch):
    imported = tmp_path / "imported"
    ok("data", "import", BEIJING, "--out", imported, *IMPORT)
    made = tmp_path / "made"
    shutil.copytree(imported, made)
    doc = json.loads((made / DESCRIPTOR).read_text())
    del doc["partitions"], doc["version"]   # a version 1 descriptor, as another tool would write it
    (made / DESCRIPTOR).write_text(json.dumps(doc))
    (made / "month=2013-01" / "_SUCCESS").write_text("")   # not Parquet: the reader skips it, so does the digest
    assert DatasetStore(str(made)).info().partitions == {}

    summary = ok("data", "index", made)
    assert summary["version"] == 2 and summary["partitions"] == digests(imported) == digests(made)

    # On gs://: the same bytes give the same digests, from the listing's md5s alone (no object is downloaded).
    uri = gcs_bucket + "/made"
    store = open_store(uri)
    for path in sorted(made.rglob("*")):
        if path.is_file():
            store.put(path.relative_to(made).as_posix(), path.read_bytes() if path.name != DESCRIPTOR
                      else json.dumps(doc).encode())
    from hpt.store.gcs import GCSStore

    def no_download(self, key):
        if key.endswith(".parquet"):
            raise AssertionError(f"index downloaded {key}")
        return original(self, key)

    original = GCSStore.get
    monkeypatch.setattr(GCSStore, "get", no_download)
    assert ok("data", "index", uri)["partitions"] == digests(imported)
    monkeypatch.undo()
    assert DatasetStore(uri).info().partitions == digests(imported)

    missing = hpt("data", "index", tmp_path / "nothing-here")
    assert missing.exit_code == 2 and "no dataset.json" in missing.stderr


def test_a_dataset_without_digests_warns_and_its_descriptor_stands_in(tmp_path):
    data = tmp_path / "v1"
    ok("data", "import", BEIJING, "--out", data, *IMPORT)
    doc = json.loads((data / DESCRIPTOR).read_text())
    del doc["partitions"], doc["version"]
    (data / DESCRIPTOR).write_text(json.dumps(doc))
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({"architecture": "bag-of-words", "data": "v1", "epochs": 1, "date-range": RANGES[:1],
                                "parameters": {"hidden_size": [16]}}))
    summary = ok("compile", spec, "--out", tmp_path / "plan", "--today", TODAY)
    assert any("no partition digests" in w and "reuse results" in w and "hpt data index" in w for w in summary["warnings"])
    manifest = json.loads(next((tmp_path / "plan" / "trials").glob("*.json")).read_text())
    assert set(manifest["data"]) == {"uri", "descriptor"} and manifest["data"]["descriptor"].startswith("sha256:")
    # The stand-in still tells a changed descriptor apart (a re-export with another row count, say).
    (data / DESCRIPTOR).write_text(json.dumps({**doc, "rows": 1}))
    other = ok("compile", spec, "--out", tmp_path / "plan2", "--today", TODAY)
    assert other["experiment"] != summary["experiment"]
    assert not set(json.loads((tmp_path / "plan2" / "plan.json").read_text())["trials"]) & \
        set(json.loads((tmp_path / "plan" / "plan.json").read_text())["trials"])


def _rewrite_month(folder: Path, month: str) -> None:
    """A partition edited in place after compile (a late row corrected): same file, other bytes."""
    path = folder / DatasetInfo.partition(month) / "part-0.parquet"
    frame = pd.read_parquet(path)
    frame.loc[0, "log_revenue"] += 1.0
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    path.write_bytes(buffer.getvalue())


def test_a_partition_edited_after_compile_fails_its_trials_and_writes_nothing_done(tmp_path, small_dataset):
    data = tmp_path / "retail"
    shutil.copytree(small_dataset, data)
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({"architecture": "bag-of-words", "data": "retail", "mode": "quick", "epochs": 1,
                                "date-range": [["2010-01-01", "2010-03-01"]], "parameters": {"hidden_size": [16]}}))
    ok("compile", spec, "--out", tmp_path / "plan", "--today", TODAY)
    _rewrite_month(data, "2010-02")
    proc = subprocess.run([hpt_exe(), "apply", tmp_path / "plan", "--results", tmp_path / "results", "--retries", "0"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0
    assert "Re-applying this plan would fail the same way" in proc.stdout + proc.stderr   # not "re-apply to retry"
    rows = [p.read_text() for p in (tmp_path / "results" / "rows").glob("*.csv")]
    assert len(rows) == 1 and ",failed," in rows[0] and DATA_CHANGED in rows[0] and "month=2010-02" in rows[0]
    assert ",done," not in rows[0] and not list((tmp_path / "results").glob("models/*/*"))
    # Re-indexed (the file was edited in place, so dataset.json did not know) and recompiled, the trial has a
    # new id and trains on the data as it is now.
    assert "hpt data index" in rows[0]
    ok("data", "index", data)
    ok("compile", spec, "--out", tmp_path / "plan2", "--today", TODAY)
    proc = subprocess.run([hpt_exe(), "apply", tmp_path / "plan2", "--results", tmp_path / "results"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    done = [p.read_text() for p in (tmp_path / "results" / "rows").glob("*.csv") if ",done," in p.read_text()]
    assert len(done) == 1


def test_the_check_holds_when_the_encoded_window_comes_from_the_cache(tmp_path, small_dataset, monkeypatch):
    from hpt.trainer.data import prepare

    monkeypatch.setenv("HPT_CACHE", str(tmp_path / "cache"))
    data = tmp_path / "retail"
    shutil.copytree(small_dataset, data)
    window = {"train": ["2010-01-01", "2010-02-01"], "validation": ["2010-02-01", "2010-02-15"]}
    partitions = {m: digests(data)[m] for m in ("2010-01", "2010-02")}
    assert not prepare(str(data), window, 500, 8, partitions=partitions).cache_hit
    assert prepare(str(data), window, 500, 8, partitions=partitions).cache_hit
    _rewrite_month(data, "2010-01")
    with pytest.raises(DataChanged, match="the data changed since compile: recompile the spec.*month=2010-01"):
        prepare(str(data), window, 500, 8, partitions=partitions)          # a cache hit: checked by checksums
    with pytest.raises(DataChanged, match="month=2010-01"):
        prepare(str(data), window, 500, 8, partitions=partitions, use_cache=False)   # read: checked by its bytes


def test_a_user_trainer_declares_its_data_version(tmp_path):
    project = tmp_path / "project"
    project.mkdir()
    (project / "train.py").write_text("def main():\n    return {'mse': 1.0}\n")
    labels = project / "labels.csv"
    labels.write_text("a,b\n1,2\n")

    def ids(version) -> set[str]:
        spec = project / "spec.json"
        # a trainer that reads its own data: no dated windows (a window outside the demo data is refused at compile)
        trainer = {"entrypoint": "train:main", "image": "mine:1", "windows": False} | ({"data-version": version} if version else {})
        spec.write_text(json.dumps({"trainer": trainer, "parameters": {"lr": [0.1, 0.2]}}))
        plan = tmp_path / f"plan-{len(list(tmp_path.glob('plan-*')))}"
        ok("compile", spec, "--out", plan, "--today", TODAY)
        docs = [json.loads(p.read_text()) for p in (plan / "trials").glob("*.json")]
        assert all(d["data"].get("version") == (version if isinstance(version, str) else d["data"].get("version")) for d in docs)
        return {d["id"] for d in docs}

    plain, v1, v1_again, v2 = ids(None), ids("export-2024-06"), ids("export-2024-06"), ids("export-2024-07")
    assert v1 == v1_again and len({frozenset(s) for s in (plain, v1, v2)}) == 3
    by_file = ids({"file": "labels.csv"})
    labels.write_text("a,b\n1,3\n")
    assert ids({"file": "labels.csv"}).isdisjoint(by_file) and by_file.isdisjoint(v1)

    os.mkfifo(project / "fifo")
    spec = project / "spec.json"
    spec.write_text(json.dumps({"trainer": {"entrypoint": "train:main", "windows": False, "data-version": {"file": "fifo"}},
                                "parameters": {"lr": [0.1]}}))
    refused = hpt("compile", spec, "--out", tmp_path / "never", "--today", TODAY)
    assert refused.exit_code == 2 and "not a regular file" in refused.stderr and "trainer.data-version" in refused.stderr


def test_a_user_trainer_reading_its_windows_through_hpt_trial_fails_on_changed_data(tmp_path, small_dataset):
    data = tmp_path / "retail"
    shutil.copytree(small_dataset, data)
    project = tmp_path / "project"
    project.mkdir()
    (project / "train.py").write_text(
        "from hpt import trial\n\n"
        "def main(t):\n"
        "    train, valid = trial.frames(t, columns=['log_revenue'])\n"
        "    mean = float(train['log_revenue'].mean())\n"
        "    return {'mse': float(((valid['log_revenue'] - mean) ** 2).mean())}\n")
    spec = project / "spec.json"
    spec.write_text(json.dumps({"trainer": {"entrypoint": "train:main", "image": "mine:1"}, "data": str(data),
                                "date-range": [["2010-01-01", "2010-03-01"], ["2010-04-01", "2010-06-01"]],
                                "parameters": {"lr": [0.1]}}))
    ok("compile", spec, "--out", tmp_path / "plan", "--today", TODAY)
    _rewrite_month(data, "2010-02")   # read by window 0 only
    proc = subprocess.run([hpt_exe(), "apply", tmp_path / "plan", "--results", tmp_path / "results", "--retries", "0"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0
    index = {json.loads(p.read_text())["window"]["index"]: p.stem for p in (tmp_path / "plan" / "trials").glob("*.json")}
    rows = {i: (tmp_path / "results" / "rows" / f"{tid}.csv").read_text() for i, tid in index.items()}
    assert ",failed," in rows[0] and DATA_CHANGED in rows[0] and "month=2010-02" in rows[0]
    assert ",done," in rows[1]   # its months did not change
    assert not (tmp_path / "results" / "models" / index[0]).exists()
