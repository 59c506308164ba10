"""Which GPU device ids are free, and how much of each: whole devices for trials of N GPUs, shares for 1/n.

A trial of N whole GPUs takes N devices nobody uses. A trial of a share 1/n (resources.gpus 0.25 → 1/4)
takes room on one device: the fullest device that still has room, so shares pack together and whole
devices stay free for whole-GPU trials. Up to n trials of 1/n share one device id; shares of different
sizes mix (1/2 + 1/4 + 1/4). Exact fractions: four quarters fill a device, never 0.9999.
"""
from __future__ import annotations

from fractions import Fraction
from typing import Sequence

FULL = Fraction(1)


class GpuSlots:
    def __init__(self, device_ids: Sequence[str]):
        self.device_ids = list(device_ids)
        self.used: dict[str, Fraction] = {d: Fraction(0) for d in self.device_ids}

    def take(self, share: Fraction) -> tuple[str, ...] | None:
        """Device ids for a trial of `share` GPUs, marked used; None while too few are free (it waits)."""
        if share <= 0:
            return ()
        if share >= 1:
            free = [d for d in self.device_ids if self.used[d] == 0]
            if len(free) < share:
                return None
            taken = tuple(free[:int(share)])
            for d in taken:
                self.used[d] = FULL
            return taken
        fits = [d for d in self.device_ids if self.used[d] + share <= FULL]
        if not fits:
            return None
        fullest = max(fits, key=lambda d: self.used[d])  # max keeps the first of equals: pool order
        self.used[fullest] += share
        return (fullest,)

    def hold(self, device_ids: Sequence[str], share: Fraction) -> None:
        """Mark what an adopted trial (started by an earlier apply) already uses."""
        for d in device_ids:
            if d in self.used:
                self.used[d] = min(FULL, self.used[d] + (FULL if share >= 1 else share))

    def give_back(self, device_ids: Sequence[str], share: Fraction) -> None:
        for d in device_ids:
            if d in self.used:
                self.used[d] = max(Fraction(0), self.used[d] - (FULL if share >= 1 else share))

    def capacity(self, share: Fraction) -> int:
        """How many trials of `share` fit at once on an empty pool."""
        if share <= 0:
            return 10**9
        if share >= 1:
            return len(self.device_ids) // int(share)
        return len(self.device_ids) * int(1 / share)
