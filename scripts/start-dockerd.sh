#!/usr/bin/env bash
# Start a Docker daemon in the background if none answers (CI machines have none running).
set -euo pipefail
if docker info >/dev/null 2>&1; then exit 0; fi
if ! command -v dockerd >/dev/null 2>&1; then
  echo "dockerd not installed (scripts/setup.sh --test installs Debian's docker.io)" >&2; exit 1
fi
mkdir -p /tmp/hpt-dockerd
# dockerd outlives this script, so it must not keep the caller's open files: run under
# `flock LOCKFILE make test`, an inherited lock descriptor held the lock for as long as dockerd ran.
(
  for fd in /proc/$BASHPID/fd/*; do fd=${fd##*/}; if [ "$fd" -gt 2 ]; then eval "exec $fd>&-"; fi; done
  exec nohup dockerd --host=unix:///var/run/docker.sock
) </dev/null >/tmp/hpt-dockerd/dockerd.log 2>&1 &
for _ in $(seq 1 60); do
  docker info >/dev/null 2>&1 && { echo "dockerd is up"; exit 0; }
  sleep 1
done
echo "dockerd did not start; its log:" >&2; tail -n 40 /tmp/hpt-dockerd/dockerd.log >&2; exit 1
