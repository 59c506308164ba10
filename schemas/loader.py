r"""Load the JSON files shipped in this package (schemas, catalog) once per process.

A schema's `pattern` is an ECMA-262 regular expression, where `$` is the end of the text. jsonschema
hands it to Python's `re.search`, where `$` also matches before a trailing newline ("default\n"
would pass a namespace pattern), so the validators here read an unescaped `$` as `\Z`.
"""
from __future__ import annotations

import json
import re
from functools import cache
from importlib.resources import files
from typing import TYPE_CHECKING, Any, Iterator

if TYPE_CHECKING:   # jsonschema (~0.3 s) is imported by the first validator, not by every reader of the catalog
    from jsonschema import Draft202012Validator, ValidationError


@cache
def load_json(name: str) -> Any:
    return json.loads(files("hpt.schemas").joinpath(name).read_text(encoding="utf-8"))


@cache
def ecma_regex(pattern: str) -> re.Pattern[str]:
    """An ECMA pattern as Python reads it: `$` (not escaped) anchors at the very end."""
    return re.compile(re.sub(r"(?<!\\)\$", r"\\Z", pattern))


def _pattern(validator: Any, pattern: str, instance: Any, schema: dict[str, Any]) -> Iterator[ValidationError]:
    from jsonschema import ValidationError

    if validator.is_type(instance, "string") and not ecma_regex(pattern).search(instance):
        yield ValidationError(f"{instance!r} does not match {pattern!r}")


@cache
def _validator_class() -> Any:
    from jsonschema import Draft202012Validator, validators

    return validators.extend(Draft202012Validator, {"pattern": _pattern})


@cache
def schema_validator(name: str) -> Draft202012Validator:
    """A validator for a schema shipped here. The schema itself is checked against the metaschema by the test
    suite (tests/test_contract.py), not on every load: each `hpt-trial` validates its manifest, and the
    metaschema pass cost more than that (bench/bench_user_trial.py)."""
    cls = _validator_class()
    return cls(load_json(name), format_checker=cls.FORMAT_CHECKER)
