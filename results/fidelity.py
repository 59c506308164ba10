"""Can quick mode be trusted? Rank agreement of the same configs at a low and a high fidelity.

The seed tuned its tuner this way: run the same configs with one month of data / few epochs and with
the full budget, and check that the cheap run ranks configs like the expensive one. Configs are
matched by config_id (architecture + params; the budget is not part of it), else by params. Each
config's score is its objective averaged over ranges and repeats in that store.

Two stores (a quick run and a full run), or one store whose rows carry several fidelities (a spec with
`fidelities`): then each fidelity is compared with the most expensive one (`ladder`).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from hpt.results.table import Objective, ResultTable, config_labels, varying_params
from hpt.schemas.errors import UserError

MIN_COMMON = 3


@dataclass
class Moved:
    config: str
    label: str
    low_rank: int
    high_rank: int
    low: float
    high: float

    @property
    def shift(self) -> int:
        return self.high_rank - self.low_rank


@dataclass
class Fidelity:
    objective: Objective
    n_low: int                   # configs in the low-fidelity store
    n_high: int
    n_common: int
    spearman: float | None       # None when one side has every score equal (no ranking to compare)
    spearman_p: float | None
    kendall: float | None
    kendall_p: float | None
    k: int
    top_low: list[str]
    top_high: list[str]
    overlap: int                 # |top-k(low) ∩ top-k(high)|
    moved: list[Moved] = field(default_factory=list)   # largest rank changes first
    best_low_rank_in_high: int | None = None           # where the quick run's winner lands in the full run

    def record(self) -> dict[str, Any]:
        rec = asdict(self)
        rec["objective"] = {"metric": self.objective.metric, "goal": self.objective.goal}
        rec["moved"] = [dict(asdict(m), shift=m.shift) for m in self.moved]
        return rec

    def verdict(self) -> str:
        if self.spearman is None:
            return "No ranking to compare (all scores equal on one side)."
        rho = self.spearman
        strength = "strong" if rho >= 0.8 else "moderate" if rho >= 0.5 else "weak" if rho >= 0.2 else "no"
        text = (f"{strength.capitalize()} agreement (Spearman {rho:.2f}, Kendall {self.kendall:.2f}) over "
                f"{self.n_common} common configs; top-{self.k} overlap {self.overlap}/{self.k}.")
        if self.n_common < 10:
            text += f" With only {self.n_common} configs the correlation itself is uncertain (p = {self.spearman_p:.2g})."
        return text


def _scores(table: ResultTable, obj: Objective) -> dict[str, float]:
    done = table.finished(obj)
    if done.empty:
        return {}
    return {k: float(v) for k, v in done.groupby("config")[obj.metric].mean().items()}


def _ranks(scores: dict[str, float], obj: Objective) -> dict[str, int]:
    order = sorted(scores, key=lambda c: (scores[c] if obj.ascending else -scores[c], c))
    return {c: i + 1 for i, c in enumerate(order)}


def _nan_to_none(x: float) -> float | None:
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else float(x)


# Up to 8 configs (40,320 orderings) the Spearman p-value is computed exactly: scipy's t approximation
# says p = 0 for a perfect agreement of 4 configs, where the truth is 2/24 ≈ 0.083.
EXACT_SPEARMAN_MAX_N = 8


def _spearman_exact_p(a: list[float], b: list[float]) -> float:
    """Two-sided permutation p-value of Spearman's rho, over every ordering of `b` (ties handled by mid-ranks)."""
    import itertools

    import numpy as np
    from scipy.stats import rankdata

    ra, rb = rankdata(a), rankdata(b)
    ra, rb = ra - ra.mean(), rb - rb.mean()
    norm = math.sqrt(float((ra ** 2).sum() * (rb ** 2).sum()))
    observed = abs(float(ra @ rb)) / norm
    perms = np.array(list(itertools.permutations(range(len(b)))))
    rhos = np.abs(rb[perms] @ ra) / norm
    return float(np.mean(rhos >= observed - 1e-12))


def fidelity(low: ResultTable, high: ResultTable, obj: Objective, k: int = 5, moved: int = 5,
             both: str = "in both stores") -> Fidelity:
    from scipy.stats import kendalltau, spearmanr

    lo, hi = _scores(low, obj), _scores(high, obj)
    common = sorted(set(lo) & set(hi))
    if len(common) < MIN_COMMON:
        raise UserError(f"only {len(common)} config(s) appear {both}; a rank correlation needs at least {MIN_COMMON}",
                        where=f"{low.uri} vs {high.uri}",
                        hint="run the same spec (same architecture and params) at both fidelities")
    lo_c = {c: lo[c] for c in common}
    hi_c = {c: hi[c] for c in common}
    a = [lo_c[c] for c in common]
    b = [hi_c[c] for c in common]
    constant = len(set(a)) < 2 or len(set(b)) < 2
    if constant:
        rho = rho_p = tau = tau_p = None
    else:
        r = spearmanr(a, b)
        t = kendalltau(a, b)
        rho, rho_p = _nan_to_none(r.statistic), _nan_to_none(r.pvalue)
        if rho is not None and len(common) <= EXACT_SPEARMAN_MAX_N:
            rho_p = _spearman_exact_p(a, b)
        tau, tau_p = _nan_to_none(t.statistic), _nan_to_none(t.pvalue)
    # Both metrics share a goal, so correlating raw scores = correlating ranks (same sign either way).
    rlo, rhi = _ranks(lo_c, obj), _ranks(hi_c, obj)
    k = max(1, min(k, len(common)))
    top_lo = [c for c in sorted(common, key=rlo.get)][:k]
    top_hi = [c for c in sorted(common, key=rhi.get)][:k]
    labels = config_labels(low.done, low.params) | {c: l for c, l in config_labels(high.done, high.params).items()}
    movers = sorted((Moved(c, labels.get(c, c), rlo[c], rhi[c], lo_c[c], hi_c[c]) for c in common),
                    key=lambda m: (-abs(m.shift), m.low_rank))
    return Fidelity(objective=obj, n_low=len(lo), n_high=len(hi), n_common=len(common), spearman=rho,
                    spearman_p=rho_p, kendall=tau, kendall_p=tau_p, k=k, top_low=top_lo, top_high=top_hi,
                    overlap=len(set(top_lo) & set(top_hi)), moved=[m for m in movers if m.shift][:moved],
                    best_low_rank_in_high=rhi[top_lo[0]])


# ---------------------------------------------------------------------- one store, several fidelities
FIDELITY = "fidelity"


def fidelity_names(table: ResultTable) -> list[str]:
    """The fidelities the store's rows carry, cheapest first: by epochs × days of training data (the mean over
    the fidelity's trials; the manifest's months are not in the row, its train window is)."""
    import pandas as pd

    rows = table.all
    if FIDELITY not in rows.columns:
        return []
    rows = rows[rows[FIDELITY].notna() & (rows[FIDELITY].astype(str) != "")]
    if rows.empty:
        return []
    days = (pd.to_datetime(rows["train_end"], errors="coerce") - pd.to_datetime(rows["train_start"], errors="coerce")).dt.days
    epochs = pd.to_numeric(rows["max_epochs"], errors="coerce")
    cost = (days * epochs).groupby(rows[FIDELITY].astype(str)).mean()
    return sorted(cost.index, key=lambda name: (float(cost[name]) if cost[name] == cost[name] else 0.0, name))


def at_fidelity(table: ResultTable, name: str) -> ResultTable:
    """The store's trials at one fidelity, as a table of their own."""
    def pick(df):
        if df.empty or FIDELITY not in df.columns:
            return df.iloc[0:0]
        return df[df[FIDELITY].astype(str) == name].reset_index(drop=True)

    done, failed = pick(table.done), pick(table.failed)
    both = pick(table.all)
    params = varying_params(both) if not both.empty else []
    if "architecture" in table.params:
        params = ["architecture"] + params
    return ResultTable(uri=f"{table.uri} (fidelity {name})", done=done, failed=failed, source=table.source,
                       params=params, metrics=table.metrics, store_uri=table.store, rounds=table.rounds,
                       recorded=table.recorded)


@dataclass
class Rung:
    low: str                     # fidelity name
    high: str
    result: Fidelity | None      # None: too few configs in common yet (see `problem`)
    problem: str = ""


def ladder(table: ResultTable, obj: Objective, high: str | None = None, k: int = 5, moved: int = 5) -> list[Rung]:
    """Each fidelity of one store against `high`; by default against the most expensive fidelity that at
    least MIN_COMMON of its configs reached (all of them when every config ran at every fidelity; the next
    rungs of a halving search, which keep a third of the configs each). A pair with too few common configs
    (mid-run, or a rung too narrow) is reported, not fatal, unless no pair can be compared; then the error
    says how many configs each pair shares and what would make one comparable."""
    names = fidelity_names(table)
    if len(names) < 2:
        found = f"only {names[0]!r}" if names else "none"
        raise UserError(f"this store's rows carry fewer than 2 fidelities ({found}); one store is compared with itself "
                        "across the fidelities of a spec's `fidelities`", where=table.uri,
                        hint="pass two stores, LOW HIGH (e.g. a quick run and a full run), or compile a spec with fidelities")
    if high is not None and high not in names:
        raise UserError(f"no fidelity {high!r} in this store", where="--high", hint=f"present: {', '.join(names)}")
    tables = {name: at_fidelity(table, name) for name in names}
    scored = {name: set(_scores(t, obj)) for name, t in tables.items()}
    rungs, errors, shared = [], [], []
    for i, name in enumerate(names):
        if name == high or (high is None and i == len(names) - 1):
            continue
        against = high
        if against is None:   # the most expensive fidelity enough of this one's configs reached, else the next one
            wide = [h for h in names[i + 1:] if len(scored[name] & scored[h]) >= MIN_COMMON]
            against = wide[-1] if wide else names[i + 1]
        shared.append(f"{name} and {against} share {len(scored[name] & scored[against])}")
        try:
            rungs.append(Rung(name, against, fidelity(tables[name], tables[against], obj, k=k, moved=moved,
                                                      both=f"at both {name} and {against}")))
        except UserError as err:
            rungs.append(Rung(name, against, None, err.message))
            errors.append(err)
    if len(errors) == len(rungs):
        raise UserError(f"no two fidelities have {MIN_COMMON} configs in common yet ({'; '.join(shared)}): a rank "
                        f"correlation needs at least {MIN_COMMON} configs trained at both", where=table.uri,
                        hint="wait for more rows; for halving, start more configs (search.trials, more values) or a "
                             "smaller eta, so that a later rung keeps 3 or more")
    return rungs
