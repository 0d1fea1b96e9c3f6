from __future__ import annotations

import threading
from itertools import pairwise
from pathlib import Path

import pytest
from storage_helpers import (
    Opened,
    batch_with_timestamps,
    file_size,
    offsets_in,
    truncate_file,
    write_at,
)

from kpy.protocol.records import build_batch, set_base_offset, validate_batches
from kpy.storage.config import LogConfig
from kpy.storage.errors import IndexOffsetOverflow
from kpy.storage.fs import FileSystem
from kpy.storage.segment import LogSegment


def make_batches(base: int, sizes: list[int], *, timestamp: int = 1000) -> bytearray:
    """Batches of the given record counts, offsets assigned from ``base``."""
    out = bytearray()
    offset = base
    for i, count in enumerate(sizes):
        batch = bytearray(build_batch([(b"k", b"x" * 40)] * count, timestamp=timestamp + i))
        set_base_offset(batch, 0, offset)
        out += batch
        offset += count
    return out


def open_segment(
    fs: FileSystem, directory: Path, base: int = 0, interval: int = 4096
) -> LogSegment:
    return LogSegment(directory, base, index_interval_bytes=interval, fs=fs)


def test_file_names_are_kafka_style(fs: FileSystem, tmp_path: Path, opened: Opened) -> None:
    seg = opened(open_segment(fs, tmp_path, 42))
    assert seg.log_path.name == "00000000000000000042.log"
    assert seg.index_path.name == "00000000000000000042.index"
    assert seg.time_index_path.name == "00000000000000000042.timeindex"
    assert fs.exists(seg.log_path) and fs.exists(seg.index_path)
    assert fs.exists(seg.time_index_path)


def test_read_starts_at_batch_containing_offset(
    fs: FileSystem, tmp_path: Path, opened: Opened
) -> None:
    seg = opened(open_segment(fs, tmp_path, 100, interval=0))
    seg.append(make_batches(100, [3, 3, 3, 3]))
    assert seg.read_next_offset() == 112
    data = seg.read(104, 10_000)
    assert data is not None
    assert offsets_in(data) == [(103, 105), (106, 108), (109, 111)]
    assert seg.read(112, 10_000) is None
    all_data = seg.read(0, 10_000)
    assert all_data is not None and offsets_in(all_data)[0] == (100, 102)


def test_find_batch_agrees_with_a_full_scan(fs: FileSystem, tmp_path: Path, opened: Opened) -> None:
    """find_batch (the last batch appended kept aside, a lean scan from the index entry) gives
    what walking every header gives, for every offset, every size bound, and after a reopen."""
    counts = [1, 5, 2, 1, 9, 3, 1, 1, 4, 7] * 8
    seg = opened(open_segment(fs, tmp_path, 10, interval=300))
    for i in range(0, len(counts), 10):  # several appends, several batches each
        seg.append(make_batches(10 + sum(counts[:i]), counts[i : i + 10]))
    end = 10 + sum(counts)

    def reference(offset: int, size: int) -> tuple[int, int] | None:
        for pos, header in seg.iter_batches(0):
            if pos + header.size <= size and header.last_offset >= offset:
                return pos, header.base_offset
        return None

    sizes = [seg.size, seg.size - 1, seg.size // 2, 0]
    for offset in range(0, end + 2):
        for size in sizes:
            found = seg.find_batch(offset, size)
            assert (None if found is None else (found[0], found[1].base_offset)) == reference(
                offset, size
            ), (offset, size)
    last = seg.find_batch(end - 1)
    assert last is not None and last[1].last_offset == end - 1
    seg.close()
    again = opened(open_segment(fs, tmp_path, 10, interval=300))  # nothing kept aside: scans
    for offset in range(0, end):
        found = again.find_batch(offset)
        assert found is not None and found[1].base_offset <= max(offset, 10) <= found[1].last_offset


def test_read_returns_only_whole_batches_and_min_one(
    fs: FileSystem, tmp_path: Path, opened: Opened
) -> None:
    seg = opened(open_segment(fs, tmp_path))
    batches = make_batches(0, [2, 2, 2])
    seg.append(batches)
    one = validate_batches(batches)[0].size  # all three batches have this size
    assert offsets_in(seg.read(0, one * 2 + 5) or b"") == [(0, 1), (2, 3)]
    assert seg.read(0, one - 1) == b""
    assert offsets_in(seg.read(0, 1, min_one=True) or b"") == [(0, 1)]
    assert offsets_in(seg.read(2, 0, min_one=True) or b"") == [(2, 3)]
    # max_position hides what a reader did not see when it started
    assert offsets_in(seg.read(0, 10**6, max_position=one * 2) or b"") == [(0, 1), (2, 3)]
    assert seg.read(4, 10**6, max_position=one * 2) is None


def test_index_entries_follow_index_interval(
    fs: FileSystem, tmp_path: Path, opened: Opened
) -> None:
    seg = opened(open_segment(fs, tmp_path, 0, interval=0))
    batches = make_batches(0, [1, 1, 1, 1])
    headers = validate_batches(batches)
    seg.append(batches)
    # bytes since the last entry must exceed the interval: no entry for the first batch
    positions = [0]
    for h in headers[:-1]:
        positions.append(positions[-1] + h.size)
    assert [seg.offset_index.entry(i) for i in range(seg.offset_index.entries)] == [
        (1, positions[1]),
        (2, positions[2]),
        (3, positions[3]),
    ]
    other = tmp_path / "other"
    fs.mkdir(other)
    big = opened(
        open_segment(fs, other, 0)
    )  # default 4096-byte interval: no entry for small batches
    big.append(make_batches(0, [1, 1, 1, 1]))
    assert big.offset_index.entries == 0


def test_find_offset_by_timestamp_looks_inside_batches(
    fs: FileSystem, tmp_path: Path, opened: Opened
) -> None:
    seg = opened(open_segment(fs, tmp_path, 0, interval=0))
    data = bytearray()
    for base, stamps in ((0, [100, 300, 200]), (3, [150, 400, 500]), (6, [450, 600])):
        batch = bytearray(batch_with_timestamps([b"v"] * len(stamps), stamps))
        set_base_offset(batch, 0, base)
        data += batch
    seg.append(data)
    assert seg.find_offset_by_timestamp(50) == (0, 100)
    assert seg.find_offset_by_timestamp(250) == (1, 300)
    assert seg.find_offset_by_timestamp(301) == (4, 400)
    assert seg.find_offset_by_timestamp(420) == (5, 500)
    assert seg.find_offset_by_timestamp(501) == (7, 600)
    assert seg.find_offset_by_timestamp(601) is None
    assert seg.find_offset_by_timestamp(50, starting_offset=2) == (2, 200)
    assert seg.max_timestamp_so_far() == (600, 7)
    assert seg.find_max_timestamp() == (7, 600)


def test_recover_rebuilds_identical_indexes(fs: FileSystem, tmp_path: Path, opened: Opened) -> None:
    one = validate_batches(make_batches(0, [1]))[0].size
    # an interval of exactly one batch: an entry every second batch ("more than" the interval)
    seg = opened(open_segment(fs, tmp_path, 0, interval=one))
    seg.append(make_batches(0, [1] * 9))
    assert [seg.offset_index.entry(i) for i in range(seg.offset_index.entries)] == [
        (2, 2 * one),
        (4, 4 * one),
        (6, 6 * one),
        (8, 8 * one),
    ]
    seg.close()
    index_bytes = fs.read_bytes(seg.index_path)
    time_bytes = fs.read_bytes(seg.time_index_path)
    seg = opened(open_segment(fs, tmp_path, 0, interval=one))
    assert seg.recover() == 0
    seg.close()
    assert fs.read_bytes(seg.index_path) == index_bytes
    assert fs.read_bytes(seg.time_index_path) == time_bytes


def test_recover_truncates_torn_tail_and_bad_crc(
    fs: FileSystem, tmp_path: Path, opened: Opened
) -> None:
    seg = opened(open_segment(fs, tmp_path, 0))
    batches = make_batches(0, [2, 2, 2])
    sizes = [h.size for h in validate_batches(batches)]
    seg.append(batches)
    seg.close()
    truncate_file(fs, seg.log_path, sum(sizes) - 7)
    seg = opened(open_segment(fs, tmp_path, 0))
    assert seg.recover() == sizes[2] - 7
    assert seg.size == sizes[0] + sizes[1]
    assert seg.read_next_offset() == 4
    # flip a byte in the second batch's records: CRC fails there
    byte = fs.read_bytes(seg.log_path)[sizes[0] + 70]
    write_at(fs, seg.log_path, sizes[0] + 70, bytes([byte ^ 0xFF]))
    assert seg.recover() == sizes[1]
    assert seg.read_next_offset() == 2
    assert file_size(fs, seg.log_path) == sizes[0]


def test_recover_stops_at_offsets_going_backwards(
    fs: FileSystem, tmp_path: Path, opened: Opened
) -> None:
    seg = opened(open_segment(fs, tmp_path, 0))
    seg.append(make_batches(0, [3]))
    seg.append(make_batches(1, [3]))  # overlapping offsets: invalid on disk
    assert seg.recover() > 0
    assert seg.read_next_offset() == 3


def test_should_roll(fs: FileSystem, tmp_path: Path, opened: Opened) -> None:
    config = LogConfig(segment_bytes=1000, segment_ms=10_000, segment_index_bytes=24)
    seg = opened(
        LogSegment(tmp_path, 0, index_interval_bytes=0, max_index_size=24, now_ms=0, fs=fs)
    )
    kw = {"max_timestamp": 1000, "max_offset": 0}
    assert not seg.should_roll(1000, 0, config, **kw)
    assert seg.should_roll(1001, 0, config, **kw)  # would exceed segment.bytes
    seg.append(make_batches(0, [1], timestamp=1000))
    assert not seg.should_roll(10, 0, config, max_timestamp=11_000, max_offset=1)
    assert seg.should_roll(10, 0, config, max_timestamp=11_001, max_offset=1)  # segment.ms
    assert seg.should_roll(10, 0, config, max_timestamp=1000, max_offset=2**31)  # overflow
    seg.append(make_batches(1, [1, 1]))
    assert not seg.offset_index.is_full  # 2 of 3 entries
    assert seg.time_index.is_full  # 2 of 2 entries (timestamps 1000, 1001)
    assert seg.should_roll(10, 0, config, max_timestamp=1000, max_offset=3)


def test_roll_by_wall_clock_when_no_timestamps(
    fs: FileSystem, tmp_path: Path, opened: Opened
) -> None:
    config = LogConfig(segment_ms=100)
    seg = opened(LogSegment(tmp_path, 0, now_ms=5000, fs=fs))
    seg.append(make_batches(0, [1], timestamp=-1))
    assert not seg.should_roll(1, 5100, config, max_timestamp=-1, max_offset=1)
    assert seg.should_roll(1, 5101, config, max_timestamp=-1, max_offset=1)


def test_append_rejects_offsets_beyond_segment(
    fs: FileSystem, tmp_path: Path, opened: Opened
) -> None:
    seg = opened(open_segment(fs, tmp_path, 0))
    with pytest.raises(IndexOffsetOverflow):
        seg.append(make_batches(2**31, [1]))
    assert seg.size == 0


def test_reads_on_a_thread_during_appends_see_whole_batches(
    fs: FileSystem, tmp_path: Path, opened: Opened
) -> None:
    seg = opened(open_segment(fs, tmp_path, 0, interval=64))
    stop = threading.Event()
    errors: list[BaseException] = []
    reads = 0

    def reader() -> None:
        nonlocal reads
        while not stop.is_set():
            try:
                data = seg.read(0, 1 << 20)
                if data:
                    headers = validate_batches(data)
                    assert headers[0].base_offset == 0
                    assert all(a.next_offset == b.base_offset for a, b in pairwise(headers))
                reads += 1
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)
                return

    thread = threading.Thread(target=reader)
    thread.start()
    offset = 0
    for _ in range(300):
        seg.append(make_batches(offset, [2]))
        offset += 2
    stop.set()
    thread.join()
    assert not errors
    assert reads > 0
    assert offsets_in(seg.read(0, 1 << 20) or b"")[-1] == (598, 599)
