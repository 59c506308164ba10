#!/usr/bin/env bash
# The one command that installs everything and runs the whole test suite (README: `make test`).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --test
if [[ $(id -u) == 0 ]] || docker info >/dev/null 2>&1; then
  scripts/start-dockerd.sh
  # The trainer image, built offline (no registry here): Debian base + wheels from the host.
  if [[ -x images/build-offline.sh ]]; then images/build-offline.sh; fi
  export HPT_REQUIRE_DOCKER=${HPT_REQUIRE_DOCKER:-1}
fi
# Tests that look at the HTML report in a real browser fail (not skip) where Chromium is installed.
if command -v chromium >/dev/null 2>&1; then export HPT_REQUIRE_BROWSER=${HPT_REQUIRE_BROWSER:-1}; fi
set +e
.venv/bin/python -m pytest "$@"
rc=$?
set -e
# pytest's 5 means "no tests collected": that is a failure here, not a pass.
exit $rc
