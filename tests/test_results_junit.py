"""JUnit XML from result rows: valid XML, one testcase per trial, failures carry their reason."""
from __future__ import annotations

import xml.etree.ElementTree as ET

from hpt.results.junit import write_junit
from hpt.schemas.row import parse_row_csv, row_csv


def _row(trial: str, status: str = "done", reason: str = "", **extra) -> dict:
    row = {"trial_id": trial, "config_id": "c-" + trial[-3:], "architecture": "lstm", "status": status,
           "reason": reason, "param.lr": "0.001", "param.dropout": "0.1", "train_start": "2011-01-01",
           "train_end": "2011-04-01", "mse": "0.8" if status == "done" else "",
           "started_at": "2026-01-01T00:00:00+00:00", "finished_at": "2026-01-01T00:00:07+00:00"}
    row.update(extra)
    return parse_row_csv(row_csv(row))  # the real on-disk format: every value a string


def test_junit_counts_failures_and_reasons(tmp_path):
    rows = [_row("t-aaa", train_time_s="12.5"), _row("t-bbb", "failed", "CUDA out of memory\nstack..."),
            _row("t-ccc", **{"param.lr": "0.01"})]
    out = tmp_path / "ci" / "junit.xml"
    write_junit(rows, out, suite_name="nightly")
    root = ET.parse(out).getroot()
    assert root.tag == "testsuites"
    suite = root.find("testsuite")
    assert suite.get("name") == "nightly"
    assert suite.get("tests") == "3" and suite.get("failures") == "1"
    cases = suite.findall("testcase")
    assert [c.get("name").split()[0] for c in cases] == ["t-aaa", "t-bbb", "t-ccc"]
    assert "lstm" in cases[0].get("name") and "lr=0.001" in cases[0].get("name")
    assert cases[0].get("time") == "12.500"            # train_time_s wins
    assert cases[2].get("time") == "7.000"             # else finished - started
    failure = cases[1].find("failure")
    assert failure is not None and failure.get("message") == "CUDA out of memory"
    assert "stack" in failure.text
    assert cases[0].find("failure") is None and cases[2].find("failure") is None


def test_junit_empty_and_odd_rows(tmp_path):
    out = tmp_path / "j.xml"
    write_junit([], out)
    suite = ET.parse(out).getroot().find("testsuite")
    assert suite.get("tests") == "0" and suite.get("failures") == "0"
    write_junit([{"trial_id": "t-x", "status": "", "reason": "<&> \"quoted\""}], out)
    case = ET.parse(out).getroot().find("testsuite/testcase")
    assert case.find("failure").get("message") == "<&> \"quoted\""
    assert case.get("time") == "0.000"


def test_junit_names_only_the_params_that_vary(tmp_path):
    rows = [_row("t-aaa", **{"param.lr": "0.01"}), _row("t-bbb")]
    out = tmp_path / "j.xml"
    write_junit(rows, out)
    names = [c.get("name") for c in ET.parse(out).getroot().iter("testcase")]
    assert names[0] == "t-aaa lstm lr=0.01 [2011-01-01..2011-04-01]" and "dropout" not in names[1]


def test_junit_trials_that_never_ran_are_skipped(tmp_path):
    rows = [_row("t-aaa"), {"trial_id": "t-bbb", "status": "pending", "reason": "run stopped after 3 failures"},
            _row("t-ccc", "failed", "boom")]
    out = tmp_path / "j.xml"
    write_junit(rows, out)
    suite = ET.parse(out).getroot().find("testsuite")
    assert (suite.get("tests"), suite.get("failures"), suite.get("skipped")) == ("3", "1", "1")
    cases = {c.get("name").split()[0]: c for c in suite.iter("testcase")}
    assert cases["t-bbb"].find("skipped").get("message") == "run stopped after 3 failures"
    assert cases["t-bbb"].find("failure") is None and cases["t-ccc"].find("failure") is not None
