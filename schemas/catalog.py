"""Typed view of catalog.json: architectures, their hyperparameters, the metrics vocabulary, modes.

One source of truth for the compiler (defaults, auto-mode ranges, validation) and the trainer
(which model to build, with which hyperparameters).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from typing import Any

from hpt.schemas.loader import load_json


NUMERIC = ("int", "float")
# What the built-in trainer measures on the validation window every epoch: it keeps the epoch that is best by
# the objective when the objective is one of these (else by validation mse, a compile warning says so).
EPOCH_METRICS = ("mse", "mae", "loss", "nll")
CATEGORICAL, BOOL = "categorical", "bool"
JSON = "json"   # a user trainer's hyperparameter whose spec values include lists or objects (W&B's any JSON type)
# a hyperparameter's value: a number, one of a categorical's choices, a bool, or (JSON) a list or object
Value = int | float | str | bool | list | dict


def value_key(value: Any) -> Any:
    """A hashable stand-in for a value (sets, dict keys): a list or object by its canonical JSON."""
    if isinstance(value, (list, dict)):
        return "json:" + json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return value


@dataclass(frozen=True)
class ParamSpec:
    name: str
    type: str  # "int" | "float" | "categorical" (one of `choices`) | "bool" | "json" (one of `choices`, any JSON)
    default: Value
    help: str
    min: float | None = None   # numeric types only: the range random search and validation keep to
    max: float | None = None
    log: bool = False
    auto: tuple[Value, ...] = ()  # values auto mode tries; empty = stays at its default
    choices: tuple[Value, ...] = ()  # categorical (strings) and json (any JSON): every value it may take

    @property
    def numeric(self) -> bool:
        return self.type in NUMERIC

    @property
    def options(self) -> tuple[Value, ...]:
        """Every value a non-numeric hyperparameter may take (its choices, or false and true)."""
        return self.choices if self.type in (CATEGORICAL, JSON) else (False, True) if self.type == BOOL else ()

    def type_problem(self, value: Any) -> str | None:
        """Why `value` cannot be this hyperparameter's (the wrong type, or not one of its choices); None if it can.
        The compiler checks spec values with it, the trainer its manifest's."""
        shown = json.dumps(value, default=repr)
        if self.type == BOOL:
            return None if isinstance(value, bool) else f"{self.name} is a bool: true or false, got {shown}"
        if self.type == JSON:
            return None if value_key(value) in {value_key(c) for c in self.choices} else \
                f"{shown} is not one of {self.name}'s values: {', '.join(format_value(c) for c in self.choices)}"
        if self.type == CATEGORICAL:
            return None if isinstance(value, str) and value in self.choices else \
                f"{shown} is not one of {self.name}'s choices: {', '.join(self.choices)}"
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return f"{self.name} is a number ({self.type}), got {shown}"
        return None

    def coerce(self, value: Any) -> Value:
        """A checked value in this hyperparameter's type (ints of a float parameter become floats)."""
        if self.type == "int":
            return int(value)
        if self.type == "float":
            return float(value)
        if isinstance(value, (list, dict)):   # objects with their keys sorted, as the manifest keeps them, so the
            return json.loads(value_key(value)[len("json:"):])   # argv rendered from them is the same for equal values
        return value

    def describe_range(self) -> str:
        """'int [4, 1024] log', 'categorical adam|adamw|sgd', 'bool'."""
        if self.numeric:
            return f"{self.type} [{self.min:g}, {self.max:g}]" + (" log" if self.log else "")
        if self.type == JSON:
            return f"json {'|'.join(format_value(c) for c in self.choices)}"
        return f"categorical {'|'.join(map(str, self.choices))}" if self.type == CATEGORICAL else "bool"


def format_value(value: Value) -> str:
    """A value as the CLI shows it: 0.001, 32, adamw, true, [64,64] (a list or object as canonical JSON)."""
    if isinstance(value, (list, dict)):
        return value_key(value)[len("json:"):]
    if isinstance(value, bool):
        return "true" if value else "false"
    return f"{value:g}" if isinstance(value, float) else str(value)


@dataclass(frozen=True)
class Architecture:
    name: str
    description: str
    parameters: tuple[ParamSpec, ...]

    def param(self, name: str) -> ParamSpec:
        for spec in self.parameters:
            if spec.name == name:
                return spec
        raise KeyError(name)

    @property
    def param_names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.parameters)

    def defaults(self) -> dict[str, Value]:
        return {p.name: p.default for p in self.parameters}


@dataclass(frozen=True)
class Metric:
    name: str
    goal: str  # "minimize" | "maximize"
    help: str


def param_spec(entry: dict[str, Any]) -> ParamSpec:
    return ParamSpec(name=entry["name"], type=entry["type"], default=entry["default"], help=entry["help"],
                     min=entry.get("min"), max=entry.get("max"), log=entry.get("log", False),
                     auto=tuple(entry.get("auto", ())), choices=tuple(entry.get("choices", ())))


@cache
def architectures() -> dict[str, Architecture]:
    raw = load_json("catalog.json")
    result = {}
    for name, entry in raw["architectures"].items():
        params = [param_spec(p) for family in entry["families"] for p in raw["families"][family]]
        params += [param_spec(p) for p in entry["parameters"]]
        result[name] = Architecture(name=name, description=entry["description"], parameters=tuple(params))
    return result


def architecture(name: str) -> Architecture:
    return architectures()[name]


@cache
def metrics() -> dict[str, Metric]:
    return {name: Metric(name=name, goal=m["goal"], help=m["help"]) for name, m in load_json("catalog.json")["metrics"].items()}


def default_metrics() -> list[str]:
    return list(load_json("catalog.json")["default_metrics"])


def learning_rate_family() -> tuple[str, ...]:
    """The hyperparameters auto mode tunes first (the seed: learning rate, decay, patience)."""
    return tuple(p["name"] for p in load_json("catalog.json")["families"]["learning-rate"])


def mode_defaults(mode: str) -> dict[str, Any]:
    return dict(load_json("catalog.json")["modes"][mode])
