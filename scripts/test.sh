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
set +e
.venv/bin/python -m pytest "$@"
rc=$?
set -e
# pytest's 5 means "no tests collected": that is a failure here, not a pass.
exit $rc
