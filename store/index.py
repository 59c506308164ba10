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
from itertools import repeat
from operator import itemgetter
from typing import Iterable, Iterator, Mapping

from hpt.store.base import ROWS, AlreadyExists, Store, row_key
from hpt.store.rows import Row, check_row, judge_row, map_batched, parse_row_bytes

INDEX_ROWS = "index/rows/"
FORMAT = 2               # bumped when the segment layout changes (2: column-major); unknown formats are ignored
READABLE_FORMATS = (1, 2)
FANOUT = 8               # segments of one level merged into one of the next
APPEND_EVERY_S = 10.0    # `hpt apply` appends at most one segment this often (and once at its end)


@dataclass(frozen=True)
class Entry:
    trial_id: str
    version: str          # the row file's version when it was read (Store.list_versions)
    row: Row              # the file's columns as parsed (not yet checked: judge_row does that on read)


@dataclass
class Block:
    """A segment's entries as columns: `names` the row columns, `ids` and `versions` one per entry, `values`
    per column of `names` one value per entry (None: that entry's row file has no such column)."""
    names: list[str]
    ids: list[str]
    versions: list[str]
    values: list[list]


class Segment:
    """One segment: its entries, or the columns they are decoded from (`block`), each made from the other
    when asked (a reader of columns never builds a dict per row)."""

    def __init__(self, key: str, level: int, entries: list[Entry] | None = None, block: Block | None = None):
        self.key, self.level = key, level
        self._entries, self._block = entries, block

    @property
    def entries(self) -> list[Entry]:
        if self._entries is None:
            b = self.block
            self._entries = [Entry(tid, version, {c: v for c, v in zip(b.names, cells) if v is not None})
                             for tid, version, cells in zip(b.ids, b.versions, zip(*b.values) if b.values else
                                                            [()] * len(b.ids))]
        return self._entries

    @property
    def block(self) -> Block:
        if self._block is None:
            self._block = _block_of(sorted(self.entries, key=lambda e: (e.trial_id, e.version)))
        return self._block


def _block_of(entries: list[Entry]) -> Block:
    names, kept = shared_column_order(entries)
    if len(kept) < len(entries):
        raise ValueError("entries whose columns' order no one column order keeps (see shared_column_order)")
    return Block(names, [e.trial_id for e in entries], [e.version for e in entries],
                 [[e.row.get(c) for e in entries] for c in names])


def shared_column_order(entries: Iterable[Entry]) -> tuple[list[str], list[Entry]]:
    """(one order of the columns that keeps every kept entry's own order of its columns, the entries kept). A
    reader builds each entry's row in the segment's column order, and the order of a DataFrame's columns follows
    the rows': an entry must read back with its columns in its file's order, or the index would change what a
    table shows. Each new column goes right after the column before it in the first row that has it (a plain
    union would put a done row's metrics after the columns a failed row before it ended with); an entry whose
    order that cannot keep (row files that disagree on the order of two columns) is left out, and read from its
    file."""
    names: list[str] = []
    place: dict[str, int] = {}
    kept = []
    for e in entries:
        cols = list(e.row)
        if any(c not in place for c in cols):
            for k, c in enumerate(cols):
                if c not in place:
                    names.insert(names.index(cols[k - 1]) + 1 if k else 0, c)
                    place[c] = -1
            place = {c: i for i, c in enumerate(names)}   # insertions never reorder the columns already there
        at = [place[c] for c in cols]
        if all(a < b for a, b in zip(at, at[1:])):
            kept.append(e)
    return names, kept


def encode(entries: Iterable[Entry]) -> bytes:
    """A segment's bytes: the columns (the union over its rows), the entries' trial ids and their files'
    versions, then per column one value per entry (null: that row file has no such column), in trial-id
    order. Column-major, so that a reader's passes over a column run over objects parsed side by side."""
    b = _block_of(sorted(entries, key=lambda e: (e.trial_id, e.version)))
    return json.dumps({"format": FORMAT, "columns": b.names, "ids": b.ids, "versions": b.versions, "values": b.values},
                      separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def decode(data: bytes) -> list[Entry]:
    """The entries of a segment's bytes; ValueError when it is not a segment of a format this reader knows."""
    return Segment("", 0, block=decode_block(data)).entries


_CELL_TYPES = frozenset({str, type(None)})


def decode_block(data: bytes) -> Block:
    """A segment's bytes as columns, checked; ValueError when it is not a segment of a format this reader
    knows (a whole segment is trusted or not: one bad entry and none of it is read). Format 1 (row-major,
    written before) is read too."""
    doc = json.loads(data.decode("utf-8"))
    if not isinstance(doc, dict) or doc.get("format") not in READABLE_FORMATS:
        raise ValueError("not a row index segment of format %s" % " or ".join(map(str, READABLE_FORMATS)))
    names = doc["columns"]
    if not isinstance(names, list) or not all(type(c) is str for c in names) or len(set(names)) != len(names):
        raise ValueError("bad columns")
    if doc["format"] == 1:
        return _decode_rows(names, doc["rows"])
    ids, versions, values = doc["ids"], doc["versions"], doc["values"]
    if type(ids) is not list or type(versions) is not list or type(values) is not list or len(values) != len(names):
        raise ValueError("bad entries")
    n = len(ids)
    if len(versions) != n or (n and (set(map(type, ids)) != {str} or set(map(type, versions)) != {str})):
        raise ValueError("bad entry")
    for column in values:
        if type(column) is not list or len(column) != n or not _CELL_TYPES.issuperset(map(type, column)):
            raise ValueError("bad value")
    return Block(names, ids, versions, values)


def _decode_rows(names: list[str], body: object) -> Block:
    """Format 1: one [trial id, version, value per column] list per entry."""
    width = len(names) + 2
    if not isinstance(body, list):
        raise ValueError("bad rows")
    for item in body:
        if type(item) is not list or len(item) != width or type(item[0]) is not str or type(item[1]) is not str:
            raise ValueError("bad entry")
        if not _CELL_TYPES.issuperset(map(type, item)):
            raise ValueError("bad value")
    columns = [list(c) for c in zip(*body)] if body else [[] for _ in range(width)]
    return Block(names, columns[0], columns[1], columns[2:])


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
    fresh: dict[str, Entry] = field(default_factory=dict)    # rows read from their files: what to index


def snapshot(store: Store, threads: int = 16) -> Snapshot:
    """Every row in the store, checked, reading the index first and the row files it lacks (the column reader's
    rows, one dict each: the same rows; a row's columns in the table's order, not always its file's)."""
    columns, versions, segments, fresh = _read_columns(store, threads)
    return Snapshot(columns.rows(), versions, segments, from_index=columns.from_index, from_files=len(fresh), fresh=fresh)


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
    """What snapshot(store).rows holds, as columns (see _read_columns)."""
    return _read_columns(store, threads)[0]


def _read_columns(store: Store, threads: int) -> tuple[Columns, dict[str, str], list[Segment], dict[str, Entry]]:
    """What snapshot(store).rows holds (the same rows, judged the same way, in the same order, with the same
    columns), as columns: the index's entries are taken a column at a time and judged a column at a time
    (hpt.store.rows.judge_row for the few rows that check flags); rows it lacks are read from their files.
    Every step is a pass over whole columns (segments are column-major), never a list built per row."""
    versions = row_versions(store)
    segments = read_segments(store) if versions and not index_disabled() else []
    # The entry in use for each listed row: the last segment's (as snapshot() takes them) that holds the
    # version of the row file the listing shows.
    chosen: dict[str, tuple[int, int]] = {}
    blocks = [seg.block for seg in segments]
    for si, b in enumerate(blocks):
        listed = list(map(versions.get, b.ids))
        if listed == b.versions and all(b.versions):   # every entry is of the row file listed (the usual case)
            chosen.update(zip(b.ids, zip(repeat(si), range(len(b.ids)))))
        else:
            chosen.update((tid, (si, i)) for i, (tid, seen, have) in enumerate(zip(b.ids, listed, b.versions))
                          if have and seen == have)
    singles: dict[str, Row] = {}   # rows not taken from a segment: read from their files, or judged damaged
    lacking = [tid for tid in versions if tid not in chosen]
    fresh: dict[str, Entry] = {}   # rows read from their files that parse: what to index
    for tid, got in read_entries(store, lacking, versions, threads).items():
        if isinstance(got, Entry):
            fresh[tid] = got
            singles[tid] = judge_row(tid, got.row, row_key(tid))
        else:
            singles[tid] = got
    from_index = len(chosen)
    by_segment: dict[int, list[int]] = {}
    for si, pos in chosen.values():
        by_segment.setdefault(si, []).append(pos)
    # Per segment: its chosen entries in trial-id order, as columns, judged a column at a time.
    pieces: list[tuple[list[str], dict[str, list]]] = []
    for si, positions in sorted(by_segment.items()):
        b = blocks[si]
        names = b.names
        positions.sort(key=b.ids.__getitem__)
        if positions == list(range(len(b.ids))):   # every entry, already in order (a rebuilt segment)
            take = list
        elif len(positions) == 1:
            take = lambda values, p=positions[0]: [values[p]]  # noqa: E731 — itemgetter of one gives a scalar
        else:
            getter = itemgetter(*positions)
            take = lambda values: list(getter(values))  # noqa: E731
        tids = take(b.ids)
        data = {c: take(values) for c, values in zip(names, b.values)}
        bad = _suspects(tids, data)
        if bad:
            keep = []
            for i, tid in enumerate(tids):
                if i in bad:
                    row = {c: data[c][i] for c in names if data[c][i] is not None}
                    judged = judge_row(tid, row, row_key(tid))
                    if judged is not row:
                        singles[tid] = judged
                        continue
                keep.append(i)
            if len(keep) < len(tids):
                tids = [tids[i] for i in keep]
                data = {c: [values[i] for i in keep] for c, values in data.items()}
        if tids:
            pieces.append((tids, data))
    # Columns in order of first appearance over the rows in trial-id order (as a DataFrame of the row dicts
    # has them): (the first row that has it, its place in that row).
    first: dict[str, tuple[str, int]] = {}
    for tids, data in pieces:
        for j, (c, values) in enumerate(data.items()):
            k = next((k for k, v in enumerate(values) if v is not None), None)
            if k is not None and (c not in first or (tids[k], j) < first[c]):
                first[c] = (tids[k], j)
    for tid, row in singles.items():
        for j, c in enumerate(row):
            if c not in first or (tid, j) < first[c]:
                first[c] = (tid, j)
    order = sorted(first, key=first.__getitem__)
    if len(pieces) == 1 and not singles:   # one segment holds every row, already in order
        tids, data = pieces[0]
        columns = Columns(list(tids), {c: data[c] if c in data else [None] * len(tids) for c in order},
                          from_index=from_index, from_files=len(lacking))
        return columns, versions, segments, fresh
    all_ids = [tid for tids, _ in pieces for tid in tids] + list(singles)
    perm = sorted(range(len(all_ids)), key=all_ids.__getitem__)
    getter = itemgetter(*perm) if len(perm) > 1 else None
    out: dict[str, list] = {}
    for c in order:
        values = []
        for tids, data in pieces:
            values += data.get(c) or [None] * len(tids)
        values += [row.get(c) for row in singles.values()]
        out[c] = list(getter(values)) if len(perm) > 1 else values
    columns = Columns(list(getter(all_ids)) if len(perm) > 1 else all_ids, out, from_index=from_index,
                      from_files=len(lacking))
    return columns, versions, segments, fresh


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
        _, entries = shared_column_order(sorted((e for e in entries if e.version), key=lambda e: (e.trial_id, e.version)))
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
