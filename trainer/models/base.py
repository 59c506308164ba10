"""What every model is: token ids in, an opaque output, and three ways to read that output.

The trainer never looks inside an output; it asks the model for
    loss(out, y)  the training objective (regularizers included), y = standardized targets [B, K]
    mean(out)     the point prediction of the main target (standardized), [B]
    nll(out, y)   per-example negative log-likelihood of the main target, or None (mdn only)
so a model with an attention penalty or a mixture head fits the same loop.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.nn import functional as F


class TextRegressor(nn.Module):
    """Base class: subclasses set `self.n_targets` and implement forward, loss and mean."""

    n_targets: int = 1  # columns of y the model uses (main target first)

    def loss(self, out: Any, y: torch.Tensor) -> torch.Tensor:
        return F.mse_loss(self.mean(out).float(), y[:, 0])

    def mean(self, out: Any) -> torch.Tensor:
        return out

    def nll(self, out: Any, y: torch.Tensor) -> torch.Tensor | None:
        return None


def masked_mean(emb: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """Mean of embeddings over non-padding positions ([B, T, E] → [B, E]); every text has ≥ 1 token."""
    mask = (tokens != 0).unsqueeze(-1).to(emb.dtype)
    return (emb * mask).sum(1) / mask.sum(1).clamp_min(1.0)


def last_valid(outputs: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """The output at each sequence's last real token ([B, T, H] → [B, H]); padding is on the right."""
    lengths = (tokens != 0).sum(1).clamp_min(1)
    index = (lengths - 1).view(-1, 1, 1).expand(-1, 1, outputs.size(-1))
    return outputs.gather(1, index).squeeze(1)


class BagEncoder(nn.Module):
    """Embedding → masked mean → Linear → ReLU → dropout: the shared front of bow, mdn, multitask."""

    def __init__(self, vocab_size: int, embedding_dim: int, hidden_size: int, dropout: float):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, embedding_dim, padding_idx=0)
        self.hidden = nn.Linear(embedding_dim, hidden_size)
        self.dropout = nn.Dropout(dropout)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.dropout(F.relu(self.hidden(masked_mean(self.embedding(tokens), tokens))))
