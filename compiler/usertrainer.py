"""A spec's `trainer` section: the user's program, its source hash, and its hyperparameters as an Architecture.

The hyperparameters come from a catalog file shaped like an architecture of schemas/catalog.json
(defaults, ranges, `auto` values: range checks and auto mode work as for the built-ins) and/or from
the spec's own `parameters`, whose values imply the types (all integers: int; int-uniform, or a q form with an
integer q (W&B's rule): int; all
booleans: bool; all strings: categorical, its choices the strings listed; otherwise float) and which are
then unbounded. Every manifest carries every one of them, resolved.
"""
from __future__ import annotations

import hashlib
import math
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hpt.compiler.limits import MAX_SPEC_BYTES
from hpt.schemas.files import open_regular
from hpt.compiler.loading import parse_spec_text
from hpt.compiler.paths import json_path
from hpt.schemas.catalog import BOOL, CATEGORICAL, JSON, NUMERIC, Architecture, ParamSpec, param_spec
from hpt.schemas.errors import UserError
from hpt.schemas.loader import schema_validator
from hpt.schemas.metric import name_problem
from hpt.schemas.row import RESERVED
from hpt.schemas.trainer import IGNORED_SUFFIXES, USER_IMAGE_PREFIX, UserTrainer, mutable_image, source_digest

IMAGE_PREFIX = USER_IMAGE_PREFIX


@dataclass(frozen=True)
class SpecTrainer:
    trainer: UserTrainer
    architecture: Architecture   # the trainer's hyperparameters under its name
    image: str
    metrics: dict[str, str] = field(default_factory=dict)   # the catalog file's metrics: name → goal
    windows: bool = True         # False: the trainer splits its data itself (no dated windows)
    catalog: bool = False        # the hyperparameters were declared in a catalog file
    data_version: str = ""       # `data-version`: the string, or "sha256:…" of the file it names


def default_image(name: str, digest: str) -> str:
    """An immutable tag: new code, new tag (what `hpt image build --spec` builds)."""
    return f"{IMAGE_PREFIX}{name}:{digest.split(':', 1)[1][:12]}"


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _no_control(text: str, where: str) -> None:
    """A command word or a path is written into argv, a file name, a shell line: no NUL, newline or escape."""
    found = _CONTROL.search(text)
    if found:
        raise UserError(f"control character {found.group()!r} at position {found.start()} of {text[:60]!r}", where=where,
                        hint="commands and paths are plain text")


def load_trainer(doc: dict[str, Any], spec_dir: Path, warnings: list[str]) -> SpecTrainer:
    section = doc["trainer"]
    for key in ("source", "catalog", "image", "name"):
        if isinstance(section.get(key), str):
            _no_control(section[key], f"trainer.{key}")
    for i, word in enumerate(section.get("command") or []):
        if isinstance(word, str):
            _no_control(word, f"trainer.command[{i}]")
    source = (spec_dir / section.get("source", ".")).resolve()
    if not source.is_dir():
        raise UserError(f"no such folder: {source}", where="trainer.source", hint="source is relative to the spec's folder")
    digest = source_digest(source)
    name = section.get("name") or _name_from(source.name)
    if "entrypoint" in section:
        module = section["entrypoint"].split(":", 1)[0]
        first = source.joinpath(*module.split("."))
        if not (first.with_suffix(".py").is_file() or (first / "__init__.py").is_file()):
            raise UserError(f"module {module!r} is not in {source}", where="trainer.entrypoint",
                            hint="the entry point's module is imported from the source folder")
        trainer = UserTrainer(source=str(source), digest=digest, entrypoint=section["entrypoint"],
                              metrics_from=metrics_from(section))
    else:
        trainer = UserTrainer(source=str(source), digest=digest, command=tuple(section["command"]),
                              program=section.get("program", ""), metrics_from=metrics_from(section),
                              collect=section.get("collect", ""), job=section.get("job"),
                              container=section.get("container", ""))
    _check_log_collected(section, trainer)
    image = section.get("image") or doc.get("image") or default_image(name, digest)
    if mutable_image(image):
        warnings.append(f"trainer.image: {image!r} is a mutable tag; the trial ids cannot tell when its contents "
                        "change (use an immutable tag or @sha256 digest, or omit it for hpt-user-NAME:DIGEST)")
    catalog = _read_catalog(section["catalog"], spec_dir) if "catalog" in section else {}
    params = _catalog_params(catalog, _catalog_where(section["catalog"], spec_dir)) if catalog else []
    known = {p.name for p in params}
    for pname, value in (doc.get("parameters") or {}).items():
        # With a catalog, it declares every hyperparameter: another name is a typo, which the meaning
        # checks report with a did-you-mean (compiler.validation.check_parameter).
        if pname not in known and not catalog:
            params.append(_implied(pname, value))
    if not params:
        raise UserError("a trainer of your own needs its hyperparameters: give \"parameters\" or a \"catalog\" file",
                        where="trainer")
    if trainer.command:
        _check_command(trainer, section, params, source, warnings)
    windows = bool(section.get("windows", catalog.get("windows", True)))
    return SpecTrainer(trainer=trainer, image=image, data_version=_data_version(section.get("data-version"), spec_dir),
                       architecture=Architecture(name=name, description=f"user trainer in {source}", parameters=tuple(params)),
                       metrics={m["name"]: m["goal"] for m in catalog.get("metrics", ())}, windows=windows,
                       catalog=bool(catalog))


def _check_log_collected(section: dict[str, Any], trainer: UserTrainer) -> None:
    """`collect: log` (an image with no hpt): what the program prints is all apply sees of it."""
    if section.get("collect") != "log":
        return
    if trainer.entrypoint:
        raise UserError("collect log runs a command as it is in the image: an entry point needs hpt-trial inside",
                        where="trainer.collect", hint="give trainer.command")
    settings = trainer.metrics_from or {}
    if settings.get("format") == "tensorboard" or settings.get("file"):
        raise UserError("collect log reads the container's log: event files or a metrics file inside the container "
                        "are out of its reach", where="trainer.collect",
                        hint="metrics_from stdout or json-lines on stdout, or an image with hpt inside (no collect)")


def metrics_from(section: dict[str, Any]) -> dict[str, Any] | None:
    """The spec's `metrics_from`, every default filled in (trainer/collectors reads it); None: hpt's own lines."""
    given = section.get("metrics_from")
    if given is None or given == "hpt" or given == {"format": "hpt"}:
        return None
    doc = {"format": given} if isinstance(given, str) else dict(given)
    doc.setdefault("final", "last")
    if "regex" in doc:
        where = "trainer.metrics_from.regex"
        if doc["format"] != "stdout":
            raise UserError("a regex applies to stdout only", where=where)
        try:
            pattern = re.compile(doc["regex"])
        except re.error as err:
            raise UserError(f"not a regular expression: {err}", where=where) from None
        if pattern.groups < 2:
            raise UserError(f"needs two groups, the name and the value; it has {pattern.groups}", where=where,
                            hint=r"e.g. (\w+)\s*[:=]\s*([-+.\deE]+)")
    if "file" in doc:
        if doc["format"] != "json-lines":
            raise UserError("a file applies to json-lines only", where="trainer.metrics_from.file")
        if doc["file"].startswith("/") or ".." in Path(doc["file"]).parts:
            raise UserError("must be a path inside the trial's output folder", where="trainer.metrics_from.file")
    return doc


# What, in a program's source, says it reads its trial itself (the hpt.trial module or the manifest's variable).
_READS_TRIAL = (b"hpt.trial", b"from hpt import", b"HPT_TRIAL_MANIFEST", b"HPT_TRIAL_ARGS")
_SCANNED_BYTES = 1 << 20


def _check_command(trainer: UserTrainer, section: dict[str, Any], params: list[ParamSpec], source: Path,
                   warnings: list[str]) -> None:
    """The command's macros and placeholders are known; a command that passes no hyperparameter in any way,
    and a hyperparameter the command passes nowhere, are warnings (the program would run its own defaults)."""
    from hpt.compiler.macros import check_command

    names = [p.name for p in params]
    use = check_command(trainer.command, names, program=trainer.program)
    if use.passes_all:
        return
    reads_itself = _reads_trial(source)
    if not use.placeholders and not reads_itself:
        warnings.append("trainer.command passes no hyperparameter to the program (no ${args} macro, no "
                        "${trialParameters.NAME}, and its source never reads hpt.trial or $HPT_TRIAL_MANIFEST): "
                        "every trial would run the program's own defaults")
        return
    if "catalog" not in section and not reads_itself:
        for name in names:
            if not use.passes(name):
                warnings.append(f"parameters.{name}: used nowhere in trainer.command (no ${{trialParameters.{name}}}, "
                                "no ${args}): a typo?")


def _reads_trial(source: Path, max_files: int = 2000) -> bool:
    """Whether any of the source's first files (path order) mentions the trial protocol (bounded: a warning's worth)."""
    for path in sorted(source.rglob("*"))[:max_files]:
        if path.suffix in IGNORED_SUFFIXES or path.is_symlink() or not path.is_file() or "__pycache__" in path.parts:
            continue
        try:
            with path.open("rb") as stream:
                head = stream.read(_SCANNED_BYTES)
        except OSError:
            continue
        if any(word in head for word in _READS_TRIAL):
            return True
    return False


def _data_version(declared: str | dict[str, str] | None, spec_dir: Path) -> str:
    """A declared data version as the ids take it: a string as written, a file as the digest of its bytes
    (located and read now, at compile; a regular file only — a FIFO or a device never ends)."""
    if declared is None or isinstance(declared, str):
        return declared or ""
    path = (spec_dir / declared["file"]).resolve()
    where = f"trainer.data-version.file ({path})"
    try:
        if not stat.S_ISREG(path.stat().st_mode):  # checked before opening: opening a FIFO would wait for a writer
            raise UserError("not a regular file", where=where)
        with path.open("rb") as stream:
            return "sha256:" + hashlib.file_digest(stream, "sha256").hexdigest()
    except OSError as err:
        raise UserError(f"cannot read it: {err.strerror}", where=where) from None


def _name_from(folder: str) -> str:
    name = re.sub(r"[^a-z0-9._-]+", "-", folder.lower()).strip("-._")
    return name or "trainer"


def _catalog_where(relative: str, spec_dir: Path) -> str:
    return f"trainer.catalog ({(spec_dir / relative).resolve()})"


def _read_catalog(relative: str, spec_dir: Path) -> dict[str, Any]:
    """The catalog file, schema-checked (catalog.schema.json), with its metric names checked too."""
    path = (spec_dir / relative).resolve()
    where = _catalog_where(relative, spec_dir)
    try:
        with open_regular(path, where) as stream:  # the spec's limits: a regular file, size, depth, values, numbers
            raw = stream.read(MAX_SPEC_BYTES + 1)
    except OSError as err:
        raise UserError(f"cannot read the catalog: {err.strerror}", where=where) from None
    if len(raw) > MAX_SPEC_BYTES:
        raise UserError(f"larger than {MAX_SPEC_BYTES >> 10} KiB", where=where)
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise UserError(f"not UTF-8 text (byte {err.start})", where=where) from None
    doc = parse_spec_text(text, where, "json")
    errors = sorted(schema_validator("catalog.schema.json").iter_errors(doc), key=lambda e: list(e.absolute_path))
    if errors:
        raise UserError(errors[0].message, where=f"{where}: {json_path(list(errors[0].absolute_path)) or '(top level)'}")
    for i, metric in enumerate(doc.get("metrics", ())):
        problem = name_problem(metric["name"], RESERVED)
        if problem:
            raise UserError(problem, where=f"{where}: metrics[{i}].name")
    return doc


def _catalog_params(doc: dict[str, Any], where: str) -> list[ParamSpec]:
    out: list[ParamSpec] = []
    for i, entry in enumerate(doc["parameters"]):
        at = f"{where}: parameters[{i}]"
        numeric = entry["type"] in NUMERIC
        if ("choices" in entry) != (entry["type"] == CATEGORICAL):
            raise UserError(f"{entry['name']}: choices are what a categorical needs, and only a categorical", where=at)
        if not numeric and any(key in entry for key in ("min", "max", "log")):
            raise UserError(f"{entry['name']}: min, max and log apply to int and float only", where=at)
        spec = param_spec({"min": -math.inf, "max": math.inf, "log": False, "help": "", **entry} if numeric
                          else {"help": "", **entry})
        if spec.name in {p.name for p in out}:
            raise UserError(f"{spec.name!r} is declared twice", where=at)
        for value in (spec.default, *spec.auto):
            problem = spec.type_problem(value)
            if problem:
                raise UserError(f"default and auto values: {problem}", where=at)
        if not numeric:
            out.append(spec)
            continue
        if spec.type == "int" and any(float(v) != int(v) for v in (spec.default, *spec.auto)):
            raise UserError(f"{spec.name} is an integer: default and auto values must be integers", where=at)
        if not spec.min <= spec.max or any(not spec.min <= v <= spec.max for v in (spec.default, *spec.auto)):
            raise UserError(f"{spec.name}: default and auto values must lie in [min, max]", where=at)
        out.append(spec)
    return out


def _implied(name: str, value: Any) -> ParamSpec:
    """A hyperparameter declared only by the spec's values: its type from them, no bounds."""
    if isinstance(value, dict) and "distribution" in value:
        # W&B's rule: integers from int_uniform, and from a q form whose q is an integer
        integer = value["distribution"] == "int-uniform" or isinstance(value.get("q"), int) and not isinstance(value.get("q"), bool)
        kind = "int" if integer else "float"
        mu = value.get("mu", 0.0)
        default: Any = value["min"] if "min" in value else math.exp(mu) if "log" in value["distribution"] else mu
    else:
        if isinstance(value, list):
            values = value
        elif isinstance(value, dict):
            values = value["values"] if "values" in value else [value["value"]]
        else:
            values = [value]
        if any(isinstance(v, (list, dict)) for v in values):   # W&B's values of any JSON type: each one value
            return ParamSpec(name=name, type=JSON, default=values[0], choices=tuple(values), help="declared in the spec")
        if all(isinstance(v, bool) for v in values):
            return ParamSpec(name=name, type=BOOL, default=values[0], help="declared in the spec")
        if all(isinstance(v, str) for v in values):  # the strings listed are its choices
            return ParamSpec(name=name, type=CATEGORICAL, default=values[0], choices=tuple(values), help="declared in the spec")
        if any(isinstance(v, (bool, str)) for v in values):
            raise UserError("mixes numbers, strings and booleans: a hyperparameter has one type", where=f"parameters.{name}")
        kind = "int" if all(isinstance(v, int) for v in values) else "float"
        default = values[0]
    return ParamSpec(name=name, type=kind, default=int(default) if kind == "int" else float(default),
                     min=-math.inf, max=math.inf, log=False, help="declared in the spec")
