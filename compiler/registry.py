"""A registry of search parts by name, filled by discovery: every module of a parts package defines its
class with a `name`, and `Registry.get` imports the package's modules once. Adding a proposer or a
scheduler is one new file in compiler/proposers/ or compiler/schedulers/ (plus its docs and tests)."""
from __future__ import annotations

import importlib
import pkgutil
from typing import Generic, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    def __init__(self, package: str, kind: str):
        self.package, self.kind = package, kind
        self._parts: dict[str, type[T]] = {}
        self._loaded = False

    def add(self, cls: type[T]) -> None:
        name = getattr(cls, "name", "")
        if name:
            if name in self._parts and self._parts[name] is not cls:
                raise AssertionError(f"bug: two {self.kind}s named {name!r}")
            self._parts[name] = cls

    def _load(self) -> None:
        if self._loaded:
            return
        package = importlib.import_module(self.package)
        for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda i: i.name):
            importlib.import_module(f"{self.package}.{info.name}")
        self._loaded = True

    def names(self) -> list[str]:
        self._load()
        return sorted(self._parts)

    def get(self, name: str) -> T:
        """An instance of the part called `name` (a name the schema and validation admitted: a bug if unknown)."""
        self._load()
        return self._parts[name]()
