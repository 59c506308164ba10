"""The contract between the stages: manifest ids, the catalog, row columns, the local store, the floors."""
from __future__ import annotations

import ast
import threading
from pathlib import Path

import pytest

from hpt.store.local import LocalStore
from hpt.store import AlreadyExists, iter_row_ids, open_store, row_key
from hpt.schemas import UserError
from hpt.schemas.loader import load_json
from hpt.schemas.catalog import architectures, default_metrics, learning_rate_family, metrics
from hpt.schemas.manifest import TrialManifest, config_id, trial_id, validate_manifest
from hpt.schemas.row import column_order, parse_row_csv, row_csv, table_csv

ROOT = Path(__file__).resolve().parents[1]


def _doc(**overrides):
    arch = architectures()["bag-of-words"]
    doc = {
        "apiVersion": "hpt/v1", "kind": "Trial", "id": "", "experiment": "e-000000000000",
        "architecture": arch.name, "params": arch.defaults(), "data": {"uri": "/data/demo"},
        "window": {"train": ["2010-01-01", "2010-02-01"], "validation": ["2010-02-01", "2010-02-15"], "index": 0},
        "budget": {"mode": "quick", "epochs": 2}, "seed": 7, "repeat": 0, "metrics": ["mse"],
        "objective": {"metric": "mse", "goal": "minimize"}, "image": "hpt-trainer:latest",
        "resources": {"gpus": 0, "cpus": 1, "memory": "4Gi"}, "hpt_version": "0.1.0",
    }
    doc.update(overrides)
    doc["id"] = trial_id(doc)
    return doc


def test_trial_id_depends_only_on_result_fields():
    base = _doc()
    assert base["id"] == _doc(image="other:tag", experiment="e-111111111111", metrics=["mse", "loss"])["id"]
    assert base["id"] != _doc(seed=8)["id"]
    assert base["id"] != _doc(params={**base["params"], "learning_rate": 0.1})["id"]
    assert base["id"] != _doc(window={"train": ["2010-01-01", "2010-03-01"], "validation": ["2010-03-01", "2010-03-15"]})["id"]


def test_manifest_round_trip_is_byte_identical():
    manifest = TrialManifest.from_dict(_doc())
    text = manifest.to_json()
    assert TrialManifest.from_json(text).to_json() == text
    assert manifest.train_range == ("2010-01-01", "2010-02-01")


def test_an_edited_manifest_is_refused():
    doc = _doc()
    doc["params"]["learning_rate"] = 0.5
    with pytest.raises(UserError, match="does not match its content"):
        TrialManifest.from_dict(doc)


def test_invalid_manifest_names_the_path():
    doc = _doc()
    doc["resources"]["memory"] = "lots"
    with pytest.raises(UserError, match=r"resources\.memory"):
        validate_manifest(doc)


@pytest.mark.parametrize("name", sorted(p.name for p in (Path(__file__).resolve().parents[1] / "schemas").glob("*.schema.json")))
def test_every_shipped_schema_is_a_valid_draft_2020_12_schema(name):
    # hpt.schemas.loader builds validators without this metaschema pass (it ran on every hpt-trial): it is here.
    from jsonschema import Draft202012Validator

    Draft202012Validator.check_schema(load_json(name))


def test_config_id_ignores_window_and_repeat():
    params = architectures()["lstm"].defaults()
    assert config_id("lstm", params) == config_id("lstm", dict(params))
    assert config_id("lstm", params) != config_id("cnn", params)


def test_catalog_has_the_seed_architectures_and_shared_families():
    names = set(architectures())
    assert names == {"bag-of-words", "lstm", "cnn", "lstm-attention", "mdn", "multitask"}
    for arch in architectures().values():
        for family_param in (*learning_rate_family(), "batch_size"):
            assert family_param in arch.param_names
        for p in arch.parameters:
            # every default and auto value is a value the hyperparameter may take: in range, or one of its options
            for value in (p.default, *p.auto):
                assert p.type_problem(value) is None, (arch.name, p.name, value)
                assert p.min <= value <= p.max if p.numeric else value in p.options, (arch.name, p.name, value)
            assert p.numeric or (p.min is None and p.max is None and not p.log), (arch.name, p.name)
    attention = architectures()["lstm-attention"].param_names
    assert {"num_of_attentions", "attention_hidden_layer_size", "attention_regularization"} <= set(attention)
    assert set(default_metrics()) <= set(metrics())


def test_row_columns_have_a_stable_order():
    # Any column hpt does not write itself is a metric (open names): after the catalog's, before provenance.
    row = {"hpt_version": "1", "mse": 0.5, "param.lr": 1, "trial_id": "t-1", "zzz": 1, "loss": 0.7, "status": "done",
           "row_schema": 2, "extra_metrics": "{}", "smape": 3, "objective": "smape", "goal": "minimize"}
    assert column_order(row) == ["trial_id", "status", "objective", "goal", "param.lr", "mse", "loss", "smape", "zzz",
                                 "extra_metrics", "hpt_version", "row_schema"]
    assert parse_row_csv(row_csv(row))["mse"] == "0.5"
    merged = table_csv([{"trial_id": "t-2", "mse": 1}, {"trial_id": "t-1", "loss": 2}])
    assert merged.splitlines() == ["trial_id,mse,loss", "t-1,,2", "t-2,1,"]


def test_local_store_put_once_is_create_only(tmp_path):
    store = open_store(str(tmp_path / "store"))
    store.put_once(row_key("t-1"), b"first")
    with pytest.raises(AlreadyExists):
        store.put_once(row_key("t-1"), b"second")
    assert store.get(row_key("t-1")) == b"first"
    assert list(iter_row_ids(store)) == ["t-1"]
    with pytest.raises(KeyError):
        store.get("rows/absent.csv")
    # no temp files are left behind or listed
    assert store.list() == ["rows/t-1.csv"]


def test_local_store_put_once_has_one_winner_under_concurrency(tmp_path):
    store = LocalStore(str(tmp_path))
    wins = []

    def writer(i):
        try:
            store.put_once("rows/t-x.csv", f"{i}".encode())
            wins.append(i)
        except AlreadyExists:
            pass

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(wins) == 1
    assert store.get("rows/t-x.csv") == str(wins[0]).encode()


def test_local_store_trees_and_escape(tmp_path):
    src = tmp_path / "src"
    (src / "a").mkdir(parents=True)
    (src / "a" / "w.pt").write_bytes(b"weights")
    store = LocalStore(str(tmp_path / "store"))
    store.put_tree("models/t-1", src)
    store.get_tree("models/t-1", tmp_path / "back")
    assert (tmp_path / "back" / "a" / "w.pt").read_bytes() == b"weights"
    with pytest.raises(ValueError):
        store.put("../outside", b"x")


def test_unsupported_scheme_is_a_user_error():
    with pytest.raises(UserError, match="unsupported"):
        open_store("s3://bucket/x")


# The floors (README.md, "Layout"): a folder imports only folders below it, and compiler, executor and trainer
# never import each other.
FLOORS = {
    "schemas": set(),
    "store": {"schemas"},
    "results": {"schemas", "store"},
    "compiler": {"schemas", "store"},
    "executor": {"schemas", "store"},
    "trainer": {"schemas", "store"},
}
PACKAGE_OF = {"hpt.schemas": "schemas", "hpt.store": "store", "hpt.results": "results", "hpt.compiler": "compiler",
              "hpt.executor": "executor", "hpt.trainer": "trainer", "hpt.commands": "cli", "hpt.cli": "cli"}


def _hpt_imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        for name in names:
            for prefix, floor in PACKAGE_OF.items():
                if name == prefix or name.startswith(prefix + "."):
                    found.add(floor)
    return found


@pytest.mark.parametrize("folder", sorted(FLOORS))
def test_floors_import_only_downwards(folder):
    sources = sorted((ROOT / folder).rglob("*.py"))
    assert sources, f"{folder}/ holds no Python files: the floors test would check nothing"
    for path in sources:
        illegal = _hpt_imports(path) - FLOORS[folder] - {folder}
        assert not illegal, f"{path.relative_to(ROOT)} imports {sorted(illegal)}"


def test_the_demo_uri_resolves_to_this_machines_demo_folder(monkeypatch, tmp_path):
    from hpt.schemas.dataset import DEMO_URI, local_data_uri

    monkeypatch.setenv("HPT_DEMO_DATA", str(tmp_path / "demo"))
    assert local_data_uri(DEMO_URI) == str(tmp_path / "demo")
    assert local_data_uri("gs://b/d") == "gs://b/d" and local_data_uri("/data/x") == "/data/x"


@pytest.mark.parametrize("name", ["local", "docker", "k8s"])
def test_every_backend_implements_the_extension_point_and_refuses_unknown_options(name):
    from dataclasses import is_dataclass

    from hpt.executor.backend import Backend
    from hpt.executor.backends import BACKENDS, get_backend

    assert name in BACKENDS
    backend = get_backend(name)          # abstract members left out would make this a TypeError
    assert isinstance(backend, Backend) and backend.name == name and is_dataclass(type(backend).Options)
    with pytest.raises(UserError, match=f"unknown option 'colour' for the {name} backend") as info:
        get_backend(name, colour="blue")
    assert info.value.where == "colour"


def test_the_loop_uses_only_what_the_backend_extension_point_declares():
    """No getattr/hasattr in the loop: an optional backend member has a default in hpt.executor.backend.Backend."""
    tree = ast.parse((ROOT / "executor" / "loop.py").read_text())
    probes = [node.lineno for node in ast.walk(tree) if isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
              and node.func.id in ("getattr", "hasattr")]
    assert probes == [], f"executor/loop.py probes attributes at lines {probes}"
