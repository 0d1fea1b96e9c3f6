from __future__ import annotations

import struct
from pathlib import Path

import pytest
from storage_helpers import Opened, create_file, file_size

from kpy.storage.errors import CorruptIndex, InvalidIndexEntry
from kpy.storage.fs import FileSystem
from kpy.storage.time_index import TimeIndex


def test_maybe_append_only_when_timestamp_grows(
    fs: FileSystem, tmp_path: Path, opened: Opened
) -> None:
    index = opened(TimeIndex(tmp_path / "x.timeindex", base_offset=50, fs=fs))
    assert index.last_entry() == (-1, 50)
    index.maybe_append(-1, 50)  # no timestamp: nothing to index
    index.maybe_append(1000, 52)
    index.maybe_append(1000, 55)  # same timestamp: ignored
    index.maybe_append(900, 56)  # smaller: ignored
    index.maybe_append(1500, 60)
    assert index.entries == 2
    assert index.last_entry() == (1500, 60)
    with pytest.raises(InvalidIndexEntry):
        index.maybe_append(2000, 59)  # offset going backwards


def test_lookup_largest_timestamp_at_or_below(
    fs: FileSystem, tmp_path: Path, opened: Opened
) -> None:
    index = opened(TimeIndex(tmp_path / "x.timeindex", base_offset=0, fs=fs))
    index.maybe_append(100, 5)
    index.maybe_append(200, 9)
    index.maybe_append(300, 20)
    assert index.lookup(99) == (-1, 0)
    assert index.lookup(100) == (100, 5)
    assert index.lookup(250) == (200, 9)
    assert index.lookup(10**12) == (300, 20)


def test_file_is_kafka_layout_byte_for_byte(fs: FileSystem, tmp_path: Path, opened: Opened) -> None:
    path = tmp_path / "00000000000000000007.timeindex"
    index = opened(TimeIndex(path, base_offset=7, fs=fs))
    index.maybe_append(1_700_000_000_000, 9)
    index.maybe_append(1_700_000_000_001, 7 + 2**31 - 1)
    index.close()
    assert fs.read_bytes(path) == (
        bytes.fromhex("0000018bcfe56800")
        + b"\x00\x00\x00\x02"
        + bytes.fromhex("0000018bcfe56801")
        + b"\x7f\xff\xff\xff"
    )
    again = opened(TimeIndex(path, base_offset=7, fs=fs))
    assert again.lookup(1_700_000_000_000) == (1_700_000_000_000, 9)


def test_full_check_and_skip(fs: FileSystem, tmp_path: Path, opened: Opened) -> None:
    index = opened(TimeIndex(tmp_path / "x.timeindex", base_offset=0, max_index_size=24, fs=fs))
    index.maybe_append(1, 1)
    index.maybe_append(2, 2)
    assert index.is_full
    with pytest.raises(InvalidIndexEntry):
        index.maybe_append(3, 3)
    index.maybe_append(3, 3, skip_full_check=True)
    assert index.entries == 3


def test_truncate_to(fs: FileSystem, tmp_path: Path, opened: Opened) -> None:
    path = tmp_path / "x.timeindex"
    index = opened(TimeIndex(path, base_offset=0, fs=fs))
    for i in range(1, 6):
        index.maybe_append(i * 100, i * 10)
    index.truncate_to(30)
    assert index.entries == 2
    assert index.last_entry() == (200, 20)
    assert file_size(fs, path) == 24


@pytest.mark.parametrize(
    "data",
    [
        struct.pack(">qi", 100, 1) + b"\x01",  # torn
        struct.pack(">qiqi", 200, 1, 100, 2),  # timestamps decrease
        struct.pack(">qiqi", 100, 5, 200, 2),  # offsets decrease
    ],
)
def test_corrupt_files(fs: FileSystem, tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "x.timeindex"
    create_file(fs, path, data)
    with pytest.raises(CorruptIndex):
        TimeIndex(path, base_offset=0, fs=fs)
