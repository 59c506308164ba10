"""The trial protocol (docs/trial-protocol.md): how `hpt-trial` and a user's trainer talk.

The user program gets its trial through environment variables and reports through a metrics file
or stdout lines. Both sides read the names from here: `hpt-trial` (hpt.trainer.user) and the small
Python API a user program imports (hpt.trial). Nothing here imports torch.
"""
from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any, Iterable

PROTOCOL_VERSION = "2"   # 2: rendered command lines, collected metrics, trials without windows (docs/trial-protocol.md)

# What the user program is given (environment variables).
ENV_VERSION = "HPT_PROTOCOL"           # PROTOCOL_VERSION
ENV_MANIFEST = "HPT_TRIAL_MANIFEST"    # path of the trial manifest (JSON, trial.schema.json)
ENV_OUTPUT = "HPT_TRIAL_OUTPUT"        # folder for artifacts: uploaded to models/<trial-id>/
ENV_METRICS = "HPT_TRIAL_METRICS"      # where the final metrics file goes ($HPT_TRIAL_OUTPUT/metrics.json)
ENV_SOURCE = "HPT_TRAINER_SOURCE"      # set by a user trainer image: where its source folder lives there

ENV_EPOCHS = "HPT_TRIAL_EPOCHS"        # the budget: at most this many epochs (a fidelity may lower it)
ENV_DATA = "HPT_TRIAL_DATA"            # the dataset folder on this machine (a path, or the gs:// URI)
ENV_ARGS = "HPT_TRIAL_ARGS"            # path of the trial's hyperparameters as JSON (W&B's ${args_json_file})
# Halving's rungs that differ only in epochs (docs/trial-protocol.md, "Continuing a lower rung"); a program may ignore them.
ENV_CONTINUE_FROM = "HPT_TRIAL_CONTINUE_FROM"      # a folder: what the same trial at the lower rung left in its output
ENV_CONTINUE_EPOCHS = "HPT_TRIAL_CONTINUE_EPOCHS"  # the epochs that lower trial was given
ENV_KEEP_CHECKPOINT = "HPT_TRIAL_KEEP_CHECKPOINT"  # "1": a higher rung will continue from this trial's output

# The word a rendered command keeps for W&B's ${args_json_file}: hpt-trial writes the file and puts its path here.
ARGS_JSON_FILE = "${args_json_file}"
ARGS_FILE = "args.json"

METRICS_FILE = "metrics.json"
LOG_FILE = "trial.log"                 # the program's stdout and stderr, kept beside its artifacts

# Result lines on stdout: the prefix, one space, then a JSON object on the same line.
EPOCH_PREFIX = "hpt:epoch"             # hpt:epoch {"epoch": 3, "loss": 0.41, "mse": 0.38}
RESULT_PREFIX = "hpt:result"           # hpt:result {"mse": 0.37}


class ReportError(ValueError):
    """A report that breaks the protocol; its message is the failed row's one-line reason."""


@dataclass(frozen=True)
class EpochReport:
    epoch: int
    values: dict[str, float]


def numbers(doc: Any, what: str) -> dict[str, float]:
    """A report's name → number mapping; NaN, infinities, booleans and non-numbers are protocol errors."""
    if not isinstance(doc, dict):
        raise ReportError(f"{what} is not a JSON object")
    out: dict[str, float] = {}
    for name, value in doc.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ReportError(f"{what}: {name} is not a number ({value!r})")
        if not math.isfinite(value):
            raise ReportError(f"{what}: {name} is {value}")
        out[str(name)] = value
    return out


def parse_json(text: str, what: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise ReportError(f"{what} is not valid JSON ({err.msg} at column {err.colno})") from None


def parse_line(line: str, where: str) -> tuple[str, Any] | None:
    """('epoch', EpochReport) or ('result', metrics) for a protocol line; None for any other line."""
    text = line.strip()
    for prefix, kind in ((EPOCH_PREFIX, "epoch"), (RESULT_PREFIX, "result")):
        if text == prefix or text.startswith(prefix + " "):
            values = numbers(parse_json(text[len(prefix):].strip(), f"{where} ({prefix})"), f"{where} ({prefix})")
            if kind == "result":
                return kind, values
            if "epoch" not in values or float(values["epoch"]) != int(values["epoch"]):
                raise ReportError(f"{where} ({prefix}): needs an integer \"epoch\"")
            epoch = int(values.pop("epoch"))
            return kind, EpochReport(epoch, values)
    return None


_PLAIN = re.compile(r"[A-Za-z0-9_.:/|@ -]*\Z")


def epoch_line(epoch: int, values: dict[str, float]) -> str:
    """The same text json.dumps writes; names that need no escaping (nearly all) skip the encoder, which a
    script's 10,000 collected reports would otherwise pay for (bench/bench_user_trial.py --stdout-lines)."""
    if all(_PLAIN.match(k) for k in values) and all(type(v) in (int, float) for v in values.values()):
        body = "".join(f', "{k}": {_number(v)}' for k, v in values.items())
        return f'{EPOCH_PREFIX} {{"epoch": {int(epoch)}{body}}}'
    return f"{EPOCH_PREFIX} " + json.dumps({"epoch": epoch, **values}, allow_nan=True)


_NUMBER_TYPES = frozenset((int, float))


def epoch_lines(reports: list[EpochReport]) -> str:
    """epoch_line's text for many reports, each line ending in a newline (report_objects' fast path)."""
    return "".join([f"{EPOCH_PREFIX} {text}\n" if text is not None else epoch_line(r.epoch, r.values) + "\n"
                    for r, text in zip(reports, report_objects(reports))])


def report_objects(reports: list[EpochReport], sort_keys: bool = False) -> list[str | None]:
    """Each report as the JSON object json.dumps writes for {"epoch": epoch, **values} (sort_keys as there), or
    None where the fast way does not apply (a name needing escapes, a value that is not an int or a finite
    float). The object's shape is built once per set of names (a script's 10,000 reports share one or two) and
    filled with the values' repr, which is json.dumps's own text for those numbers (bench_user_trial.py)."""
    shapes: dict[tuple[str, ...], str | None] = {}
    out: list[str | None] = []
    for report in reports:
        values = report.values
        names = tuple(values)
        shape = shapes.get(names, "")
        if shape == "":
            shape = shapes[names] = _object_shape(names, sort_keys)
        numbers = values.values()
        if shape is not None and type(report.epoch) is int and set(map(type, numbers)) <= _NUMBER_TYPES \
                and _finite_sum(numbers):
            out.append(shape.format(report.epoch, *numbers))
        else:
            out.append(None)
    return out


def _finite_sum(numbers: Iterable[float]) -> bool:
    """Whether every number is finite, told by their sum (an overflow only sends a report the slow way)."""
    try:
        return math.isfinite(sum(numbers))
    except OverflowError:
        return False


def _object_shape(names: tuple[str, ...], sort_keys: bool) -> str | None:
    """`{"epoch": {0}, "NAME": {1!r}, ...}` as a str.format template (argument 0 the epoch, then the values in
    the report's order); None for a name that needs escapes or is "epoch" itself."""
    if not all(_PLAIN.match(k) and "{" not in k and "}" not in k and k != "epoch" for k in names):
        return None
    fields = [("epoch", "{0}")] + [(k, f"{{{i}!r}}") for i, k in enumerate(names, 1)]
    if sort_keys:
        fields.sort()
    return "{{" + ", ".join(f'"{k}": {v}' for k, v in fields) + "}}"


def _number(value: float) -> str:
    if type(value) is int:
        return int.__repr__(value)
    if value != value or value in (math.inf, -math.inf):
        return json.dumps(value, allow_nan=True)   # NaN, Infinity
    return float.__repr__(value)


def result_line(values: dict[str, float]) -> str:
    return f"{RESULT_PREFIX} " + json.dumps(values, allow_nan=True)


def nested_params(params: dict[str, Any]) -> dict[str, Any]:
    """The hyperparameters as W&B's nested sweeps hand them to a program (${args_json}, ${args_json_file}):
    a dotted name OUTER.INNER (what a nested `parameters:` compiles to) back inside {"OUTER": {"INNER": ...}}.
    A name that is both a value and a prefix (a: 1 and a.b: 2) stays flat, an object value too (a: {"x": 1}
    and a.b: 2: the value is never merged into)."""
    out: dict[str, Any] = {}
    made: set[int] = set()   # the objects nesting made (a value's own object is not one of them)
    for name, value in params.items():
        parts = name.split(".")
        node = out
        for part in parts[:-1]:
            if part not in node:
                node[part] = {}
                made.add(id(node[part]))
            child = node[part]
            if id(child) not in made:
                return dict(params)
            node = child
        if parts[-1] in node:
            return dict(params)
        node[parts[-1]] = value
    return out
