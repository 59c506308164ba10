"""The confirmation round: after the search, its top configs retrained on a window after every tuning
window (never read by a decision), recorded as the plan's last round; the report and the JUnit file
say whether the winner held there. On the real demo data with the built-in trainer, through the CLI."""
from __future__ import annotations

import datetime as dt
import json
import subprocess
import xml.etree.ElementTree as ET

from executor_support import hpt_exe
from hpt.compiler.confirm import confirm_window
from hpt.compiler.dates import Window


def test_the_window_follows_every_tuning_window_and_keeps_its_length():
    tuning = [Window(0, dt.date(2010, 9, 1), dt.date(2010, 12, 1), dt.date(2010, 12, 31)),
              Window(1, dt.date(2011, 2, 1), dt.date(2011, 5, 1), dt.date(2011, 5, 31))]
    held = confirm_window(tuning, 30)
    assert (held.index, held.train_start, held.train_end, held.valid_end) == \
        (2, dt.date(2011, 3, 1), dt.date(2011, 6, 1), dt.date(2011, 7, 1))
    assert all(held.train_end >= w.valid_end for w in tuning)      # its validation comes after all of theirs


def test_confirmation_round_on_the_demo_data_in_the_report_and_junit(tmp_path, small_dataset):
    spec = {"architecture": "bag-of-words", "data": str(small_dataset), "epochs": 1,
            "date-range": [["2010-09-01", "2010-11-01"], ["2011-01-01", "2011-03-01"]],
            "parameters": {"learning_rate": [0.0003, 0.003, 0.03], "hidden_size": [16]},
            "search": {"seed": 0, "confirm": {"top": 2}}}
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    plan, results = tmp_path / "plan", tmp_path / "results"
    compiled = subprocess.run([hpt_exe(), "compile", str(tmp_path / "spec.json"), "--out", str(plan), "--format", "json"],
                              capture_output=True, text=True, timeout=120)
    assert compiled.returncode == 0, compiled.stderr
    doc = json.loads((plan / "plan.json").read_text())
    held_out = doc["spec"]["search"]["confirm"]["window"]
    assert held_out["train"] == ["2011-02-01", "2011-04-01"] and len(doc["rounds"]) == 1
    assert held_out["train"] not in [w["train"] for w in doc["windows"]]          # no decision reads it
    applied = subprocess.run([hpt_exe(), "apply", str(plan), "--results", str(results), "--parallel", "2",
                              "--junit", str(tmp_path / "junit.xml")], capture_output=True, text=True, timeout=600)
    assert applied.returncode == 0, applied.stderr
    rounds = json.loads((plan / "plan.json").read_text())["rounds"]
    last = rounds[-1]
    assert last["confirm"] is True and len(last["configs"]) == 2 and len(last["trials"]) == 2
    assert [r["rank"] for r in last["ranked"]] == [1, 2]
    for tid in last["trials"]:                                                      # every trial on the new window
        assert json.loads((plan / "trials" / f"{tid}.json").read_text())["window"]["train"] == held_out["train"]
    report = subprocess.run([hpt_exe(), "report", str(results), "--out", str(tmp_path / "report.html"), "--no-curves"],
                            capture_output=True, text=True, timeout=300)
    assert report.returncode == 0, report.stderr
    html = (tmp_path / "report.html").read_text()
    assert "Confirmation on an untouched window" in html
    assert ("held on the untouched window 2011-02-01..2011-04-01" in html) != ("did not hold" in html)
    case = [c for c in ET.parse(tmp_path / "junit.xml").iter("testcase") if c.get("name", "").startswith("confirmation")]
    assert len(case) == 1 and "untouched window" in case[0].findtext("system-out", "") + \
        (case[0].find("failure").get("message") if case[0].find("failure") is not None else "")
