"""Analysis of a real store with known answers: by-config comparison, trends, fidelity, mid-run stores."""
from __future__ import annotations

import pytest
from results_fixtures import DOMINATE, LR, RANGES, REVERSAL, TIE, make_row, put_matrix, put_row, put_trial

from hpt.results.compare import compare, min_two_sided_p, pairs_needed
from hpt.results.fidelity import fidelity
from hpt.store import open_store
from hpt.results.table import load_table, objective
from hpt.results.trends import trends
from hpt.schemas.errors import UserError

MSE = objective("mse")


def _store(tmp_path, name="store"):
    return open_store(str(tmp_path / name))


def _by_label(cmp):
    return {c.params["param.learning_rate"]: c for c in cmp.configs}


def test_dominating_config_is_marked_and_wins_every_range(tmp_path):
    store = _store(tmp_path)
    ids = put_matrix(store, DOMINATE)
    cmp = compare(load_table(store.uri), MSE)
    assert cmp.ranges == [f"{a}..{b}" for a, b in RANGES]
    assert [c.config for c in cmp.configs] == [ids["A"], ids["B"], ids["C"]]
    a, b, c = cmp.configs
    assert a.best_everywhere and a.wins == 3 and a.tied_best == 0
    assert not b.best_everywhere and not c.best_everywhere
    assert a.mean == pytest.approx(0.55) and a.mean_rank == 1.0
    assert b.ranks == {cmp.ranges[0]: 2, cmp.ranges[1]: 2, cmp.ranges[2]: 2}
    assert c.mean_rank == 3.0
    # three ranges, best better on all three: the smallest two-sided p there is, and not < 0.05
    assert (b.n_pairs, b.best_better) == (3, 3)
    assert b.sign_p == pytest.approx(0.25) and b.wilcoxon_p == pytest.approx(0.25)
    notes = " ".join(cmp.notes())
    assert "0.25" in notes and "≥ 6 pairs" in notes and "★" in notes


def test_tie_marks_nobody(tmp_path):
    store = _store(tmp_path)
    put_matrix(store, TIE)
    cmp = compare(load_table(store.uri), MSE)
    got = _by_label(cmp)
    a, b, c = got[LR["A"]], got[LR["B"]], got[LR["C"]]
    assert a.tied_best == b.tied_best == 2 and a.wins == b.wins == 0
    assert not a.best_everywhere and not b.best_everywhere
    assert a.ranks == b.ranks and set(a.ranks.values()) == {1}
    other = b if cmp.configs[0] is a else a
    assert other.n_pairs == 2 and other.best_better == 0 and other.sign_p is None  # all differences zero
    assert "No config is best on all 2 ranges" in " ".join(cmp.notes())


def test_reversal_between_ranges_marks_nobody(tmp_path):
    store = _store(tmp_path)
    put_matrix(store, REVERSAL)
    cmp = compare(load_table(store.uri), MSE)
    got = _by_label(cmp)
    assert got[LR["A"]].wins == 1 and got[LR["B"]].wins == 1
    assert not any(c.best_everywhere for c in cmp.configs)
    assert got[LR["A"]].ranks[cmp.ranges[0]] == 1 and got[LR["A"]].ranks[cmp.ranges[1]] == 2
    assert got[LR["C"]].mean_rank == 3.0


def test_repeats_pair_by_range_and_repeat(tmp_path):
    store = _store(tmp_path)
    put_matrix(store, DOMINATE, repeats=2, repeat_offset=0.01)
    cmp = compare(load_table(store.uri), MSE)
    a, b = cmp.configs[0], cmp.configs[1]
    assert a.n_trials == 6 and a.per_range[cmp.ranges[0]] == pytest.approx(0.505)
    assert b.n_pairs == 6 and b.best_better == 6
    assert b.sign_p == pytest.approx(2 * 0.5 ** 6) and b.wilcoxon_p == pytest.approx(2 * 0.5 ** 6)
    assert b.sign_p < 0.05


def test_p_value_floor():
    assert min_two_sided_p(3) == 0.25 and min_two_sided_p(0) == 1.0
    assert pairs_needed(0.05) == 6


def test_maximize_goal_flips_the_order(tmp_path):
    store = _store(tmp_path)
    put_matrix(store, DOMINATE)
    cmp = compare(load_table(store.uri), objective("mse:max"))
    assert cmp.configs[0].params["param.learning_rate"] == LR["C"] and cmp.configs[0].best_everywhere


def test_trends_known_means_and_medians(tmp_path):
    store = _store(tmp_path)
    grid = {(0.001, 0.1): 1.0, (0.001, 0.5): 2.0, (0.01, 0.1): 3.0, (0.01, 0.5): 6.0, (0.01, 0.9): 12.0}
    for (lr, dropout), mse in grid.items():
        put_trial(store, "lstm", {"learning_rate": lr, "dropout": dropout, "hidden_size": 64}, RANGES[0], mse=mse)
    table = load_table(store.uri)
    assert table.params == ["param.dropout", "param.learning_rate"]  # hidden_size is constant: not shown
    rows = {(r.param, r.value): r for r in trends(table, MSE)}
    lr_small, lr_big = rows[("learning_rate", 0.001)], rows[("learning_rate", 0.01)]
    assert (lr_small.count, lr_small.mean, lr_small.median, lr_small.best) == (2, 1.5, 1.5, 1.0)
    assert (lr_big.count, lr_big.mean, lr_big.median, lr_big.best) == (3, 7.0, 6.0, 3.0)
    assert lr_small.best_value and not lr_big.best_value
    assert rows[("dropout", 0.1)].mean == 2.0 and rows[("dropout", 0.5)].mean == 4.0
    assert rows[("dropout", 0.9)].count == 1 and rows[("dropout", 0.1)].best_value
    assert [r.value for r in trends(table, MSE) if r.param == "dropout"] == [0.1, 0.5, 0.9]


def _fidelity_stores(tmp_path, high_values):
    low, high = _store(tmp_path, "low"), _store(tmp_path, "high")
    letters = "ABCDE"
    for i, letter in enumerate(letters):
        params = {"learning_rate": LR[letter], "hidden_size": 64}
        put_trial(low, "lstm", params, RANGES[0], mse=1.0 + i, mode="quick")
        put_trial(high, "lstm", params, RANGES[1], mse=high_values[i])
    put_trial(low, "lstm", {"learning_rate": 0.5, "hidden_size": 64}, RANGES[0], mse=0.1, mode="quick")  # only in low
    return load_table(low.uri), load_table(high.uri)


def test_fidelity_identical_ranking(tmp_path):
    low, high = _fidelity_stores(tmp_path, [10.0, 20.0, 30.0, 40.0, 50.0])
    result = fidelity(low, high, MSE, k=2)
    assert (result.n_low, result.n_high, result.n_common) == (6, 5, 5)
    assert result.spearman == pytest.approx(1.0) and result.kendall == pytest.approx(1.0)
    assert result.overlap == 2 and result.moved == [] and result.best_low_rank_in_high == 1


def test_fidelity_reversed_ranking(tmp_path):
    low, high = _fidelity_stores(tmp_path, [50.0, 40.0, 30.0, 20.0, 10.0])
    result = fidelity(low, high, MSE, k=2)
    assert result.spearman == pytest.approx(-1.0) and result.kendall == pytest.approx(-1.0)
    assert result.overlap == 0 and result.best_low_rank_in_high == 5
    assert abs(result.moved[0].shift) == 4  # first and last swapped places
    assert "No agreement" in result.verdict() or "no agreement" in result.verdict().lower()


def test_fidelity_needs_three_common_configs(tmp_path):
    low, high = _store(tmp_path, "low"), _store(tmp_path, "high")
    for lr in (0.1, 0.2):
        put_trial(low, "lstm", {"learning_rate": lr}, RANGES[0], mse=lr)
        put_trial(high, "lstm", {"learning_rate": lr}, RANGES[0], mse=lr)
    put_trial(high, "lstm", {"learning_rate": 0.3}, RANGES[0], mse=1.0)
    with pytest.raises(UserError, match="only 2 config"):
        fidelity(load_table(low.uri), load_table(high.uri), MSE)


def test_mid_run_store_with_missing_and_failed_trials(tmp_path):
    store = _store(tmp_path)
    ids = put_matrix(store, DOMINATE, skip={("C", 2), ("B", 1)})
    put_row(store, make_row("lstm", {"learning_rate": LR["C"], "hidden_size": 64}, RANGES[2], status="failed",
                            reason="CUDA out of memory"))
    (store.root / "results.csv").write_text("trial_id\n")  # a lagging merged file must not hide rows
    table = load_table(store.uri)
    assert table.source == "rows" and len(table.done) == 7 and len(table.failed) == 1
    assert table.failed.iloc[0]["reason"] == "CUDA out of memory"
    cmp = compare(table, MSE)
    assert cmp.configs[0].config == ids["A"] and cmp.configs[0].best_everywhere
    assert {c.config: c.n_ranges for c in cmp.configs} == {ids["A"]: 3, ids["B"]: 2, ids["C"]: 2}
    notes = " ".join(cmp.notes())
    assert "1 failed trial" in notes and "lack results on some ranges" in notes


def test_results_csv_fallback_and_empty_store(tmp_path):
    store = _store(tmp_path)
    with pytest.raises(UserError, match="no such results folder"):
        load_table(store.uri)
    store.root.mkdir()
    with pytest.raises(UserError, match="no results in this store"):
        load_table(store.uri)
    from hpt.schemas.row import table_csv

    rows = [make_row("lstm", {"learning_rate": lr}, RANGES[0], mse=lr) for lr in (0.1, 0.2)]
    store.put("results.csv", table_csv(rows).encode())
    table = load_table(store.uri)
    assert table.source == "results.csv" and len(table.done) == 2


def test_unknown_objective_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="unknown metric"):
        objective("accuracy")
    store = _store(tmp_path)
    put_matrix(store, DOMINATE)
    with pytest.raises(UserError, match="no finished trial has the metric 'nll'"):
        compare(load_table(store.uri), objective("nll"))


def test_gcs_store_by_config(gcs_bucket):
    store = open_store(gcs_bucket + "/runs/nightly")
    ids = put_matrix(store, DOMINATE)
    cmp = compare(load_table(store.uri), MSE)
    assert cmp.configs[0].config == ids["A"] and cmp.configs[0].best_everywhere and cmp.configs[0].wins == 3


def test_curve_tags_follow_the_trainer():
    from hpt.results.tensorboard import pick_tag, pick_train_tag

    trainer_tags = ["loss/train", "loss/valid", "mse/train", "mse/valid", "lr"]
    assert pick_tag(trainer_tags, "mse") == "mse/valid"
    assert pick_tag(trainer_tags, "mae") == "loss/valid"  # no curve of that metric: the validation loss
    assert pick_tag(["valid/mse", "train/loss"], "mse") == "valid/mse"
    assert pick_train_tag(trainer_tags) == "loss/train" and pick_train_tag(["lr"]) is None


def test_rows_without_config_id_group_by_architecture_and_params(tmp_path):
    store = _store(tmp_path)
    for j, rng in enumerate(RANGES[:2]):
        for lr, mse in ((0.1, 0.5 + j), (0.2, 0.7 + j)):
            row = make_row("lstm", {"learning_rate": lr}, rng, mse=mse)
            row["config_id"] = ""  # an older writer, or a hand-made row
            put_row(store, row)
    cmp = compare(load_table(store.uri), MSE)
    assert len(cmp.configs) == 2 and all(c.n_ranges == 2 for c in cmp.configs)
    assert cmp.configs[0].config.startswith("lstm ") and cmp.configs[0].best_everywhere


def test_rows_listing_wins_over_a_lagging_results_csv(tmp_path):
    from hpt.schemas.row import table_csv

    store = _store(tmp_path)
    params = {"learning_rate": 0.1}
    done = make_row("lstm", params, RANGES[0], mse=0.5)
    put_row(store, done)
    retried = make_row("lstm", params, RANGES[1], mse=0.7)
    put_row(store, retried)
    stale = dict(retried, status="failed", reason="killed", mse="")      # results.csv from before the retry
    gone = make_row("lstm", params, RANGES[2], mse=0.1)                  # row deleted since (not in rows/)
    store.put("results.csv", table_csv([done, stale, gone]).encode())
    table = load_table(store.uri)
    assert sorted(table.done["trial_id"]) == sorted([done["trial_id"], retried["trial_id"]])
    assert table.failed.empty and sorted(table.done["mse"]) == [0.5, 0.7]


def test_spearman_p_is_exact_for_few_configs():
    from hpt.results.fidelity import _spearman_exact_p

    # 4 configs in the same order: 2 of the 24 orderings are as extreme (rho = ±1) → p = 1/12, not 0
    assert _spearman_exact_p([0.1, 0.2, 0.3, 0.4], [1.0, 2.0, 3.0, 4.0]) == pytest.approx(2 / 24)
    assert _spearman_exact_p([0.1, 0.2, 0.3, 0.4], [4.0, 3.0, 2.0, 1.0]) == pytest.approx(2 / 24)
    # no agreement at all: every ordering is at least as extreme
    assert _spearman_exact_p([1, 2, 3], [2, 3, 1]) > 0.5


def test_paired_tests_equal_scipy_without_importing_it():
    """The sign test and Wilcoxon signed-rank p of `hpt results` are scipy's own (binomtest; wilcoxon's method
    "auto": exact, a permutation test with ties up to 13 pairs, the normal approximation beyond), computed
    without importing scipy.stats (half a second of every `hpt results`)."""
    import math
    import random
    import warnings

    from scipy.stats import binomtest, wilcoxon

    from hpt.results import compare as cmp

    for n in range(1, 41):
        for k in range(n + 1):
            assert math.isclose(cmp._binomial_p(k, n), binomtest(k, n, 0.5).pvalue, rel_tol=1e-9), (k, n)
    rng = random.Random(7)
    for i in range(40):   # (scipy's permutation test takes seconds past 6 tied pairs: 13 are ours alone)
        n = rng.choice([2, 3, 4, 5, 6, 14, 20, 55])
        tied = i % 2 == 0
        diffs = [rng.choice([-1, 1]) * (rng.randint(1, 4) / 2 if tied else rng.random()) for _ in range(n)]
        ranks = cmp._average_ranks([abs(d) for d in diffs])
        signed = tuple(sorted(r if d > 0 else -r for r, d in zip(ranks, diffs)))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            expected = float(wilcoxon(signed, alternative="two-sided").pvalue)
        assert math.isclose(cmp._wilcoxon_signed_ranks.__wrapped__(signed), expected, rel_tol=1e-9, abs_tol=1e-12), signed


def test_numbers_reads_a_column_as_pd_to_numeric_does():
    """results.table._numbers (parses each distinct value once) gives what pd.to_numeric(errors="coerce") gives
    for the whole column, an empty cell read as missing: the same dtype (integers only when every value is one
    and none is missing), the same values, and whether every present value parsed."""
    import numpy as np
    import pandas as pd
    from hypothesis import given, settings, strategies as st

    from hpt.results.table import _numbers

    cell = st.sampled_from(["1", "2", "-3", "0.5", "1e3", "", None, "x", "nan", "inf", " 7 ", "18446744073709551615",
                            "-0", "0.1", "+4", "1_000", "0x10", 2.5, float("nan")]) | st.integers(-10**6, 10**6).map(str) \
        | st.floats(allow_nan=False).map(repr)

    @settings(max_examples=300, deadline=None)
    @given(st.lists(cell, min_size=1, max_size=30))
    def check(values):
        got, all_parsed = _numbers(values)
        want = pd.to_numeric(np.array([None if v == "" else v for v in values], dtype=object), errors="coerce")
        want = np.asarray(want)
        assert got.dtype == want.dtype and np.array_equal(got, want, equal_nan=True), (values, got, want)
        present = len(values) - values.count(None) - values.count("")
        assert all_parsed == (int(np.count_nonzero(~np.isnan(np.asarray(want, dtype=float)))) == present)

    check()
