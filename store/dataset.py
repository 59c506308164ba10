"""A dataset behind the store interface: its descriptor (`dataset.json`) and its month partitions.

A dataset is a folder — a path, file:// or gs:// — holding hpt.schemas.dataset.DESCRIPTOR and one
folder of Parquet files per month, named by DatasetInfo.partition (`month=YYYY-MM/*.parquet`). It is
read through open_store, like rows and models: a gs:// dataset and a local one are the same to the
compiler (which reads only the descriptor), the trainer and `hpt data`.
"""
from __future__ import annotations

from hpt.schemas.dataset import DESCRIPTOR, DatasetInfo
from hpt.store.base import Store, open_store

PARQUET = ".parquet"


class DatasetStore:
    def __init__(self, uri: str):
        self.store: Store = open_store(uri)
        self.uri = self.store.uri

    def descriptor(self) -> str:
        """The text of dataset.json; KeyError if the folder has none."""
        return self.store.get(DESCRIPTOR).decode("utf-8")

    def info(self) -> DatasetInfo:
        return DatasetInfo.from_json(self.descriptor(), where=f"{self.uri}/{DESCRIPTOR}")

    def parts(self, month: str) -> list[str]:
        """Keys of one month's Parquet files ('YYYY-MM'), anywhere under its partition folder, sorted."""
        return [k for k in self.store.list(DatasetInfo.partition(month) + "/") if k.endswith(PARQUET)]

    def months(self) -> dict[str, list[str]]:
        """Every month with Parquet files → its keys, in month order."""
        found: dict[str, list[str]] = {}
        for key in self.store.list():
            folder, _, name = key.partition("/")
            month = DatasetInfo.partition_month(folder)
            if month is not None and name.endswith(PARQUET):
                found.setdefault(month, []).append(key)
        return dict(sorted(found.items()))

    def get(self, key: str) -> bytes:
        return self.store.get(key)
