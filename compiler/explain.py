"""How a W&B sweep config or a Katib Experiment was read: each key as written, and what hpt made of it.

`explain_spec` runs the readers only (loading, compiler/katib.py, compiler/wandb.py), not the rest of
compile, so it answers even for a file that does not compile yet: a key hpt refuses is listed with the
reason. `hpt compile SPEC --explain` prints it before the dry run.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from hpt.compiler.katib import is_katib, read_experiment
from hpt.compiler.loading import load_spec
from hpt.compiler.wandb import lift_program, to_hpt

WANDB_KEYS = ("method", "metric", "run_cap", "early_terminate", "program", "command", "name", "project", "entity")


@dataclass
class Explanation:
    origin: str                                   # katib | wandb | hpt
    notes: list[tuple[str, str]] = field(default_factory=list)   # (key as written, how it was read)

    def to_json(self) -> dict:
        return {"origin": self.origin, "keys": [{"key": k, "read": v} for k, v in self.notes]}


def explain_spec(path: str) -> Explanation:
    loaded = load_spec(path)
    doc = loaded.doc
    notes: list[tuple[str, str]] = [(e.where or path, f"refused: {e.message}") for e in loaded.errors]
    if is_katib(doc):
        read = read_experiment(doc)
        return Explanation("katib", notes + read.notes + [(e.where or "spec", f"refused: {e.message}"
                                                           + (f" ({e.hint})" if e.hint else "")) for e in read.errors])
    if not isinstance(doc, dict):
        return Explanation("hpt", notes)
    origin = "wandb" if any(k in doc for k in WANDB_KEYS) else "hpt"
    doc, lifted, errors = lift_program(doc)
    notes += lifted + [(e.where or "spec", f"refused: {e.message}") for e in errors]
    try:
        translated = to_hpt(doc)
    except (KeyError, TypeError, AttributeError):   # a malformed key: compile names it; nothing more to explain
        return Explanation(origin, notes)
    notes += translated.notes + [(e.where or "spec", f"refused: {e.message}") for e in translated.errors]
    if any("parameters" in k and "distribution" in text for k, text in notes):
        origin = "wandb"
    return Explanation(origin, notes)
