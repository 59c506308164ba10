"""Did the winner hold? The confirmation round (compiler/confirm.py) retrained the search's top configs on
a window no decision read; this reads its rows and says whether the winner still wins there.

- rank: the winner's place among the confirmed configs on the new window (1: it held);
- margin: how much better than the best other confirmed config it is there, relative (negative: worse);
- sign test: the winner against the runner-up over every window both were measured on at the confirmed
  fidelity, the new one included (two-sided exact binomial over the windows where they differ).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from hpt.results.compare import _sign_test
from hpt.results.table import Objective, ResultTable


@dataclass(frozen=True)
class Confirmation:
    window: str                    # train start..end of the untouched window
    configs: list[str]             # the confirmed configs, in their tuning rank
    labels: dict[str, str]
    values: dict[str, float]       # objective on the new window (mean over repeats); missing: not finished
    rank: int | None               # the winner's rank there (None: it has no result there)
    margin: float | None           # relative: (best other − winner) / |best other|, sign per goal (> 0: winner better)
    wins: int                      # windows where the winner beat the runner-up
    windows: int                   # windows both were measured on (the new one included)
    sign_p: float | None

    @property
    def winner(self) -> str:
        return self.configs[0]

    @property
    def held(self) -> bool:
        return self.rank == 1

    def sentence(self, metric: str) -> str:
        label = self.labels.get(self.winner, self.winner)
        if self.rank is None:
            return f"The winner {label} has no result on the untouched window {self.window} yet."
        verdict = "held" if self.held else "did not hold"
        margin = "" if self.margin is None else f", {abs(self.margin):.2%} {'better' if self.margin >= 0 else 'worse'} than the best other"
        sign = "" if self.sign_p is None else f"; against the runner-up it won {self.wins} of {self.windows} windows (sign test p = {self.sign_p:.3g})"
        return (f"The winner {label} {verdict} on the untouched window {self.window}: rank {self.rank} of "
                f"{len(self.values)} by {metric}{margin}{sign}.")

    def to_dict(self) -> dict[str, Any]:
        return {"window": self.window, "winner": self.winner, "held": self.held, "rank": self.rank, "margin": self.margin,
                "wins": self.wins, "windows": self.windows, "sign_p": self.sign_p,
                "values": {self.labels.get(c, c): v for c, v in self.values.items()}}


def confirmation(table: ResultTable, obj: Objective) -> Confirmation | None:
    """The confirmation round's verdict, or None when the store's rounds have none."""
    round_ = next((r for r in table.rounds if r.get("confirm")), None)
    if round_ is None or table.done.empty or obj.metric not in table.done.columns:
        return None
    configs = [p["config"] for p in round_.get("ranked", [])] or list(round_["configs"])
    done = table.done
    new_trials = set(round_["trials"])
    sign = 1 if obj.goal == "minimize" else -1
    fresh = done[done["trial_id"].isin(new_trials)]
    values = {c: float(v) for c, v in fresh.groupby("config_id")[obj.metric].mean().items() if c in configs}
    window = f"{round_['window']['train'][0]}..{round_['window']['train'][1]}"
    rank = margin = None
    winner = configs[0]
    if winner in values:
        ordered = sorted(values, key=lambda c: (sign * values[c], c))
        rank = ordered.index(winner) + 1
        others = [values[c] for c in ordered if c != winner]
        if others:
            best_other = others[0]
            margin = sign * (best_other - values[winner]) / abs(best_other) if best_other else None
    wins = windows = 0
    sign_p = None
    if len(configs) > 1:
        fidelity = round_.get("fidelity") or ""
        pool = done if "fidelity" not in done.columns else done[done["fidelity"].fillna("").astype(str) == fidelity]
        pool = pool[pool["config_id"].isin(configs[:2])]
        per = pool.groupby(["train_start", "config_id"])[obj.metric].mean().unstack()
        if winner in per.columns and configs[1] in per.columns:
            both = per[[winner, configs[1]]].dropna()
            diffs = [sign * (b - a) for a, b in zip(both[winner], both[configs[1]])]   # > 0: the winner better
            windows, wins = len(diffs), sum(d > 0 for d in diffs)
            sign_p = _sign_test(diffs)
    labels = dict(round_.get("labels", {}))
    return Confirmation(window=window, configs=configs, labels=labels, values=values, rank=rank, margin=margin,
                        wins=wins, windows=windows, sign_p=sign_p)
