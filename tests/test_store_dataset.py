"""Datasets go through the store: the URI forms (one helper), the month partitions (one spelling), a
dataset folder read the same way from a local folder and from gs:// (fake-gcs-server)."""
from __future__ import annotations

import datetime as dt
import os

import pytest

from hpt.schemas.dataset import DatasetInfo
from hpt.schemas.errors import UserError
from hpt.store import DatasetStore, check_scheme, local_path, open_store

INFO = DatasetInfo(name="tiny", timestamp="ts", text="t", target="y", start=dt.date(2010, 1, 3), end=dt.date(2010, 3, 9))


def test_local_path_knows_every_uri_form(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    assert local_path("file:///data/x/../retail") == "/data/retail"
    assert local_path("/data/retail/") == "/data/retail"
    assert local_path("~/retail") == str(tmp_path / "home" / "retail")
    assert local_path("retail") == str(tmp_path / "retail")                     # the working folder by default
    assert local_path("file://retail", base="/specs") == "/specs/retail"       # or the spec's folder
    assert local_path("gs://bucket/retail") is None and local_path("demo://online-retail-ii") is None
    assert local_path("") is None
    check_scheme("gs://bucket/x", "data")
    check_scheme("file:///x", "data")
    with pytest.raises(UserError, match=r"unsupported data URI scheme in 's3://b/x'.*gs://BUCKET/PREFIX") as err:
        check_scheme("s3://b/x", "data", where="data")
    assert err.value.where == "data"


def test_partition_is_spelled_once_and_read_back():
    assert DatasetInfo.partition(dt.date(2010, 3, 31)) == DatasetInfo.partition("2010-03") == "month=2010-03"
    assert DatasetInfo.partition_month(DatasetInfo.partition("2011-12")) == "2011-12"
    for other in ("month=2010-3", "month=", "dataset.json", "months=2010-03", "month=2010-03x"):
        assert DatasetInfo.partition_month(other) is None, other


def _write_dataset(store) -> None:
    store.put("dataset.json", INFO.to_json().encode())
    for key in ("month=2010-03/part-1.parquet", "month=2010-03/part-0.parquet", "month=2010-01/part-0.parquet",
                "month=2010-01/_SUCCESS", "month=bad/part-0.parquet", "month=2010-02/deeper/part-0.parquet",
                "notes/month=2010-02.parquet"):
        store.put(key, key.encode())


def _check(dataset: DatasetStore) -> None:
    assert dataset.info() == INFO
    assert dataset.months() == {"2010-01": ["month=2010-01/part-0.parquet"],
                                "2010-02": ["month=2010-02/deeper/part-0.parquet"],
                                "2010-03": ["month=2010-03/part-0.parquet", "month=2010-03/part-1.parquet"]}
    assert dataset.parts("2010-03") == ["month=2010-03/part-0.parquet", "month=2010-03/part-1.parquet"]
    assert dataset.parts("2010-02") == ["month=2010-02/deeper/part-0.parquet"]
    assert dataset.parts("2010-04") == []
    assert dataset.get("month=2010-01/part-0.parquet") == b"month=2010-01/part-0.parquet"


def test_dataset_in_a_local_folder(tmp_path):
    _write_dataset(open_store(str(tmp_path / "ds")))
    _check(DatasetStore(f"file://{tmp_path}/ds"))
    with pytest.raises(KeyError):
        DatasetStore(str(tmp_path / "empty")).descriptor()
    (tmp_path / "plain").write_text("x")
    with pytest.raises(UserError, match="a file, not a folder"):
        DatasetStore(str(tmp_path / "plain"))


def test_dataset_on_gcs(gcs_bucket):
    _write_dataset(open_store(f"{gcs_bucket}/datasets/tiny"))
    _check(DatasetStore(f"{gcs_bucket}/datasets/tiny/"))
