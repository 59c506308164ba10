"""One store whose rows carry several fidelities (a spec's `fidelities`): known answers for `ladder` and the CLI."""
from __future__ import annotations

import csv
import io
import json

import pytest
from results_fixtures import LR, make_row, put_row
from typer.testing import CliRunner

from hpt.cli import app
from hpt.results.fidelity import at_fidelity, fidelity_names, ladder
from hpt.store import open_store
from hpt.results.table import load_table, objective
from hpt.schemas.errors import UserError

MSE = objective("mse")
RANGE = ("2010-03-01", "2010-06-01")
LAST_MONTH = ("2010-05-01", "2010-06-01")
# name → (train window, max_epochs, mse per config A..E). "full" is the most expensive (3 months × 8 epochs).
SAME = {"m1-e3": (LAST_MONTH, 3, [1.0, 2.0, 3.0, 4.0, 5.0]), "full": (RANGE, 8, [0.1, 0.2, 0.3, 0.4, 0.5]),
        "reversed": (RANGE, 2, [5.0, 4.0, 3.0, 2.0, 1.0])}


def _put(store, fidelities=SAME, letters="ABCDE"):
    for name, (window, epochs, values) in fidelities.items():
        for letter, value in zip(letters, values):
            put_row(store, make_row("lstm", {"learning_rate": LR[letter], "hidden_size": 64}, window, fidelity=name,
                                    max_epochs=epochs, mse=value))


@pytest.fixture
def store(tmp_path):
    s = open_store(str(tmp_path / "store"))
    _put(s)
    return s


def test_names_are_ordered_by_epochs_times_months(store):
    # reversed: 3 months × 2 epochs ≈ 184; m1-e3: 1 month × 3 = 93; full: 3 months × 8
    assert fidelity_names(load_table(store.uri)) == ["m1-e3", "reversed", "full"]


def test_identical_ranking_is_1_and_reversed_is_minus_1(store):
    rungs = {r.low: r for r in ladder(load_table(store.uri), MSE, k=2)}
    assert set(rungs) == {"m1-e3", "reversed"} and {r.high for r in rungs.values()} == {"full"}
    same, rev = rungs["m1-e3"].result, rungs["reversed"].result
    assert same.spearman == pytest.approx(1.0) and same.kendall == pytest.approx(1.0) and same.overlap == 2
    assert same.n_common == 5 and same.moved == [] and same.best_low_rank_in_high == 1
    assert rev.spearman == pytest.approx(-1.0) and rev.kendall == pytest.approx(-1.0) and rev.overlap == 0
    assert rev.best_low_rank_in_high == 5


def test_high_can_be_named(store):
    rungs = ladder(load_table(store.uri), MSE, high="reversed")
    assert {r.low: r.result.spearman for r in rungs} == pytest.approx({"m1-e3": -1.0, "full": -1.0})
    with pytest.raises(UserError, match="no fidelity 'nope'"):
        ladder(load_table(store.uri), MSE, high="nope")


def test_one_fidelity_is_an_error_and_a_pair_mid_run_is_reported(tmp_path):
    one = open_store(str(tmp_path / "one"))
    _put(one, {"full": SAME["full"]})
    with pytest.raises(UserError, match="fewer than 2 fidelities"):
        ladder(load_table(one.uri), MSE)
    mid = open_store(str(tmp_path / "mid"))
    _put(mid, {"full": SAME["full"], "m1-e3": SAME["m1-e3"]})
    _put(mid, {"reversed": SAME["reversed"]}, letters="AB")   # only 2 configs so far
    rungs = {r.low: r for r in ladder(load_table(mid.uri), MSE)}
    assert rungs["m1-e3"].result.spearman == pytest.approx(1.0)
    assert rungs["reversed"].result is None and "only 2 config" in rungs["reversed"].problem


def test_at_fidelity_keeps_only_its_trials(store):
    table = at_fidelity(load_table(store.uri), "m1-e3")
    assert len(table.done) == 5 and set(table.done["fidelity"]) == {"m1-e3"} and table.params == ["param.learning_rate"]


def test_cli_one_store(store):
    runner = CliRunner()
    result = runner.invoke(app, ["fidelity", store.uri, "-f", "json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["high"] == "full"
    assert {p["low_fidelity"]: p["spearman"] for p in doc["pairs"]} == pytest.approx({"m1-e3": 1.0, "reversed": -1.0})
    result = runner.invoke(app, ["fidelity", store.uri])
    assert result.exit_code == 0 and "Fidelity m1-e3 vs full" in result.stdout and "Strong agreement" in result.stdout
    rows = list(csv.DictReader(io.StringIO(runner.invoke(app, ["fidelity", store.uri, "-f", "csv"]).stdout)))
    assert rows and {r["low_fidelity"] for r in rows} == {"reversed"}  # only the reversed ranking moved
    bad = runner.invoke(app, ["fidelity", store.uri, store.uri, "--high", "full"])
    assert bad.exit_code == 2 and "--high" in bad.stderr


def test_results_show_the_fidelity_and_compare_configs_at_the_highest(store):
    runner = CliRunner()
    result = runner.invoke(app, ["results", store.uri, "-f", "csv"])
    assert result.exit_code == 0 and "fidelity" in next(csv.reader(io.StringIO(result.stdout)))
    result = runner.invoke(app, ["results", store.uri, "--by", "config", "-f", "json"])
    assert result.exit_code == 0 and "comparing configs at the most expensive, full" in result.stderr
    configs = json.loads(result.stdout)["by_config"]["configs"]
    assert [c["mean"] for c in configs] == pytest.approx([0.1, 0.2, 0.3, 0.4, 0.5])
    result = runner.invoke(app, ["results", store.uri, "--fidelity", "reversed", "-f", "json"])
    assert result.exit_code == 0 and len(json.loads(result.stdout)["rows"]) == 5
    assert runner.invoke(app, ["results", store.uri, "--fidelity", "nope"]).exit_code == 2
