"""Opening the files a user, a plan folder or a store gives hpt: regular files only, bounded.

A FIFO never ends (reading one hangs, and even opening one waits for a writer), a device like /dev/zero
never ends either, and a socket cannot be opened at all: each is refused as "not a regular file" before
anything is read. The open itself does not block (O_NONBLOCK, cleared once the file is known regular).
"""
from __future__ import annotations

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
