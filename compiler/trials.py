"""Trials: every config × every date range × every repeat (× every fidelity), as trial manifests, one at a time.

A trial's training seed comes from the search seed and the repeat index only, so the configs of one
repeat start from the same initialisation on every window (fair comparisons), and the whole plan is
a function of the spec, the options and the month.

Rendering is the compiler's hot loop (a 100,000-trial grid), so manifests are not built as objects
and serialized one by one: the canonical JSON of the fields every trial shares is computed once,
the params once per config, the window once per window, and each trial only splices in its own
id, seed and repeat. The first trial of every window × repeat is parsed back with
`TrialManifest.from_json` — full schema validation plus the id check — and re-serialized with
`TrialManifest.to_json`, and its bytes must equal the spliced ones; the tests check the same for
every trial of smaller plans. So the files are exactly `TrialManifest.to_json()`.
"""
from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from operator import itemgetter
from typing import Any, Callable, Iterator

from hpt.compiler.dates import Window
from hpt.compiler.fidelities import Fidelity
from hpt.compiler.macros import command_use, render_command, render_job
from hpt.schemas.dataset import EMPTY_PARTITION, months_between
from hpt.schemas.manifest import API_VERSION, TrialManifest, canonical_json, config_id, trial_id
from hpt.schemas.resources import Resources
from hpt.schemas.trainer import UserTrainer, hashed_trainer
from hpt.schemas.version import __version__


def trial_seed(search_seed: int, repeat: int) -> int:
    digest = hashlib.sha256(f"hpt-trial-seed:{search_seed}:{repeat}".encode()).hexdigest()
    return int(digest[:8], 16) & 0x7FFFFFFF


@dataclass(frozen=True)
class TrialShape:
    """What every trial of a plan shares."""
    experiment: str
    architecture: str
    data_uri: str
    mode: str
    epochs: int
    metrics: list[str]
    objective: dict[str, str]
    image: str
    resources: Resources
    kubernetes: dict[str, Any]
    search_seed: int
    repeats: int
    fidelities: tuple[Fidelity, ...] = ()   # none: one budget {mode, epochs} for every trial
    trainer: UserTrainer | None = None      # the spec's own trainer (schemas/trainer.py)
    # What the ids know of the data's content (the resolved spec's "data-identity"): "partitions" ('YYYY-MM' →
    # digest, from dataset.json), else "descriptor" (dataset.json's digest); "version" (a user trainer's own).
    data_identity: dict[str, Any] | None = None
    # halving with search.continue: the next rung continues from these trials, so their trainers keep a checkpoint
    keep_checkpoint: bool = False

    def data_section(self, window: Window | None) -> dict[str, Any]:
        """A trial's `data`: the URI, and the digest of every month its train and validation windows read (a
        month the data lacks has the empty partition's digest), so a changed month changes exactly the ids of
        the trials that read it. A trial without windows reads every month: it has every digest."""
        identity = self.data_identity or {}
        section: dict[str, Any] = {"uri": self.data_uri} | {k: identity[k] for k in ("descriptor", "version") if k in identity}
        if "partitions" in identity:
            digests = identity["partitions"]
            section["partitions"] = dict(digests) if window is None else \
                {m: digests.get(m) or EMPTY_PARTITION for m in months_between(window.train_start, window.valid_end)}
        return section


@dataclass(frozen=True)
class RenderedTrial:
    id: str
    text: str           # == TrialManifest.to_json() of this trial


class _Template:
    """Canonical JSON of a dict, with some values given later as ready-made JSON fragments."""

    def __init__(self, fixed: dict[str, Any], slots: tuple[str, ...]):
        keys = sorted([*fixed, *slots])  # canonical_json sorts keys; so must we
        self.parts: list[str] = []        # literal text between slots
        self.order: list[str] = []        # slot names in key order
        text = "{"
        for i, key in enumerate(keys):
            text += ("," if i else "") + canonical_json(key) + ":"
            if key in fixed:
                text += canonical_json(fixed[key])
            else:
                self.parts.append(text)
                self.order.append(key)
                text = ""
        self.parts.append(text + "}")
        positions = [slots.index(key) for key in self.order]
        # render() copies the literals with a hole between each two and fills the holes in one slice assignment:
        # the hot loop's few C calls per manifest, instead of a Python loop over its fields
        self._pieces: list[str] = [""] * (2 * len(self.parts) - 1)
        self._pieces[0::2] = self.parts
        if len(positions) == 1:
            only = positions[0]
            self._pick: Callable[[tuple[str, ...]], tuple[str, ...]] = lambda values: (values[only],)
        else:
            self._pick = itemgetter(*positions) if positions else (lambda values: ())

    def render(self, *values: str) -> str:
        """`values` in the order the slots were given to the constructor."""
        pieces = self._pieces.copy()
        pieces[1::2] = self._pick(values)
        return "".join(pieces)


def iter_trials(shape: TrialShape, configs: Iterator[dict[str, Any]], windows: list[Window]) -> Iterator[RenderedTrial]:
    """Config-major order: each config on every window and repeat before the next config, so results
    read mid-run already say whether a config wins on every range."""
    seeds = [trial_seed(shape.search_seed, r) for r in range(shape.repeats)]
    budgets: list[dict[str, Any]] = [{"mode": shape.mode, "epochs": f.epochs, "fidelity": f.name} for f in shape.fidelities]
    budgets = budgets or [{"mode": shape.mode, "epochs": shape.epochs}]
    # Per window, per fidelity: the window it trains on (a fidelity may shorten it). A trainer that splits its
    # data itself (`windows`: false) gets no window: one slot-less pass.
    windowed = bool(windows)
    variant_windows = [[f.window(w) for f in shape.fidelities] or [w] for w in windows] if windowed \
        else [[None] * max(1, len(shape.fidelities))]
    base: dict[str, Any] = {"apiVersion": API_VERSION, "kind": "Trial", "experiment": shape.experiment,
                            "architecture": shape.architecture, "metrics": shape.metrics,
                            "objective": shape.objective, "image": shape.image, "resources": shape.resources.to_dict(),
                            "hpt_version": __version__}
    if shape.kubernetes:  # TrialManifest.to_dict() leaves an empty section out
        base["kubernetes"] = shape.kubernetes
    if shape.keep_checkpoint:
        base["continuation"] = {"save": True}
    # What the id hashes (schemas.manifest.trial_id): the result fields, the window without its index (and
    # the data section of its months), and a user trainer with its image. A command template's rendered argv
    # differs per config: a slot.
    id_fixed: dict[str, Any] = {"architecture": shape.architecture}
    # a Katib job renders its ${trialParameters.NAME} anywhere in it: per config too
    templated = bool(shape.trainer and shape.trainer.command and (command_use(shape.trainer.command).templated
                                                                  or shape.trainer.job is not None))
    if shape.trainer:
        id_fixed["image"] = shape.image
        if not templated:
            base["trainer"] = shape.trainer.to_dict()
            id_fixed["trainer"] = hashed_trainer(base["trainer"])
    own = ("window",) * windowed + ("trainer",) * templated
    id_templates = [_Template({**id_fixed, "budget": b}, ("params", "seed", "data", *own)) for b in budgets]
    templates = [_Template({**base, "budget": b}, ("id", "params", "seed", "repeat", "config", "data", *own)) for b in budgets]
    id_windows = [[canonical_json({"train": v.train, "validation": v.validation}) if v else "" for v in vs]
                  for vs in variant_windows]
    full_windows = [[canonical_json(v.to_dict()) if v else "" for v in vs] for vs in variant_windows]
    data_texts = [[canonical_json(shape.data_section(v)) for v in vs] for vs in variant_windows]
    seed_texts = [str(s) for s in seeds]
    repeat_texts = [str(r) for r in range(len(seeds))]
    # per window × fidelity, what its trials splice in: the templates, the data section, the window's texts
    variants = [(w, f, id_templates[f], templates[f], data_texts[w][f],
                 (id_windows[w][f],) * windowed, (full_windows[w][f],) * windowed)
                for w in range(len(variant_windows)) for f in range(len(templates))]
    config_template = _Template({"architecture": shape.architecture}, ("params",))
    to_check = len(variants) * len(seeds)   # the first trial of every window × fidelity × repeat
    checked = 0
    sha256 = hashlib.sha256
    for params in configs:
        params_text = canonical_json(params)
        config_text = '"c-' + sha256(config_template.render(params_text).encode()).hexdigest()[:12] + '"'
        trainer_tails: tuple[tuple[str, ...], tuple[str, ...]] = ((), ())
        if templated:
            assert shape.trainer is not None
            ordered = {n: params[n] for n in sorted(params)}   # the manifest's params order
            section = shape.trainer.to_dict() | {"argv": render_command(shape.trainer.command, ordered,
                                                                        program=shape.trainer.program)}
            if shape.trainer.job is not None:
                section["job"] = render_job(shape.trainer.job, ordered)
            trainer_tails = ((canonical_json(hashed_trainer(section)),), (canonical_json(section),))
        for w, f, id_template, template, data_text, id_window, full_window in variants:
            id_tail, full_tail = id_window + trainer_tails[0], full_window + trainer_tails[1]
            for repeat, seed_text in enumerate(seed_texts):
                tid = "t-" + sha256(id_template.render(params_text, seed_text, data_text, *id_tail).encode()).hexdigest()[:16]
                text = template.render('"' + tid + '"', params_text, seed_text, repeat_texts[repeat], config_text,
                                       data_text, *full_tail) + "\n"
                if checked < to_check:
                    _check_params(params)
                    _check_against_manifest(text, tid, params, variant_windows[w][f], seeds[repeat], shape.architecture)
                    checked += 1
                yield RenderedTrial(tid, text)


def _check_against_manifest(text: str, tid: str, params: dict[str, Any], window: Window | None, seed: int,
                            architecture: str) -> None:
    manifest = TrialManifest.from_json(text, where=f"trial {tid}")  # full schema validation + id check
    doc = manifest.to_dict()
    if manifest.to_json() != text or trial_id(doc) != tid or doc["params"] != params or doc["seed"] != seed \
            or (doc.get("window") or {}).get("train") != (window.train if window else None) \
            or doc["config"] != config_id(architecture, params):
        raise AssertionError(f"bug: rendered trial {tid} differs from TrialManifest.to_json()")


def _check_params(params: dict[str, Any]) -> None:
    for name, value in params.items():
        if isinstance(value, (bool, str, list, dict)):
            continue
        if not isinstance(value, (int, float)) or not math.isfinite(value):
            raise AssertionError(f"bug: hyperparameter {name} resolved to {value!r}")
