"""The architectures: one file each, registered under the catalog's names (hpt.schemas.catalog).

`build_model(architecture, params, vocab_size, n_aux)` returns a `TextRegressor` built from the
manifest's resolved hyperparameters. The registry and the catalog must name the same set.
"""
from __future__ import annotations

from typing import Any, Callable

from hpt.schemas.catalog import architectures
from hpt.schemas.errors import UserError
from hpt.trainer.models import bag_of_words, cnn, lstm, lstm_attention, mdn, multitask
from hpt.trainer.models.base import TextRegressor

Builder = Callable[[dict[str, Any], int, int], TextRegressor]

REGISTRY: dict[str, Builder] = {
    "bag-of-words": bag_of_words.build,
    "lstm": lstm.build,
    "cnn": cnn.build,
    "lstm-attention": lstm_attention.build,
    "mdn": mdn.build,
    "multitask": multitask.build,
}


def build_model(architecture: str, params: dict[str, Any], vocab_size: int, n_aux: int = 0) -> TextRegressor:
    if architecture not in REGISTRY:
        known = ", ".join(sorted(architectures()))
        raise UserError(f"unknown architecture {architecture!r} (known: {known})", where="manifest: architecture")
    try:
        return REGISTRY[architecture](params, vocab_size, n_aux)
    except KeyError as err:
        raise UserError(f"missing hyperparameter {err.args[0]!r} for {architecture}", where="manifest: params") from None


__all__ = ["REGISTRY", "TextRegressor", "build_model"]
