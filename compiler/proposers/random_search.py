"""random: `trials` seeded draws from the spec's values and distributions, no config twice (compiler/search.py)."""
from __future__ import annotations

from hpt.compiler.proposers import Proposer


class Random(Proposer):
    name = "random"
    needs_trials = True
