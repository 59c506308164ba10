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


@dataclass
class Segment:
    key: str
    level: int
    entries: list[Entry] = field(default_factory=list)


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
    doc = json.loads(data.decode("utf-8"))
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise ValueError("not a row index segment of format %d" % FORMAT)
    names = doc["columns"]
    if not isinstance(names, list) or not all(isinstance(c, str) for c in names):
        raise ValueError("bad columns")
    width = len(names) + 2
    out = []
    for item in doc["rows"]:
        if not isinstance(item, list) or len(item) != width or not all(isinstance(v, str) for v in item[:2]):
            raise ValueError("bad entry")
        row = {c: v for c, v in zip(names, item[2:]) if v is not None}
        if not all(isinstance(v, str) for v in row.values()):
            raise ValueError("bad value")
        out.append(Entry(item[0], item[1], row))
    return out


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
            segments.append(Segment(key, parsed[0], decode(data)))
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
