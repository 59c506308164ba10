"""lstm: token embeddings through a (stacked) LSTM; the hidden state at the last real token feeds the head."""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

from hpt.trainer.models.base import TextRegressor, last_valid


class LSTMRegressor(TextRegressor):
    def __init__(self, vocab_size: int, embedding_dim: int, hidden_size: int, num_layers: int, dropout: float):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, embedding_dim, padding_idx=0)
        self.lstm = nn.LSTM(embedding_dim, hidden_size, num_layers=num_layers, batch_first=True,
                            dropout=dropout if num_layers > 1 else 0.0)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(hidden_size, 1)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        # Right padding: outputs up to the last real token never saw a pad, so no packing is needed.
        outputs, _ = self.lstm(self.embedding(tokens))
        return self.head(self.dropout(last_valid(outputs, tokens))).squeeze(-1)


def build(params: dict[str, Any], vocab_size: int, n_aux: int) -> LSTMRegressor:
    return LSTMRegressor(vocab_size, int(params["embedding_dim"]), int(params["hidden_size"]),
                         int(params["num_layers"]), float(params["dropout"]))
