"""Proposers: where a search's configs come from (Optuna's samplers, Ray Tune's searchers).

A proposer yields round 1's configs at compile (`first`); a model-based one (`adaptive`) is asked again
by the scheduler for more configs at a fidelity, told the scores measured there (`propose`), and never
proposes a config already run at that fidelity. Each proposer is one module here; the registry finds it
by its `name` (the spec's `search.proposer`).
"""
from __future__ import annotations

from typing import Any, ClassVar, Iterator, Mapping

from hpt.compiler.registry import Registry
from hpt.compiler.search import SearchSpace
from hpt.schemas.plan import Plan


class Proposer:
    name: ClassVar[str] = ""
    adaptive: ClassVar[bool] = False          # asked again as results come in (model-based)
    settings_keys: ClassVar[tuple[str, ...]] = ()   # spec keys under search that only this proposer reads
    needs_trials: ClassVar[bool] = False      # draws configs: `trials` gets a default (DEFAULT_RANDOM_TRIALS)

    def __init_subclass__(cls, **kw: Any) -> None:
        super().__init_subclass__(**kw)
        PROPOSERS.add(cls)

    def check(self, search: Mapping[str, Any], doc: Mapping[str, Any]) -> None:
        """Refuse settings this proposer cannot run (a UserError naming the key); called once, at compile."""

    def first(self, space: SearchSpace) -> Iterator[dict[str, Any]]:
        """Round 1's configs (every hyperparameter of the architecture)."""
        return space.configs()

    def settings(self, space: SearchSpace) -> dict[str, Any] | None:
        """What plan.json records for later rounds (under the proposer's name); None: nothing."""
        return None

    def propose(self, plan: Plan, history: list[tuple[dict[str, Any], float]], taken: set[tuple], n: int,
                round_no: int, defaults: Mapping[str, Any]) -> list[dict[str, Any]]:
        """Up to `n` new configs told `history` (config, score at one fidelity), none in `taken` (tuned
        values of every config already run at that fidelity); untuned hyperparameters from `defaults` (any
        config's params). Only adaptive proposers are asked."""
        raise NotImplementedError

    def batch(self, plan: Plan, parallel: int | None) -> int:
        """Configs per later round."""
        raise NotImplementedError

    def budget(self, plan: Plan) -> int:
        """Configs the proposer may propose in all."""
        raise NotImplementedError


PROPOSERS: Registry[Proposer] = Registry(__name__, "proposer")
