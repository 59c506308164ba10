"""Read a compiled plan folder into what the loop submits.

plan.json (hpt.schemas.plan.Plan) names the trials in the order they run and the digest of each manifest
file; a manifest whose bytes do not match is refused, so what runs is what was compiled and reviewed.
Each manifest goes to the backend byte for byte, with its typed view (TrialManifest) for image,
resources and cluster settings.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path

from hpt.executor.backend import Submission
from hpt.schemas.errors import UserError
from hpt.schemas.files import read_regular
from hpt.schemas.manifest import TrialManifest
from hpt.schemas.plan import PLAN_FILE, TRIALS_DIR, Plan, manifest_digest

MAX_MANIFEST_BYTES = 16 << 20   # a manifest is a few KB; a bigger file is not one, and is never read whole


@dataclass(frozen=True)
class LoadedPlan:
    """A plan read from its folder: its index and one submission per trial, in the plan's order."""
    path: Path
    plan: Plan
    submissions: list[Submission]
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
        return [s.trial_id for s in self.submissions] if self.parsed else list(self.plan.trials)

    def with_results(self, results_uri: str, timeout_s: float | None = None) -> "LoadedPlan":
        """The same plan with every submission pointed at a results store (and a timeout)."""
        subs = [replace(s, results_uri=results_uri, timeout_s=timeout_s) for s in self.submissions]
        return LoadedPlan(self.path, self.plan, subs, timeout_s)

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
        uri = self.submissions[0].results_uri if self.submissions else ""
        added = [replace(_submission(self.path, plan, t), results_uri=uri, timeout_s=self.timeout_s) for t in trial_ids]
        return LoadedPlan(self.path, plan, self.submissions + added, self.timeout_s)


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
    missing = [t for t in plan.trials if not os.path.isfile(os.path.join(trials, f"{t}.json"))]
    if missing:
        raise UserError(f"{len(missing)} trial manifest(s) listed in {PLAN_FILE} are missing, e.g. {missing[0]}.json",
                        where=str(root / TRIALS_DIR), hint="recompile the spec")
    if not parse:
        for tid in plan.trials:
            _checked_bytes(root, plan, tid)
        return LoadedPlan(path=root, plan=plan, submissions=[], parsed=False)
    return LoadedPlan(path=root, plan=plan, submissions=[_submission(root, plan, tid) for tid in plan.trials])


def _checked_bytes(root: Path, plan: Plan, tid: str) -> tuple[str, bytes]:
    """(the manifest file's path, its bytes), which hash to what plan.json recorded; else UserError."""
    file = os.path.join(root, TRIALS_DIR, f"{tid}.json")   # manifest_path(root, tid), as a string
    try:
        data = read_regular(file, limit=MAX_MANIFEST_BYTES)
    except FileNotFoundError:
        raise UserError(f"trial manifest {tid}.json listed in {PLAN_FILE} is missing", where=str(root / TRIALS_DIR),
                        hint="recompile the spec") from None
    except OSError as err:
        raise UserError(f"cannot read the trial manifest: {err.strerror}", where=str(file)) from None
    if manifest_digest(data) != plan.digests[tid]:
        raise UserError(f"manifest differs from what {PLAN_FILE} recorded when it was compiled; manifests are "
                        "immutable", where=str(file), hint="recompile the spec instead of editing a manifest")
    return file, data


def _submission(root: Path, plan: Plan, tid: str) -> Submission:
    file, data = _checked_bytes(root, plan, tid)
    try:
        text = data.decode("utf-8")
        manifest = TrialManifest.compiled(text)
    except (ValueError, KeyError, TypeError, AttributeError, RecursionError) as err:
        raise UserError(f"not a trial manifest ({type(err).__name__})", where=str(file), hint="recompile the spec") from None
    if manifest.id != tid:  # another trial's bytes under this name (and its digest written into plan.json)
        raise UserError(f"the manifest's id is {manifest.id!r}, not {tid}, the trial {PLAN_FILE} lists under this "
                        "name", where=str(file), hint="recompile the spec into a fresh folder")
    return Submission(manifest, text, results_uri="")
