"""halving: successive halving over the spec's fidelities, the decisions that promote configs up the rungs
(compiler/rounds.py records them).

A halving plan starts with round 1: every config of the proposer (a grid, random draws, or tpe's first
batch: BOHB, more batches following as the cheapest rung finishes) at the cheapest fidelity (the spec's first, rung 0). Rung k has n_k configs entering (n_0: round 1's, then
n_{k+1} = max(1, ⌊n_k/η⌋): `rung_sizes`, the budget's worst case). A config is finished at a rung when
every one of its trials there (date ranges × repeats) is done; its score is the objective averaged
over them, so a config must be good across windows, not on one. Ties go to the smaller config id.

- async (`search.promotion`, the default; ASHA's rule, bounded): with m configs finished at rung k,
  `slots(m)` of its n_{k+1} promotions are open — slot i once m ≥ ⌈i·n_k/n_{k+1}⌉, so the last opens when
  the rung is complete and its best config is always promoted. While fewer are promoted than open, the
  best finished config not yet promoted moves up; the promotions of one decision at one rung form one
  round. A promotion needs no other config to finish, so the next fidelity starts while the cheaper rung
  still runs. Which configs had finished when a decision was made depends on the order trials finish
  in: the decision is recorded in plan.json before its trials start and never decided again, and with
  `hpt apply --parallel 1` a run (and a run resumed after kill -9) is reproducible exactly.
- sync: a rung is decided when all of it is done: its best ⌊n/η⌋ (at least one) move up in one round,
  a pure function of the plan and the rows, whatever the order trials finished in.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Iterable, Mapping

from hpt.compiler.dates import Window
from hpt.compiler.decisions import Proposal, finished_scores, round_manifests, score
from hpt.compiler.fidelities import Fidelity, continued
from hpt.compiler.schedulers import Context, Scheduler, ask_proposer
from hpt.schemas.errors import UserError
from hpt.schemas.plan import Plan

HALVING = "halving"
ASYNC, SYNC = "async", "sync"


def rung_sizes(configs: int, eta: int, rungs: int) -> list[int]:
    """Configs at each rung: n, ⌊n/η⌋, ⌊n/η²⌋ … (at least one each)."""
    sizes = [configs]
    for _ in range(rungs - 1):
        sizes.append(max(1, sizes[-1] // eta))
    return sizes


def budget(configs: int, eta: int, fidelities: Iterable[Fidelity], windows: list[Window], repeats: int,
           continuing: bool = False) -> list[dict[str, Any]]:
    """Per rung: its fidelity, configs, trials, and its compute in epoch-months (epochs × months of
    training data, summed over trials) — what the whole search costs at most, before anything runs. No
    windows (trainer.windows is false): one trial per config × repeat.
    `continuing` (search.continue): a rung that differs from the one below only in epochs continues from
    its checkpoints, so its `epoch_months` counts only the epochs added; `continued` names the lower rung
    and `saved` is what retraining from scratch would have cost on top."""
    fidelities = list(fidelities)
    out = []
    for k, (fid, n) in enumerate(zip(fidelities, rung_sizes(configs, eta, len(fidelities)))):
        months = sum(_months(fid.window(w)) for w in windows) * repeats
        lower = continued(fidelities, k) if continuing else None
        rung = {"fidelity": fid.name, "months": fid.months, "epochs": fid.epochs, "configs": n,
                "trials": n * max(1, len(windows)) * repeats, "epoch_months": n * months * fid.epochs}
        if lower is not None:
            rung |= {"continued": lower.name, "saved": n * months * lower.epochs,
                     "epoch_months": n * months * (fid.epochs - lower.epochs)}
        out.append(rung)
    return out


def _months(window: Window) -> int:
    return (window.train_end.year - window.train_start.year) * 12 + window.train_end.month - window.train_start.month


def first_round(configs: list[str], trials: list[str], fidelity: Fidelity) -> dict[str, Any]:
    return {"round": 1, "rung": 0, "fidelity": fidelity.name, "configs": configs, "trials": trials}


def promote(scores: Mapping[str, float], goal: str, eta: int) -> list[dict[str, Any]]:
    """The best ⌊n/η⌋ configs (at least one), best first; ties go to the smaller config id."""
    sign = 1 if goal == "minimize" else -1
    ranked = sorted(scores, key=lambda c: (sign * scores[c], c))
    keep = max(1, len(ranked) // eta)
    return [{"config": c, "rank": i + 1, "score": scores[c] if math.isfinite(scores[c]) else None}
            for i, c in enumerate(ranked[:keep])]


def slots(finished: int, entering: int, cap: int) -> int:
    """Promotions open at a rung of `entering` configs, `finished` of them finished, `cap` allowed up:
    slot i opens once finished ≥ ⌈i·entering/cap⌉ (the last when the rung is complete)."""
    return sum(1 for i in range(1, cap + 1) if finished >= -(-i * entering // cap))


def promote_async(scores: Mapping[str, float], promoted: set[str], entering: int, cap: int, goal: str) -> list[dict[str, Any]]:
    """The promotions one async decision adds at a rung: the best finished configs not yet promoted,
    until as many are promoted as slots are open. Rank: place among the rung's finished configs."""
    sign = 1 if goal == "minimize" else -1
    ranked = sorted(scores, key=lambda c: (sign * scores[c], c))
    wanted = slots(len(scores), entering, cap) - len(promoted)
    out = []
    for rank, config in enumerate(ranked, start=1):
        if len(out) >= wanted:
            break
        if config not in promoted:
            out.append({"config": config, "rank": rank, "score": scores[config] if math.isfinite(scores[config]) else None})
    return out


def _fidelities(plan: Plan) -> list[Fidelity]:
    return [Fidelity(f["name"], f["months"], f["epochs"]) for f in plan.spec["fidelities"]]


class Halving(Scheduler):
    name = HALVING
    settings_keys = ("eta", "promotion", "min_configs", "continue")
    needs_fidelities = True

    def check(self, search: Mapping[str, Any], doc: Mapping[str, Any]) -> None:
        if not doc.get("fidelities"):
            missing = UserError("halving needs the spec's fidelities (its rungs, cheapest first)",
                                where="search.scheduler" if "scheduler" in search else "search.method",
                                hint='list them: "fidelities": [{"months": 1, "epochs": 3}, {"months": 3, "epochs": 10}]')
            missing.about = "fidelities"  # type: ignore[attr-defined]  (absent, or refused by the schema: said there)
            raise missing
        if "min_configs" in search and "trials" in search and search["trials"] != search["min_configs"]:
            raise UserError(f"min_configs ({search['min_configs']}) and trials ({search['trials']}) are one setting "
                            "for halving and differ", where="search.min_configs", hint="give one of them")

    def first_fidelities(self, fidelities: tuple[Fidelity, ...]) -> tuple[Fidelity, ...]:
        return fidelities[:1]   # round 1 runs at the cheapest fidelity; later rungs are decided at apply

    def first_round(self, configs: list[str], trials: list[str], fidelities: tuple[Fidelity, ...]) -> dict[str, Any]:
        return first_round(configs, trials, fidelities[0])

    def decide(self, ctx: Context) -> Proposal | None:
        """Promotions first (the next fidelity of configs already measured), then, with an adaptive proposer
        (BOHB: tpe + halving), more configs at the cheapest rung once every trial there has finished."""
        plan = ctx.plan
        # A plan compiled before `promotion` existed recorded none: its rungs were synchronous.
        asynchronous = plan.spec["search"].get("promotion", SYNC) == ASYNC
        at_rung = _rungs(ctx)
        promoted = _decide_async(plan, at_rung, ctx.rows) if asynchronous else _decide_sync(ctx, at_rung)
        if promoted is not None:
            return promoted
        if score(at_rung[0], ctx.rows, plan.spec["objective"]) is None:
            return None   # the next batch waits for the cheapest rung's results (one batch in flight at a time)
        return ask_proposer(ctx, at_rung[0], _told(ctx, at_rung), _fidelities(plan)[0], {"rung": 0})


def _rungs(ctx: Context) -> dict[int, list[dict[str, Any]]]:
    at_rung: dict[int, list[dict[str, Any]]] = {0: []}
    for r in ctx.rounds:
        at_rung.setdefault(r["rung"], []).extend(round_manifests(ctx.plan_dir, r))
    return at_rung


def _told(ctx: Context, at_rung: Mapping[int, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """What the proposer learns from (BOHB's rule): the highest rung with enough finished configs to model
    (one more than the tuned hyperparameters), else the cheapest rung, where every config has run."""
    enough = len(ctx.plan.spec["parameters"]) + 1
    for k in sorted(at_rung, reverse=True):
        manifests = at_rung[k]
        if k and len(finished_scores(manifests, ctx.rows, ctx.plan.spec["objective"])) >= enough:
            return [m for m in manifests if m["config"] in finished_scores(manifests, ctx.rows, ctx.plan.spec["objective"])]
    return at_rung[0]


def _sizes(plan: Plan) -> list[int]:
    """Configs entering each rung at most: the budget compile recorded (a grid's size, or tpe's trials)."""
    return [r["configs"] for r in (plan.halving or {})["rungs"]]


def _decide_async(plan: Plan, at_rung: Mapping[int, list[dict[str, Any]]], rows: Mapping[str, Mapping[str, Any]]) -> Proposal | None:
    """The lowest rung with a promotion slot open and a finished config to fill it (one round)."""
    spec = plan.spec
    fidelities = _fidelities(plan)
    sizes = _sizes(plan)
    for k in range(len(fidelities) - 1):
        manifests = at_rung.get(k, [])
        if not manifests:
            break   # nothing reached this rung yet, so nothing above it either
        scores = finished_scores(manifests, rows, spec["objective"])
        promoted = {m["config"] for m in at_rung.get(k + 1, [])}
        chosen = promote_async(scores, promoted, sizes[k], sizes[k + 1], spec["objective"]["goal"])
        if chosen:
            params = {m["config"]: m["params"] for m in manifests}
            return Proposal(configs=[dict(params[p["config"]]) for p in chosen], fidelity=fidelities[k + 1],
                            record={"rung": k + 1, "promoted": chosen, "scored": len(scores), "promotion": ASYNC},
                            continue_from=_continues(plan, fidelities, k + 1))
    return None


def _decide_sync(ctx: Context, at_rung: Mapping[int, list[dict[str, Any]]]) -> Proposal | None:
    """The next rung's configs (the best 1/eta of a complete rung) and its fidelity, or None: the highest
    rung reached is not complete (not all done, or an adaptive proposer still has configs to give), or it
    was the top rung."""
    plan = ctx.plan
    spec = plan.spec
    fidelities = _fidelities(plan)
    k = max(at_rung)
    if k + 1 >= len(fidelities):
        return None
    manifests = at_rung[k]
    if k == 0 and ctx.proposer.adaptive and len({m["config"] for m in manifests}) < ctx.proposer.budget(plan):
        return None   # the cheapest rung is filled in batches: complete once the proposer's budget is spent
    scores = score(manifests, ctx.rows, spec["objective"])
    if scores is None:
        return None
    promoted = promote(scores, spec["objective"]["goal"], spec["search"]["eta"])
    params = {m["config"]: m["params"] for m in manifests}
    return Proposal(configs=[dict(params[p["config"]]) for p in promoted], fidelity=fidelities[k + 1],
                    record={"rung": k + 1, "promoted": promoted, "scored": len(scores), "promotion": SYNC},
                    continue_from=_continues(plan, fidelities, k + 1))


def _continues(plan: Plan, fidelities: list[Fidelity], k: int) -> Fidelity | None:
    """The rung rung k's trials continue from: search.continue as compile recorded it (absent in plans compiled
    before it: they restart) and the rungs differing only in epochs (compiler/fidelities.continues)."""
    return continued(fidelities, k) if plan.spec["search"].get("continue") else None
