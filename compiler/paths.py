"""JSON paths and "did you mean" suggestions, the two things every spec error message carries."""
from __future__ import annotations

import difflib
import json
import re
from typing import Iterable, Sequence


_PLAIN_KEY = re.compile(r"[\w.$/-]+\Z", re.ASCII)


def json_path(parts: Sequence[str | int]) -> str:
    """`["parameters", "num_of_attentions", 1]` → `parameters.num_of_attentions[1]`; a key with other
    characters (spaces, brackets, newlines) is quoted, `parameters["a b"]`, so the path stays one line."""
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        elif not _PLAIN_KEY.match(part):
            out += f"[{json.dumps(part)}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def closest(name: str, choices: Iterable[str], n: int = 3) -> list[str]:
    choices = list(choices)
    found = difflib.get_close_matches(name, choices, n=n, cutoff=0.6)
    if not found:  # a prefix or substring often means the same thing ("lr" → learning_rate is not, "attention" is)
        lowered = name.lower()
        found = [c for c in choices if lowered and (lowered in c.lower() or c.lower() in lowered)][:n]
    return found


def did_you_mean(name: str, choices: Iterable[str]) -> str | None:
    """A hint for an unknown name: the closest valid ones, or every valid one when few."""
    choices = list(choices)
    found = closest(name, choices)
    if found:
        return "did you mean " + " or ".join(repr(c) for c in found) + "?"
    if choices and len(choices) <= 12:
        return "valid: " + ", ".join(choices)
    return None
