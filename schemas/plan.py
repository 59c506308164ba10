"""The plan: a folder holding plan.json (this type, validated by plan.schema.json) and trials/<id>.json.

`hpt compile` writes it, `hpt apply` reads it; both take the layout from here. plan.json lists the trials
in the order they run and the sha256 of every manifest file's bytes, so a manifest edited after compiling
(its image, resources, metrics...) is refused rather than run as something nobody reviewed.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, replace
from itertools import islice
from json.encoder import encode_basestring  # what json.dumps writes for a str with ensure_ascii=False
from pathlib import Path
from typing import Any, Iterator

from hpt.schemas.errors import UserError
from hpt.schemas.files import open_regular
from hpt.schemas.loader import ecma_regex, load_json, schema_validator
from hpt.schemas.manifest import API_VERSION

PLAN_FILE = "plan.json"
TRIALS_DIR = "trials"
KIND = "Plan"
MAX_PLAN_BYTES = 256 << 20


def manifest_digest(data: bytes) -> str:
    """What plan.json records for a manifest file: the sha256 of its bytes, in hex."""
    return hashlib.sha256(data).hexdigest()


def manifest_path(folder: Path, trial_id: str) -> Path:
    return folder / TRIALS_DIR / f"{trial_id}.json"


def _slim(doc: Any) -> Any:
    """The document the schema validates: `doc` itself, or, when its trials and digests (20,000 entries in a
    big plan, a few seconds of jsonschema) are each well formed by the schema's own patterns, checked
    here, `doc` with one of each (so every other rule, and the messages, stay the schema's)."""
    if not isinstance(doc, dict) or not isinstance(doc.get("trials"), list) or not isinstance(doc.get("digests"), dict) \
            or len(doc["trials"]) < 2:
        return doc
    schema = load_json("plan.schema.json")["properties"]
    trial_id = ecma_regex(schema["trials"]["items"]["pattern"]).search
    digest = ecma_regex(schema["digests"]["additionalProperties"]["pattern"]).search
    trials, digests = doc["trials"], doc["digests"]
    if not (all(type(t) is str and trial_id(t) for t in trials) and len(set(trials)) == len(trials)
            and all(trial_id(k) and type(v) is str and digest(v) for k, v in digests.items())):
        return doc
    return {**doc, "trials": trials[:1], "digests": dict([next(iter(digests.items()))] if digests else [])}


def _indented(value: Any) -> Iterator[str]:
    """`value` as json.dumps(indent=2, sort_keys=True) writes it one level down (a top-level key's value), in
    pieces: a list of strings or an object of strings (the trials, the digests) a few thousand lines at a time."""
    if isinstance(value, list) and value and all(type(v) is str for v in value):
        yield from _lines("[", map(encode_basestring, value), "]")
    elif isinstance(value, dict) and value and all(type(k) is str and type(v) is str for k, v in value.items()):
        keys = sorted(value)
        yield from _lines("{", map("{}: {}".format, map(encode_basestring, keys),
                                   map(encode_basestring, map(value.__getitem__, keys))), "}")
    else:   # json writes no raw newline inside a string, so every newline here is the layout's
        yield json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False, allow_nan=False).replace("\n", "\n  ")


def _lines(opening: str, items: Iterator[str], closing: str) -> Iterator[str]:
    separator = opening + "\n    "
    while chunk := list(islice(items, 4096)):
        yield separator + ",\n    ".join(chunk)
        separator = ",\n    "
    yield "\n  " + closing


@dataclass(frozen=True)
class Plan:
    experiment: str
    hpt_version: str
    month: str                        # YYYY-MM the plan was compiled in (part of the experiment id)
    reference_date: str               # the month's first day: where rotating windows end
    spec: dict[str, Any]              # the resolved spec: every default filled in
    windows: list[dict[str, Any]]     # the date ranges (Window.to_dict)
    counts: dict[str, int]            # configs, windows, repeats, trials[, fidelities]
    values: dict[str, list[Any]]      # the values each tuned hyperparameter takes
    warnings: list[str]
    trials: list[str]                 # trial ids, in the order `hpt apply` runs them
    digests: dict[str, str]           # trial id → manifest_digest of trials/<id>.json
    # Adaptive plans only (absent from other plans' files): the rounds decided so far, each a list of
    # trials added to `trials`, and the worst-case budget per rung (compiler/schedulers/halving.py).
    rounds: list[dict[str, Any]] | None = None
    halving: dict[str, Any] | None = None
    tpe: dict[str, Any] | None = None          # tpe plans: batch, trials, startup, the tuned hyperparameters' types

    @property
    def results(self) -> str | None:
        """The spec's results URI, when it named one."""
        return self.spec.get("results") or None

    def to_dict(self) -> dict[str, Any]:
        doc = {"apiVersion": API_VERSION, "kind": KIND, "trials_dir": TRIALS_DIR, **asdict(self)}
        return {k: v for k, v in doc.items() if not (k in ("rounds", "halving", "tpe") and v is None)}

    def to_json(self) -> str:
        """Stable bytes: sorted keys, two-space indent (a reviewer reads this file)."""
        return "".join(self.json_pieces())

    def json_pieces(self) -> Iterator[str]:
        """to_json() in pieces, so a 100,000-trial plan is written without its whole text in memory. Exactly
        json.dumps(self.to_dict(), indent=2, sort_keys=True, ensure_ascii=False, allow_nan=False) + "\n", written
        without it for the trials and digests: json.dumps with an indent runs in pure Python (a second and
        tens of MiB of fragments for 100,000 trials)."""
        doc = replace(self, trials=[], digests={}).to_dict() | {"trials": self.trials, "digests": self.digests}
        separator = "{\n  "
        for key in sorted(doc):
            yield f"{separator}{encode_basestring(key)}: "
            yield from _indented(doc[key])
            separator = ",\n  "
        yield "\n}\n"

    @classmethod
    def from_dict(cls, doc: Any, where: str = PLAN_FILE) -> "Plan":
        if isinstance(doc, dict) and doc.get("kind", KIND) == KIND and "trials" in doc and "digests" not in doc:
            raise UserError("plan.json records no manifest digests (compiled by an older hpt)", where=where,
                            hint="compile the spec again: `hpt compile SPEC --out DIR --force`")
        errors = sorted(schema_validator("plan.schema.json").iter_errors(_slim(doc)), key=lambda e: list(e.absolute_path))
        if errors:
            err = errors[0]
            path = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in err.absolute_path).lstrip(".")
            raise UserError(f"not a plan: {err.message}", where=f"{where}: {path}" if path else where,
                            hint="compile one with `hpt compile SPEC --out DIR`")
        fields = {k: v for k, v in doc.items() if k not in ("apiVersion", "kind", "trials_dir")}
        plan = cls(**fields)
        unlisted = [t for t in plan.trials if t not in plan.digests]
        if unlisted or len(plan.digests) != len(plan.trials):
            raise UserError(f"plan.json lists trials and digests that differ (e.g. {(unlisted or sorted(plan.digests))[0]})",
                            where=where, hint="compile the spec again")
        return plan

    @classmethod
    def load(cls, folder: Path) -> "Plan":
        path = folder / PLAN_FILE
        try:
            with open_regular(path) as stream:   # a 250,000-trial plan.json is ~25 MB; never read without bound
                data = stream.read(MAX_PLAN_BYTES + 1)
            if len(data) > MAX_PLAN_BYTES:
                raise UserError(f"plan.json is larger than {MAX_PLAN_BYTES >> 20} MiB", where=str(path))
            doc = json.loads(data.decode("utf-8"))
        except json.JSONDecodeError as err:
            raise UserError(f"plan.json is not valid JSON: {err.msg} at line {err.lineno}", where=str(path)) from None
        except UnicodeDecodeError as err:
            raise UserError(f"plan.json is not UTF-8 text (byte {err.start})", where=str(path)) from None
        except (RecursionError, ValueError) as err:  # nested too deeply; an integer of 4,300+ digits
            raise UserError(f"plan.json is not a plan ({type(err).__name__})", where=str(path)) from None
        except OSError as err:
            raise UserError(f"cannot read plan.json: {err.strerror}", where=str(path)) from None
        return cls.from_dict(doc, where=str(path))
