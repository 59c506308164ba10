"""`hpt serve`: a page opened in headless Chromium before `hpt apply` starts shows the rows as they land,
without a reload (the DevTools protocol reads the live page; a reload would lose the mark set on it)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from browser_support import DevTools, chromium

HPT = Path(sys.executable).parent / "hpt"
CONFIGS = 3

PAGE_STATE = """(() => {
  const card = [...document.querySelectorAll('.card')].find(e => e.innerText.includes('finished trials'));
  const progress = document.getElementById('progress');
  return {mark: window.__hptMark || null, waiting: !!document.getElementById('waiting'),
          finished: card ? Number(card.querySelector('b').innerText) : -1,
          progress: progress ? progress.innerText : '', live: !!document.getElementById('live'),
          text: document.body ? document.body.innerText.slice(0, 400) : ''};
})()"""


@pytest.fixture
def plan(tmp_path, small_dataset) -> Path:
    spec = {"architecture": "bag-of-words", "date-range": [["2010-09-01", "2010-10-01"]], "epochs": 1,
            "validation-days": 14, "parameters": {"learning_rate": [0.001, 0.01, 0.1][:CONFIGS]}}
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    env = {**os.environ, "NO_GCE_CHECK": "True"}
    subprocess.run([str(HPT), "compile", str(tmp_path / "spec.json"), "--out", str(tmp_path / "plan"),
                    "--data", str(small_dataset)], check=True, capture_output=True, env=env, timeout=300)
    return tmp_path / "plan"


def start_serve(store: Path) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen([str(HPT), "serve", str(store), "--port", "0", "--interval", "0.5", "--no-curves"],
                            stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    line = proc.stderr.readline()   # "serving STORE at http://HOST:PORT/ (...)"
    if " at http://" not in line:
        proc.kill()
        proc.wait(timeout=30)
        raise AssertionError(f"hpt serve said {line!r}")
    return proc, line.split(" at http://", 1)[1].split()[0].join(["http://", ""])


def test_a_row_that_lands_after_the_page_opened_appears_without_a_reload(tmp_path, plan):
    chromium()
    store = tmp_path / "store"
    serve, url = start_serve(store)
    browser = DevTools(tmp_path / "profile")
    apply = None
    try:
        assert url.startswith("http://127.0.0.1:")   # this machine only, unless --host says otherwise
        with pytest.raises(urllib.error.HTTPError) as refused:   # read-only
            urllib.request.urlopen(urllib.request.Request(url, data=b"x", method="POST"), timeout=30)
        assert refused.value.code == 405

        browser.open(url)
        state = wait_for(browser, lambda s: s["waiting"], 120)   # no row yet: the page says it waits
        assert state["live"], state
        browser.evaluate("window.__hptMark = 'opened before any row'")

        apply = subprocess.Popen([str(HPT), "apply", str(plan), "--results", str(store)],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        seen = []
        state = wait_for(browser, lambda s: seen.append(s["finished"]) or s["finished"] == CONFIGS, 600)
        assert state["mark"] == "opened before any row", state    # the same page: not reloaded
        assert not state["waiting"] and "done" in state["progress"], state
        assert apply.wait(timeout=300) == 0, apply.stderr.read()[-2000:]
        counts = [n for n in seen if n >= 0]
        assert counts and counts[-1] == CONFIGS and counts == sorted(counts)
        with urllib.request.urlopen(url + "state.json", timeout=30) as reply:
            assert json.loads(reply.read())["rows"] == CONFIGS
    finally:
        browser.close()
        serve.terminate()
        serve.wait(timeout=30)
        if apply is not None and apply.poll() is None:
            apply.terminate()
            apply.wait(timeout=60)


def wait_for(browser: DevTools, done, timeout_s: float) -> dict:
    deadline = time.monotonic() + timeout_s
    state: dict = {}
    while time.monotonic() < deadline:
        state = browser.evaluate(PAGE_STATE) or {}
        if state and done(state):
            return state
        time.sleep(0.5)
    raise AssertionError(f"the page did not get there in {timeout_s} s: {state}")
