"""What one trial may use: GPUs, CPUs, memory. The typed form of a manifest's `resources`
(trial.schema.json) and the one place its defaults live; every backend reads it from here."""
from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Any, Mapping

from hpt.schemas.errors import UserError

_QUANTITY = re.compile(r"([0-9]+(?:\.[0-9]+)?)(Ki|Mi|Gi|Ti|k|M|G|T)?\Z")
_FACTORS = {None: 1, "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12,
            "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}
MIN_MEMORY = 6 * 2**20       # Docker refuses less than 6 MiB
MAX_MEMORY = 64 * 2**40      # far above any node; an absurd value is a typo, not a request


def memory_bytes(quantity: str | int | float) -> int:
    """A Kubernetes memory quantity ("2Gi", "512M", "1048576") in bytes."""
    if isinstance(quantity, (int, float)):
        return int(quantity)
    match = _QUANTITY.match(str(quantity).strip())
    if not match or len(match.group(1)) > 20:
        raise UserError(f"not a memory quantity: {str(quantity)[:40]!r}", where="resources.memory", hint="e.g. 4Gi, 512Mi, 2G")
    return int(float(match.group(1)) * _FACTORS[match.group(2)])


def check_memory(quantity: str, where: str = "resources.memory") -> int:
    """memory_bytes, and within [6Mi, 64Ti]: the compiler's check of a spec's `resources.memory`."""
    size = memory_bytes(quantity)
    if not MIN_MEMORY <= size <= MAX_MEMORY:
        raise UserError(f"{quantity!r} is outside the range a trial may ask for, 6Mi to 64Ti", where=where)
    return size


@dataclass(frozen=True)
class Resources:
    """A spec that omits a key gets these defaults at compile time; a manifest always holds all three."""
    gpus: int = 0
    cpus: float = 1          # an int stays an int, so a manifest's bytes round-trip unchanged
    memory: str = "4Gi"      # a Kubernetes quantity (the container's memory limit)

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> "Resources":
        """From a validated spec's or manifest's `resources` (omitted keys take the defaults)."""
        return cls(**doc)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def memory_bytes(self) -> int:
        return memory_bytes(self.memory)
