"""Schedulers: what a search does with the configs a proposer gives (Ray Tune's TrialSchedulers, Optuna's
pruners), each one module here found by its `name` (the spec's `search.scheduler`).

A scheduler decides the plan's rounds: round 1's fidelity at compile (`first_fidelities`), and at apply
each later round (`decide`): promotions to a higher fidelity, or more configs asked of an adaptive
proposer. A decision is a Proposal that compiler/rounds.py records as a round of immutable manifests
before its trials start; it is a pure function of the plan and the rows it reads.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Mapping, Sequence

from hpt.compiler.decisions import Proposal, round_manifests, score, tuned_key
from hpt.compiler.fidelities import Fidelity
from hpt.compiler.proposers import Proposer
from hpt.compiler.registry import Registry
from hpt.schemas.plan import Plan


@dataclass(frozen=True)
class Context:
    """What a decision may read: the plan as recorded, its folder (the manifests), the rows, the proposer."""
    plan: Plan
    plan_dir: Path
    rows: Mapping[str, Mapping[str, Any]]
    proposer: Proposer
    parallel: int | None = None

    @property
    def rounds(self) -> list[dict[str, Any]]:
        """The search's rounds: all but a confirmation round (compiler/confirm.py), which no decision reads."""
        return [r for r in self.plan.rounds if not r.get("confirm")]

    def manifests(self, rounds: Sequence[Mapping[str, Any]] | None = None) -> list[dict[str, Any]]:
        return [m for r in (self.rounds if rounds is None else rounds) for m in round_manifests(self.plan_dir, r)]


class Scheduler:
    name: ClassVar[str] = ""
    settings_keys: ClassVar[tuple[str, ...]] = ()   # spec keys under search that only this scheduler reads
    needs_fidelities: ClassVar[bool] = False

    def __init_subclass__(cls, **kw: Any) -> None:
        super().__init_subclass__(**kw)
        SCHEDULERS.add(cls)

    def check(self, search: Mapping[str, Any], doc: Mapping[str, Any]) -> None:
        """Refuse settings this scheduler cannot run (a UserError naming the key); called once, at compile."""

    def first_fidelities(self, fidelities: tuple[Fidelity, ...]) -> tuple[Fidelity, ...]:
        """The fidelities round 1 runs each config at."""
        return fidelities

    def first_round(self, configs: list[str], trials: list[str], fidelities: tuple[Fidelity, ...]) -> dict[str, Any]:
        return {"round": 1, "fidelity": "", "configs": configs, "trials": trials}

    def decide(self, ctx: Context) -> Proposal | None:
        """The next round, or None: nothing to decide now."""
        return None


def ask_proposer(ctx: Context, pool: list[dict[str, Any]], told: list[dict[str, Any]], fidelity: Fidelity | None,
                 record: Mapping[str, Any]) -> Proposal | None:
    """More configs from an adaptive proposer at `fidelity`, told the scores of `told` (manifests at one
    fidelity, every trial finished), never one of `pool` (the configs already run at `fidelity`); None once
    the proposer's budget is spent."""
    proposer, plan = ctx.proposer, ctx.plan
    if not proposer.adaptive:
        return None
    asked = len({m["config"] for m in pool})
    budget = proposer.budget(plan)
    if asked >= budget:
        return None
    scores = score(told, ctx.rows, plan.spec["objective"])
    if scores is None:
        return None
    params = {m["config"]: m["params"] for m in told + pool}
    history = [(params[c], scores[c]) for c in sorted(scores)]
    taken = {tuned_key(plan, m["params"]) for m in pool}
    batch = proposer.batch(plan, ctx.parallel)
    configs = proposer.propose(plan, history, taken, min(batch, budget - asked), plan.rounds[-1]["round"] + 1,
                               pool[0]["params"])
    if not configs:
        return None
    return Proposal(configs=configs, fidelity=fidelity, record={**record, "told": len(history), "batch": batch})


SCHEDULERS: Registry[Scheduler] = Registry(__name__, "scheduler")
