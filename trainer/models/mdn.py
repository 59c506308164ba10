"""mdn: a mixture density network (Bishop 1994) over a bag-of-words encoder.

The head predicts a Gaussian mixture of the (standardized) target: weights π_k, means μ_k and
scales σ_k for k = 1..num_components. It trains on the negative log-likelihood; its point
prediction — the one MSE is measured on — is the mixture mean Σ π_k μ_k.
"""
from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from hpt.trainer.models.base import BagEncoder, TextRegressor

LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)


class MixtureDensity(TextRegressor):
    def __init__(self, vocab_size: int, embedding_dim: int, hidden_size: int, num_components: int, dropout: float):
        super().__init__()
        self.encoder = BagEncoder(vocab_size, embedding_dim, hidden_size, dropout)
        self.head = nn.Linear(hidden_size, 3 * num_components)

    def forward(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        logits, mu, log_sigma = self.head(self.encoder(tokens)).float().chunk(3, dim=-1)
        return F.log_softmax(logits, dim=-1), mu, log_sigma.clamp(-7.0, 7.0)

    def nll(self, out, y: torch.Tensor) -> torch.Tensor:
        log_pi, mu, log_sigma = out
        z = (y[:, :1] - mu) * torch.exp(-log_sigma)
        log_prob = log_pi - 0.5 * z * z - log_sigma - LOG_SQRT_2PI
        return -torch.logsumexp(log_prob, dim=-1)

    def loss(self, out, y: torch.Tensor) -> torch.Tensor:
        return self.nll(out, y).mean()

    def mean(self, out) -> torch.Tensor:
        log_pi, mu, _ = out
        return (log_pi.exp() * mu).sum(-1)


def build(params: dict[str, Any], vocab_size: int, n_aux: int) -> MixtureDensity:
    return MixtureDensity(vocab_size, int(params["embedding_dim"]), int(params["hidden_size"]),
                          int(params["num_components"]), float(params["dropout"]))
