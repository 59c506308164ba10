"""Which config wins, and is it real? Trials of one config compared across date ranges (and repeats).

The seed's test of "real": train the same config on several date ranges; a config that beats every
other on every range is trusted. Here, per config: the objective on each range (mean over repeats),
its rank there, the mean and mean rank, wins on k of n ranges, a mark when it is strictly best on
every range, and a paired test against the overall best (sign test, exact binomial; Wilcoxon
signed-rank) over the (range, repeat) pairs both have. `notes()` says in words what n pairs can show.
"""
from __future__ import annotations

import math
from functools import lru_cache
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from hpt.results.table import Objective, ResultTable, config_labels

if TYPE_CHECKING:
    import pandas as pd

ALPHA = 0.05


@dataclass
class ConfigResult:
    config: str
    label: str
    architecture: str
    per_range: dict[str, float]          # range → objective (mean over repeats)
    ranks: dict[str, int]                # range → rank among configs on that range (1 = best; ties share)
    mean: float
    mean_rank: float
    n_ranges: int                        # ranges this config has results on
    wins: int                            # ranges where it is strictly best
    tied_best: int                       # ranges where it shares the best value
    best_everywhere: bool                # strictly best on every range of the store (needs ≥ 2 ranges)
    n_trials: int
    n_pairs: int = 0                     # paired (range, repeat) results shared with the best config
    best_better: int = 0                 # pairs where the best config did better
    sign_p: float | None = None          # two-sided exact binomial sign test vs the best
    wilcoxon_p: float | None = None      # two-sided Wilcoxon signed-rank vs the best
    params: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, float | None] = field(default_factory=dict)  # other chosen metrics: mean over the config's trials

    def record(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Comparison:
    objective: Objective
    ranges: list[str]
    configs: list[ConfigResult]          # best first
    n_failed: int = 0

    @property
    def best(self) -> ConfigResult | None:
        return self.configs[0] if self.configs else None

    def notes(self) -> list[str]:
        return explain(self)

    def record(self) -> dict[str, Any]:
        return {"objective": {"metric": self.objective.metric, "goal": self.objective.goal},
                "ranges": self.ranges, "configs": [c.record() for c in self.configs],
                "best": self.best.config if self.best else None, "failed_trials": self.n_failed,
                "notes": self.notes()}


def min_two_sided_p(n: int) -> float:
    """Smallest two-sided p an exact sign test (or exact Wilcoxon) can give with n non-zero pairs."""
    return 1.0 if n <= 0 else min(1.0, 2.0 * 0.5 ** n)


def pairs_needed(alpha: float = ALPHA) -> int:
    """Fewest pairs, all in one direction, for p < alpha (6 for 0.05)."""
    n = 1
    while min_two_sided_p(n) >= alpha:
        n += 1
    return n


@lru_cache(maxsize=None)
def _binomial_p(k: int, n: int) -> float:
    from scipy.stats import binomtest

    return float(binomtest(k, n, 0.5, alternative="two-sided").pvalue)


def _sign_test(diffs: list[float]) -> float | None:
    nonzero = [d for d in diffs if d != 0]
    if not nonzero:
        return None
    return _binomial_p(sum(d > 0 for d in nonzero), len(nonzero))


@lru_cache(maxsize=None)
def _wilcoxon_signed_ranks(signed_ranks: tuple[float, ...]) -> float | None:
    from scipy.stats import wilcoxon

    try:
        return float(wilcoxon(signed_ranks, alternative="two-sided").pvalue)
    except ValueError:
        return None


def _wilcoxon(diffs: list[float]) -> float | None:
    """Wilcoxon signed-rank p. It depends only on the signed ranks of the differences, so results are
    cached by those: hundreds of configs over a few ranges share a handful of patterns."""
    from scipy.stats import rankdata

    nonzero = [d for d in diffs if d != 0]
    if len(nonzero) < 2:  # one pair carries no rank information
        return None
    ranks = rankdata([abs(d) for d in nonzero])
    return _wilcoxon_signed_ranks(tuple(sorted(float(r) if d > 0 else -float(r) for r, d in zip(ranks, nonzero))))


def _pair_values(done: "pd.DataFrame", metric: str) -> dict[str, dict[tuple[str, Any], float]]:
    """config → {(range, repeat): objective}; trials of the same range and repeat index are paired."""
    cols = ["config", "range"] + (["repeat"] if "repeat" in done.columns else [])
    grouped = done.groupby(cols, dropna=False)[metric].mean()
    out: dict[str, dict[tuple[str, Any], float]] = {}
    for key, value in grouped.items():
        config, rng = key[0], key[1]
        repeat = key[2] if len(key) > 2 else 0
        if value == value:
            out.setdefault(config, {})[(rng, repeat)] = float(value)
    return out


def _mean_or_none(means, config: str, metric: str) -> float | None:
    if means is None or metric not in means.columns:
        return None
    value = means.at[config, metric]
    return None if value != value else float(value)


def compare(table: ResultTable, obj: Objective, metrics: list[str] | tuple[str, ...] = ()) -> Comparison:
    """Group finished trials by config and compare them across date ranges.

    `metrics`: other columns to summarise per config (mean over its finished trials), e.g. train_time_s.
    """
    done = table.finished(obj)
    if done.empty:
        return Comparison(objective=obj, ranges=[], configs=[], n_failed=len(table.failed))
    ranges = sorted(done["range"].unique().tolist())
    labels = config_labels(done, table.params)
    per = done.groupby(["config", "range"])[obj.metric].mean().unstack("range")  # configs × ranges
    ranks = per.rank(axis=0, method="min", ascending=obj.ascending)
    best_counts = (ranks == 1).sum(axis=0)  # per range: how many share rank 1

    sizes = done.groupby("config").size()
    firsts = done.drop_duplicates("config").set_index("config")  # one representative row per config
    param_cols = [c for c in done.columns if c.startswith("param.")]
    extra = [m for m in metrics if m != obj.metric and m in done.columns]
    means = done.groupby("config")[extra].mean(numeric_only=True) if extra else None
    results: list[ConfigResult] = []
    for config in per.index:
        values = {r: float(per.at[config, r]) for r in ranges if per.at[config, r] == per.at[config, r]}
        rk = {r: int(ranks.at[config, r]) for r in values}
        wins = sum(1 for r, k in rk.items() if k == 1 and best_counts[r] == 1)
        tied = sum(1 for r, k in rk.items() if k == 1 and best_counts[r] > 1)
        first = firsts.loc[config]
        params = {c: first[c] for c in param_cols}
        results.append(ConfigResult(
            config=config, label=labels.get(config, config), architecture=str(first.get("architecture") or ""),
            per_range=values, ranks=rk, mean=sum(values.values()) / len(values),
            mean_rank=sum(rk.values()) / len(rk), n_ranges=len(values), wins=wins, tied_best=tied,
            best_everywhere=len(ranges) >= 2 and wins == len(ranges), n_trials=int(sizes[config]),
            params={k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in params.items()},
            metrics={m: _mean_or_none(means, config, m) for m in extra}))

    sign = 1.0 if obj.ascending else -1.0
    # Complete configs first (a config seen on one lucky range must not top the list), then mean rank, mean.
    results.sort(key=lambda c: (c.n_ranges < len(ranges), c.mean_rank, sign * c.mean, c.label))

    if results:
        paired = _pair_values(done, obj.metric)
        best = results[0]
        for other in results[1:]:
            shared = sorted(set(paired.get(best.config, {})) & set(paired.get(other.config, {})), key=str)
            # positive difference = the best config did better on that pair
            diffs = [sign * (paired[other.config][k] - paired[best.config][k]) for k in shared]
            other.n_pairs = len(diffs)
            other.best_better = sum(d > 0 for d in diffs)
            other.sign_p = _sign_test(diffs)
            other.wilcoxon_p = _wilcoxon(diffs)
    return Comparison(objective=obj, ranges=ranges, configs=results, n_failed=len(table.failed))


def explain(cmp: Comparison) -> list[str]:
    """Plain words on what these ranges and pairs can and cannot show."""
    notes: list[str] = []
    n = len(cmp.ranges)
    m = sum(1 for c in cmp.configs if c.n_ranges == n)
    need = pairs_needed()
    if not cmp.configs:
        return [f"No finished trial yet ({cmp.n_failed} failed)." if cmp.n_failed else "No finished trial yet."]
    if n <= 1:
        notes.append("Only one date range: the ranking may be luck of that range. Run the configs that matter on "
                     "several ranges (spec `date-range` with several pairs) before trusting a winner.")
    else:
        marked = [c.label for c in cmp.configs if c.best_everywhere]
        if marked:
            notes.append(f"★ {', '.join(marked)}: strictly best on every one of the {n} ranges — the seed's test of 'real'.")
        else:
            notes.append(f"No config is best on all {n} ranges: the winner changes with the data window.")
        if m >= 2:
            chance = m ** (1 - n)
            notes.append(f"If all {m} configs seen on every range were equally good, one of them would win all {n} "
                         f"ranges by luck alone with probability about {m}^(1-{n}) = {chance:.2g}.")
    pairs = max((c.n_pairs for c in cmp.configs[1:]), default=0)
    if len(cmp.configs) >= 2 and pairs >= 2:
        floor = min_two_sided_p(pairs)
        if pairs < need:
            notes.append(f"Paired tests vs the best use at most {pairs} pair(s) (ranges × repeats): the smallest two-sided "
                         f"p a sign test can give is {floor:.3g}, so p < {ALPHA} is out of reach; it needs ≥ {need} pairs all "
                         f"in one direction (more ranges, or repeats with other seeds). A large p here means 'not enough "
                         f"data', not 'no difference'.")
        else:
            notes.append(f"Paired tests vs the best use up to {pairs} pairs (smallest possible two-sided p {floor:.3g}). "
                         f"The best was picked after looking at these same results, so its p-values are optimistic; "
                         f"with many configs, expect some p < {ALPHA} by chance (about {ALPHA:.0%} of comparisons).")
    if cmp.n_failed:
        notes.append(f"{cmp.n_failed} failed trial(s) are left out of the comparison (listed separately).")
    incomplete = [c for c in cmp.configs if c.n_ranges < n]
    if incomplete and n > 1:
        notes.append(f"{len(incomplete)} config(s) lack results on some ranges (run still going, or failed trials); "
                     f"they are listed after the complete ones and their mean rank covers only the ranges they have.")
    return notes
