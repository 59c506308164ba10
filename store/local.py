"""A results store in a local folder (the default: ./hpt-results)."""
from __future__ import annotations

import hashlib
import os
import secrets
from pathlib import Path

from hpt.store.base import AlreadyExists, TreeTransfer
from hpt.store.location import local_path, store_uri
from hpt.schemas.errors import UserError
from hpt.schemas.files import open_regular


class LocalStore(TreeTransfer):
    def __init__(self, uri: str):
        if local_path(uri) is None:
            raise ValueError(f"not a local URI: {uri!r}")
        self.uri = store_uri(uri)   # the one spelling of a store's URI (hpt.store.store_id digests it)
        self.root = Path(self.uri)
        if self.root.exists() and not self.root.is_dir():
            raise UserError("a file, not a folder (a store or dataset is a folder)", where=str(self.root))

    def _path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if self.root not in path.parents and path != self.root:
            raise ValueError(f"key escapes the store: {key!r}")
        return path

    def _write_temp(self, path: Path, data: bytes) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        # Created 0666 less the umask, like any file a user writes (mkstemp's 0600 would keep a team's
        # shared results folder from the team); the random name keeps concurrent writers apart.
        tmp = path.parent / f".{path.name}.{secrets.token_hex(8)}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        return tmp

    def put_once(self, key: str, data: bytes) -> None:
        path = self._path(key)
        tmp = self._write_temp(path, data)
        try:
            os.link(tmp, path)  # atomic create-only: fails if the name exists, never a partial file
        except FileExistsError:
            raise AlreadyExists(key) from None
        finally:
            tmp.unlink()

    def put(self, key: str, data: bytes) -> None:
        path = self._path(key)
        os.replace(self._write_temp(path, data), path)

    def get(self, key: str) -> bytes:
        """NotRegularFile for a FIFO, device or socket under that name (never read: it may never end)."""
        path = self._path(key)
        if path.is_dir():
            raise KeyError(key)
        try:
            with open_regular(path) as fh:
                return fh.read()
        except (FileNotFoundError, IsADirectoryError):
            raise KeyError(key) from None

    def get_versioned(self, key: str) -> tuple[bytes, str]:
        try:
            with open_regular(self._path(key)) as fh:  # a FIFO is never opened for reading (it would block)
                st = os.fstat(fh.fileno())
                return fh.read(), f"{st.st_ino}.{st.st_mtime_ns}.{st.st_size}"
        except (FileNotFoundError, IsADirectoryError):
            raise KeyError(key) from None

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    def list(self, prefix: str = "") -> list[str]:
        if not self.root.is_dir():  # a store not written yet (its parent's files are not ours)
            return []
        if not prefix or prefix.endswith("/"):  # a folder: walk only it (not the whole store when it is absent)
            folder = self._path(prefix.rstrip("/")) if prefix else self.root
            keys = self._walk(folder, prefix) if folder.is_dir() else []
        else:  # a name prefix (claims/<id>/0, rows-failed/<id>.): the parent's entries that start with it
            base = self._path(prefix)
            folder, start = base.parent, prefix.rpartition("/")[0]
            keys = []
            if folder.is_dir():
                with os.scandir(folder) as entries:
                    for entry in entries:
                        key = f"{start}/{entry.name}" if start else entry.name
                        if key.startswith(prefix):
                            if entry.is_dir(follow_symlinks=False):
                                keys += self._walk(Path(entry.path), key + "/")
                            elif entry.is_file(follow_symlinks=False) and not entry.name.startswith("."):
                                keys.append(key)
        return sorted(keys)

    @staticmethod
    def _walk(folder: Path, key_prefix: str) -> list[str]:
        """Keys of the files under `folder` (hidden ones, temporary files, left out)."""
        keys: list[str] = []
        stack = [(folder, key_prefix)]
        while stack:
            where, at = stack.pop()
            with os.scandir(where) as entries:
                for entry in entries:
                    if entry.is_dir(follow_symlinks=False):
                        stack.append((Path(entry.path), f"{at}{entry.name}/"))
                    elif entry.is_file(follow_symlinks=False) and not entry.name.startswith("."):
                        keys.append(at + entry.name)
        return keys

    def list_versions(self, prefix: str) -> dict[str, str]:
        folder = self._path(prefix.rstrip("/")) if prefix.strip("/") else self.root
        if not prefix.endswith("/") or not folder.is_dir():
            return {key: self._version(self._path(key)) for key in self.list(prefix)}
        out: dict[str, str] = {}
        stack = [(folder, prefix)]
        while stack:  # scandir: one stat per entry, no sorting or path objects (rows/ may hold 100,000)
            where, key_prefix = stack.pop()
            with os.scandir(where) as entries:
                for entry in entries:
                    if entry.is_dir(follow_symlinks=False):
                        stack.append((Path(entry.path), f"{key_prefix}{entry.name}/"))
                    elif entry.is_file(follow_symlinks=False) and not entry.name.startswith("."):
                        st = entry.stat(follow_symlinks=False)
                        out[key_prefix + entry.name] = f"{st.st_ino}.{st.st_mtime_ns}.{st.st_size}"
        return out

    @staticmethod
    def _version(path: Path) -> str:
        try:
            st = path.stat()
        except OSError:
            return ""
        return f"{st.st_ino}.{st.st_mtime_ns}.{st.st_size}"

    def checksums(self, prefix: str = "") -> dict[str, str]:
        out = {}
        for key in self.list(prefix):
            with self._path(key).open("rb") as stream:
                out[key] = hashlib.file_digest(stream, "md5").hexdigest()
        return out

    def url(self, key: str) -> str:
        return str(self._path(key))
