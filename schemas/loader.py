"""Load the JSON files shipped in this package (schemas, catalog) once per process."""
from __future__ import annotations

import json
from functools import cache
from importlib.resources import files
from typing import Any

from jsonschema import Draft202012Validator


@cache
def load_json(name: str) -> Any:
    return json.loads(files("hpt.schemas").joinpath(name).read_text(encoding="utf-8"))


@cache
def schema_validator(name: str) -> Draft202012Validator:
    schema = load_json(name)
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)
