"""The report as a real browser shows it: headless Chromium screenshots the page, and the PNG must show content.

Skips when no Chromium is installed, unless HPT_REQUIRE_BROWSER=1 (CI: `apt-get install -y chromium`).
"""
from __future__ import annotations

import subprocess

from browser_support import chromium as _chromium
from results_fixtures import DOMINATE, put_matrix, put_trial, write_curves

from hpt.results.report import write_report
from hpt.store import open_store
from hpt.results.table import load_table, objective


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


def test_config_table_fits_a_1280_px_window(tmp_path):
    """Six date ranges of configs with long labels: the whole table, "vs best" columns included, is in view."""
    browser = _chromium()
    store = open_store(str(tmp_path / "store"))
    ranges = [(f"2010-{m:02d}-01", f"2010-{m + 3:02d}-01") for m in range(1, 7)]
    for i, (size, heads, reg) in enumerate((s, h, r) for s in (32, 256) for h in (1, 2) for r in (0.1, 0.001)):
        params = {"attention_hidden_layer_size": size, "num_of_attentions": heads, "attention_regularization": reg}
        for j, rng in enumerate(ranges):
            put_trial(store, "lstm-attention", params, rng, mse=1.0 + ((i * 7 + j * 3) % 11) / 10)
    page = write_report(load_table(store.uri), objective("mse"), tmp_path / "report.html", curves=False)
    # A test-only probe (the report itself has no script): does any table scroll sideways at 1280 px?
    probe = tmp_path / "probe.html"
    probe.write_text(page.read_text().replace("</body>", "<script>document.body.dataset.overflow = "
                     "[...document.querySelectorAll('div.scroll')].some(e => e.scrollWidth > e.clientWidth);"
                     "document.body.dataset.tables = document.querySelectorAll('div.scroll').length;</script></body>"))
    cmd = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
           f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1280,2000", "--dump-dom", probe.resolve().as_uri()]
    dom = subprocess.run(cmd, capture_output=True, text=True, timeout=120).stdout
    assert 'data-tables="2"' in dom, dom[-2000:]   # the progress table and the by-config table
    assert 'data-overflow="false"' in dom
