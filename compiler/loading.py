"""Loading a spec: JSON or YAML text → a plain document, with line and column on malformed input.

Two things a human-written spec needs besides parsing:
- typographic dashes (U+2013 en dash, U+2014 em dash, U+2212 minus) become ASCII hyphens, with a
  warning naming every field touched — the seed article prints its dates as `2017–01–01`;
- duplicate keys are errors, because the parsers would silently keep the last one and run a
  different experiment than the one the user reads; they are collected (LoadedSpec.errors), so compile
  reports them together with the spec's other errors;
- YAML is read with YAML 1.2's core schema (what the YAML spec says since 2009, and what JSON agrees
  with), not PyYAML's YAML 1.1 rules: `1e-5` is a float, `on`/`off`/`yes`/`no` are strings, `0o17` is 15,
  and `1_000`, `1:30` (sexagesimal), `0b11` and timestamps stay the strings they look like.

And the limits of compiler/limits.py, checked while parsing: the file's size, the nesting depth,
the number of values (a YAML alias counts as the copy it stands for, so a "billion laughs" document
is refused before it is built), and numbers that are finite and of a sane size.
"""
from __future__ import annotations

import datetime as dt
import json
import math
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hpt.compiler.limits import MAX_DEPTH, MAX_INTEGER, MAX_NODES, MAX_SPEC_BYTES
from hpt.schemas.files import open_regular
from hpt.compiler.paths import json_path
from hpt.schemas.errors import UserError, raise_all

_SURROGATE = re.compile("[\ud800-\udfff]")  # json.loads lets "\\ud800" through; it cannot be written or printed
DASHES = {"\u2013": "en dash", "\u2014": "em dash", "\u2212": "minus sign"}
_DASH_TABLE = str.maketrans({d: "-" for d in DASHES})


@dataclass
class LoadedSpec:
    doc: Any
    source: str                      # file path, or "<stdin>"
    directory: Path                  # relative data paths in the spec resolve against this
    warnings: list[str] = field(default_factory=list)
    errors: list[UserError] = field(default_factory=list)   # found while parsing (duplicate keys); reported with the rest


def load_spec(path: str) -> LoadedSpec:
    """Read and parse SPEC (a file, or `-` for stdin). The format follows the extension; an unknown
    extension tries JSON, then YAML."""
    if path == "-":
        text, source, directory = sys.stdin.read(MAX_SPEC_BYTES + 1), "<stdin>", Path.cwd()
        _check_size(len(text.encode("utf-8", "surrogatepass")), source)
    else:
        file = Path(path)
        try:
            with open_regular(file, path) as stream:  # no FIFO or device; and no more than the limit
                raw = stream.read(MAX_SPEC_BYTES + 1)
        except FileNotFoundError:
            raise UserError("no such spec file", where=path) from None
        except IsADirectoryError:
            raise UserError("is a directory, not a spec file", where=path) from None
        except OSError as err:
            raise UserError(f"cannot read spec: {err.strerror}", where=path) from None
        _check_size(len(raw), path)
        try:
            text = raw.decode("utf-8-sig")
        except UnicodeDecodeError as err:
            raise UserError(f"not UTF-8 text (byte {err.start})", where=path) from None
        source, directory = path, file.resolve().parent
    suffix = Path(source).suffix.lower()
    fmt = "yaml" if suffix in (".yaml", ".yml") else "json" if suffix == ".json" else None
    doc, errors = parse_document(text, source, fmt)
    doc, warnings = normalize_dashes(doc)
    return LoadedSpec(doc=doc, source=source, directory=directory, warnings=warnings, errors=errors)


def _check_size(size: int, source: str) -> None:
    if size > MAX_SPEC_BYTES:
        raise UserError(f"larger than {MAX_SPEC_BYTES // 1024} KiB: a spec lists settings and values, not data",
                        where=source)


def parse_spec_text(text: str, source: str = "spec", fmt: str | None = None) -> Any:
    """The document, or a UserError (every duplicate key at once)."""
    doc, errors = parse_document(text, source, fmt)
    raise_all(errors)
    return doc


def parse_document(text: str, source: str = "spec", fmt: str | None = None) -> tuple[Any, list[UserError]]:
    """The document (a duplicate key keeps its first value) and the duplicate keys found, as errors.
    Anything else malformed raises: there is no document to check further."""
    if fmt is None:
        fmt = "json" if text.lstrip().startswith(("{", "[")) else "yaml"
    duplicates: list[UserError] = []
    try:
        doc = _parse_json(text, source, duplicates) if fmt == "json" else _parse_yaml(text, source, duplicates)
    except RecursionError:  # the parsers recurse per level: far too deep to even parse
        raise UserError(f"nested deeper than {MAX_DEPTH} levels", where=source) from None
    check_tree(doc, source)
    return doc, duplicates


def check_tree(doc: Any, source: str) -> None:
    """Depth, size and numbers of a parsed document (iterative: a deep document cannot recurse us)."""
    stack: list[tuple[Any, int, tuple[str | int, ...]]] = [(doc, 1, ())]
    nodes = 0
    while stack:
        value, depth, path = stack.pop()
        nodes += 1
        if nodes > MAX_NODES:
            raise UserError(f"more than {MAX_NODES:,} values", where=source)
        if depth > MAX_DEPTH:
            raise UserError(f"nested deeper than {MAX_DEPTH} levels", where=f"{source}: {json_path(path[:3])}…")
        if isinstance(value, dict):
            stack.extend((item, depth + 1, path + (key,)) for key, item in value.items())
            stack.extend((key, depth + 1, path) for key in value if isinstance(key, str) and _SURROGATE.search(key))
        elif isinstance(value, list):
            stack.extend((item, depth + 1, path + (i,)) for i, item in enumerate(value))
        elif isinstance(value, str) and _SURROGATE.search(value):
            raise UserError("not valid Unicode (a lone surrogate escape such as \\ud800)",
                            where=f"{source}: {json_path(path) or '(top level)'}")
        elif isinstance(value, float) and not math.isfinite(value):
            raise UserError("NaN and infinity are not allowed", where=f"{source}: {json_path(path) or '(top level)'}")
        elif isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_INTEGER:
            raise UserError(f"integer out of range (more than {len(str(MAX_INTEGER))} digits)",
                            where=f"{source}: {json_path(path) or '(top level)'}")


def _parse_json(text: str, source: str, duplicates: list[UserError]) -> Any:
    def pairs_hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        doc: dict[str, Any] = {}
        for key, value in pairs:
            if key in doc:
                duplicates.append(UserError(f"duplicate key {key!r} (only one may appear)", where=source))
                continue
            doc[key] = value
        return doc

    try:
        return json.loads(text, object_pairs_hook=pairs_hook, parse_constant=_no_constant)
    except json.JSONDecodeError as err:
        raise UserError(f"malformed JSON at line {err.lineno}, column {err.colno}: {err.msg}", where=source) from None
    except ValueError as err:  # NaN / Infinity; an integer of more than 4,300 digits
        raise UserError(f"malformed JSON: {err}", where=source) from None


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _parse_yaml(text: str, source: str, duplicates: list[UserError]) -> Any:
    import yaml

    Loader = yaml12_loader()

    def construct_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        loader.flatten_mapping(node)
        doc: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = loader.construct_object(key_node, deep=deep)
            if key in doc:
                mark = key_node.start_mark
                duplicates.append(UserError(f"duplicate key {key!r} at line {mark.line + 1}, column {mark.column + 1}",
                                            where=source))
                continue
            doc[key] = loader.construct_object(value_node, deep=deep)
        return doc

    Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, construct_mapping)
    try:
        loader = Loader(text)  # reads the first characters already: may raise a ReaderError (a NUL byte)
    except yaml.YAMLError as err:
        raise UserError(f"malformed YAML: {err}", where=source) from None
    try:
        node = loader.get_single_node()
        if node is not None:
            _check_nodes(node, source)  # before anything is built: aliases may stand for billions of copies
        doc = loader.construct_document(node) if node is not None else None
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise UserError(f"malformed YAML{where}: {err.problem or err.context}", where=source) from None
    except yaml.YAMLError as err:
        raise UserError(f"malformed YAML: {err}", where=source) from None
    except ValueError as err:  # e.g. an integer of more than 4,300 digits
        raise UserError(f"malformed YAML: {err}", where=source) from None
    finally:
        loader.dispose()
    return _plain(doc, source, [])


# YAML 1.2 core schema (yaml.org/spec/1.2.2 §10.3.2): the plain scalars that are not strings.
_CORE_NULL = r"~|null|Null|NULL|"
_CORE_BOOL = r"true|True|TRUE|false|False|FALSE"
_CORE_INT = r"[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+"
_CORE_FLOAT = r"[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN)"
_YAML12: Any = None


def yaml12_loader() -> Any:
    """A SafeLoader subclass whose implicit types are YAML 1.2 core's (a fresh subclass per parse: the
    caller adds its own mapping constructor). `<<` merge keys still work, as every YAML tool reads them."""
    global _YAML12
    import yaml

    if _YAML12 is None:
        class Resolver12(yaml.resolver.BaseResolver):
            pass

        Resolver12.yaml_implicit_resolvers = {}
        for tag, pattern, first in (("null", _CORE_NULL, ["~", "n", "N", ""]), ("bool", _CORE_BOOL, list("tTfF")),
                                    ("int", _CORE_INT, list("-+0123456789")),
                                    ("float", _CORE_FLOAT, list("-+.0123456789"))):
            Resolver12.add_implicit_resolver(f"tag:yaml.org,2002:{tag}", re.compile(f"^(?:{pattern})$"), first)
        Resolver12.add_implicit_resolver("tag:yaml.org,2002:merge", re.compile("^(?:<<)$"), ["<"])

        class Loader12(yaml.reader.Reader, yaml.scanner.Scanner, yaml.parser.Parser, yaml.composer.Composer,
                       yaml.constructor.SafeConstructor, Resolver12):
            def __init__(self, stream: str):
                yaml.reader.Reader.__init__(self, stream)
                yaml.scanner.Scanner.__init__(self)
                yaml.parser.Parser.__init__(self)
                yaml.composer.Composer.__init__(self)
                yaml.constructor.SafeConstructor.__init__(self)
                Resolver12.__init__(self)

        def construct_int(loader: Any, node: Any) -> int:
            text = loader.construct_scalar(node)
            if re.fullmatch(r"0o[0-7]+", text):
                return int(text[2:], 8)
            if re.fullmatch(r"0x[0-9a-fA-F]+", text):
                return int(text[2:], 16)
            if re.fullmatch(r"[-+]?[0-9]+", text):   # not int(): Python's reads 1_000 too
                return int(text, 10)
            raise yaml.constructor.ConstructorError(None, None, f"{text!r} is not a YAML 1.2 integer", node.start_mark)

        def construct_float(loader: Any, node: Any) -> float:
            text = loader.construct_scalar(node)
            lowered = text.lower()
            if lowered.lstrip("+-") == ".inf":
                return -math.inf if lowered.startswith("-") else math.inf
            if lowered == ".nan":
                return math.nan
            if re.fullmatch(_CORE_FLOAT, text):
                return float(text)
            raise yaml.constructor.ConstructorError(None, None, f"{text!r} is not a YAML 1.2 float", node.start_mark)

        Loader12.add_constructor("tag:yaml.org,2002:int", construct_int)
        Loader12.add_constructor("tag:yaml.org,2002:float", construct_float)
        _YAML12 = Loader12

    class Loader(_YAML12):
        pass
    return Loader


def _check_nodes(root: Any, source: str) -> None:
    """The document a YAML node graph stands for: its size with every alias expanded, its depth, no cycles.
    Each node is measured once (memoized), so the check is linear in the text even for an alias bomb."""
    import yaml

    def children(node: Any) -> list[Any]:
        if isinstance(node, yaml.SequenceNode):
            return list(node.value)
        if isinstance(node, yaml.MappingNode):
            return [part for pair in node.value for part in pair]
        return []

    measured: dict[int, tuple[int, int]] = {}  # id(node) → (values, depth) of what it expands to
    open_: set[int] = set()
    stack: list[tuple[Any, bool]] = [(root, False)]
    while stack:
        node, finished = stack.pop()
        key = id(node)
        if finished:
            kids = [measured[id(k)] for k in children(node)]
            size = 1 + sum(k[0] for k in kids)
            depth = 1 + max((k[1] for k in kids), default=0)
            if size > MAX_NODES:
                raise UserError(f"more than {MAX_NODES:,} values once its aliases are expanded", where=source)
            if depth > MAX_DEPTH:
                mark = node.start_mark
                raise UserError(f"nested deeper than {MAX_DEPTH} levels (at line {mark.line + 1})", where=source)
            open_.discard(key)
            measured[key] = (size, depth)
            continue
        if key in measured:
            continue
        if key in open_:
            mark = node.start_mark
            raise UserError(f"an alias refers to a node that contains it (line {mark.line + 1})", where=source)
        open_.add(key)
        stack.append((node, True))
        stack.extend((k, False) for k in children(node))


def _plain(value: Any, source: str, path: list[str | int]) -> Any:
    """YAML's extras as JSON would have them: dates back to ISO strings, non-string keys refused."""
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise UserError(f"key {key!r} must be a string", where=f"{source}: {json_path(path) or '(top level)'}")
            out[_join_surrogates(key)] = _plain(item, source, path + [key])
        return out
    if isinstance(value, list):
        return [_plain(item, source, path + [i]) for i, item in enumerate(value)]
    if isinstance(value, str):
        return _join_surrogates(value)
    if isinstance(value, dt.datetime):
        return value.isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    return value


def _join_surrogates(text: str) -> str:
    """JSON's escaped surrogate pair ("\\ud83d\\ude00", what json.dumps writes for 😀) as the one character it
    stands for, as a JSON parser reads it; PyYAML decodes each half alone. A lone half stays (check_tree refuses it)."""
    if not _SURROGATE.search(text):
        return text
    try:
        return text.encode("utf-16", "surrogatepass").decode("utf-16")
    except UnicodeDecodeError:
        return text


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
