"""The optimizer: torch's Adam, minus the first-call cost of its torch.compile hooks.

`torch.optim.Adam.step` and `Optimizer.add_param_group` / `zero_grad` are wrapped for torch.compile: the
wrappers' first call imports `torch._dynamo`, and with it sympy — 1.5–2 s of a trial process that never
compiles anything (profile: `python -X importtime -m hpt.trainer MANIFEST ...`). In eager mode the
wrappers only turn gradients off around the step, so `EagerAdam` calls the wrapped functions directly
under `torch.no_grad()`: the same arithmetic, bit for bit (tests/test_trainer.py compares it with Adam).
Should a torch release stop exposing `__wrapped__`, `inspect.unwrap` returns the wrapper itself: slower
again, never different.
"""
from __future__ import annotations

import inspect
from typing import Any

import torch

_ADAM_STEP = inspect.unwrap(torch.optim.Adam.step)
_ADD_PARAM_GROUP = inspect.unwrap(torch.optim.Optimizer.add_param_group)
_ZERO_GRAD = inspect.unwrap(torch.optim.Optimizer.zero_grad)


class EagerAdam(torch.optim.Adam):
    """`torch.optim.Adam` for eager mode only (never under torch.compile)."""

    @torch.no_grad()
    def step(self, closure: Any = None) -> Any:
        return _ADAM_STEP(self, closure)

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        _ADD_PARAM_GROUP(self, param_group)

    def zero_grad(self, set_to_none: bool = True) -> None:
        _ZERO_GRAD(self, set_to_none)
