"""Train one configuration on one window; hpt-trial runs `main` once per trial (docs/trial-protocol.md)."""
from __future__ import annotations

import json
import time

import numpy as np
import torch

from hpt import trial

from forecast.data import HORIZON, examples, read_hours
from forecast.model import build, predict


def main(t: trial.Trial) -> None:
    p = t.params
    torch.manual_seed(t.seed)
    torch.set_num_threads(1)
    started = time.perf_counter()
    lags = int(p["lags"])
    hours, _ = read_hours(t.data_uri, t.train[0], t.validation[1], history_hours=HORIZON + lags)
    train_y = hours.loc[t.train[0]:t.train[1]]["y"].astype("float64")
    mean, std = float(train_y.mean()), float(train_y.std()) or 1.0
    train = examples(hours, t.train[0], t.train[1], lags, mean, std)
    valid = examples(hours, t.validation[0], t.validation[1], lags, mean, std)
    if len(train.y) < 100 or len(valid.y) < 24:
        raise SystemExit(f"too little data: {len(train.y)} training and {len(valid.y)} validation hours")
    xt, yt = torch.from_numpy(train.x), torch.from_numpy(train.y)
    xv, yv = torch.from_numpy(valid.x), torch.from_numpy(valid.y)

    model = build(xt.shape[1], int(p["hidden"]), int(p["layers"]), float(p["dropout"]), str(p["activation"]))
    optimizer = torch.optim.AdamW(model.parameters(), lr=float(p["lr"]), weight_decay=float(p["weight_decay"]))
    generator = torch.Generator().manual_seed(t.seed)
    batch = int(p["batch_size"])
    best = {"mse": float("inf"), "epoch": 0}
    best_state = None
    waited = 0
    epoch = 0
    for epoch in range(1, t.epochs + 1):
        model.train()
        order = torch.randperm(len(yt), generator=generator)
        total = 0.0
        for i in range(0, len(order), batch):
            idx = order[i:i + batch]
            loss = torch.nn.functional.mse_loss(model(xt[idx]).squeeze(-1), yt[idx])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += float(loss) * len(idx)
        train_mse = total / len(yt)
        val_mse = float(torch.mean((predict(model, xv) - yv) ** 2))
        trial.log(epoch, train_mse=train_mse, mse=val_mse)
        if val_mse < best["mse"]:
            best = {"mse": val_mse, "epoch": epoch, "train_mse": train_mse}
            best_state = {k: v.clone() for k, v in model.state_dict().items()}
            waited = 0
        else:
            waited += 1
            if waited >= int(p["patience"]):
                break

    model.load_state_dict(best_state)
    errors = predict(model, xv) - yv
    torch.save(best_state, t.output / "model.pt")
    (t.output / "scaling.json").write_text(json.dumps({"mean": mean, "std": std, "lags": lags, "horizon": HORIZON}))
    trial.result(
        mse=best["mse"], loss=best["mse"], train_mse=best["train_mse"], mae=float(errors.abs().mean()),
        baseline_mse=float(np.mean((valid.naive - valid.y) ** 2)), epochs=epoch, best_epoch=best["epoch"],
        n_params=sum(p.numel() for p in model.parameters()), n_train=len(yt), n_valid=len(yv),
        train_time_s=time.perf_counter() - started,
    )
