"""lstm-attention: an LSTM with multi-head self-attentive pooling (Lin et al. 2017, "A Structured
Self-Attentive Sentence Embedding"), the model the seed article tuned.

    A = softmax(W2 · tanh(W1 · Hᵀ))      r = num_of_attentions heads, W1: attention_hidden_layer_size
    M = A · H                             r pooled views of the sequence, flattened into the head
    penalty = ||A·Aᵀ − I||²_F             keeps the heads looking at different tokens,
                                          weighted by attention_regularization in the loss
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from hpt.trainer.models.base import TextRegressor


class LSTMAttention(TextRegressor):
    def __init__(self, vocab_size: int, embedding_dim: int, hidden_size: int, num_of_attentions: int,
                 attention_hidden_layer_size: int, attention_regularization: float, dropout: float):
        super().__init__()
        self.regularization = attention_regularization
        self.embedding = nn.Embedding(vocab_size, embedding_dim, padding_idx=0)
        self.lstm = nn.LSTM(embedding_dim, hidden_size, batch_first=True)
        self.w1 = nn.Linear(hidden_size, attention_hidden_layer_size, bias=False)
        self.w2 = nn.Linear(attention_hidden_layer_size, num_of_attentions, bias=False)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(num_of_attentions * hidden_size, 1)

    def forward(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h, _ = self.lstm(self.embedding(tokens))                          # [B, T, H]
        scores = self.w2(torch.tanh(self.w1(h))).transpose(1, 2)           # [B, r, T]
        scores = scores.masked_fill((tokens == 0).unsqueeze(1), float("-inf"))
        a = F.softmax(scores.float(), dim=-1).to(h.dtype)                   # every text has ≥ 1 real token
        m = torch.bmm(a, h).flatten(1)                                     # [B, r·H]
        pred = self.head(self.dropout(m)).squeeze(-1)
        eye = torch.eye(a.size(1), device=a.device, dtype=torch.float32)
        penalty = ((torch.bmm(a, a.transpose(1, 2)).float() - eye) ** 2).sum(dim=(1, 2)).mean()
        return pred, penalty

    def loss(self, out: tuple[torch.Tensor, torch.Tensor], y: torch.Tensor) -> torch.Tensor:
        pred, penalty = out
        return F.mse_loss(pred.float(), y[:, 0]) + self.regularization * penalty

    def mean(self, out: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        return out[0]


def build(params: dict[str, Any], vocab_size: int, n_aux: int) -> LSTMAttention:
    return LSTMAttention(vocab_size, int(params["embedding_dim"]), int(params["hidden_size"]),
                         int(params["num_of_attentions"]), int(params["attention_hidden_layer_size"]),
                         float(params["attention_regularization"]), float(params["dropout"]))
