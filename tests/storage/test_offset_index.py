from __future__ import annotations

import struct
from pathlib import Path

import pytest
from storage_helpers import Opened, create_file, file_size

from kpy.storage.errors import CorruptIndex, IndexOffsetOverflow, InvalidIndexEntry
from kpy.storage.fs import FileSystem
from kpy.storage.offset_index import OffsetIndex


def test_lookup_returns_largest_entry_at_or_below(
    fs: FileSystem, tmp_path: Path, opened: Opened
) -> None:
    index = opened(OffsetIndex(tmp_path / "x.index", base_offset=100, fs=fs))
    assert index.lookup(150) == (100, 0)  # empty: (base, 0)
    index.append(105, 4100)
    index.append(110, 8300)
    index.append(200, 20000)
    assert index.lookup(99) == (100, 0)
    assert index.lookup(104) == (100, 0)
    assert index.lookup(105) == (105, 4100)
    assert index.lookup(109) == (105, 4100)
    assert index.lookup(110) == (110, 8300)
    assert index.lookup(10**9) == (200, 20000)
    assert index.entries == 3
    assert index.last_offset == 200


def test_file_is_kafka_layout_byte_for_byte(fs: FileSystem, tmp_path: Path, opened: Opened) -> None:
    path = tmp_path / "00000000000000000100.index"
    index = opened(OffsetIndex(path, base_offset=100, fs=fs))
    index.append(105, 4100)
    index.append(100 + 2**31 - 1, 2**31 - 2)
    index.close()
    assert fs.read_bytes(path) == (
        b"\x00\x00\x00\x05\x00\x00\x10\x04" + b"\x7f\xff\xff\xff\x7f\xff\xff\xfe"
    )


def test_reopen_loads_entries(fs: FileSystem, tmp_path: Path, opened: Opened) -> None:
    path = tmp_path / "x.index"
    index = opened(OffsetIndex(path, base_offset=0, fs=fs))
    for i in range(1, 50):
        index.append(i * 10, i * 1000)
    index.close()
    again = opened(OffsetIndex(path, base_offset=0, fs=fs))
    assert again.entries == 49
    assert again.lookup(255) == (250, 25000)


def test_is_full_from_max_index_size(fs: FileSystem, tmp_path: Path, opened: Opened) -> None:
    index = opened(OffsetIndex(tmp_path / "x.index", base_offset=0, max_index_size=24, fs=fs))
    assert index.max_entries == 3
    for i in range(3):
        assert not index.is_full
        index.append(i, i * 10)
    assert index.is_full
    with pytest.raises(InvalidIndexEntry):
        index.append(5, 50)


def test_append_rejects_out_of_order_and_overflow(
    fs: FileSystem, tmp_path: Path, opened: Opened
) -> None:
    index = opened(OffsetIndex(tmp_path / "x.index", base_offset=10, fs=fs))
    index.append(20, 100)
    with pytest.raises(InvalidIndexEntry):
        index.append(20, 200)
    with pytest.raises(InvalidIndexEntry):
        index.append(25, 100)
    with pytest.raises(IndexOffsetOverflow):
        index.append(10 + 2**31, 300)
    with pytest.raises(IndexOffsetOverflow):
        index.append(9, 300)
    assert index.entries == 1


def test_truncate_to_removes_entries_at_or_above(
    fs: FileSystem, tmp_path: Path, opened: Opened
) -> None:
    path = tmp_path / "x.index"
    index = opened(OffsetIndex(path, base_offset=0, fs=fs))
    for offset in (10, 20, 30, 40):
        index.append(offset, offset * 100)
    index.truncate_to(30)
    assert index.entries == 2
    assert file_size(fs, path) == 16
    assert index.lookup(35) == (20, 2000)
    index.truncate_to(25)  # between entries
    assert index.entries == 2
    index.truncate_to(0)
    assert index.entries == 0
    assert file_size(fs, path) == 0


def test_torn_file_is_corrupt(fs: FileSystem, tmp_path: Path) -> None:
    path = tmp_path / "x.index"
    create_file(fs, path, struct.pack(">ii", 1, 100) + b"\x00\x00\x00")
    with pytest.raises(CorruptIndex):
        OffsetIndex(path, base_offset=0, fs=fs)


def test_decreasing_entries_are_corrupt(fs: FileSystem, tmp_path: Path) -> None:
    path = tmp_path / "x.index"
    create_file(fs, path, struct.pack(">iiii", 5, 100, 3, 200))
    with pytest.raises(CorruptIndex):
        OffsetIndex(path, base_offset=0, fs=fs)


def test_sanity_check_against_log_size(fs: FileSystem, tmp_path: Path, opened: Opened) -> None:
    index = opened(OffsetIndex(tmp_path / "x.index", base_offset=0, fs=fs))
    index.append(3, 500)
    index.sanity_check(501)
    with pytest.raises(CorruptIndex):
        index.sanity_check(500)
