"""A trial's data: read its windows' months, fit preprocessing on the training window, encode both.

The dataset contract (see docs/trainer.md): a folder — local path, file:// or gs:// — holding
`dataset.json` (hpt.schemas.dataset.DatasetInfo) and `month=YYYY-MM/*.parquet`. A window is
[start, end) in ISO dates; only the months it overlaps are read. A manifest's `data.partitions` (the
digests compile read from dataset.json) are checked against the bytes read — or, when the encoded arrays
come from the cache, against the store's checksums — and a mismatch fails the trial (DataChanged: "the data
changed since compile: recompile") before anything is trained.

Preprocessing (tokenizer, vocabulary of `vocab_size`, `max_tokens`, target standardization) is fitted
on the TRAINING window only, then applied to both windows: nothing of the validation period leaks in.
The encoded arrays are cached per (dataset, windows, vocab_size, max_tokens) under
`$HPT_CACHE/prep/<hash>/` (default `~/.cache/hpt/prep/`), so repeated trials on the same window — every
config of a grid — skip the reading and encoding.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import logging
import os
import re
import shutil
import tempfile
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np

from hpt.schemas.dataset import DESCRIPTOR, DatasetInfo, demo_dataset_dir, local_data_uri, months_between
from hpt.schemas.errors import UserError
from hpt.store import DatasetStore, check_scheme, is_gcs, local_path
from hpt.store.dataset import read_window
from hpt.store.cache import PREP, cache_root

log = logging.getLogger(__name__)

PAD, UNK = "<pad>", "<unk>"
PREP_VERSION = 1  # bump when encoding changes, so old cache entries are not reused
_TOKEN = re.compile(r"[a-z0-9]+")


def tokenize(text: str) -> list[str]:
    """Lower-case alphanumeric words: 'RED/WHITE DOT MINI CASES' → ['red', 'white', 'dot', 'mini', 'cases']."""
    return _TOKEN.findall(text.lower())


# --------------------------------------------------------------------------------------- reading
def resolve_uri(uri: str) -> str:
    """The dataset URI a manifest means: the demo URI → the demo dataset folder; local paths made absolute."""
    uri = local_data_uri(uri)
    if is_gcs(uri):
        return uri.rstrip("/")
    check_scheme(uri, "data", where="manifest: data.uri")
    return str(Path(local_path(uri) or uri).resolve())


class Dataset:
    """A month-partitioned dataset, read through the store (hpt.store.DatasetStore: a folder or gs://)."""

    def __init__(self, uri: str):
        self.uri = resolve_uri(uri)
        if not is_gcs(self.uri) and self.uri == resolve_uri(demo_dataset_dir()) \
                and not Path(self.uri, DESCRIPTOR).is_file():
            from hpt.trainer.demo import build_demo_dataset

            log.info("demo dataset missing; building it in %s", self.uri)
            build_demo_dataset(Path(self.uri))
        if not is_gcs(self.uri) and not Path(self.uri).is_dir():
            raise UserError("dataset folder does not exist", where=self.uri, hint="run `hpt data demo` for the demo data")
        self.store = DatasetStore(self.uri)
        try:
            self.descriptor = self.store.descriptor()
        except KeyError:
            raise UserError(f"no {DESCRIPTOR} in the dataset folder", where=self.uri,
                            hint=f"a dataset is {DatasetInfo.partition('YYYY-MM')}/*.parquet plus dataset.json; "
                                 "`hpt data demo` builds one") from None
        self.info = DatasetInfo.from_json(self.descriptor, where=f"{self.uri}/{DESCRIPTOR}")

    @property
    def columns(self) -> list[str]:
        return [self.info.timestamp, self.info.text, self.info.target, *self.info.aux_targets]

    def read_window(self, start: str, end: str, where: str = "window", partitions: Mapping[str, str] | None = None):
        """Rows with start ≤ timestamp < end (a pandas DataFrame), reading only the months it overlaps; with
        `partitions` (a manifest's month digests) each month read must have its digest (else DataChanged)."""
        first, stop = _date(start, where), _date(end, where)
        if stop <= first:
            raise UserError(f"empty date range [{start}, {end})", where=where)
        frame = read_window(self.store, self.info, first, stop, self.columns, partitions=partitions)
        if frame.empty:
            return frame
        # Parquet files within a month may come in any order; sort so encoding is deterministic.
        return frame.sort_values([self.info.timestamp, self.info.text], kind="stable").reset_index(drop=True)


def _date(value: str, where: str) -> dt.date:
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise UserError(f"not an ISO date: {value!r}", where=where) from None


# --------------------------------------------------------------------------------- preprocessing
@dataclass
class Preprocessing:
    """Everything needed to turn raw rows into model inputs and predictions back into targets."""

    vocab: list[str]            # index = token id; 0 = <pad>, 1 = <unk>
    max_tokens: int
    targets: list[str]          # main target first, then auxiliary targets
    mean: list[float]
    std: list[float]
    text: str = "description"

    @classmethod
    def fit(cls, texts: Iterable[str], targets: np.ndarray, target_names: list[str], vocab_size: int,
            max_tokens: int, text_column: str = "description") -> "Preprocessing":
        counts = Counter(tok for text in texts for tok in tokenize(text))
        # Most frequent first; ties alphabetical, so the vocabulary is the same on every machine.
        ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[: max(0, vocab_size - 2)]
        mean = targets.mean(axis=0)
        std = targets.std(axis=0)
        std = np.where(std > 1e-12, std, 1.0)
        return cls(vocab=[PAD, UNK] + [tok for tok, _ in ranked], max_tokens=max_tokens, targets=list(target_names),
                   mean=[float(v) for v in mean], std=[float(v) for v in std], text=text_column)

    def encode(self, texts: Iterable[str]) -> np.ndarray:
        """[N, max_tokens] int64 token ids, right-padded with 0; an empty text becomes one <unk>."""
        index = {tok: i for i, tok in enumerate(self.vocab)}
        texts = list(texts)
        out = np.zeros((len(texts), self.max_tokens), dtype=np.int64)
        for row, text in enumerate(texts):
            ids = [index.get(tok, 1) for tok in tokenize(text)[: self.max_tokens]] or [1]
            out[row, : len(ids)] = ids
        return out

    def scale(self, y: np.ndarray) -> np.ndarray:
        return ((y - np.asarray(self.mean)) / np.asarray(self.std)).astype(np.float32)

    def unscale_main(self, y_scaled: np.ndarray) -> np.ndarray:
        return y_scaled * self.std[0] + self.mean[0]

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1) + "\n"

    @classmethod
    def from_json(cls, text: str) -> "Preprocessing":
        return cls(**json.loads(text))


@dataclass
class Prepared:
    """Encoded windows: tokens [N, T] int64, targets [N, K] float32 (standardized), raw main target."""

    prep: Preprocessing
    train_tokens: np.ndarray
    train_targets: np.ndarray
    valid_tokens: np.ndarray
    valid_targets: np.ndarray
    cache_hit: bool = False
    seconds: float = 0.0

    @property
    def n_train(self) -> int:
        return len(self.train_tokens)

    @property
    def n_valid(self) -> int:
        return len(self.valid_tokens)

    def baseline_mse(self) -> float:
        """Validation MSE (target units) of always predicting the training mean."""
        y = self.prep.unscale_main(self.valid_targets[:, 0].astype(np.float64))
        return float(np.mean((y - self.prep.mean[0]) ** 2))


def _cache_key(dataset: Dataset, window: dict[str, Any], vocab_size: int, max_tokens: int,
               partitions: Mapping[str, str] | None) -> str:
    doc = {"v": PREP_VERSION, "uri": dataset.uri, "descriptor": dataset.descriptor, "partitions": dict(partitions or {}),
           "train": list(window["train"]), "validation": list(window["validation"]),
           "vocab_size": int(vocab_size), "max_tokens": int(max_tokens)}
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:24]


def prepare(data_uri: str, window: dict[str, Any], vocab_size: int, max_tokens: int, use_cache: bool = True,
            partitions: Mapping[str, str] | None = None) -> Prepared:
    """Read, fit on the training window, encode both windows; cached per window and settings. `partitions`:
    the manifest's month digests, which what is read (or, on a cache hit, the store's checksums) must match."""
    import time

    t0 = time.perf_counter()
    dataset = Dataset(data_uri)
    folder = cache_root() / PREP / _cache_key(dataset, window, vocab_size, max_tokens, partitions)
    if use_cache and (folder / "arrays.npz").is_file():
        if partitions:  # nothing is read on a hit: the months must still be the compiled ones
            dataset.store.check(partitions)
        try:
            prepared = _load_cached(folder)
            prepared.seconds = time.perf_counter() - t0
            log.info("preprocessing cache hit: %s", folder)
            return prepared
        except Exception as err:  # a corrupt entry is rebuilt, never fatal
            log.warning("ignoring unreadable cache entry %s: %s", folder, err)

    info = dataset.info
    target_names = [info.target, *info.aux_targets]
    train = dataset.read_window(*window["train"], where="window.train", partitions=partitions)
    valid = dataset.read_window(*window["validation"], where="window.validation", partitions=partitions)
    if len(train) == 0:
        raise UserError(f"no rows in the training window [{window['train'][0]}, {window['train'][1]})", where=dataset.uri,
                        hint=f"the dataset covers {info.start} … {info.end}")
    if len(valid) == 0:
        raise UserError(f"no rows in the validation window [{window['validation'][0]}, {window['validation'][1]})",
                        where=dataset.uri, hint=f"the dataset covers {info.start} … {info.end}")
    y_train = train[target_names].to_numpy(dtype=np.float64)
    y_valid = valid[target_names].to_numpy(dtype=np.float64)
    for name, y in (("training", y_train), ("validation", y_valid)):
        if not np.isfinite(y).all():
            raise UserError(f"non-finite target values in the {name} window", where=dataset.uri)
    prep = Preprocessing.fit(train[info.text].astype(str), y_train, target_names, vocab_size, max_tokens, info.text)
    prepared = Prepared(prep=prep,
                        train_tokens=prep.encode(train[info.text].astype(str)), train_targets=prep.scale(y_train),
                        valid_tokens=prep.encode(valid[info.text].astype(str)), valid_targets=prep.scale(y_valid))
    if use_cache:
        _store_cached(folder, prepared)
    prepared.seconds = time.perf_counter() - t0
    return prepared


def _load_cached(folder: Path) -> Prepared:
    prep = Preprocessing.from_json((folder / "preprocessing.json").read_text(encoding="utf-8"))
    with np.load(folder / "arrays.npz") as arrays:
        return Prepared(prep=prep, train_tokens=arrays["train_tokens"], train_targets=arrays["train_targets"],
                        valid_tokens=arrays["valid_tokens"], valid_targets=arrays["valid_targets"], cache_hit=True)


def _store_cached(folder: Path, prepared: Prepared) -> None:
    """Write the entry to a temp folder and rename it into place: concurrent trials never see half of one."""
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}."))
        buf = io.BytesIO()
        np.savez(buf, train_tokens=prepared.train_tokens, train_targets=prepared.train_targets,
                 valid_tokens=prepared.valid_tokens, valid_targets=prepared.valid_targets)
        (tmp / "arrays.npz").write_bytes(buf.getvalue())
        (tmp / "preprocessing.json").write_text(prepared.prep.to_json(), encoding="utf-8")
        try:
            os.rename(tmp, folder)
        except OSError:  # another trial got there first
            shutil.rmtree(tmp, ignore_errors=True)
    except OSError as err:
        log.warning("cannot cache preprocessing in %s: %s", folder, err)
