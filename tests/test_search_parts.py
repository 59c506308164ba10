"""The search's extension points: the registries find every part by name, the simple form names only
registered parts, and every part's settings are in the spec schema and the docs (adding a part is its
module, its docs and its tests)."""
from __future__ import annotations

import json
from pathlib import Path

from hpt.compiler.proposers import PROPOSERS
from hpt.compiler.schedulers import SCHEDULERS
from hpt.compiler.search import METHODS, method_name, search_parts
from hpt.compiler.stopping import STOPPING

ROOT = Path(__file__).resolve().parents[1]


def test_registries_find_every_part_by_name():
    assert PROPOSERS.names() == ["grid", "random", "tpe"]
    assert SCHEDULERS.names() == ["halving", "none"]
    assert STOPPING.names() == ["asha", "hyperband", "median"]
    for proposer, scheduler in METHODS.values():
        assert proposer is None or proposer in PROPOSERS.names()
        assert scheduler in SCHEDULERS.names()


def test_the_simple_form_and_the_parts_name_the_same_search():
    assert search_parts({"method": "bohb"}, {}) == ("tpe", "halving")
    assert search_parts({"method": "halving"}, {"lr": {"distribution": "uniform", "min": 0, "max": 1}}) == ("random", "halving")
    assert search_parts({"proposer": "tpe", "scheduler": "halving"}, {}) == ("tpe", "halving")
    assert search_parts({}, {}) == ("grid", "none")
    for name, (proposer, scheduler) in METHODS.items():
        assert method_name(proposer or "grid", scheduler) == name


def test_every_setting_is_in_the_schema_and_every_rule_in_the_docs():
    schema = json.loads((ROOT / "schemas" / "spec.schema.json").read_text())["properties"]["search"]["properties"]
    for registry in (PROPOSERS, SCHEDULERS):
        for name in registry.names():
            assert set(registry.get(name).settings_keys) <= set(schema), name
    docs = (ROOT / "docs" / "spec.md").read_text()
    for name in STOPPING.names():
        assert f"| `{name}`" in docs
        for key in STOPPING.get(name).defaults:
            assert f"`{key}`" in docs, (name, key)
