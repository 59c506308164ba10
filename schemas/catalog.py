"""Typed view of catalog.json: architectures, their hyperparameters, the metrics vocabulary, modes.

One source of truth for the compiler (defaults, auto-mode ranges, validation) and the trainer
(which model to build, with which hyperparameters).
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Any

from hpt.schemas.loader import load_json


@dataclass(frozen=True)
class ParamSpec:
    name: str
    type: str  # "int" | "float"
    default: int | float
    min: float
    max: float
    log: bool
    help: str
    auto: tuple[int | float, ...] = ()  # values auto mode tries; empty = stays at its default

    def coerce(self, value: Any) -> int | float:
        return int(value) if self.type == "int" else float(value)


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

    def defaults(self) -> dict[str, int | float]:
        return {p.name: p.default for p in self.parameters}


@dataclass(frozen=True)
class Metric:
    name: str
    goal: str  # "minimize" | "maximize"
    help: str


def param_spec(entry: dict[str, Any]) -> ParamSpec:
    return ParamSpec(name=entry["name"], type=entry["type"], default=entry["default"], min=entry["min"],
                     max=entry["max"], log=entry["log"], help=entry["help"], auto=tuple(entry.get("auto", ())))


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
