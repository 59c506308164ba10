"""Reading the hourly table a dataset folder holds (month=YYYY-MM/*.parquet + dataset.json) into model inputs."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

HORIZON = 24   # forecast each hour from what was known a day before it


@dataclass
class Examples:
    x: np.ndarray          # (n, features), float32
    y: np.ndarray          # (n,), float32, standardized
    naive: np.ndarray      # (n,), the value a day earlier (the seasonal-naive forecast), standardized


def read_hours(folder: str, start: str, end: str, history_hours: int) -> tuple[pd.DataFrame, dict]:
    """Hourly rows in [start - history, end), one per hour (duplicates dropped, gaps left as NaN)."""
    root = Path(folder)
    info = json.loads((root / "dataset.json").read_text())
    ts, target = info["timestamp"], info["target"]
    first = pd.Timestamp(start) - pd.Timedelta(hours=history_hours)
    months = pd.period_range(first, pd.Timestamp(end) - pd.Timedelta(seconds=1), freq="M")
    parts = [pd.read_parquet(root / f"month={m}") for m in months.strftime("%Y-%m") if (root / f"month={m}").is_dir()]
    if not parts:
        raise SystemExit(f"no data in {folder} between {first:%Y-%m-%d} and {end}")
    frame = pd.concat(parts)
    frame[ts] = pd.to_datetime(frame[ts])
    frame = frame.drop_duplicates(ts).set_index(ts).sort_index()
    frame = frame.rename(columns={target: "y"})
    grid = pd.date_range(first, pd.Timestamp(end) - pd.Timedelta(hours=1), freq="h")
    return frame.reindex(grid), info


def examples(hours: pd.DataFrame, start: str, end: str, lags: int, mean: float, std: float) -> Examples:
    """Features of each hour in [start, end): the `lags` hours ending a day before it, calendar, weather."""
    y = (hours["y"].astype("float64") - mean) / std
    columns = {f"lag{k}": y.shift(HORIZON + k) for k in range(lags)}
    index = hours.index
    columns |= {"hour_sin": np.sin(2 * np.pi * index.hour / 24), "hour_cos": np.cos(2 * np.pi * index.hour / 24),
                "dow_sin": np.sin(2 * np.pi * index.dayofweek / 7), "dow_cos": np.cos(2 * np.pi * index.dayofweek / 7),
                "weekend": (index.dayofweek >= 5).astype(float)}
    if "holiday" in hours:
        columns["holiday"] = (hours["holiday"].fillna("None").astype(str) != "None").astype(float)
    if "temp" in hours:
        columns["temp"] = (hours["temp"].astype("float64") - 280.0) / 15.0
    if "clouds_all" in hours:
        columns["clouds"] = hours["clouds_all"].astype("float64") / 100.0
    if "rain_1h" in hours:
        columns["rain"] = np.log1p(hours["rain_1h"].astype("float64").clip(0, 50))
    table = pd.DataFrame(columns, index=index)
    table["y"] = y
    window = table.loc[pd.Timestamp(start):pd.Timestamp(end) - pd.Timedelta(hours=1)].dropna()
    features = window.drop(columns="y")
    return Examples(x=features.to_numpy(np.float32), y=window["y"].to_numpy(np.float32),
                    naive=window["lag0"].to_numpy(np.float32))
