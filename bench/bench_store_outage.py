"""A long store outage in the middle of a run: does every trained trial keep its work?

Runs `hpt apply` (local backend, the real trainer, a small slice of the real demo dataset) into a gs://
store on a real fake-gcs-server, stops the server --down-after seconds into the run and starts it again
(same objects) --outage seconds later, under the default store deadline (hpt.store.base,
DEFAULT_STORE_DEADLINE_S) unless --deadline is given. Prints apply's exit code and wall time, how many
times each trial was started, and which trials have a done row and a stored model.

    python bench/bench_store_outage.py [--trials 5] [--outage 150] [--down-after 4] [--deadline S]

Expect, for an outage shorter than the deadline: exit 0, every trial started once, every row done,
every model stored.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=5)
    parser.add_argument("--outage", type=float, default=150.0)
    parser.add_argument("--down-after", type=float, default=4.0)
    parser.add_argument("--deadline", type=float, default=None)
    args = parser.parse_args()

    from executor_support import write_plan
    from gcs_support import RestartableGCS
    from trial_factory import make_manifest

    from hpt.store import DEFAULT_STORE_DEADLINE_S
    from hpt.trainer.demo import build_demo_dataset

    with tempfile.TemporaryDirectory(prefix="hpt-outage-") as tmp:
        work = Path(tmp)
        data = work / "data"
        build_demo_dataset(data, rows_per_month=1500, seed=0)
        ms = [make_manifest(data, "bag-of-words", epochs=1, seed=i, experiment="e-0a7a9e000001", hidden_size=16)
              for i in range(args.trials)]
        plan = write_plan(work / "plan", ms)
        gcs = RestartableGCS(work / "gcs").start()
        try:
            uri = gcs.bucket() + "/exp"
            env = {**os.environ, "STORAGE_EMULATOR_HOST": gcs.url}
            env.pop("HPT_STORE_DEADLINE_S", None)
            if args.deadline:
                env["HPT_STORE_DEADLINE_S"] = str(args.deadline)
            deadline = args.deadline or DEFAULT_STORE_DEADLINE_S
            t0 = time.monotonic()
            apply = subprocess.Popen([sys.executable, "-m", "hpt.cli", "apply", str(plan), "--results", uri,
                                      "--parallel", "2", "--format", "json"], env=env, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)
            time.sleep(args.down_after)
            gcs.stop()
            print(f"store down at {time.monotonic() - t0:.1f} s for {args.outage:g} s (deadline {deadline:g} s)",
                  flush=True)
            time.sleep(args.outage)
            gcs.start()
            print(f"store back at {time.monotonic() - t0:.1f} s", flush=True)
            out, err = apply.communicate()
            wall = time.monotonic() - t0
            events = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
            starts: dict[str, int] = {}
            for e in events:
                if e["event"] == "trial-started":
                    starts[e["trial_id"]] = starts.get(e["trial_id"], 0) + 1
            os.environ["STORAGE_EMULATOR_HOST"] = gcs.url
            from hpt.store import open_store
            from hpt.store.rows import read_rows

            store = open_store(uri)
            rows = read_rows(store)
            print(f"apply exit {apply.returncode} after {wall:.1f} s")
            if apply.returncode:
                print("  stderr:", err.strip().splitlines()[-1] if err.strip() else "")
            for m in ms:
                row = rows.get(m.id, {})
                print(f"  {m.id}: started {starts.get(m.id, 0)}x, row {row.get('status', '-')}, "
                      f"model files {len(store.list(f'models/{m.id}/'))}")
            ok = (apply.returncode == 0 and all(starts.get(m.id) == 1 for m in ms)
                  and all(rows.get(m.id, {}).get("status") == "done" and store.list(f"models/{m.id}/") for m in ms))
            print("every trial done, trained once, model stored:", ok)
        finally:
            gcs.stop()


if __name__ == "__main__":
    main()
