"""hpt.schemas.files: FolderReader reads many files of one folder with read_regular's refusals, each one."""
from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from hpt.schemas.errors import UserError
from hpt.schemas.files import FolderReader, NotRegularFile, read_regular


def _both(folder: Path, name: str, limit: int | None = None) -> tuple[object, object]:
    """What read_regular and FolderReader.read each give for folder/name: the bytes, or the error's type."""
    out = []
    for read in (lambda: read_regular(folder / name, limit=limit),
                 lambda: FolderReader(folder).read(name, limit=limit)):
        try:
            out.append(read())
        except (UserError, OSError) as err:
            out.append(type(err))
    return out[0], out[1]


def test_a_folder_of_files_reads_each_one_whole(tmp_path: Path) -> None:
    for i in range(50):
        (tmp_path / f"{i}.json").write_bytes(b"x" * i * 1000)
    with FolderReader(tmp_path) as folder:
        assert [len(folder.read(f"{i}.json")) for i in range(50)] == [i * 1000 for i in range(50)]


def test_what_read_regular_refuses_a_folder_reader_refuses_the_same_way(tmp_path: Path) -> None:
    (tmp_path / "ok").write_bytes(b"data")
    (tmp_path / "big").write_bytes(b"y" * 101)
    os.mkfifo(tmp_path / "fifo")
    (tmp_path / "dir").mkdir()
    (tmp_path / "to-zero").symlink_to("/dev/zero")
    (tmp_path / "to-kmsg").symlink_to("/proc/kmsg")
    (tmp_path / "to-fifo").symlink_to(tmp_path / "fifo")
    (tmp_path / "loop").symlink_to(tmp_path / "loop")
    (tmp_path / "dangling").symlink_to(tmp_path / "none")
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(tmp_path / "sock"))
    try:
        expected = {"ok": b"data", "big": UserError, "fifo": NotRegularFile, "dir": NotRegularFile,
                    "to-zero": NotRegularFile, "to-kmsg": NotRegularFile, "to-fifo": NotRegularFile,
                    "loop": OSError, "dangling": FileNotFoundError, "none": FileNotFoundError, "sock": OSError}
        for name, want in expected.items():
            careful, fast = _both(tmp_path, name, limit=100)
            assert careful == fast, name
            assert fast == want or (isinstance(fast, type) and issubclass(fast, want)), (name, fast)
    finally:
        sock.close()


def test_a_symlink_is_judged_by_where_it_points(tmp_path: Path) -> None:
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "real.json").write_bytes(b"{}")
    folder = tmp_path / "trials"
    folder.mkdir()
    (folder / "a.json").symlink_to(tmp_path / "elsewhere" / "real.json")
    assert FolderReader(folder).read("a.json") == b"{}"


def test_a_name_that_is_not_plain_takes_the_careful_path(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "f").write_bytes(b"in sub")
    (tmp_path / "f").write_bytes(b"beside")
    reader = FolderReader(tmp_path / "sub")
    assert reader.read("../f") == b"beside"   # what read_regular(folder/name) reads, no more, no less
    with pytest.raises(NotRegularFile):
        reader.read("")                        # the folder itself


def test_a_folder_in_proc_is_refused_file_by_file(tmp_path: Path) -> None:
    with pytest.raises(NotRegularFile):
        FolderReader("/proc/self").read("status")
    (tmp_path / "proc").symlink_to("/proc/self")
    with pytest.raises(NotRegularFile):
        FolderReader(tmp_path / "proc").read("status")


def test_a_missing_file_says_its_whole_path(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError) as err:
        FolderReader(tmp_path).read("none.json")
    assert err.value.filename == str(tmp_path / "none.json")
    with pytest.raises(FileNotFoundError):
        FolderReader(tmp_path / "no-folder").read("x.json")


def test_the_limit_applies_at_its_byte(tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"z" * 100)
    with FolderReader(tmp_path) as folder:
        assert folder.read("f", limit=100) == b"z" * 100
        with pytest.raises(UserError, match="larger than 99 bytes"):
            folder.read("f", limit=99)
