"""cnn: 1-D convolution over token embeddings, ReLU, max over time (Kim 2014, one kernel size)."""
from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from hpt.trainer.models.base import TextRegressor


class CNNRegressor(TextRegressor):
    def __init__(self, vocab_size: int, embedding_dim: int, num_filters: int, kernel_size: int, dropout: float):
        super().__init__()
        self.kernel_size = kernel_size
        self.embedding = nn.Embedding(vocab_size, embedding_dim, padding_idx=0)
        self.conv = nn.Conv1d(embedding_dim, num_filters, kernel_size)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(num_filters, 1)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        emb = self.embedding(tokens).transpose(1, 2)          # [B, E, T]
        if emb.size(-1) < self.kernel_size:                    # texts shorter than the kernel: pad with zeros
            emb = F.pad(emb, (0, self.kernel_size - emb.size(-1)))
        features = F.relu(self.conv(emb)).amax(dim=-1)          # [B, filters]
        return self.head(self.dropout(features)).squeeze(-1)


def build(params: dict[str, Any], vocab_size: int, n_aux: int) -> CNNRegressor:
    return CNNRegressor(vocab_size, int(params["embedding_dim"]), int(params["num_filters"]), int(params["kernel_size"]),
                        float(params["dropout"]))
