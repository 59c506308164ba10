"""hpt.store — the store floor: where rows, models, logs and datasets live (a folder, or gs://).

It sits at the ground beside hpt.schemas: the trainer writes to it, the executor reads what is done
from it, and the analysis (hpt.results) reads what it holds. See hpt.store.base for the layout.
"""
from hpt.store.base import (
    LOGS,
    MODELS,
    RESULTS_CSV,
    ROUNDS,
    ROWS,
    TENSORBOARD,
    DEFAULT_STORE_DEADLINE_S,
    EXIT_STORE_UNAVAILABLE,
    STORE_DEADLINE_ENV,
    AlreadyExists,
    Store,
    StoreUnavailable,
    TreeTransfer,
    iter_row_ids,
    open_store,
    read_text,
    row_key,
    store_deadline_s,
    store_id,
)
from hpt.store.dataset import DATA_CHANGED, DataChanged, DatasetStore, index_dataset
from hpt.store.location import check_scheme, is_gcs, local_path, store_uri

__all__ = [
    "LOGS", "MODELS", "RESULTS_CSV", "ROUNDS", "ROWS", "TENSORBOARD", "AlreadyExists", "Store", "TreeTransfer",
    "iter_row_ids", "open_store", "read_text", "row_key", "DEFAULT_STORE_DEADLINE_S", "EXIT_STORE_UNAVAILABLE",
    "STORE_DEADLINE_ENV", "StoreUnavailable", "store_deadline_s", "DATA_CHANGED", "DataChanged", "DatasetStore", "index_dataset", "check_scheme", "is_gcs", "local_path", "store_id",
    "store_uri",
]
