"""Day-ahead hourly traffic on I-94 with a small MLP: a training script as a team writes it, for itself.

It knows nothing of any tuner: flags in, `name=value` lines and TensorBoard scalars out.

    python train.py --data ../data/traffic --lr 0.003 --hidden 64 --activation tanh --layer_norm

It reads the dataset folder's Parquet files itself, keeps the last --months months, validates on their last
--valid_days days (its own split), and reports WAPE and sMAPE of the validation forecasts every epoch.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch.utils.tensorboard import SummaryWriter

HORIZON = 24   # forecast each hour from what was known a day earlier


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="dataset folder: month=YYYY-MM/*.parquet")
    parser.add_argument("--logdir", default="runs", help="TensorBoard log folder")
    parser.add_argument("--lr", type=float, default=0.003)
    parser.add_argument("--hidden", type=int, default=32)
    parser.add_argument("--activation", choices=["relu", "tanh", "gelu"], default="relu")
    parser.add_argument("--layer_norm", action="store_true", help="LayerNorm after the hidden layer")
    parser.add_argument("--lags", type=int, default=24, help="hours of history, ending a day before the hour")
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--batch_size", type=int, default=128)
    parser.add_argument("--months", type=int, default=4, help="most recent months of data to use")
    parser.add_argument("--valid_days", type=int, default=21)
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args()


def hourly(folder: str, months: int) -> pd.Series:
    files = sorted(Path(folder).glob("month=*/*.parquet"))[-(months + 1):]   # the folders sort by month
    frame = pd.concat(pd.read_parquet(f, columns=["date_time", "traffic_volume"]) for f in files)
    frame["date_time"] = pd.to_datetime(frame["date_time"])
    series = frame.drop_duplicates("date_time").set_index("date_time")["traffic_volume"].sort_index().astype("float64")
    start = series.index.max() - pd.DateOffset(months=months)
    series = series[series.index > start]
    return series.reindex(pd.date_range(series.index.min(), series.index.max(), freq="h"))


def features(series: pd.Series, lags: int, mean: float, std: float) -> tuple[np.ndarray, np.ndarray, pd.DatetimeIndex]:
    scaled = (series - mean) / std
    columns = {f"lag{k}": scaled.shift(HORIZON + k) for k in range(lags)}
    index = series.index
    columns |= {"hour_sin": np.sin(2 * np.pi * index.hour / 24), "hour_cos": np.cos(2 * np.pi * index.hour / 24),
                "dow_sin": np.sin(2 * np.pi * index.dayofweek / 7), "dow_cos": np.cos(2 * np.pi * index.dayofweek / 7)}
    table = pd.DataFrame(columns, index=index)
    table["y"] = scaled
    table = table.dropna()
    return table.drop(columns="y").to_numpy(np.float32), table["y"].to_numpy(np.float32), table.index


def main() -> None:
    args = parse_args()
    torch.manual_seed(args.seed)
    torch.set_num_threads(1)
    started = time.perf_counter()
    series = hourly(args.data, args.months)
    split = series.index.max() - pd.Timedelta(days=args.valid_days)
    train_part = series[series.index <= split]
    mean, std = float(train_part.mean()), float(train_part.std()) or 1.0
    x, y, index = features(series, args.lags, mean, std)
    is_train = index <= split
    xt, yt = torch.from_numpy(x[is_train]), torch.from_numpy(y[is_train])
    xv, yv = torch.from_numpy(x[~is_train]), torch.from_numpy(y[~is_train])
    activation = {"relu": torch.nn.ReLU, "tanh": torch.nn.Tanh, "gelu": torch.nn.GELU}[args.activation]
    layers = [torch.nn.Linear(x.shape[1], args.hidden)] + ([torch.nn.LayerNorm(args.hidden)] if args.layer_norm else [])
    model = torch.nn.Sequential(*layers, activation(), torch.nn.Linear(args.hidden, 1))
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    writer = SummaryWriter(log_dir=args.logdir)
    generator = torch.Generator().manual_seed(args.seed)
    actual = yv.numpy() * std + mean
    print(f"data: {len(yt)} training hours, {len(yv)} validation hours, {x.shape[1]} features")
    for epoch in range(1, args.epochs + 1):
        model.train()
        order = torch.randperm(len(yt), generator=generator)
        total = 0.0
        for i in range(0, len(order), args.batch_size):
            idx = order[i:i + args.batch_size]
            loss = torch.nn.functional.mse_loss(model(xt[idx]).squeeze(-1), yt[idx])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += float(loss) * len(idx)
        model.eval()
        with torch.no_grad():
            forecast = model(xv).squeeze(-1).numpy() * std + mean
        wape = float(np.abs(actual - forecast).sum() / np.abs(actual).sum())
        smape = float(np.mean(2 * np.abs(actual - forecast) / (np.abs(actual) + np.abs(forecast) + 1e-9)) * 100)
        train_loss = total / len(yt)
        print(f"epoch {epoch}/{args.epochs}: epoch={epoch} train_loss={train_loss:.5f} val_wape={wape:.5f} "
              f"val_smape={smape:.4f}", flush=True)
        writer.add_scalar("train_loss", train_loss, epoch)
        writer.add_scalar("val_wape", wape, epoch)
        writer.add_scalar("val_smape", smape, epoch)
    writer.close()
    print(f"done in {time.perf_counter() - started:.1f}s")


if __name__ == "__main__":
    main()
