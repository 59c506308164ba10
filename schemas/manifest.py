"""The trial manifest: the only contract between compiler, executor and trainer.

A manifest is plain JSON (validated by trial.schema.json); `TrialManifest` is its typed view.
The trial id is a content hash of the fields that determine the result, so the same trial has the
same id on any machine, and a changed spec yields new ids.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from hpt.schemas.errors import UserError
from hpt.schemas.kubernetes import ClusterSettings
from hpt.schemas.loader import schema_validator
from hpt.schemas.resources import Resources
from hpt.schemas.trainer import UserTrainer, hashed_trainer

API_VERSION = "hpt/v1"
DEFAULT_IMAGE = "hpt-trainer:latest"    # the spec's `image` when it names none (what `hpt image build` tags)

# The fields whose values decide what a trial computes. Everything else (experiment, image,
# resources, metrics to report, objective, cluster settings) may change without changing the id.
RESULT_FIELDS = ("architecture", "params", "data", "window", "budget", "seed")
# `data` holds the digests of the months the trial reads (or dataset.json's, or a user trainer's declared
# data version): a changed month gives the trials that read it new ids (docs/trial-protocol.md).
# A user's trainer (schemas/trainer.py) decides the result too: its section (without the local folder
# path) and the image it runs in join the id. Manifests without one keep their ids.


# json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False), without building
# an encoder per call (the compiler calls this once per config of a 100,000-config grid)
_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def canonical_json(value: Any) -> str:
    """The one serialization used for hashing and for writing manifests: byte-identical everywhere."""
    return _CANONICAL.encode(value)


def _digest(value: Any, length: int) -> str:
    return hashlib.sha256(canonical_json(value).encode()).hexdigest()[:length]


def trial_id(doc: dict[str, Any]) -> str:
    keyed = {k: doc[k] for k in RESULT_FIELDS if k != "window"}
    if doc.get("window"):   # a trainer that splits its data itself has none (docs/trial-protocol.md)
        keyed["window"] = {"train": doc["window"]["train"], "validation": doc["window"]["validation"]}
    if doc.get("trainer"):
        keyed["trainer"] = hashed_trainer(doc["trainer"])
        keyed["image"] = doc["image"]
    return "t-" + _digest(keyed, 16)


def config_id(architecture: str, params: dict[str, Any]) -> str:
    """Same architecture and params → same config, whatever the date range or repeat."""
    return "c-" + _digest({"architecture": architecture, "params": params}, 12)


@dataclass(frozen=True)
class TrialManifest:
    id: str
    experiment: str
    architecture: str
    params: dict[str, Any]
    data: dict[str, Any]    # uri, and partitions ('YYYY-MM' → digest) / descriptor / version
    window: dict[str, Any] | None
    budget: dict[str, Any]
    seed: int
    repeat: int
    metrics: list[str]
    objective: dict[str, str]
    image: str
    resources: Resources
    hpt_version: str
    config: str = ""
    kubernetes: dict[str, Any] = field(default_factory=dict)
    trainer: dict[str, Any] = field(default_factory=dict)   # a user's trainer; empty: the built-in architecture
    # halving's rungs that differ only in epochs: {"from": lower trial, "epochs": its budget} and/or {"save": true}
    # (docs/trial-protocol.md). Not a result field: a trainer that continues ends as if trained from scratch.
    continuation: dict[str, Any] = field(default_factory=dict)

    # convenience views -------------------------------------------------------------------
    @property
    def train_range(self) -> tuple[str, str]:
        """[start, end) of the training window; ("", "") for a trial without windows."""
        start, end = self.window["train"] if self.window else ("", "")
        return start, end

    @property
    def validation_range(self) -> tuple[str, str]:
        start, end = self.window["validation"] if self.window else ("", "")
        return start, end

    @property
    def epochs(self) -> int:
        return int(self.budget["epochs"])

    @property
    def mode(self) -> str:
        return str(self.budget["mode"])

    @property
    def cluster_settings(self) -> ClusterSettings:
        """The kubernetes section, typed (checked by ClusterSettings.parse when the plan was compiled)."""
        return ClusterSettings.trusted(self.kubernetes)

    @property
    def user_trainer(self) -> UserTrainer | None:
        """The user's trainer this trial runs (docs/trial-protocol.md), or None for a built-in architecture."""
        return UserTrainer.from_dict(self.trainer) if self.trainer else None

    @property
    def continue_from(self) -> tuple[str, int] | None:
        """(the lower rung's trial id, the epochs it trained) when this trial may continue from it."""
        source = self.continuation.get("from")
        return (str(source), int(self.continuation["epochs"])) if source else None

    @property
    def keeps_checkpoint(self) -> bool:
        """A higher rung continues from this trial: its trainer keeps what continuing needs."""
        return bool(self.continuation.get("save"))

    @property
    def fidelity(self) -> str:
        """The spec's fidelity this trial runs at; empty for plans without fidelities."""
        return str(self.budget.get("fidelity", ""))

    # (de)serialization -------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        doc = {"apiVersion": API_VERSION, "kind": "Trial", **asdict(self)}
        if not doc["kubernetes"]:
            del doc["kubernetes"]
        if not doc["config"]:
            del doc["config"]
        if not doc["trainer"]:
            del doc["trainer"]
        if not doc["continuation"]:
            del doc["continuation"]
        if doc["window"] is None:
            del doc["window"]
        return doc

    def to_json(self) -> str:
        return canonical_json(self.to_dict()) + "\n"

    @classmethod
    def _build(cls, doc: dict[str, Any]) -> "TrialManifest":
        fields = {k: v for k, v in doc.items() if k not in ("apiVersion", "kind")}
        fields["resources"] = Resources.from_dict(fields["resources"])
        fields.setdefault("window", None)
        return cls(**fields)

    @classmethod
    def compiled(cls, text: str) -> "TrialManifest":
        """A manifest file whose bytes match the digest its plan records: `hpt compile` wrote and validated
        it, so it is read, not validated again."""
        return cls._build(json.loads(text))

    @classmethod
    def from_dict(cls, doc: dict[str, Any], where: str = "manifest") -> "TrialManifest":
        validate_manifest(doc, where)
        manifest = cls._build(doc)
        expected = trial_id(doc)
        if manifest.id != expected:
            raise UserError(f"trial id {manifest.id} does not match its content ({expected}); manifests are "
                            "immutable — recompile the spec instead of editing a manifest", where=where)
        return manifest

    @classmethod
    def from_json(cls, text: str, where: str = "manifest") -> "TrialManifest":
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as err:
            raise UserError(f"not valid JSON: {err.msg} at line {err.lineno}, column {err.colno}", where=where) from None
        return cls.from_dict(doc, where)

    @classmethod
    def load(cls, path: str | Path) -> "TrialManifest":
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as err:
            raise UserError(f"cannot read manifest: {err.strerror}", where=str(path)) from None
        return cls.from_json(text, where=str(path))


def validate_manifest(doc: Any, where: str = "manifest") -> None:
    """Raise UserError naming the first problem's JSON path, if `doc` is not a valid manifest."""
    validator = schema_validator("trial.schema.json")
    errors = sorted(validator.iter_errors(doc), key=lambda e: list(e.absolute_path))
    if errors:
        err = errors[0]
        path = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in err.absolute_path).lstrip(".")
        raise UserError(err.message, where=f"{where}: {path}" if path else where)
