#!/usr/bin/env bash
# Build the trainer image with no container registry (CI, air-gapped hosts):
#   1. base:   Debian bookworm from Debian's own packages (mmdebstrap) → `docker import` hpt-base:bookworm
#   2. wheels: every dependency downloaded on the host (pip download; CPU torch), hpt built as a wheel
#   3. image:  docker build images/trainer/Dockerfile with --no-index installs → hpt-trainer:latest
# Idempotent and fast when nothing changed: the image carries a label with a hash of everything
# that goes into it (hpt's sources, the Dockerfile, this script, the base image id, the torch pin);
# a matching label means there is nothing to do.
#
# Options: --tag TAG (default hpt-RECIPE:latest)  --recipe trainer|runner (default trainer; runner is
# images/runner/Dockerfile: hpt[k8s,search] without torch, for k8s/runner/cronjob.yaml)  --base IMAGE
# (default hpt-base:bookworm, built here if missing)  --online (no wheel download: pip inside the build fetches dependencies; for
# GPU hosts, e.g. --base pytorch/pytorch:2.5.1-cuda12.4-cudnn9-runtime)  --force (rebuild anyway)
# Env: PYTHON (default .venv/bin/python), HPT_TORCH (default torch==2.13.0, the CPU build here).
set -euo pipefail
cd "$(dirname "$0")/.."

TAG=
RECIPE=trainer
BASE=hpt-base:bookworm
DEFAULT_BASE=$BASE
ONLINE=0
FORCE=0
while (( $# )); do
  case $1 in
    --tag) TAG=$2; shift 2 ;;
    --recipe) RECIPE=$2; shift 2 ;;
    --base) BASE=$2; shift 2 ;;
    --online) ONLINE=1; shift ;;
    --force) FORCE=1; shift ;;
    -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
    *) echo "build-offline.sh: unknown option $1" >&2; exit 2 ;;
  esac
done

case $RECIPE in
  trainer) EXTRAS=trainer ;;
  runner) EXTRAS=k8s,search ;;
  *) echo "build-offline.sh: unknown recipe $RECIPE (trainer or runner)" >&2; exit 2 ;;
esac
TAG=${TAG:-hpt-$RECIPE:latest}
PY=${PYTHON:-.venv/bin/python}
[[ -x $PY ]] || PY=python3
TORCH=${HPT_TORCH:-torch==2.13.0}
BUILD=images/.build
CTX=$BUILD/context
(( ONLINE )) && CTX=$BUILD/context-online  # keep the offline wheels when building the other kind
[[ $RECIPE == runner ]] && CTX=$CTX-runner
# Debian's client has BuildKit built in (RUN --mount); a newer client without buildx does not.
DOCKER=docker
[[ -x /usr/bin/docker ]] && DOCKER=/usr/bin/docker
export DOCKER_BUILDKIT=1
# Timestamped: a Jenkins console or `| tee` shows when each step started.
log() { echo "$(date -u +%Y-%m-%dT%H:%M:%SZ) [build-offline] $*" >&2; }
# Run a noisy step with its output in a log file, shown only when it fails.
quiet() {
  local logfile=$1; shift
  mkdir -p "$(dirname "$logfile")"
  if ! "$@" >"$logfile" 2>&1; then
    tail -n 40 "$logfile" >&2; echo "build-offline.sh: failed: $* (log: $logfile)" >&2; exit 1
  fi
}

if ! $DOCKER info >/dev/null 2>&1; then
  echo "build-offline.sh: no Docker daemon answers (start one: scripts/start-dockerd.sh)" >&2; exit 2
fi

# The files that make the hpt wheel and the image. git when available (a fresh clone in CI),
# else every file under the package folders.
source_files() {
  local paths=(pyproject.toml README.md LICENSE hpt schemas store results compiler executor trainer images)
  if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    git ls-files -co --exclude-standard -- "${paths[@]}"
  else
    find "${paths[@]}" -type f 2>/dev/null
  fi | grep -v -e '^images/\.build/' -e '__pycache__' -e '\.pyc$' | LC_ALL=C sort -u | while read -r f; do
    [[ -f $f ]] && echo "$f"
  done
}

# 1. The base image (only when it is ours to make and missing).
if [[ $BASE == "$DEFAULT_BASE" ]] && ! $DOCKER image inspect "$BASE" >/dev/null 2>&1; then
  command -v mmdebstrap >/dev/null || { echo "build-offline.sh: mmdebstrap missing (apt-get install mmdebstrap)" >&2; exit 2; }
  mkdir -p "$BUILD"
  log "building $BASE from Debian's packages (mmdebstrap, ~1 min)"
  rm -f "$BUILD/base.tar"
  # A file first, then import: a failed pipe would still create an (empty) image.
  mmdebstrap --quiet --variant=minbase --include=python3,python3-pip,ca-certificates \
    --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-exclude=/usr/share/man/*' \
    --dpkgopt='path-exclude=/usr/share/locale/*' \
    bookworm "$BUILD/base.tar"
  $DOCKER import --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'CMD ["/bin/sh"]' "$BUILD/base.tar" "$BASE" >/dev/null
  rm -f "$BUILD/base.tar"
fi
base_id=$($DOCKER image inspect -f '{{.Id}}' "$BASE" 2>/dev/null || echo "$BASE")

# 2. Is the image up to date?
hash=$( { source_files | xargs -d '\n' sha256sum; echo "base=$base_id torch=$TORCH online=$ONLINE recipe=$RECIPE"; } | sha256sum | cut -c1-24)
current=$($DOCKER image inspect -f '{{index .Config.Labels "hpt.source-hash"}}' "$TAG" 2>/dev/null || true)
if [[ $FORCE == 0 && $current == "$hash" ]]; then
  log "$TAG is up to date (sources $hash)"; exit 0
fi

# 3. The hpt wheel, built from a clean copy of exactly the hashed files (no stale build/ leftovers).
rm -rf "$BUILD/src" "$CTX/hpt"
mkdir -p "$BUILD/src" "$CTX/hpt" "$CTX/deps"
source_files | tar -cf - -T - | tar -xf - -C "$BUILD/src"
log "building the hpt wheel"
quiet "$BUILD/wheel.log" "$PY" -m pip wheel --quiet --no-deps --no-build-isolation -w "$CTX/hpt" "$BUILD/src"
wheel=$(ls "$CTX"/hpt/hpt-*.whl)
version=$(basename "$wheel" | cut -d- -f2)

# 4. Dependency wheels, downloaded again only when the dependencies may have changed.
deps_stamp=$( { sha256sum pyproject.toml; echo "$TORCH $RECIPE"; } | sha256sum | cut -c1-24)
if [[ $ONLINE == 1 ]]; then
  rm -rf "$CTX/deps"; mkdir -p "$CTX/deps"
elif [[ $(cat "$CTX/deps/.stamp" 2>/dev/null) != "$deps_stamp" ]]; then
  wanted=("${wheel}[$EXTRAS]")
  [[ $RECIPE == trainer ]] && wanted=("$TORCH" "${wanted[@]}")
  log "downloading dependency wheels (${wanted[*]##*/})"
  rm -rf "$CTX/deps"; mkdir -p "$CTX/deps"
  quiet "$BUILD/download.log" "$PY" -m pip download --quiet --only-binary=:all: -d "$CTX/deps" "${wanted[@]}"
  rm -f "$CTX"/deps/hpt-*.whl
  echo "$deps_stamp" > "$CTX/deps/.stamp"
fi

# 5. The image.
cp "images/$RECIPE/Dockerfile" "$CTX/Dockerfile"
printf '%s\n' '**/.stamp' > "$CTX/.dockerignore"
log "docker build $TAG (base $BASE)"
$DOCKER build --quiet \
  --build-arg "BASE=$BASE" --build-arg "PIP_NO_INDEX=$(( 1 - ONLINE ))" --build-arg "HPT_VERSION=$version" \
  --label "hpt.source-hash=$hash" -t "$TAG" "$CTX" >/dev/null
log "built $TAG (hpt $version, sources $hash)"
