"""multitask: a shared bag-of-words encoder with one linear head per target.

Head 0 predicts the main target (MSE is measured on it alone); the others predict the dataset's
auxiliary targets (for the demo: log quantity and log unit price), whose mean MSE joins the loss
weighted by aux_loss_weight. Related targets shape the shared encoder.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from hpt.trainer.models.base import BagEncoder, TextRegressor


class MultiTask(TextRegressor):
    def __init__(self, vocab_size: int, embedding_dim: int, hidden_size: int, n_aux: int, aux_loss_weight: float,
                 dropout: float):
        super().__init__()
        self.n_targets = 1 + n_aux
        self.aux_loss_weight = aux_loss_weight
        self.encoder = BagEncoder(vocab_size, embedding_dim, hidden_size, dropout)
        self.heads = nn.Linear(hidden_size, self.n_targets)   # one output per target: K heads in one matmul

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.heads(self.encoder(tokens))               # [B, K]

    def loss(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        out = out.float()
        main = F.mse_loss(out[:, 0], y[:, 0])
        if self.n_targets == 1:
            return main
        return main + self.aux_loss_weight * F.mse_loss(out[:, 1:], y[:, 1:self.n_targets])

    def mean(self, out: torch.Tensor) -> torch.Tensor:
        return out[:, 0]


def build(params: dict[str, Any], vocab_size: int, n_aux: int) -> MultiTask:
    return MultiTask(vocab_size, int(params["embedding_dim"]), int(params["hidden_size"]), n_aux,
                     float(params["aux_loss_weight"]), float(params["dropout"]))
