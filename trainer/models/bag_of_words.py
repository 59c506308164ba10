"""bag-of-words: the mean of learned token embeddings into a one-hidden-layer MLP."""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

from hpt.trainer.models.base import BagEncoder, TextRegressor


class BagOfWords(TextRegressor):
    def __init__(self, vocab_size: int, embedding_dim: int, hidden_size: int, dropout: float):
        super().__init__()
        self.encoder = BagEncoder(vocab_size, embedding_dim, hidden_size, dropout)
        self.head = nn.Linear(hidden_size, 1)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(tokens)).squeeze(-1)


def build(params: dict[str, Any], vocab_size: int, n_aux: int) -> BagOfWords:
    return BagOfWords(vocab_size, int(params["embedding_dim"]), int(params["hidden_size"]), float(params["dropout"]))
