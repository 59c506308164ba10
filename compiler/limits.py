"""How big a spec, and the plan it compiles to, may be: every input limit of the compiler in one place.

A spec is a small hand-written file; these bounds sit far above any real one and far below what
would exhaust a machine, so a hostile or mistaken spec is refused in milliseconds, with one line
naming the key, before anything is written.
"""
from __future__ import annotations

import datetime as dt

MAX_SPEC_BYTES = 1 << 20        # the spec file itself (1 MiB)
MAX_DEPTH = 16                  # nesting of objects and lists (a real spec needs 5)
MAX_NODES = 200_000             # values in the document, YAML aliases counted as the copies they stand for
MAX_INTEGER = 2**63 - 1         # larger integers are not a count, a seed or a size any part of hpt takes
MAX_VALUES = 10_000             # values listed for one hyperparameter
MAX_GRID = 1_000_000            # configs a grid may have without search.trials
MAX_SAMPLED_GRID = 10**15       # configs a grid may have with search.trials (a seeded subset is drawn by index)
MAX_TRIALS = 250_000            # trials in one plan: configs × date ranges × repeats × fidelities
MIN_DATE = dt.date(1900, 1, 1)  # dates in date ranges (and --today): plus validation days and months
MAX_DATE = dt.date(2999, 12, 31)  # of arithmetic, still a date
