"""`hpt-trial [MANIFEST] [--results URI]` (also `python -m hpt.trainer`): run ONE trial.

The manifest comes from the MANIFEST path or the env var HPT_MANIFEST (JSON text or a path); the
results store from --results or HPT_RESULTS (a folder, file:// or gs://bucket/prefix). Progress
and epoch lines go to stderr through `logging`, for the executor's log capture. Exit codes:
0 done or already done, 1 the trial failed (its row says why), 2 a user error (one line on stderr),
75 the store stayed unreachable past its deadline (nothing written; `hpt apply` retries the trial),
73 another process owns the trial (hpt.store.ownership): this copy trained nothing.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys

# Before torch loads OpenMP: idle worker threads sleep instead of spinning. Trials often share a
# machine (parallel local trials, a busy node); spinning threads then steal each other's cores and
# a 2-thread trial ran 5-20x slower than with passive waiting (bench/bench_trainer.py notes).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from hpt.schemas.errors import UserError  # noqa: E402
from hpt.store.base import EXIT_STORE_UNAVAILABLE, StoreUnavailable  # noqa: E402

log = logging.getLogger("hpt.trainer")


def load_manifest(arg: str | None):
    from hpt.schemas.manifest import TrialManifest

    if arg:
        return TrialManifest.load(arg)
    value = os.environ.get("HPT_MANIFEST", "")
    if not value.strip():
        raise UserError("no manifest given", hint="pass a manifest path or set HPT_MANIFEST (JSON text or a path)")
    if value.lstrip().startswith("{"):
        return TrialManifest.from_json(value, where="HPT_MANIFEST")
    return TrialManifest.load(value)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="hpt-trial", description="Run one hpt trial manifest and write its row, model "
                                     "and TensorBoard curves to the results store.")
    parser.add_argument("manifest", nargs="?", help="trial manifest path (default: $HPT_MANIFEST, JSON text or a path)")
    parser.add_argument("--results", default=os.environ.get("HPT_RESULTS"),
                        help="results store: folder, file:// or gs://bucket/prefix (default: $HPT_RESULTS)")
    parser.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: $HPT_DEVICE, else CUDA when present)")
    parser.add_argument("-q", "--quiet", action="store_true", help="log warnings and errors only")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        manifest = load_manifest(args.manifest)
        if not args.results:
            raise UserError("no results store given", hint="pass --results PATH|gs://BUCKET/PREFIX or set HPT_RESULTS")
        from hpt.store import open_store
        from hpt.trainer.trial import run_trial

        store = open_store(args.results)
        code = run_trial(manifest, store, device=args.device)
    except StoreUnavailable as err:  # before UserError: "try again later", and apply will
        print(f"hpt-trial: error: {err}", file=sys.stderr)
        sys.exit(EXIT_STORE_UNAVAILABLE)
    except UserError as err:
        print(f"hpt-trial: error: {err}", file=sys.stderr)
        sys.exit(2)
    sys.exit(code)


if __name__ == "__main__":
    main()
