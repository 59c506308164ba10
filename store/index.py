"""The row index: a few segment objects that hold what many rows/<trial-id>.csv files hold, so a reader
of a big store makes a few requests instead of one per row. rows/ stays the truth:

    index/rows/<level>-<unix ns>-<random>-<sha256 of the content, 16 hex>.json

A segment is written create-only, like a row (a local hard link; gs:// a simple upload with
if_generation_match=0), and never changed. Each entry carries its row file's version as the listing of
rows/ reports it (gs://: the object's generation; a folder: inode, mtime and size), so a reader lists
rows/ once, trusts an entry only while the row file it was read from is still the one listed, and
  * reads from its file every row the index lacks, or whose file has changed (a failed row retried);
  * ignores an entry whose row file is gone (moved aside) or was never there;
  * ignores a whole segment that does not hash to its name, does not parse, or is of another format.
So an index that lags, is damaged or names missing rows changes how fast a reader is, never what it
reads: the rows it yields are exactly hpt.store.rows.read_rows(store) (tests/test_store_index.py).

Segments are a generic table of the row files' own columns (whatever a row holds: a column a row file
does not have stays absent), so a new row column needs no change here. `hpt apply` appends a segment of
the rows it saw finish (a few per run, at most one every APPEND_EVERY_S), and merges FANOUT segments of
one level into one of the next (so a store holds O(FANOUT · log N) segments, and each row is rewritten
O(log N) times); `hpt index STORE --rebuild` writes one segment of every row and drops the rest.
"""
from __future__ import annotations

import hashlib
import json
import os
import secrets
import time
from dataclasses import dataclass, field
from operator import itemgetter
from typing import Iterable, Iterator, Mapping

from hpt.store.base import ROWS, AlreadyExists, Store, row_key
from hpt.store.rows import Row, check_row, judge_row, map_batched, parse_row_bytes

INDEX_ROWS = "index/rows/"
FORMAT = 1               # bumped when the segment layout changes: another format's segments are ignored
FANOUT = 8               # segments of one level merged into one of the next
APPEND_EVERY_S = 10.0    # `hpt apply` appends at most one segment this often (and once at its end)


@dataclass(frozen=True)
class Entry:
    trial_id: str
    version: str          # the row file's version when it was read (Store.list_versions)
    row: Row              # the file's columns as parsed (not yet checked: judge_row does that on read)


class Segment:
    """One segment: its entries, or the table they are decoded from (`block`), each made from the other
    when asked (a reader of columns never builds a dict per row)."""

    def __init__(self, key: str, level: int, entries: list[Entry] | None = None,
                 block: tuple[list[str], list[list]] | None = None):
        self.key, self.level = key, level
        self._entries, self._block = entries, block

    @property
    def entries(self) -> list[Entry]:
        if self._entries is None:
            names, body = self.block
            self._entries = [Entry(item[0], item[1], {c: v for c, v in zip(names, item[2:]) if v is not None})
                             for item in body]
        return self._entries

    @property
    def block(self) -> tuple[list[str], list[list]]:
        """(column names, one [trial id, version, value per column] list per entry)."""
        if self._block is None:
            columns: dict[str, None] = {}
            for e in self.entries:
                columns.update(dict.fromkeys(e.row))
            names = list(columns)
            self._block = names, [[e.trial_id, e.version, *[e.row.get(c) for c in names]] for e in self.entries]
        return self._block


def encode(entries: Iterable[Entry]) -> bytes:
    """A segment's bytes: one header of columns (the union over its rows), then per row its id, its
    file's version and one value per column (null: the row file has no such column)."""
    entries = list(entries)
    columns: dict[str, None] = {}
    for e in entries:
        columns.update(dict.fromkeys(e.row))
    names = list(columns)
    body = [[e.trial_id, e.version, *[e.row.get(c) for c in names]] for e in entries]
    return json.dumps({"format": FORMAT, "columns": names, "rows": body}, separators=(",", ":"),
                      ensure_ascii=False).encode("utf-8")


def decode(data: bytes) -> list[Entry]:
    """The entries of a segment's bytes; ValueError when it is not a segment of this format."""
    return Segment("", 0, block=decode_block(data)).entries


_CELL_TYPES = frozenset({str, type(None)})


def decode_block(data: bytes) -> tuple[list[str], list[list]]:
    """A segment's bytes as (column names, entries as lists), checked; ValueError when it is not a segment
    of this format (a whole segment is trusted or not: one bad entry and none of it is read)."""
    doc = json.loads(data.decode("utf-8"))
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise ValueError("not a row index segment of format %d" % FORMAT)
    names = doc["columns"]
    if not isinstance(names, list) or not all(isinstance(c, str) for c in names) or len(set(names)) != len(names):
        raise ValueError("bad columns")
    width = len(names) + 2
    body = doc["rows"]
    if not isinstance(body, list):
        raise ValueError("bad rows")
    for item in body:
        if type(item) is not list or len(item) != width or type(item[0]) is not str or type(item[1]) is not str:
            raise ValueError("bad entry")
        if not _CELL_TYPES.issuperset(map(type, item)):
            raise ValueError("bad value")
    return names, body


def _segment_name(level: int, data: bytes) -> str:
    digest = hashlib.sha256(data).hexdigest()[:16]
    return f"{INDEX_ROWS}{level}-{time.time_ns()}-{secrets.token_hex(4)}-{digest}.json"


def _parse_name(key: str) -> tuple[int, str] | None:
    """(level, digest) of a segment key; None for anything else under index/rows/."""
    name = key[len(INDEX_ROWS):]
    parts = name[:-5].split("-") if name.endswith(".json") else []
    if len(parts) != 4 or not parts[0].isdigit() or len(parts[3]) != 16:
        return None
    return int(parts[0]), parts[3]


def row_versions(store: Store) -> dict[str, str]:
    """trial id → its row file's version, from one listing of rows/."""
    out = {}
    for key, version in store.list_versions(ROWS).items():
        name = key[len(ROWS):]
        if name.endswith(".csv") and "/" not in name:
            out[name[:-4]] = version
    return out


def read_segments(store: Store) -> list[Segment]:
    """Every readable segment (one listing of index/rows/, one read each); a damaged one is left out."""
    segments = []
    for key in store.list(INDEX_ROWS):
        parsed = _parse_name(key)
        if parsed is None:
            continue
        try:
            data = store.get(key)
        except KeyError:  # merged and dropped by another apply since the listing
            continue
        if hashlib.sha256(data).hexdigest()[:16] != parsed[1]:
            continue
        try:
            segments.append(Segment(key, parsed[0], block=decode_block(data)))
        except (ValueError, KeyError, TypeError, UnicodeDecodeError):
            continue
    return segments


@dataclass
class Snapshot:
    """What a reader knows of a store's rows: every row (checked) by trial id, and how it got them."""
    rows: dict[str, Row]
    versions: dict[str, str]                 # the listing of rows/ this snapshot matches
    segments: list[Segment]
    from_index: int = 0                      # rows taken from the index
    from_files: int = 0                      # rows read from their files (the index lacked them)
    trusted: dict[str, Entry] = field(default_factory=dict)  # the index entries in use, by trial id
    fresh: dict[str, Entry] = field(default_factory=dict)    # rows read from their files: what to index


def snapshot(store: Store, threads: int = 16) -> Snapshot:
    """Every row in the store, checked, reading the index first and the row files it lacks."""
    versions = row_versions(store)
    segments = read_segments(store) if versions and not index_disabled() else []
    trusted: dict[str, Entry] = {}
    for seg in segments:
        for e in seg.entries:
            if versions.get(e.trial_id) == e.version and e.version:
                trusted[e.trial_id] = e
    rows: dict[str, Row] = {tid: judge_row(tid, e.row, row_key(tid)) for tid, e in trusted.items()}
    lacking = [tid for tid in versions if tid not in trusted]
    fresh = read_entries(store, lacking, versions, threads)
    for tid, entry_or_row in fresh.items():
        if isinstance(entry_or_row, Entry):
            rows[tid] = judge_row(tid, entry_or_row.row, row_key(tid))
        else:
            rows[tid] = entry_or_row
    rows = {tid: rows[tid] for tid in sorted(rows)}  # the listing's order, as read_rows gives them
    return Snapshot(rows, versions, segments, from_index=len(trusted), from_files=len(fresh), trusted=trusted,
                    fresh={tid: e for tid, e in fresh.items() if isinstance(e, Entry)})


@dataclass
class Columns:
    """Every row of a store as columns: `ids` the trial ids in order (the listing's), `data` per column one
    value per row (None: that row has no such column), columns in order of first appearance. The same rows
    as snapshot(store).rows (`rows()` gives them), built without a dict per row, for readers of many."""
    ids: list[str]
    data: dict[str, list[str | None]]
    from_index: int = 0
    from_files: int = 0

    def view(self) -> dict[str, "RowView"]:
        """trial id → its row as a read-only mapping over these columns (no dict built per row)."""
        return {tid: RowView(self.data, i) for i, tid in enumerate(self.ids)}

    def rows(self) -> dict[str, Row]:
        names = list(self.data)
        cells = [self.data[c] for c in names]
        out = {}
        for i, tid in enumerate(self.ids):
            out[tid] = {c: col[i] for c, col in zip(names, cells) if col[i] is not None}
        return out


class RowView(Mapping):
    """One row of a Columns: what its row dict would hold (the columns it has a value in)."""
    __slots__ = ("_data", "_i")

    def __init__(self, data: Mapping[str, list], i: int):
        self._data, self._i = data, i

    def __getitem__(self, name: str) -> str:
        value = self._data[name][self._i]
        if value is None:
            raise KeyError(name)
        return value

    def get(self, name: str, default=None):  # noqa: ANN001, ANN201 — the fast path of Mapping.get
        column = self._data.get(name)
        value = None if column is None else column[self._i]
        return default if value is None else value

    def __iter__(self) -> Iterator[str]:
        return (c for c, values in self._data.items() if values[self._i] is not None)

    def __len__(self) -> int:
        return sum(1 for _ in self)


def _floats(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _suspects(tids: list[str], cols: Mapping[str, list[str | None]]) -> set[int]:
    """Positions of rows judge_row might find damaged, checked a column at a time (the rest are surely fine):
    another trial's id, a status not of STATUSES, a metric (of the catalog, or the row's recorded objective)
    that float() does not read."""
    from hpt.schemas.catalog import metrics as catalog_metrics
    from hpt.schemas.row import STATUSES

    n = len(tids)
    ids = cols.get("trial_id", [None] * n)
    out = {i for i in range(n) if ids[i] != tids[i]}
    statuses = cols.get("status", [None] * n)
    ok = frozenset(STATUSES)
    out.update(i for i in range(n) if statuses[i] not in ok)
    catalog = catalog_metrics()

    def check(values: list[str | None], where: Iterable[int]) -> None:
        bad = {v for v in set(values) if v is not None and v.strip() and not _floats(v.strip())}
        if bad:
            out.update(i for i in where if values[i] in bad)

    for name in catalog:
        if name in cols:
            check(cols[name], range(n))
    objectives = cols.get("objective")
    if objectives is not None:
        recorded: dict[str, list[int]] = {}
        for i, text in enumerate(objectives):
            name = (text or "").strip()
            if name and name not in catalog:
                recorded.setdefault(name, []).append(i)
        for name, where in recorded.items():
            if name in cols:
                check(cols[name], where)
    return out


def snapshot_columns(store: Store, threads: int = 16) -> Columns:
    """What snapshot(store).rows holds (the same rows, judged the same way, in the same order, with the same
    columns), as columns: the index's entries are taken a column at a time and judged a column at a time
    (hpt.store.rows.judge_row for the few rows that check flags); rows it lacks are read from their files."""
    versions = row_versions(store)
    segments = read_segments(store) if versions and not index_disabled() else []
    chosen: dict[str, tuple[int, int]] = {}
    blocks = [seg.block for seg in segments]
    for si, (_, body) in enumerate(blocks):
        for pos, item in enumerate(body):
            if item[1] and versions.get(item[0]) == item[1]:
                chosen[item[0]] = (si, pos)
    singles: dict[str, Row] = {}   # rows not taken from a block: read from their files, or judged damaged
    lacking = [tid for tid in versions if tid not in chosen]
    for tid, got in read_entries(store, lacking, versions, threads).items():
        singles[tid] = judge_row(tid, got.row, row_key(tid)) if isinstance(got, Entry) else got
    from_index = len(chosen)
    # Per block: its chosen entries (sorted by trial id) as columns, judged a column at a time.
    by_block: dict[int, list[int]] = {}
    for si, pos in chosen.values():
        by_block.setdefault(si, []).append(pos)
    picked: list[tuple[list[str], list[list]]] = []
    for si, positions in sorted(by_block.items()):
        names, body = blocks[si]
        rows = [body[p] for p in positions]
        rows.sort(key=itemgetter(0))
        transposed = list(zip(*rows))
        tids = list(transposed[0])
        cols = dict(zip(names, transposed[2:]))
        for i in _suspects(tids, cols):
            tid = tids[i]
            row = {c: v for c, v in zip(names, rows[i][2:]) if v is not None}
            judged = judge_row(tid, row, row_key(tid))
            if judged is not row:
                singles[tid] = judged
                chosen.pop(tid)
        picked.append((names, rows))
    # Columns in order of first appearance over the rows in trial-id order (as a DataFrame of the row dicts
    # has them): (position of the first row that has it, its place in that row).
    first: dict[str, tuple[str, int]] = {}
    for names, rows in picked:
        for j, c in enumerate(names, start=2):
            tid = next((r[0] for r in rows if r[j] is not None and r[0] in chosen), None)
            if tid is not None and (c not in first or (tid, j) < first[c]):
                first[c] = (tid, j)
    for tid, row in singles.items():
        for j, c in enumerate(row):
            if c not in first or (tid, j) < first[c]:
                first[c] = (tid, j)
    order = sorted(first, key=first.__getitem__)
    records: list[tuple] = []
    for names, rows in picked:
        place = {c: j for j, c in enumerate(names, start=2)}
        width = len(names) + 2          # the index of the None each row gets for a column it lacks
        take = itemgetter(*[place.get(c, width) for c in order], 0)
        records += [take(r + [None]) for r in rows if r[0] in chosen]
    records += [(*[row.get(c) for c in order], tid) for tid, row in singles.items()]
    if len(picked) != 1 or singles:      # one block holds every row already in order
        records.sort(key=itemgetter(len(order)))
    transposed = list(zip(*records)) if records else [[] for _ in range(len(order) + 1)]
    ids = list(transposed[-1])
    data = {c: list(values) for c, values in zip(order, transposed)}
    return Columns(ids, data, from_index=from_index, from_files=len(lacking))


def read_entries(store: Store, trial_ids: list[str], versions: Mapping[str, str], threads: int = 16) \
        -> dict[str, Entry | Row]:
    """The row files of `trial_ids`: an Entry (to index) for a file that parses, the checked failed row of
    one that does not (a damaged file is never indexed: it is read, and judged, every time)."""
    def one(tid: str) -> tuple[str, Entry | Row | None]:
        key = row_key(tid)
        try:
            data = store.get(key)
        except KeyError:
            return tid, None   # moved aside between the listing and the read
        parsed = parse_row_bytes(data)
        if parsed is None:
            return tid, check_row(tid, data, key)
        return tid, Entry(tid, versions.get(tid, ""), parsed)

    return dict(item for item in map_batched(store, one, trial_ids, threads) if item[1] is not None)


class IndexWriter:
    """Appends segments of new entries and merges full levels (`hpt apply`, `hpt index --rebuild`)."""

    def __init__(self, store: Store, segments: Iterable[Segment] = ()):
        self.store = store
        self.segments: dict[str, Segment] = {s.key: s for s in segments}

    def append(self, entries: Iterable[Entry], level: int = 0) -> str | None:
        entries = [e for e in entries if e.version]
        if not entries:
            return None
        data = encode(entries)
        key = _segment_name(level, data)
        try:
            self.store.put_once(key, data)
        except AlreadyExists:  # the same name twice cannot happen (a random part); nothing is lost if it did
            return None
        self.segments[key] = Segment(key, level, entries)
        return key

    def compact(self, valid: Mapping[str, str] | None = None) -> None:
        """Merge FANOUT segments of one level into one of the next, as long as a level has that many.
        `valid` (trial id → row version): entries for another version of a listed row are dropped."""
        while True:
            by_level: dict[int, list[Segment]] = {}
            for seg in self.segments.values():
                by_level.setdefault(seg.level, []).append(seg)
            full = sorted(level for level, segs in by_level.items() if len(segs) >= FANOUT)
            if not full:
                return
            level = full[0]
            merged = _merge(by_level[level], valid)
            key = self.append(merged, level + 1)
            if key is None and merged:
                return
            for seg in by_level[level]:
                self._drop(seg)

    def replace_all(self, entries: Iterable[Entry]) -> str | None:
        """One segment of `entries` (a rebuild), then every other segment dropped."""
        old = list(self.segments.values())
        key = self.append(entries, level=_top_level(len(old) + 1))
        for seg in old:
            self._drop(seg)
        return key

    def _drop(self, seg: Segment) -> None:
        self.segments.pop(seg.key, None)
        try:
            self.store.delete(seg.key)
        except KeyError:
            pass


def _top_level(n: int) -> int:
    return max(1, int(n).bit_length())


def _merge(segments: list[Segment], valid: Mapping[str, str] | None) -> list[Entry]:
    seen: dict[tuple[str, str], Entry] = {}
    for seg in sorted(segments, key=lambda s: s.key):
        for e in seg.entries:
            if valid is None or valid.get(e.trial_id, e.version) == e.version:  # unknown here: kept
                seen[(e.trial_id, e.version)] = e
    return list(seen.values())


def rebuild(store: Store) -> tuple[int, int]:
    """Read every row file and write one segment of them all, dropping every other segment (what
    `hpt index STORE --rebuild` does). (rows indexed, segments dropped)."""
    versions = row_versions(store)
    found = read_entries(store, list(versions), versions)
    entries = [e for e in found.values() if isinstance(e, Entry)]
    writer = IndexWriter(store, read_segments(store))
    dropped = len(writer.segments)
    # Segments that do not read (damaged) are dropped too: the listing names them, the reader skipped them.
    stray = [k for k in store.list(INDEX_ROWS) if k not in writer.segments]
    writer.replace_all(entries)
    for key in stray:
        store.delete(key)
    return len(entries), dropped + len(stray)


def iter_entries(segments: Iterable[Segment]) -> Iterator[Entry]:
    for seg in segments:
        yield from seg.entries


def index_disabled() -> bool:
    """HPT_ROW_INDEX=0 makes readers ignore the index (they read every row file), e.g. to compare."""
    return os.environ.get("HPT_ROW_INDEX", "").strip() == "0"


def describe(store: Store) -> dict[str, int]:
    """How the index stands against the rows (what `hpt index STORE` prints)."""
    versions = row_versions(store)
    listed = [k for k in store.list(INDEX_ROWS)]
    segments = read_segments(store)
    trusted, dangling, stale = set(), 0, 0
    for e in iter_entries(segments):
        version = versions.get(e.trial_id)
        if version is None:
            dangling += 1
        elif version == e.version:
            trusted.add(e.trial_id)
        else:
            stale += 1
    return {"rows": len(versions), "indexed": len(trusted), "lacking": len(versions) - len(trusted),
            "entries_without_row": dangling, "entries_for_older_file": stale, "segments": len(segments),
            "unreadable_segments": len(listed) - len(segments)}
