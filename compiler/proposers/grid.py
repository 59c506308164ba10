"""grid: the Cartesian product of the spec's values, in a seeded random order (compiler/search.py)."""
from __future__ import annotations

from typing import Any, Mapping

from hpt.compiler.proposers import Proposer
from hpt.schemas.errors import UserError


class Grid(Proposer):
    name = "grid"

    def check(self, search: Mapping[str, Any], doc: Mapping[str, Any]) -> None:
        distributions = [n for n, v in doc.get("parameters", {}).items() if isinstance(v, dict) and "distribution" in v]
        if distributions:
            raise UserError("a distribution needs random search", where=f"parameters.{distributions[0]}",
                            hint='set "search": {"method": "random", "trials": N}, or list values for a grid')
