"""The folder results store: create-only rows under concurrency, atomic replace, listing, trees, file:// URIs."""
from __future__ import annotations

import threading

import pytest

from hpt.store.local import LocalStore
from hpt.store import AlreadyExists, iter_row_ids, open_store, read_text, store_uri


def test_put_once_has_exactly_one_winner_under_concurrency(tmp_path):
    store = open_store(str(tmp_path))
    outcomes: list[str] = []
    barrier = threading.Barrier(8)

    def writer(n: int) -> None:
        barrier.wait()
        try:
            store.put_once("rows/t-race.csv", f"writer {n}\n".encode())
            outcomes.append("won")
        except AlreadyExists:
            outcomes.append("lost")

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["lost"] * 7 + ["won"]
    assert store.get("rows/t-race.csv").startswith(b"writer ")
    assert [p.name for p in (tmp_path / "rows").iterdir()] == ["t-race.csv"]  # no temp files left


def test_file_uri_listing_trees_and_escapes(tmp_path):
    store = open_store(f"file://{tmp_path}/store")
    assert isinstance(store, LocalStore)
    store.put("results.csv", b"a")
    store.put("results.csv", b"b")
    store.put_once("rows/t-2.csv", b"2")
    store.put_once("rows/t-1.csv", b"1")
    src = tmp_path / "model"
    (src / "deep").mkdir(parents=True)
    (src / "model.pt").write_bytes(b"w")
    (src / "deep" / "x").write_bytes(b"x")
    store.put_tree("models/t-1", src)
    assert store.list("rows/") == ["rows/t-1.csv", "rows/t-2.csv"]
    assert list(iter_row_ids(store)) == ["t-1", "t-2"]
    assert store.list("models/t-1/") == ["models/t-1/deep/x", "models/t-1/model.pt"]
    assert store.get("results.csv") == b"b"
    out = tmp_path / "out"
    store.get_tree("models/t-1", out)
    assert (out / "deep" / "x").read_bytes() == b"x"
    assert read_text(f"file://{tmp_path}/store/rows/t-1.csv") == "1"
    with pytest.raises(KeyError):
        store.get("rows/none.csv")
    with pytest.raises(ValueError):
        store.put("../outside", b"no")
    assert not (tmp_path / "outside").exists()
    assert store.list("nothing/") == []


def test_store_uri_spells_a_folder_as_open_store_does(tmp_path, monkeypatch):
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    monkeypatch.chdir(tmp_path)
    for uri in ("real", "./real/", f"file://{tmp_path}/link", str(tmp_path / "link" / ".." / "real")):
        assert store_uri(uri) == open_store(uri).uri == str((tmp_path / "real").resolve())
