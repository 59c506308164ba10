"""The optimizers of the catalog's `optimizer` (adam, adamw, sgd): torch's, minus the first-call cost of
their torch.compile hooks.

`torch.optim.Adam.step` and `Optimizer.add_param_group` / `zero_grad` are wrapped for torch.compile: the
wrappers' first call imports `torch._dynamo`, and with it sympy — 1.5–2 s of a trial process that never
compiles anything (profile: `python -X importtime -m hpt.trainer MANIFEST ...`). In eager mode the
wrappers only turn gradients off around the step, so `EagerAdam` calls the wrapped functions directly
under `torch.no_grad()`: the same arithmetic, bit for bit (tests/test_trainer.py compares each with
torch's own). AdamW is Adam with decoupled weight decay (it inherits Adam's step); SGD has its own step.
Should a torch release stop exposing `__wrapped__`, `inspect.unwrap` returns the wrapper itself: slower
again, never different.
"""
from __future__ import annotations

import inspect
from typing import Any

import torch

_ADAM_STEP = inspect.unwrap(torch.optim.Adam.step)
_SGD_STEP = inspect.unwrap(torch.optim.SGD.step)
_ADD_PARAM_GROUP = inspect.unwrap(torch.optim.Optimizer.add_param_group)
_ZERO_GRAD = inspect.unwrap(torch.optim.Optimizer.zero_grad)


class _Eager:
    """What the three share: the unwrapped step (`_step`, set by each) under no_grad, and param groups and
    zero_grad without their compile hooks. Listed first among the bases, so these win over torch's wrappers."""

    _step: Any

    @torch.no_grad()
    def step(self, closure: Any = None) -> Any:
        return self._step(closure)

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        _ADD_PARAM_GROUP(self, param_group)

    def zero_grad(self, set_to_none: bool = True) -> None:
        _ZERO_GRAD(self, set_to_none)


class EagerAdam(_Eager, torch.optim.Adam):
    """`torch.optim.Adam` for eager mode only (never under torch.compile)."""

    _step = _ADAM_STEP


class EagerAdamW(_Eager, torch.optim.AdamW):
    """`torch.optim.AdamW` for eager mode only (its step is Adam's, with decoupled weight decay)."""

    _step = _ADAM_STEP


class EagerSGD(_Eager, torch.optim.SGD):
    """`torch.optim.SGD` for eager mode only."""

    _step = _SGD_STEP


SGD_MOMENTUM = 0.9
ADAMW_WEIGHT_DECAY = 0.01


def make_optimizer(name: str, parameters: Any, lr: float) -> torch.optim.Optimizer:
    """The catalog's `optimizer` choice (schemas/catalog.json names the choices and says what each is)."""
    if name == "adam":
        return EagerAdam(parameters, lr=lr)
    if name == "adamw":
        return EagerAdamW(parameters, lr=lr, weight_decay=ADAMW_WEIGHT_DECAY)
    if name == "sgd":
        return EagerSGD(parameters, lr=lr, momentum=SGD_MOMENTUM)
    raise ValueError(f"unknown optimizer {name!r}")  # the compiler checked the choice: a bug if reached
