"""Read a compiled plan folder into what the loop submits.

plan.json (hpt.schemas.plan.Plan) names the trials in the order they run and the digest of each manifest
file; a manifest whose bytes do not match is refused, so what runs is what was compiled and reviewed.
Each manifest goes to the backend byte for byte, with its typed view (TrialManifest) for image,
resources and cluster settings, parsed the first time the loop asks for that trial (Submissions).
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import overload

from hpt.executor.backend import Submission
from hpt.schemas.errors import UserError
from hpt.schemas.files import FolderReader
from hpt.schemas.manifest import TrialManifest
from hpt.schemas.plan import PLAN_FILE, TRIALS_DIR, Plan, manifest_digest

MAX_MANIFEST_BYTES = 16 << 20   # a manifest is a few KB; a bigger file is not one, and is never read whole


@dataclass(frozen=True)
class LoadedPlan:
    """A plan read from its folder: its index and one submission per trial, in the plan's order."""
    path: Path
    plan: Plan
    submissions: "Submissions"
    timeout_s: float | None = None     # what with_results set, kept for the trials a grown plan adds
    parsed: bool = True                # False: manifests checked against their digests, not parsed (no submissions)

    @property
    def experiment_id(self) -> str:
        return self.plan.experiment

    @property
    def results(self) -> str | None:
        """The spec's results URI, if it named one."""
        return self.plan.results

    @property
    def trial_ids(self) -> list[str]:
        return self.submissions.ids if self.parsed else list(self.plan.trials)

    def with_results(self, results_uri: str, timeout_s: float | None = None) -> "LoadedPlan":
        """The same plan with every submission pointed at a results store (and a timeout)."""
        return LoadedPlan(self.path, self.plan, self.submissions.pointed(results_uri, timeout_s), timeout_s)

    def grown(self, trial_ids: list[str]) -> "LoadedPlan":
        """The plan folder read again after an adaptive search added `trial_ids` to it (a round): the
        trials already loaded must still lead plan.json unchanged (earlier rounds never change); only
        the new manifests are read, digest-checked like every other."""
        plan = Plan.load(self.path)
        known = self.trial_ids
        if plan.trials[:len(known)] != known or any(plan.digests[t] != self.plan.digests[t] for t in known):
            raise UserError(f"{PLAN_FILE} changed under this apply: its earlier trials are not the ones loaded",
                            where=str(self.path / PLAN_FILE), hint="compile the plan again into a fresh folder")
        missing = [t for t in trial_ids if t not in plan.digests or t in self.plan.digests]
        if missing:
            raise UserError(f"{missing[0]} is not a new trial of {PLAN_FILE}", where=str(self.path / PLAN_FILE))
        with FolderReader(self.path / TRIALS_DIR) as folder:
            added = [_checked_bytes(self.path, plan, t, folder) for t in trial_ids]
        grown = self.submissions.plus(added)
        for i in range(len(self.submissions), len(grown)):
            grown[i]   # parsed now: a new round's manifest that is not one is refused before its trials queue
        return LoadedPlan(self.path, plan, grown, self.timeout_s)


class Submissions(Sequence[Submission]):
    """A plan's submissions in its order, each manifest parsed the first time it is asked for. Every
    manifest's bytes are read and digest-checked when the plan loads; parsing them all would cost a
    re-apply of a 20,000-trial plan seconds to run none, so a manifest is parsed (and refused if it is
    not one) when the loop first asks for its trial: it asks for every trial it may run before it starts
    any (hpt.executor.loop: preflight)."""

    def __init__(self, checked: list[tuple[str, str, bytes]], results_uri: str = "", timeout_s: float | None = None,
                 manifests: dict[str, tuple[TrialManifest, str]] | None = None):
        self._checked = checked                 # (trial id, manifest file, its digest-checked bytes)
        self.results_uri, self.timeout_s = results_uri, timeout_s
        self._manifests = {} if manifests is None else manifests   # trial id → (parsed, text): shared by copies
        self._subs: list[Submission | None] = [None] * len(checked)

    @property
    def ids(self) -> list[str]:
        return [tid for tid, _, _ in self._checked]

    def pointed(self, results_uri: str, timeout_s: float | None) -> "Submissions":
        """The same trials pointed at a results store (and a timeout); what is parsed stays parsed."""
        return Submissions(self._checked, results_uri, timeout_s, self._manifests)

    def plus(self, checked: list[tuple[str, str, bytes]]) -> "Submissions":
        """These trials and `checked` after them (a grown plan)."""
        grown = Submissions(self._checked + checked, self.results_uri, self.timeout_s, self._manifests)
        grown._subs[:len(self._subs)] = self._subs
        return grown

    def __len__(self) -> int:
        return len(self._checked)

    @overload
    def __getitem__(self, i: int) -> Submission: ...
    @overload
    def __getitem__(self, i: slice) -> list[Submission]: ...

    def __getitem__(self, i: int | slice) -> Submission | list[Submission]:
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        sub = self._subs[i]   # IndexError past the end, as a list says (it ends iteration)
        if sub is None:
            tid, file, data = self._checked[i]
            if tid not in self._manifests:
                self._manifests[tid] = _parsed(file, tid, data)
            manifest, text = self._manifests[tid]
            sub = self._subs[i] = Submission(manifest, text, self.results_uri, self.timeout_s)
        return sub


def queue_order(plan: Plan) -> dict[str, tuple[int, int, int]]:
    """The order trials wait to run in, the same live and on a re-apply: a higher rung first (a config
    promoted by asynchronous halving runs before the rest of a cheaper rung), then an earlier round, then
    plan order. A plan without rounds runs in plan order."""
    where: dict[str, tuple[int, int]] = {}
    for r in plan.rounds or []:
        for tid in r["trials"]:
            where[tid] = (-int(r.get("rung", 0)), int(r["round"]))
    return {tid: (*where.get(tid, (0, 0)), i) for i, tid in enumerate(plan.trials)}


def load_plan(path: str | Path, parse: bool = True) -> LoadedPlan:
    """The plan at `path`: UserError if it is missing, not a plan, or a manifest is missing or edited.
    `parse=False` (a reader such as `hpt status`, which needs what plan.json records, not each manifest):
    every manifest is read and checked against its digest, none is parsed, and there are no submissions."""
    root = Path(path)
    hint = "compile one with `hpt compile SPEC --out DIR`"
    if not root.exists():
        raise UserError("plan folder does not exist", where=str(root), hint=hint)
    if not root.is_dir():
        raise UserError(f"not a plan folder (expected a folder holding {PLAN_FILE} and {TRIALS_DIR}/)", where=str(root), hint=hint)
    if not (root / PLAN_FILE).exists():
        raise UserError(f"no {PLAN_FILE} in this folder", where=str(root), hint=hint)
    plan = Plan.load(root)
    trials = os.path.join(root, TRIALS_DIR)   # strings, not Paths: a big plan has 20,000 of them
    present = _files_in(trials)
    missing = [t for t in plan.trials if f"{t}.json" not in present]
    if missing:
        raise UserError(f"{len(missing)} trial manifest(s) listed in {PLAN_FILE} are missing, e.g. {missing[0]}.json",
                        where=str(root / TRIALS_DIR), hint="recompile the spec")
    with FolderReader(trials) as folder:
        if not parse:
            for tid in plan.trials:
                _checked_bytes(root, plan, tid, folder)   # checked, not kept
            return LoadedPlan(path=root, plan=plan, submissions=Submissions([]), parsed=False)
        return LoadedPlan(path=root, plan=plan, submissions=Submissions([_checked_bytes(root, plan, tid, folder)
                                                                         for tid in plan.trials]))


def _files_in(folder: str) -> set[str]:
    """The names in `folder` that os.path.isfile would call files (a link: where it points), from one listing."""
    try:
        with os.scandir(folder) as entries:
            return {e.name for e in entries if e.is_file()}   # no stat but for a link (the listing's d_type)
    except OSError:   # none, not a folder, not readable: every manifest is missing, as isfile would say
        return set()


def _checked_bytes(root: Path, plan: Plan, tid: str, folder: FolderReader) -> tuple[str, str, bytes]:
    """(the trial id, its manifest file's path, its bytes), which hash to what plan.json recorded; else UserError.
    `folder`: the plan's trials/, opened once for all its manifests."""
    file = os.path.join(root, TRIALS_DIR, f"{tid}.json")   # manifest_path(root, tid), as a string
    try:
        data = folder.read(f"{tid}.json", limit=MAX_MANIFEST_BYTES)
    except FileNotFoundError:
        raise UserError(f"trial manifest {tid}.json listed in {PLAN_FILE} is missing", where=str(root / TRIALS_DIR),
                        hint="recompile the spec") from None
    except OSError as err:
        raise UserError(f"cannot read the trial manifest: {err.strerror}", where=str(file)) from None
    if manifest_digest(data) != plan.digests[tid]:
        raise UserError(f"manifest differs from what {PLAN_FILE} recorded when it was compiled; manifests are "
                        "immutable", where=str(file), hint="recompile the spec instead of editing a manifest")
    return tid, file, data


def _parsed(file: str, tid: str, data: bytes) -> tuple[TrialManifest, str]:
    """The manifest's typed view and its text; UserError if it is not a manifest, or another trial's."""
    try:
        text = data.decode("utf-8")
        manifest = TrialManifest.compiled(text)
    except (ValueError, KeyError, TypeError, AttributeError, RecursionError) as err:
        raise UserError(f"not a trial manifest ({type(err).__name__})", where=str(file), hint="recompile the spec") from None
    if manifest.id != tid:  # another trial's bytes under this name (and its digest written into plan.json)
        raise UserError(f"the manifest's id is {manifest.id!r}, not {tid}, the trial {PLAN_FILE} lists under this "
                        "name", where=str(file), hint="recompile the spec into a fresh folder")
    return manifest, text
