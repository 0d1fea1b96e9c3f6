from __future__ import annotations

import threading
from itertools import pairwise
from pathlib import Path

import pytest
from storage_helpers import Opened, batch_with_timestamps, offsets_in, request

from kpy.protocol.records import build_batch, decode_records, validate_batches
from kpy.storage.errors import InvalidConfig, OffsetOutOfRange, RecordTooLarge
from kpy.storage.fs import FileSystem
from kpy.storage.log import Log, LogConfig


def test_log_config_from_kafka_names() -> None:
    config = LogConfig.from_properties(
        {
            "internal.segment.bytes": "1024",
            "message.timestamp.type": "LogAppendTime",
            "flush.ms": "5",
        }
    )
    assert config.segment_bytes == 1024
    assert config.log_append_time
    assert config.segment_ms == 604800000  # Kafka default kept
    assert config.to_properties()["flush.ms"] == "5"
    layered = LogConfig.from_properties({"segment.ms": "10"}, base=config)
    assert (layered.segment_bytes, layered.segment_ms) == (1024, 10)
    for bad in ({"no.such.config": "1"}, {"segment.bytes": "x"}, {"segment.bytes": "3"}):
        with pytest.raises(InvalidConfig):
            LogConfig.from_properties(bad)


def test_offsets_are_assigned_sequentially(fs: FileSystem, tmp_path: Path, opened: Opened) -> None:
    log = opened(Log.open(tmp_path, fs=fs))
    r1 = log.append(*request(build_batch([(None, b"a")] * 3)), now_ms=0)
    r2 = log.append(
        *request(build_batch([(None, b"b")] * 2), build_batch([(None, b"c")])), now_ms=0
    )
    assert (r1.base_offset, r1.last_offset, r1.log_append_time_ms) == (0, 2, -1)
    assert (r2.base_offset, r2.last_offset) == (3, 5)
    assert offsets_in(log.read(0, 1 << 20)) == [(0, 2), (3, 4), (5, 5)]
    assert log.read(6, 100) == b""
    with pytest.raises(OffsetOutOfRange):
        log.read(7, 100)


def test_log_append_time_rewrites_timestamps(
    fs: FileSystem, tmp_path: Path, opened: Opened
) -> None:
    log = opened(Log.open(tmp_path, LogConfig(message_timestamp_type="LogAppendTime"), fs=fs))
    result = log.append(*request(build_batch([(None, b"a")] * 2, timestamp=5)), now_ms=99_000)
    assert result.log_append_time_ms == 99_000
    data = log.read(0, 1 << 20)
    (header,) = validate_batches(data)  # CRC was recomputed
    assert header.is_log_append_time and header.max_timestamp == 99_000
    assert [r.timestamp for r in decode_records(data)] == [99_000, 99_000]
    plain = log.append(*request(build_batch([(None, b"a")])), now_ms=1, log_append_time=False)
    assert plain.log_append_time_ms == -1


def test_read_continues_across_segments_and_honours_max_bytes(
    fs: FileSystem, tmp_path: Path, opened: Opened
) -> None:
    log = opened(Log.open(tmp_path, LogConfig(segment_bytes=300), fs=fs))
    size = 0
    for i in range(20):
        buf, headers = request(build_batch([(None, b"x" * 30)], timestamp=i))
        size = headers[0].size
        log.append(buf, headers, now_ms=0)
    assert len(log.segments) > 3
    everything = log.read(0, 1 << 20)
    assert [b for b, _ in offsets_in(everything)] == list(range(20))
    some = log.read(3, size * 5 + 1)
    assert [b for b, _ in offsets_in(some)] == [3, 4, 5, 6, 7]
    assert offsets_in(log.read(3, 1)) == [(3, 3)]  # min_one
    assert log.read(3, 1, min_one=False) == b""


def test_offset_for_timestamp_and_specials(fs: FileSystem, tmp_path: Path, opened: Opened) -> None:
    log = opened(Log.open(tmp_path, LogConfig(segment_bytes=250, index_interval_bytes=0), fs=fs))
    stamps = [[10, 30, 20], [25, 50], [40, 45, 70], [60]]
    for group in stamps:
        log.append(*request(batch_with_timestamps([b"v"] * len(group), group)), now_ms=0)
    assert len(log.segments) > 1
    assert log.offset_for_timestamp(0) == (0, 10)
    assert log.offset_for_timestamp(21) == (1, 30)
    assert log.offset_for_timestamp(31) == (4, 50)
    assert log.offset_for_timestamp(55) == (7, 70)
    assert log.offset_for_timestamp(71) is None
    assert log.offset_for_timestamp(-2) == (0, -1)
    assert log.offset_for_timestamp(-1) == (9, -1)
    assert log.max_timestamp() == (7, 70)
    assert log.offset_for_timestamp(-3) == (7, 70)
    assert (log.earliest_offset(), log.latest_offset()) == (0, 9)


def test_empty_log_lookups(fs: FileSystem, tmp_path: Path, opened: Opened) -> None:
    log = opened(Log.open(tmp_path, fs=fs))
    assert log.offset_for_timestamp(0) is None
    assert log.max_timestamp() is None
    assert log.read(0, 100) == b""


def test_too_large_batch_is_rejected(fs: FileSystem, tmp_path: Path, opened: Opened) -> None:
    log = opened(Log.open(tmp_path, LogConfig(max_message_bytes=100), fs=fs))
    with pytest.raises(RecordTooLarge):
        log.append(*request(build_batch([(None, b"x" * 200)])), now_ms=0)
    assert log.log_end_offset == 0


def test_roll_by_time_and_flush_advances_recovery_point(
    fs: FileSystem, tmp_path: Path, opened: Opened
) -> None:
    log = opened(Log.open(tmp_path, LogConfig(segment_ms=1000), fs=fs))
    log.append(*request(build_batch([(None, b"a")], timestamp=5000)), now_ms=0)
    log.append(*request(build_batch([(None, b"a")], timestamp=6000)), now_ms=0)
    assert len(log.segments) == 1
    log.append(*request(build_batch([(None, b"a")], timestamp=6001)), now_ms=0)
    assert [s.base_offset for s in log.segments] == [0, 2]
    assert log.snapshot_offsets() == [2]
    assert log.recovery_point == 0
    log.flush(up_to=2)
    assert log.recovery_point == 2
    log.flush()
    assert log.recovery_point == 3


def test_leader_epoch_is_stamped(fs: FileSystem, tmp_path: Path, opened: Opened) -> None:
    log = opened(Log.open(tmp_path, fs=fs))
    log.append(*request(build_batch([(None, b"a")])), now_ms=0, leader_epoch=7)
    (header,) = validate_batches(log.read(0, 1000))
    assert header.partition_leader_epoch == 7


def test_delete_removes_directory(fs: FileSystem, tmp_path: Path, opened: Opened) -> None:
    d = tmp_path / "t-0"
    log = opened(Log.open(d, fs=fs))
    log.append(*request(build_batch([(None, b"a")])), now_ms=0)
    log.delete()
    assert not fs.exists(d)
    assert fs.listdir(tmp_path) == []


def test_reads_on_a_thread_while_appending_and_rolling(
    fs: FileSystem, tmp_path: Path, opened: Opened
) -> None:
    log = opened(Log.open(tmp_path, LogConfig(segment_bytes=400, index_interval_bytes=50), fs=fs))
    stop = threading.Event()
    failures: list[BaseException] = []
    seen = 0

    def reader() -> None:
        nonlocal seen
        while not stop.is_set():
            try:
                data = log.read(0, 1 << 20)
                headers = validate_batches(data)
                if headers:
                    assert headers[0].base_offset == 0
                    assert all(a.next_offset == b.base_offset for a, b in pairwise(headers))
                    seen = max(seen, headers[-1].next_offset)
            except BaseException as exc:  # pragma: no cover - reported below
                failures.append(exc)
                return

    thread = threading.Thread(target=reader)
    thread.start()
    for i in range(300):
        log.append(*request(build_batch([(None, b"%d" % i)] * 2)), now_ms=0)
    stop.set()
    thread.join()
    assert not failures
    assert len(log.segments) > 10
    assert seen > 0


def test_abandon_releases_files_without_writing(
    fs: FileSystem, tmp_path: Path, opened: Opened
) -> None:
    log = opened(Log.open(tmp_path, LogConfig(segment_bytes=300), fs=fs))
    for i in range(10):
        log.append(*request(build_batch([(None, b"x" * 30)], timestamp=i)), now_ms=0)
    assert len(log.segments) > 1
    log.abandon()  # a crash: no snapshot at the log end, no fsync
    assert log.closed and all(segment.closed for segment in log.segments)
    assert log.log_end_offset not in log.snapshot_offsets()
    log.abandon()  # idempotent
    log.close()  # nothing left to close
    assert log.log_end_offset not in log.snapshot_offsets()


def test_failed_open_releases_what_it_opened(
    fs: FileSystem, tmp_path: Path, opened: Opened
) -> None:
    log = opened(Log.open(tmp_path, LogConfig(segment_bytes=300), fs=fs))
    for i in range(10):
        log.append(*request(build_batch([(None, b"x" * 30)], timestamp=i)), now_ms=0)
    log.close()
    last = log.segments[-1]
    assert len(log.segments) > 1
    fs.unlink(last.time_index_path)
    fs.mkdir(last.time_index_path)  # the last segment's .log and .index open, its time index fails
    with pytest.raises(IsADirectoryError):
        Log.open(tmp_path, LogConfig(segment_bytes=300), clean_shutdown=True, fs=fs)
    # the autouse no_fd_leaks fixture checks that every segment opened so far was released
