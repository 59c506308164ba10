"""The network: an MLP over lagged values, calendar and weather."""
from __future__ import annotations

import torch
from torch import nn


ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh, "gelu": nn.GELU}


def build(inputs: int, hidden: int, layers: int, dropout: float, activation: str = "relu") -> nn.Module:
    blocks: list[nn.Module] = []
    width = inputs
    for _ in range(layers):
        blocks += [nn.Linear(width, hidden), ACTIVATIONS[activation](), nn.Dropout(dropout)]
        width = hidden
    blocks.append(nn.Linear(width, 1))
    return nn.Sequential(*blocks)


@torch.no_grad()
def predict(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    model.eval()
    return model(x).squeeze(-1)
