"""Loading a spec: JSON or YAML text → a plain document, with line and column on malformed input.

Two things a human-written spec needs besides parsing:
- typographic dashes (U+2013 en dash, U+2014 em dash, U+2212 minus) become ASCII hyphens, with a
  warning naming every field touched — the seed article prints its dates as `2017–01–01`;
- duplicate keys are errors, because the parsers would silently keep the last one and run a
  different experiment than the one the user reads.
"""
from __future__ import annotations

import datetime as dt
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hpt.compiler.paths import json_path
from hpt.schemas.errors import UserError

DASHES = {"\u2013": "en dash", "\u2014": "em dash", "\u2212": "minus sign"}
_DASH_TABLE = str.maketrans({d: "-" for d in DASHES})


@dataclass
class LoadedSpec:
    doc: Any
    source: str                      # file path, or "<stdin>"
    directory: Path                  # relative data paths in the spec resolve against this
    warnings: list[str] = field(default_factory=list)


def load_spec(path: str) -> LoadedSpec:
    """Read and parse SPEC (a file, or `-` for stdin). The format follows the extension; an unknown
    extension tries JSON, then YAML."""
    if path == "-":
        text, source, directory = sys.stdin.read(), "<stdin>", Path.cwd()
    else:
        file = Path(path)
        try:
            raw = file.read_bytes()
        except FileNotFoundError:
            raise UserError("no such spec file", where=path) from None
        except IsADirectoryError:
            raise UserError("is a directory, not a spec file", where=path) from None
        except OSError as err:
            raise UserError(f"cannot read spec: {err.strerror}", where=path) from None
        try:
            text = raw.decode("utf-8-sig")
        except UnicodeDecodeError as err:
            raise UserError(f"not UTF-8 text (byte {err.start})", where=path) from None
        source, directory = path, file.resolve().parent
    suffix = Path(source).suffix.lower()
    fmt = "yaml" if suffix in (".yaml", ".yml") else "json" if suffix == ".json" else None
    doc = parse_spec_text(text, source, fmt)
    doc, warnings = normalize_dashes(doc)
    return LoadedSpec(doc=doc, source=source, directory=directory, warnings=warnings)


def parse_spec_text(text: str, source: str = "spec", fmt: str | None = None) -> Any:
    if fmt == "json":
        return _parse_json(text, source)
    if fmt == "yaml":
        return _parse_yaml(text, source)
    stripped = text.lstrip()
    if stripped.startswith(("{", "[")):
        return _parse_json(text, source)
    return _parse_yaml(text, source)


def _reject_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    doc: dict[str, Any] = {}
    for key, value in pairs:
        if key in doc:
            raise _DuplicateKey(key)
        doc[key] = value
    return doc


class _DuplicateKey(Exception):
    def __init__(self, key: str):
        self.key = key


def _parse_json(text: str, source: str) -> Any:
    try:
        return json.loads(text, object_pairs_hook=_reject_duplicates, parse_constant=_no_constant)
    except json.JSONDecodeError as err:
        raise UserError(f"malformed JSON at line {err.lineno}, column {err.colno}: {err.msg}", where=source) from None
    except _DuplicateKey as err:
        raise UserError(f"duplicate key {err.key!r} (only one may appear)", where=source) from None
    except ValueError as err:  # NaN / Infinity
        raise UserError(f"malformed JSON: {err}", where=source) from None


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _parse_yaml(text: str, source: str) -> Any:
    import yaml

    class Loader(yaml.SafeLoader):
        pass

    def construct_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        loader.flatten_mapping(node)
        doc: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = loader.construct_object(key_node, deep=deep)
            if key in doc:
                mark = key_node.start_mark
                raise UserError(f"duplicate key {key!r} at line {mark.line + 1}, column {mark.column + 1}", where=source)
            doc[key] = loader.construct_object(value_node, deep=deep)
        return doc

    Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, construct_mapping)
    try:
        doc = yaml.load(text, Loader=Loader)  # noqa: S506 — a SafeLoader subclass
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise UserError(f"malformed YAML{where}: {err.problem or err.context}", where=source) from None
    except yaml.YAMLError as err:
        raise UserError(f"malformed YAML: {err}", where=source) from None
    return _plain(doc, source, [])


def _plain(value: Any, source: str, path: list[str | int]) -> Any:
    """YAML's extras as JSON would have them: dates back to ISO strings, non-string keys refused."""
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise UserError(f"key {key!r} must be a string", where=f"{source}: {json_path(path) or '(top level)'}")
            out[key] = _plain(item, source, path + [key])
        return out
    if isinstance(value, list):
        return [_plain(item, source, path + [i]) for i, item in enumerate(value)]
    if isinstance(value, dt.datetime):
        return value.isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, float) and (value != value or value in (float("inf"), float("-inf"))):
        raise UserError("NaN and infinity are not allowed", where=f"{source}: {json_path(path)}")
    return value


def normalize_dashes(doc: Any) -> tuple[Any, list[str]]:
    """Replace typographic dashes in every string (keys and values); one warning naming the fields."""
    touched: list[str] = []
    kinds: set[str] = set()

    def fix(text: str, path: list[str | int]) -> str:
        if text.translate(_DASH_TABLE) == text:
            return text
        kinds.update(DASHES[c] for c in text if c in DASHES)
        touched.append(json_path(path) or "(top level)")
        return text.translate(_DASH_TABLE)

    def walk(value: Any, path: list[str | int]) -> Any:
        if isinstance(value, dict):
            out = {}
            for key, item in value.items():
                new_key = fix(key, path + [key]) if isinstance(key, str) else key
                out[new_key] = walk(item, path + [new_key])
            return out
        if isinstance(value, list):
            return [walk(item, path + [i]) for i, item in enumerate(value)]
        if isinstance(value, str):
            return fix(value, path)
        return value

    fixed = walk(doc, [])
    if not touched:
        return fixed, []
    names = " and ".join(sorted(kinds))
    return fixed, [f"{', '.join(touched)}: replaced typographic dashes ({names}) with ASCII hyphens"]
