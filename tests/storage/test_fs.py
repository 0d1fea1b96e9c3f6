"""The file-system seam (kpy.storage.fs): the POSIX semantics the storage layer relies on, the
same on the disk (OsFileSystem) and in memory (MemoryFileSystem)."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest
from storage_helpers import descriptor

from kpy.storage.fs import FileSystem, MemoryFileSystem, OsFileSystem


def write_all(fs: FileSystem, path: Path, data: bytes) -> None:
    with descriptor(fs, path) as fd:
        assert fs.io.write(fd, data) == len(data)


def test_descriptor_calls_append_read_truncate(fs: FileSystem, tmp_path: Path) -> None:
    path = tmp_path / "a.log"
    fd = fs.open(path)
    try:
        assert fs.file_size(fd) == 0 and fs.exists(path) and fs.is_file(path)
        fs.io.write(fd, b"hello ")
        fs.io.write(fd, memoryview(bytearray(b"world")))
        assert fs.file_size(fd) == 11
        assert fs.io.pread(fd, 5, 6) == b"world"
        assert fs.io.pread(fd, 100, 8) == b"rld"  # short read at the end
        assert fs.io.pread(fd, 4, 20) == b""
        fs.io.ftruncate(fd, 5)
        fs.io.write(fd, b"!")  # O_APPEND: at the end, whatever was read or cut
        assert fs.io.pread(fd, 100, 0) == b"hello!"
        fs.fsync_file(fd, path)
        assert fs.file_mtime_ns(fd) == fs.mtime_ns(path)
    finally:
        fs.io.close(fd)
    fs.fsync_path(path)
    assert fs.read_bytes(path) == b"hello!"
    fd = fs.open(path)  # reopening keeps the bytes
    fs.io.close(fd)
    assert fs.read_text(path) == "hello!"
    with pytest.raises(OSError):
        fs.io.close(fd)  # already closed


def test_an_open_descriptor_outlives_rename_and_unlink(fs: FileSystem, tmp_path: Path) -> None:
    """The storage layer reads a segment through its descriptor after renaming it to
    ``*.deleted`` and after unlinking it (a reader still inside a deleted segment)."""
    path = tmp_path / "00000000000000000000.log"
    write_all(fs, path, b"batch-1")
    fd = fs.open(path)
    try:
        deleted = path.with_name(path.name + ".deleted")
        fs.rename(path, deleted)
        assert not fs.exists(path) and fs.exists(deleted)
        fs.io.write(fd, b"+batch-2")
        assert fs.io.pread(fd, 100, 0) == b"batch-1+batch-2"
        assert fs.read_bytes(deleted) == b"batch-1+batch-2"
        fs.unlink(deleted)
        assert not fs.exists(deleted)
        assert fs.listdir(tmp_path) == []
        assert fs.io.pread(fd, 7, 0) == b"batch-1"  # still readable
        assert fs.file_size(fd) == 15
        fs.fsync_file(fd, deleted)
        # A new file at the old name is another file.
        write_all(fs, path, b"new")
        assert fs.read_bytes(path) == b"new"
        assert fs.io.pread(fd, 7, 0) == b"batch-1"
    finally:
        fs.io.close(fd)
    with pytest.raises(FileNotFoundError):
        fs.fsync_path(deleted)


def test_rename_replaces_a_file_and_moves_directories(fs: FileSystem, tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    write_all(fs, a, b"A")
    write_all(fs, b, b"B")
    fd = fs.open(b)
    try:
        fs.rename(a, b)  # replaces b; b's old inode lives on in fd
        assert fs.read_bytes(b) == b"A" and not fs.exists(a)
        assert fs.io.pread(fd, 1, 0) == b"B"
    finally:
        fs.io.close(fd)
    part = tmp_path / "t-0"
    fs.mkdir(part / "sub")
    write_all(fs, part / "00.log", b"x")
    fd = fs.open(part / "00.log")
    try:
        doomed = tmp_path / "t-0.abc-delete"
        fs.rename(part, doomed)
        assert not fs.exists(part)
        assert sorted(fs.listdir(doomed)) == ["00.log", "sub"]
        fs.rmtree(doomed)
        assert not fs.exists(doomed)
        assert fs.io.pread(fd, 1, 0) == b"x"
    finally:
        fs.io.close(fd)
    fs.rmtree(doomed)  # errors ignored
    with pytest.raises(FileNotFoundError):
        fs.rename(doomed, part)
    fs.mkdir(tmp_path / "empty")
    with pytest.raises(IsADirectoryError):
        fs.rename(b, tmp_path / "empty")


def test_names_and_errors(fs: FileSystem, tmp_path: Path) -> None:
    d = tmp_path / "x" / "y"
    fs.mkdir(d)
    fs.mkdir(d)  # exists: no error
    assert fs.is_dir(d) and not fs.is_file(d) and fs.exists(tmp_path / "x")
    write_all(fs, d / "1.snapshot", b"")
    write_all(fs, d / "2.snapshot.tmp", b"")
    write_all(fs, d / "3.log", b"")
    assert sorted(fs.listdir(d)) == ["1.snapshot", "2.snapshot.tmp", "3.log"]
    assert fs.names_ending(d, ".snapshot") == ["1.snapshot"]
    assert fs.names_ending(tmp_path / "missing", ".snapshot") == []
    with pytest.raises(FileNotFoundError):
        fs.open(tmp_path / "missing" / "f")
    with pytest.raises(FileNotFoundError):
        fs.listdir(tmp_path / "missing")
    with pytest.raises(FileNotFoundError):
        fs.read_bytes(d / "nope")
    with pytest.raises(FileNotFoundError):
        fs.unlink(d / "nope")
    fs.unlink(d / "nope", missing_ok=True)
    fs.unlink(tmp_path / "missing" / "nope", missing_ok=True)
    with pytest.raises(IsADirectoryError):
        fs.open(d)
    with pytest.raises(FileExistsError):
        fs.mkdir(d / "3.log")
    with pytest.raises(FileNotFoundError):
        fs.fsync_dir(tmp_path / "missing")
    fs.fsync_dir(d)
    total, usable = fs.disk_space(d)
    assert total >= usable > 0


def test_write_atomic_and_times(fs: FileSystem, tmp_path: Path) -> None:
    path = tmp_path / "kpy-topics.json"
    fs.write_atomic(path, b"one")
    fs.write_atomic(path, b"two", sync=False)
    assert fs.read_bytes(path) == b"two"
    assert fs.listdir(tmp_path) == ["kpy-topics.json"]  # no .tmp left
    fs.utime(path, 5_000_000_000)
    assert fs.mtime_ns(path) == 5_000_000_000
    with pytest.raises(FileNotFoundError):
        fs.write_atomic(tmp_path / "missing" / "f", b"")


def test_memory_file_system_writes_nothing_to_disk(tmp_path: Path) -> None:
    fs = MemoryFileSystem()
    fs.mkdir(tmp_path / "data")
    write_all(fs, tmp_path / "data" / "f", b"x" * 100)
    fs.write_atomic(tmp_path / "data" / "g", b"y")
    assert list(tmp_path.iterdir()) == []
    assert fs.files() == {str(tmp_path / "data" / "f"): 100, str(tmp_path / "data" / "g"): 1}
    assert fs.open_descriptors == 0


def test_memory_file_system_separate_instances() -> None:
    one, two = MemoryFileSystem(), MemoryFileSystem()
    one.mkdir("/d")
    one.write_atomic("/d/f", b"1")
    assert not two.exists("/d/f")
    assert OsFileSystem().io is os  # the hot paths call the os module itself


def test_memory_reads_on_threads_during_appends() -> None:
    """pread on worker threads while the loop thread appends: every read sees a prefix."""
    fs = MemoryFileSystem()
    fs.mkdir("/d")
    fd = fs.open("/d/f")
    chunk = bytes(range(256)) * 16
    stop = threading.Event()
    errors: list[str] = []

    def reader() -> None:
        while not stop.is_set():
            size = fs.file_size(fd)
            data = fs.io.pread(fd, size, 0)
            if len(data) != size or data != (chunk * (size // len(chunk) + 1))[:size]:
                errors.append(f"bad read of {size}")

    threads = [threading.Thread(target=reader) for _ in range(2)]
    for t in threads:
        t.start()
    try:
        for _ in range(300):
            fs.io.write(fd, chunk)
    finally:
        stop.set()
        for t in threads:
            t.join()
        fs.io.close(fd)
    assert not errors
