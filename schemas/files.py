"""Opening the files a user, a plan folder or a store gives hpt: regular files only, bounded.

A FIFO never ends (reading one hangs, and even opening one waits for a writer), a device like /dev/zero
never ends either, and a socket cannot be opened at all: each is refused as "not a regular file" before
anything is read. The open itself does not block (O_NONBLOCK, cleared once the file is known regular).
FolderReader reads many files of one folder with the same refusals, resolving the folder once.
"""
from __future__ import annotations

import errno
import functools
import os
import stat
from pathlib import Path
from typing import BinaryIO

from hpt.schemas.errors import UserError

NOT_REGULAR = "not a regular file (a FIFO, device or socket)"
# The pseudo-filesystems whose "regular" files are the kernel's, not data (/proc/kmsg blocks a reader).
PSEUDO_ROOTS = ("/proc/", "/sys/", "/dev/")
# ... except the memory file systems under /dev, whose regular files are data like any other.
DATA_UNDER_DEV = ("/dev/shm/",)


class NotRegularFile(UserError):
    """The path names a FIFO, a device, a socket, or a file of /proc, /sys or /dev."""


def is_pseudo(path: Path) -> bool:
    try:
        link = stat.S_ISLNK(os.lstat(path).st_mode)
    except OSError:
        link = True   # let realpath say (a missing file's open fails later as it would)
    # Not a link: where it really is is its folder's real place (resolved once per folder) and its name.
    real = os.path.realpath(path) if link else os.path.join(_real_folder(os.path.dirname(os.path.abspath(path))),
                                                           os.path.basename(path))
    return _in_pseudo(real)


def _in_pseudo(real: str) -> bool:
    """Whether a resolved path lies in /proc, /sys or /dev (other than its memory file systems)."""
    if real.startswith(DATA_UNDER_DEV):
        return False
    return any(real.startswith(root) or real == root.rstrip("/") for root in PSEUDO_ROOTS)


@functools.lru_cache(maxsize=1024)
def _real_folder(folder: str) -> str:
    return os.path.realpath(folder)


def open_regular(path: str | Path, where: str | None = None) -> BinaryIO:
    """The file opened for reading (binary) when it is a regular file; NotRegularFile if it is not;
    OSError as open() raises it (missing, no permission)."""
    where = where or str(path)
    if is_pseudo(Path(path)):
        raise NotRegularFile(NOT_REGULAR, where=where)
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise NotRegularFile(NOT_REGULAR, where=where)
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_regular(path: str | Path, where: str | None = None, limit: int | None = None) -> bytes:
    """The whole of a regular file; NotRegularFile for anything else, UserError past `limit` bytes."""
    with open_regular(path, where) as fh:
        if limit is None:
            return fh.read()
        data = fh.read(limit + 1)
    if len(data) > limit:
        raise UserError(f"larger than {limit:,} bytes", where=where or str(path))
    return data


def is_regular(path: str | Path) -> bool:
    """Whether the path is a regular file outside the pseudo-filesystems (without opening it)."""
    try:
        return stat.S_ISREG(os.stat(path).st_mode) and not is_pseudo(Path(path))
    except OSError:
        return False


class FolderReader:
    """Many regular files of one folder read by name, each as read_regular would, at a fraction of its cost
    (a plan's trials/ holds 20,000 manifests): the folder is resolved and judged once, and each name is
    opened relative to it without following a link. Anything unusual takes read_regular's careful path
    instead: a symlink (judged by where it points), a name that is not a plain name, a file on another
    device than its folder (a mount), a folder in /proc, /sys or /dev, a platform without dir_fd."""

    def __init__(self, folder: str | os.PathLike[str]):
        self._fd: int | None = None
        self.folder = os.fspath(folder)
        real = os.path.realpath(self.folder)
        if os.open in os.supports_dir_fd and not _in_pseudo(os.path.join(real, "")):   # where its files lie
            try:
                self._fd = os.open(real, os.O_RDONLY | os.O_DIRECTORY | getattr(os, "O_CLOEXEC", 0))
                self._dev = os.fstat(self._fd).st_dev
            except OSError:   # missing, not a folder, no permission: each read's careful path says so
                self.close()

    def __enter__(self) -> "FolderReader":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    __del__ = close   # a reader not used as a context manager closes its folder when it goes

    def read(self, name: str, where: str | None = None, limit: int | None = None) -> bytes:
        """read_regular(folder/name, where, limit), with the same errors (OSError naming the full path)."""
        if self._fd is None or not name or "/" in name or name in (".", ".."):
            return read_regular(os.path.join(self.folder, name), where, limit)
        try:
            fd = os.open(name, _NAME_FLAGS, dir_fd=self._fd)
        except OSError as err:
            if err.errno in _IS_LINK:
                return read_regular(os.path.join(self.folder, name), where, limit)
            raise type(err)(err.errno, err.strerror, os.path.join(self.folder, name)) from None
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise NotRegularFile(NOT_REGULAR, where=where or os.path.join(self.folder, name))
            if st.st_dev != self._dev:
                return read_regular(os.path.join(self.folder, name), where, limit)
            data = _read_fd(fd, st.st_size, limit)
        finally:
            os.close(fd)
        if limit is not None and len(data) > limit:
            raise UserError(f"larger than {limit:,} bytes", where=where or os.path.join(self.folder, name))
        return data


# O_NONBLOCK: opening a FIFO does not wait for a writer (fstat refuses it next); a regular file ignores the flag.
_NAME_FLAGS = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOFOLLOW", 0)
_IS_LINK = {errno.ELOOP, errno.EMLINK}   # what O_NOFOLLOW answers for a symlink (Linux, macOS: ELOOP; FreeBSD: EMLINK)


def _read_fd(fd: int, size: int, limit: int | None) -> bytes:
    """A regular file's bytes to its end, or limit + 1 of them; `size` (fstat's) is only the first read's guess."""
    cap = None if limit is None else limit + 1
    chunks, total = [], 0
    want = size + 1 if cap is None else min(size + 1, cap)
    while cap is None or total < cap:
        try:
            chunk = os.read(fd, max(want, 1))
        except BlockingIOError:   # a regular file under mandatory locking honours O_NONBLOCK: wait like open() would
            os.set_blocking(fd, True)
            continue
        if not chunk:
            break
        chunks.append(chunk)
        total += len(chunk)
        want = 1 << 16 if cap is None else min(1 << 16, cap - total)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)
