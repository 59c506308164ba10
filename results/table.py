"""The results table: every row in a store as a pandas DataFrame, ready for analysis.

rows/<trial-id>.csv is the source of truth: the listing of rows/ decides which trials exist, and
every row is read from its own file through hpt.store.rows (results.csv, a merged copy that may lag or
be edited, never overrides a row). results.csv alone is a fallback for a store that holds nothing
else. A store may be mid-run: missing trials are simply absent, failed rows are kept apart. pandas is imported here only, so `hpt compile` never pays for it.
"""
from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Iterable, Mapping

from hpt.store import RESULTS_CSV, ROUNDS, Store, open_store
from hpt.store.index import snapshot_columns
from hpt.schemas.catalog import metrics as catalog_metrics
from hpt.schemas.errors import UserError
from hpt.schemas.metric import DEFAULT_OBJECTIVE, GOAL_WORDS, GOALS, Objective
from hpt.schemas.row import EXTRA_METRICS, LEADING, PARAM_PREFIX, STATUS_DONE, STATUS_STOPPED, TRAILING, extra_metrics

__all__ = ["DEFAULT_OBJECTIVE", "Objective", "ResultTable", "load_table", "objective"]

if TYPE_CHECKING:
    import pandas as pd

# Columns that identify a date range (train window; validation follows it).
RANGE_COLUMNS = ("train_start", "train_end")
_TEXT_COLUMNS = set(LEADING) | set(TRAILING) | {EXTRA_METRICS}


def objective(metric: str | None = None, goal: str | None = None, goals: Mapping[str, str] | None = None) -> Objective:
    """An objective asked for by name (`--objective`): a metric of the catalog (its goal from there), one whose
    goal `goals` knows (what the rows recorded), or any column with an explicit goal.

    `metric` may end in `:min` / `:max` to override the goal (e.g. a custom metric). None: the default (mse).
    """
    name = metric or DEFAULT_OBJECTIVE
    if ":" in name:
        name, _, suffix = name.partition(":")
        goal = GOAL_WORDS.get(suffix)
        if goal is None:
            raise UserError(f"unknown goal {suffix!r}", where="--objective", hint="write METRIC, METRIC:min or METRIC:max")
    known = catalog_metrics()
    if goal is None and goals and name in goals:
        goal = goals[name]
    if goal is None:
        if name not in known:
            raise UserError(f"unknown metric {name!r}", where="--objective",
                            hint=f"one of {', '.join(known)}, or NAME:min / NAME:max for another column")
        goal = known[name].goal
    return Objective(name, goal)


@dataclass
class ResultTable:
    """The rows of one store. `done` holds finished trials, `stopped` those an in-trial stopping rule ended
    (their last reported values: kept apart, never compared with full runs), `failed` everything else."""

    uri: str
    done: "pd.DataFrame"
    failed: "pd.DataFrame"
    source: str                                   # "rows" or "results.csv"
    params: list[str] = field(default_factory=list)   # param.<name> columns whose value varies
    metrics: list[str] = field(default_factory=list)  # metric columns present (catalog order)
    store_uri: str = ""                           # the store itself (`uri` may name a view of it); default: uri
    rounds: list[dict] = field(default_factory=list)  # adaptive search: the rounds `hpt apply` recorded (rounds/)
    recorded: list[Objective] = field(default_factory=list)  # the objectives the rows recorded (row schema 2)
    stopped: "pd.DataFrame | None" = None         # rows of status stopped (None: none)

    def objective(self, asked: "str | Objective | None" = None) -> Objective:
        """What to rank by: `asked` (`--objective`), else the one objective every row recorded, else the default
        (mse: rows written before rows recorded it). Rows of different objectives are not ranked silently."""
        if isinstance(asked, Objective):
            return asked
        if asked:
            return objective(asked, goals={o.metric: o.goal for o in self.recorded})
        if len(self.recorded) > 1:
            raise UserError("the store holds rows of different objectives: "
                            + ", ".join(f"{o.metric} ({o.goal})" for o in self.recorded), where=self.uri,
                            hint="rank by one of them with --objective NAME, or keep each plan's results in its own store")
        return self.recorded[0] if self.recorded else objective(None)

    @property
    def store(self) -> str:
        return self.store_uri or self.uri

    @property
    def all(self) -> "pd.DataFrame":
        import pandas as pd

        return pd.concat([self.done, self.failed] + ([self.stopped] if self.stopped is not None else []), ignore_index=True)

    @property
    def n_stopped(self) -> int:
        return 0 if self.stopped is None else len(self.stopped)

    @property
    def n_trials(self) -> int:
        return len(self.done) + len(self.failed) + self.n_stopped

    def require(self, obj: Objective) -> None:
        """Finished trials must carry the objective. No finished trial yet is fine (a run just started)."""
        if self.done.empty:
            return
        if obj.metric not in self.done.columns or self.done[obj.metric].notna().sum() == 0:
            present = ", ".join(self.metrics) or "none"
            raise UserError(f"no finished trial has the metric {obj.metric!r}", where=self.uri,
                            hint=f"metrics present: {present}; choose one with --objective")

    def finished(self, obj: Objective) -> "pd.DataFrame":
        """Finished trials that have a value of the objective (possibly none)."""
        self.require(obj)
        if self.done.empty or obj.metric not in self.done.columns:
            return self.done.iloc[0:0].assign(**{obj.metric: [], "config": [], "range": []})
        return self.done[self.done[obj.metric].notna()]

    def ranges(self) -> list[str]:
        """Date-range labels present among finished trials, in time order."""
        return sorted(self.done["range"].dropna().unique().tolist()) if len(self.done) else []


def read_rows(uri_or_store: str | Store) -> tuple[list[dict[str, str]], str]:
    """(rows as string dicts, source): read_columns' rows, one dict each."""
    data, source = read_columns(uri_or_store)
    names = list(data)
    n = len(data[names[0]]) if names else 0
    return [{c: data[c][i] for c in names if data[c][i] is not None} for i in range(n)], source


def read_columns(uri_or_store: str | Store) -> tuple[dict[str, list[str | None]], str]:
    """(every row as columns: name → one value per row, None where a row lacks the column; source). rows/
    decides, through the store's one checked reader (a damaged row reads as failed, saying why; the row
    index, verified against one listing of rows/, serves the rows it holds: hpt.store.index); results.csv is
    read only when rows/ holds nothing at all (a copy of the table without its rows). Raises UserError when
    the store holds neither."""
    store = open_store(uri_or_store) if isinstance(uri_or_store, str) else uri_or_store
    root = getattr(store, "root", None)  # a local folder that isn't there is a typo, not an empty run
    if root is not None and not root.exists():
        raise UserError("no such results folder", where=str(root), hint="pass the folder `hpt apply --results` wrote to")
    got = snapshot_columns(store)
    if got.ids:
        return got.data, "rows"
    try:
        text = store.get(RESULTS_CSV).decode("utf-8")
    except (KeyError, UnicodeDecodeError):
        text = ""
    if text.strip():
        import csv

        rows = list(csv.DictReader(io.StringIO(text)))
        if rows:
            return _columns_of(rows), RESULTS_CSV
    raise UserError("no results in this store yet (no rows/*.csv, no results.csv)", where=store.uri,
                    hint="check the URI, or wait for the first trial to finish")


def _columns_of(rows: list[dict]) -> dict[str, list]:
    names: dict[str, None] = {}
    for row in rows:
        names.update(dict.fromkeys(row))
    return {c: [row.get(c) for row in rows] for c in names}


def config_key(row: dict) -> str:
    """The config a trial belongs to: its config_id, else architecture + params (same rule as the manifest)."""
    cid = str(row.get("config_id") or "").strip()
    if cid and cid.lower() != "nan":
        return cid
    params = {k[len(PARAM_PREFIX):]: row[k] for k in sorted(row) if k.startswith(PARAM_PREFIX) and str(row[k]) not in ("", "nan")}
    return f"{row.get('architecture', '')} {json.dumps(params, sort_keys=True, default=str)}"


NO_RANGE = "(no range)"   # the range of a trial without dated windows (trainer.windows false)


def range_label(row: dict) -> str:
    start, end = str(row.get("train_start") or ""), str(row.get("train_end") or "")
    return f"{start}..{end}" if (start or end) else NO_RANGE


def short_range(label: str) -> str:
    """`2010-03-01..2010-06-01` → `2010-03..2010-06` when both ends fall on the 1st of a month."""
    start, sep, end = label.partition("..")
    if sep and start.endswith("-01") and end.endswith("-01") and len(start) == len(end) == 10:
        return f"{start[:7]}..{end[:7]}"
    return label


def frame(rows: "Iterable[dict] | Mapping[str, list]") -> "pd.DataFrame":
    """Rows (dicts, or columns as read_columns gives them) → DataFrame: numbers where a column is numeric,
    plus `config` and `range` helper columns. Each column is parsed once per distinct value, as Python
    lists, before pandas sees it (a DataFrame of 100,000 text cells per column, then parsed, cost seconds)."""
    import pandas as pd

    data = dict(rows) if isinstance(rows, Mapping) else _columns_of(list(rows))
    n = len(next(iter(data.values()))) if data else 0
    if n == 0:
        return pd.DataFrame()
    nan = float("nan")
    if EXTRA_METRICS in data:   # the undeclared numbers a trainer reported, as columns where no declared one is
        extras = [extra_metrics({EXTRA_METRICS: v}) for v in data[EXTRA_METRICS]]
        names = sorted({name for e in extras for name in e} - set(data))
        for name in names:
            data[name] = [e.get(name) for e in extras]
    known_metrics = set(catalog_metrics())
    if "objective" in data:   # each row's objective column is a number or missing
        known_metrics |= {str(m) for m in data["objective"] if m}
    out: dict[str, object] = {}
    for column, values in data.items():
        if column not in _TEXT_COLUMNS or column in ("repeat", "seed", "max_epochs", "row_schema"):
            converted, all_parsed = _numbers(values)
            # Keep text columns text: convert only when every present value parsed as a number. A catalog
            # metric is a number or missing, whatever a hand-edited results.csv holds.
            if column in known_metrics or all_parsed:
                out[column] = converted
                continue
        # Text: an empty cell is None (a column that has one holds Python objects), a missing one NaN.
        out[column] = (pd.Series([None if v == "" else nan if v is None else v for v in values], dtype=object)
                       if "" in values else values)
    df = pd.DataFrame(out)
    df["config"] = _per_distinct(df, ["config_id", "architecture"] + [c for c in df.columns if c.startswith(PARAM_PREFIX)],
                                 config_key)
    df["range"] = _per_distinct(df, list(RANGE_COLUMNS), range_label)
    return df


def _numbers(values: list) -> "tuple[object, bool]":
    """(the column as pd.to_numeric(errors="coerce") reads it: integers when every value is an integer and
    none is missing, else floats; whether every present value parsed), pd.to_numeric run over the distinct
    values only (pd.factorize finds them and maps them back, in C)."""
    import numpy as np
    import pandas as pd

    codes, uniques = pd.factorize(np.array(values, dtype=object))   # None (and a float NaN) → code -1
    uniques = uniques.tolist()
    text_at = [i for i, u in enumerate(uniques) if type(u) is str]
    texts = [uniques[i] for i in text_at]
    parsed = pd.to_numeric(np.array(texts, dtype=object), errors="coerce") if texts else np.array([], dtype=float)
    present = len(values) - values.count(None) - values.count("")   # an empty cell is a missing value
    if parsed.dtype.kind in "iu" and present == len(values) and len(texts) == len(uniques) and (codes >= 0).all():
        return np.asarray(parsed)[codes], True
    of = np.full(len(uniques) + 1, np.nan)   # the last slot: code -1 (missing)
    for i, u in enumerate(uniques):
        if type(u) is not str:
            of[i] = u                          # numbers already (extra_metrics)
    of[text_at] = np.asarray(parsed, dtype=float)
    array = of[codes]
    return array, int(np.count_nonzero(~np.isnan(array))) == present


def _per_distinct(df: "pd.DataFrame", columns: list[str], fn) -> list:  # noqa: ANN001
    """fn(row) for every row, called once per distinct combination of `columns` (a config's trials share
    their params, a range's its dates): thousands of calls for 100,000 rows instead of 100,000."""
    import numpy as np

    present = [c for c in columns if c in df.columns]
    if not present:
        return [fn({})] * len(df)
    sub = df[present]
    codes = sub.groupby(present, dropna=False, sort=False).ngroup().to_numpy()
    firsts = sub.drop_duplicates()
    values = np.array([fn(r) for r in records(firsts)] + [None], dtype=object)
    return values[codes].tolist()


def records(df: "pd.DataFrame") -> list[dict]:
    """df.to_dict("records") (the same Python values), a column at a time: to_dict walks arrow-backed text
    cells one by one, tolist() converts a column at once."""
    names = list(df.columns)
    return [dict(zip(names, cells)) for cells in zip(*[df[c].tolist() for c in names])]


def varying_params(df: "pd.DataFrame") -> list[str]:
    """param.<name> columns with more than one distinct value (constant ones say nothing)."""
    import pandas as pd

    def varies(column: "pd.Series") -> bool:
        # Distinct numbers have distinct str() (repr round-trips), so a numeric column of several values varies;
        # any other column is judged by its text, as it is shown (1 and "1" are one value, NaN is "nan").
        if pd.api.types.is_numeric_dtype(column) and column.nunique(dropna=False) > 1:
            return True
        return column.astype(str).nunique(dropna=False) > 1

    return [c for c in sorted(df.columns) if c.startswith(PARAM_PREFIX) and varies(df[c])]


def load_table(uri: str) -> ResultTable:
    """Every row of the store at `uri`, split into finished and failed trials."""
    import pandas as pd

    store = open_store(uri)
    columns, source = read_columns(store)
    df = frame(columns)
    rounds = read_rounds(store)
    if rounds and "trial_id" in df.columns:   # an adaptive search: each row's round
        of_trial = {t: r["round"] for r in rounds for t in r["trials"]}
        df["round"] = df["trial_id"].map(of_trial).astype("Int64")
    status = df["status"].astype(str) if "status" in df.columns else pd.Series(STATUS_DONE, index=df.index)
    is_done = status == STATUS_DONE
    is_stopped = status == STATUS_STOPPED
    done = df[is_done].reset_index(drop=True)
    failed = df[~is_done & ~is_stopped].reset_index(drop=True)
    stopped = df[is_stopped].reset_index(drop=True) if is_stopped.any() else None
    present_metrics = metric_columns(df, done)
    params = varying_params(df)
    if "architecture" in df.columns and df["architecture"].nunique() > 1:
        params = ["architecture"] + params
    if rounds and not df.empty:   # each round's configs named as the whole store's parameters tell them apart
        labels = config_labels(df, params)
        rounds = [dict(r, labels={c: labels.get(c, c) for c in r["configs"]}) for r in rounds]
    return ResultTable(uri=store.uri, done=done, failed=failed, source=source, params=params, metrics=present_metrics,
                       rounds=rounds, recorded=recorded_objectives(df), stopped=stopped)


def recorded_objectives(df: "pd.DataFrame") -> list[Objective]:
    """The distinct objectives the rows recorded (row schema 2), in order of first appearance; rows without one
    (older rows, a damaged row) say nothing."""
    if "objective" not in df.columns or "goal" not in df.columns:
        return []
    pairs = df[["objective", "goal"]].dropna().drop_duplicates()
    return [Objective(str(m), str(g)) for m, g in pairs.itertuples(index=False) if str(g) in GOALS]


def metric_columns(df: "pd.DataFrame", done: "pd.DataFrame") -> list[str]:
    """Metric columns with a value among finished trials: the catalog's in its order, then any others sorted."""
    import pandas as pd

    helpers = {"config", "range", "round"}
    others = sorted(c for c in df.columns if c not in _TEXT_COLUMNS and c not in helpers and not c.startswith(PARAM_PREFIX)
                    and c not in catalog_metrics())
    present = [m for m in [*catalog_metrics(), *others] if m in df.columns]
    return [m for m in present if pd.api.types.is_numeric_dtype(df[m]) and done.get(m, pd.Series(dtype=float)).notna().any()]


def read_rounds(store: Store) -> list[dict]:
    """The rounds of every adaptive plan applied to this store (rounds/<experiment>.json), in order."""
    out: list[dict] = []
    for key in sorted(store.list(ROUNDS)):
        try:
            doc = json.loads(store.get(key).decode("utf-8"))
        except (KeyError, ValueError, UnicodeDecodeError):
            continue   # a damaged copy only loses the round column; the rows are the truth
        out += [dict(r, experiment=doc.get("experiment", "")) for r in doc.get("rounds", []) if isinstance(r, dict)]
    return out


# Metrics whose meaning the catalog gives for hpt's built-in trainer; a user's trainer computes its own.
_BUILT_IN_MEANING = {"baseline_mse": "the trainer's own baseline, as it reported it"}


def built_in_rows(df: "pd.DataFrame") -> bool:
    """True when every row is of a built-in architecture (not a user's trainer)."""
    from hpt.schemas.catalog import architectures

    return df.empty or "architecture" not in df.columns or set(df["architecture"].dropna().astype(str)) <= set(architectures())


def metric_help(name: str, built_in: bool = True) -> str:
    """What a metric means in a legend: the catalog's words, or, for a user trainer's rows, what it reported."""
    known = catalog_metrics().get(name)
    if not built_in and name in _BUILT_IN_MEANING:
        return _BUILT_IN_MEANING[name]
    return known.help if known else ""


def parse_metric_list(text: str | None, table: ResultTable) -> list[str]:
    """`--metrics a,b` → the chosen columns; unknown names are a user error naming what exists."""
    if not text:
        return []
    chosen = [m.strip() for m in text.split(",") if m.strip()]
    columns = set(table.done.columns) | set(table.failed.columns)
    missing = [m for m in chosen if m not in columns]
    if missing:
        raise UserError(f"no such metric column: {', '.join(missing)}", where="--metrics",
                        hint=f"present: {', '.join(table.metrics) or 'none'}")
    return chosen


def short_param(column: str) -> str:
    return column[len(PARAM_PREFIX):] if column.startswith(PARAM_PREFIX) else column


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def config_labels(df: "pd.DataFrame", params: list[str]) -> dict[str, str]:
    """config → a short readable label from the parameters that vary (`lr=0.01 dropout=0.1`)."""
    labels: dict[str, str] = {}
    if df.empty:
        return labels
    shown = [p for p in params if p in df.columns]
    columns = list(dict.fromkeys(["config"] + shown + (["architecture"] if "architecture" in df.columns else [])))
    firsts = df.drop_duplicates("config")[columns]
    for first in records(firsts):   # one record per config, not a pandas lookup per value
        parts = [f"{short_param(p)}={_fmt(first[p])}" for p in shown if first[p] is not None and str(first[p]) != "nan"]
        labels[first["config"]] = " ".join(parts) or str(first.get("architecture") or first["config"])
    return labels
