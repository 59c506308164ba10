"""The report as a real browser shows it: headless Chromium screenshots the page, and the PNG must show content.

Skips when no Chromium is installed, unless HPT_REQUIRE_BROWSER=1 (CI: `apt-get install -y chromium`).
"""
from __future__ import annotations

import os
import shutil
import subprocess

import pytest
from results_fixtures import DOMINATE, put_matrix, write_curves

from hpt.results.report import write_report
from hpt.store import open_store
from hpt.results.table import load_table, objective


def _chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        path = shutil.which(name)
        if path:
            return path
    if os.environ.get("HPT_REQUIRE_BROWSER") == "1":
        pytest.fail("HPT_REQUIRE_BROWSER=1 but no chromium on PATH (apt-get install -y chromium)")
    pytest.skip("no chromium on PATH")


def test_report_renders_in_headless_chromium(tmp_path):
    from PIL import Image

    browser = _chromium()
    store = open_store(str(tmp_path / "store"))
    put_matrix(store, DOMINATE, repeats=2, repeat_offset=0.01)
    table = load_table(store.uri)
    for i, trial in enumerate(sorted(table.done["trial_id"])):
        write_curves(store, trial, [1.5 / (e + 1) + 0.05 * i for e in range(8)], tmp_path / "tb")
    page = write_report(table, objective("mse"), tmp_path / "report.html")

    shot = tmp_path / "shot.png"
    cmd = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           f"--user-data-dir={tmp_path / 'profile'}", f"--screenshot={shot}", "--window-size=1280,2000",
           page.resolve().as_uri()]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert shot.exists(), proc.stderr[-2000:]

    image = Image.open(shot).convert("RGB")
    assert image.size == (1280, 2000)
    small = image.resize((128, 200))
    pixels = [small.getpixel((x, y)) for y in range(small.height) for x in range(small.width)]
    background = max(set(pixels), key=pixels.count)
    inked = sum(1 for p in pixels if sum(abs(a - b) for a, b in zip(p, background)) > 60)
    assert inked / len(pixels) > 0.05, "the screenshot is (nearly) blank"
    # The plot colours are on the page: the best config's blue line and the green 'best' cells.
    mid = image.resize((320, 500))
    colours = {mid.getpixel((x, y)) for y in range(mid.height) for x in range(mid.width)}
    assert len(colours) > 100
