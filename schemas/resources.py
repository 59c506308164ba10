"""What one trial may use: GPUs, CPUs, memory. The typed form of a manifest's `resources`
(trial.schema.json) and the one place its defaults live; every backend reads it from here."""
from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from fractions import Fraction
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


MAX_TRIALS_PER_GPU = 16  # the smallest share of one GPU a trial may ask for is 1/16


def check_gpus(gpus: float, where: str = "resources.gpus") -> None:
    """The rule for `resources.gpus` (checked at compile): a whole number of GPUs, or a share 1/n of one
    (n = 2…16: 0.5, 0.25, 0.2, 0.125, … and 0.33 for a third, within 1%), so that shares pack a device
    exactly: n trials of 1/n each fill it."""
    if gpus >= 1 and gpus != int(gpus):
        raise UserError(f"more than one GPU must be a whole number, got {gpus:g}", where=where,
                        hint="a trial uses one GPU or several whole ones; only a single GPU can be shared (0.5, 0.25, …)")
    if 0 < gpus < 1:
        n = round(1 / gpus)
        if not 2 <= n <= MAX_TRIALS_PER_GPU or abs(gpus * n - 1) > 0.01:
            raise UserError(f"a share of a GPU must be 1/n (n = 2…{MAX_TRIALS_PER_GPU}), got {gpus:g}", where=where,
                            hint="e.g. 0.5, 0.25, 0.2, 0.125 or 0.33: n trials of 1/n then share one GPU exactly")


def gpu_share(gpus: float) -> Fraction:
    """`resources.gpus` exactly: N whole GPUs → N, a share → 1/n (0.33 → 1/3), as check_gpus allows."""
    if gpus <= 0:
        return Fraction(0)
    if gpus >= 1:
        return Fraction(int(gpus))
    return Fraction(1, round(1 / gpus))


def gpu_devices(gpus: float) -> int:
    """GPU devices a trial is given (a Kubernetes `nvidia.com/gpu` count): its whole GPUs, or the one it shares."""
    return max(1, int(gpu_share(gpus))) if gpus > 0 else 0


@dataclass(frozen=True)
class Resources:
    """A spec that omits a key gets these defaults at compile time; a manifest always holds all three."""
    gpus: float = 0          # whole GPUs, or a share 1/n of one (check_gpus); an int stays an int
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

    @property
    def gpu_share(self) -> Fraction:
        return gpu_share(self.gpus)

    @property
    def gpu_devices(self) -> int:
        return gpu_devices(self.gpus)
