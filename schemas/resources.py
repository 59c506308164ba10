"""What one trial may use: GPUs, CPUs, memory. The typed form of a manifest's `resources`
(trial.schema.json) and the one place its defaults live; every backend reads it from here."""
from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Any, Mapping

from hpt.schemas.errors import UserError

_QUANTITY = re.compile(r"^([0-9]+(?:\.[0-9]+)?)(Ki|Mi|Gi|Ti|k|M|G|T)?$")
_FACTORS = {None: 1, "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12,
            "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}


def memory_bytes(quantity: str | int | float) -> int:
    """A Kubernetes memory quantity ("2Gi", "512M", "1048576") in bytes."""
    if isinstance(quantity, (int, float)):
        return int(quantity)
    match = _QUANTITY.match(str(quantity).strip())
    if not match:
        raise UserError(f"not a memory quantity: {quantity!r}", where="resources.memory", hint="e.g. 4Gi, 512Mi, 2G")
    return int(float(match.group(1)) * _FACTORS[match.group(2)])


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
