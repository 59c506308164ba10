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

from hpt.results.table import NO_RANGE, Objective, ResultTable, config_labels, records

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

    @property
    def windowless(self) -> bool:
        """The trials have no dated windows (trainer.windows false): one unnamed range, the trainer's own split."""
        return self.ranges == [NO_RANGE]

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
    """scipy.stats.binomtest(k, n, 0.5).pvalue (two-sided), exactly: with p = 0.5 the outcomes as likely as
    k or less are the two tails min(k, n-k) deep. Plain integers: results never import scipy.stats (~0.5 s)."""
    tail = min(k, n - k)
    if 2 * tail == n:
        return 1.0
    return min(1.0, 2 * sum(math.comb(n, i) for i in range(tail + 1)) / 2 ** n)


def _sign_test(diffs: list[float]) -> float | None:
    nonzero = [d for d in diffs if d != 0]
    if not nonzero:
        return None
    return _binomial_p(sum(d > 0 for d in nonzero), len(nonzero))


EXACT_PERMUTATIONS = 13   # scipy's wilcoxon: with ties, every sign flip enumerated up to this many pairs
EXACT_MAX = 50            # ... and without, the exact null distribution up to this many


@lru_cache(maxsize=None)
def _wilcoxon_signed_ranks(signed_ranks: tuple[float, ...]) -> float | None:
    """scipy.stats.wilcoxon(signed_ranks, alternative="two-sided").pvalue of non-zero differences, as
    scipy 1.17's method "auto" computes it: the exact null distribution without ties (up to EXACT_MAX
    pairs); with ties, every sign flip up to EXACT_PERMUTATIONS pairs (its permutation test); the normal
    approximation (no continuity correction, scipy's default) beyond. Checked against scipy in tests/test_results_analysis.py."""
    n = len(signed_ranks)
    ranks = [abs(r) for r in signed_ranks]
    r_plus = sum(r for r in signed_ranks if r > 0)
    ties = len(set(ranks)) < n
    if n <= EXACT_MAX and (not ties or n <= EXACT_PERMUTATIONS):
        if not ties:   # integer ranks 1..n: the count of sign patterns for each rank sum
            counts = [1] + [0] * (n * (n + 1) // 2)
            for rank in range(1, n + 1):
                for total in range(len(counts) - 1, rank - 1, -1):
                    counts[total] += counts[total - rank]
            whole = 2 ** n
            le = sum(counts[:math.ceil(r_plus) + 1]) / whole
            ge = sum(counts[math.floor(r_plus):]) / whole
        else:          # every sign flip, as scipy's permutation test enumerates them
            sums = [0.0]
            for rank in ranks:
                sums = [s for base in sums for s in (base, base + rank)]
            gamma = abs(r_plus) * 100 * 2.220446049250313e-16
            whole = len(sums)
            le = sum(s <= r_plus + gamma for s in sums) / whole
            ge = sum(s >= r_plus - gamma for s in sums) / whole
        return min(1.0, max(0.0, 2 * min(le, ge)))
    mean = n * (n + 1) * 0.25
    counts = {}
    for r in ranks:
        counts[r] = counts.get(r, 0) + 1
    var = (n * (n + 1) * (2 * n + 1) - sum(t ** 3 - t for t in counts.values()) / 2) / 24
    if var <= 0:
        return None
    se = math.sqrt(var)
    z = (r_plus - mean) / se
    return math.erfc(abs(z) / math.sqrt(2))


def _wilcoxon(diffs: list[float]) -> float | None:
    """Wilcoxon signed-rank p. It depends only on the signed ranks of the differences, so results are
    cached by those: hundreds of configs over a few ranges share a handful of patterns."""
    nonzero = [d for d in diffs if d != 0]
    if len(nonzero) < 2:  # one pair carries no rank information
        return None
    ranks = _average_ranks([abs(d) for d in nonzero])
    return _wilcoxon_signed_ranks(tuple(sorted(r if d > 0 else -r for r, d in zip(ranks, nonzero))))


def _average_ranks(values: list[float]) -> list[float]:
    """scipy.stats.rankdata(values) (ties share their average rank) for the few pairs of one config,
    without scipy's per-call cost, which thousands of configs would pay."""
    order = sorted(range(len(values)), key=values.__getitem__)
    ranks = [0.0] * len(values)
    if len(set(values)) == len(values):   # no ties (the usual case): the rank is the place in the order
        for place, k in enumerate(order, 1):
            ranks[k] = float(place)
        return ranks
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2 + 1
        i = j + 1
    return ranks


def _pair_matrix(done: "pd.DataFrame", metric: str) -> "pd.DataFrame":
    """configs × (range, repeat): the objective (mean over trials); trials of the same range and repeat
    index are paired. NaN where a config has no result for that pair."""
    cols = ["config", "range"] + (["repeat"] if "repeat" in done.columns else [])
    return done.groupby(cols, dropna=False)[metric].mean().unstack(cols[1:])


def compare(table: ResultTable, obj: Objective, metrics: list[str] | tuple[str, ...] = ()) -> Comparison:
    """Group finished trials by config and compare them across date ranges.

    `metrics`: other columns to summarise per config (mean over its finished trials), e.g. train_time_s.
    Vectorised over configs (pandas/numpy): no pandas lookup per config.
    """
    import numpy as np

    done = table.finished(obj)
    if done.empty:
        return Comparison(objective=obj, ranges=[], configs=[], n_failed=len(table.failed))
    ranges = sorted(done["range"].unique().tolist())
    labels = config_labels(done, table.params)
    per = done.groupby(["config", "range"])[obj.metric].mean().unstack("range")[ranges]  # configs × ranges
    ranks = per.rank(axis=0, method="min", ascending=obj.ascending)
    best_counts = (ranks == 1).sum(axis=0).to_numpy()  # per range: how many share rank 1

    values = per.to_numpy(dtype=float)
    rank_values = ranks.to_numpy(dtype=float)
    present = ~np.isnan(values)
    first_rank = rank_values == 1
    wins = (first_rank & (best_counts == 1)).sum(axis=1)
    tied = (first_rank & (best_counts > 1)).sum(axis=1)
    sizes = done.groupby("config").size().to_dict()
    param_cols = [c for c in done.columns if c.startswith("param.")]
    firsts = done.drop_duplicates("config").set_index("config")  # one representative row per config
    params_of = dict(zip(firsts.index, records(firsts[param_cols]))) if param_cols else {}
    arch_of = dict(zip(firsts.index, firsts["architecture"].tolist())) if "architecture" in firsts.columns else {}
    extra = [m for m in metrics if m != obj.metric and m in done.columns]
    means_of = done.groupby("config")[extra].mean(numeric_only=True).to_dict("index") if extra else {}

    results: list[ConfigResult] = []
    # Whole matrices to Python lists once: indexing numpy one element at a time costs more than the rest.
    rows, rank_rows = values.tolist(), rank_values.tolist()
    win_list, tied_list = wins.tolist(), tied.tolist()
    n_all = len(ranges)
    for i, config in enumerate(per.index.tolist()):
        row = rows[i]
        if all(v == v for v in row):   # seen on every range (NaN != NaN)
            got = dict(zip(ranges, row))
            rk = dict(zip(ranges, map(int, rank_rows[i])))
        else:
            got = {r: v for r, v in zip(ranges, row) if v == v}
            rk = {r: int(k) for r, v, k in zip(ranges, row, rank_rows[i]) if v == v}
        arch = arch_of.get(config)
        params = params_of.get(config, {})
        results.append(ConfigResult(
            config=config, label=labels.get(config, config), architecture=str(arch or ""),
            per_range=got, ranks=rk, mean=sum(got.values()) / len(got),
            mean_rank=sum(rk.values()) / len(rk), n_ranges=len(got), wins=win_list[i], tied_best=tied_list[i],
            best_everywhere=n_all >= 2 and win_list[i] == n_all, n_trials=int(sizes[config]),
            params={k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in params.items()},
            metrics={m: _none_if_nan(means_of.get(config, {}).get(m)) for m in extra}))

    sign = 1.0 if obj.ascending else -1.0
    # Complete configs first (a config seen on one lucky range must not top the list), then mean rank, mean.
    results.sort(key=lambda c: (c.n_ranges < len(ranges), c.mean_rank, sign * c.mean, c.label))

    if len(results) > 1:
        pairs = _pair_matrix(done, obj.metric)
        matrix = pairs.to_numpy(dtype=float)
        row_of = {c: i for i, c in enumerate(pairs.index.tolist())}
        best = matrix[row_of[results[0].config]]
        diffs = sign * (matrix - best)   # positive: the best config did better on that pair
        shared = (~np.isnan(matrix) & ~np.isnan(best)).tolist()
        diff_rows = diffs.tolist()
        for other in results[1:]:
            i = row_of[other.config]
            d = [x for x, ok in zip(diff_rows[i], shared[i]) if ok]
            other.n_pairs = len(d)
            other.best_better = sum(x > 0 for x in d)
            other.sign_p = _sign_test(d)
            other.wilcoxon_p = _wilcoxon(d)
    return Comparison(objective=obj, ranges=ranges, configs=results, n_failed=len(table.failed))


def _none_if_nan(value: Any) -> float | None:
    if value is None or value != value:
        return None
    return float(value)


def explain(cmp: Comparison) -> list[str]:
    """Plain words on what these ranges and pairs can and cannot show."""
    notes: list[str] = []
    n = len(cmp.ranges)
    m = sum(1 for c in cmp.configs if c.n_ranges == n)
    need = pairs_needed()
    if not cmp.configs:
        return [f"No finished trial yet ({cmp.n_failed} failed)." if cmp.n_failed else "No finished trial yet."]
    if cmp.windowless:
        notes.append("No date ranges (the trainer splits its data itself): only repeats with other seeds (spec "
                     "`repeats`) can show that the ranking is not luck of one run.")
    elif n <= 1:
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
            pairs_of, more = ("repeats", "more repeats with other seeds") if cmp.windowless else \
                ("ranges × repeats", "more ranges, or repeats with other seeds")
            notes.append(f"Paired tests vs the best use at most {pairs} pair(s) ({pairs_of}): the smallest two-sided "
                         f"p a sign test can give is {floor:.3g}, so p < {ALPHA} is out of reach; it needs ≥ {need} pairs all "
                         f"in one direction ({more}). A large p here means 'not enough data', not 'no difference'.")
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
