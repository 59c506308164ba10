"""none: every config runs at the spec's budget (or at each of its fidelities); an adaptive proposer
(tpe) is asked for its next batch once every trial of the earlier rounds is done."""
from __future__ import annotations

from hpt.compiler.decisions import Proposal
from hpt.compiler.schedulers import Context, Scheduler, ask_proposer


class NoScheduler(Scheduler):
    name = "none"

    def decide(self, ctx: Context) -> Proposal | None:
        manifests = ctx.manifests()
        return ask_proposer(ctx, manifests, manifests, None, {})
