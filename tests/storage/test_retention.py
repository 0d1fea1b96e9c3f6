"""Retention (retention.py, Log.delete_old_segments): the log start, size and time rules in
Kafka's order, the active segment rolled away when everything is past retention, the files
renamed to .deleted and unlinked later, cleanup.policy, and the log start after a reopen."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from storage_helpers import Opened, request

from kpy.protocol.records import build_batch
from kpy.storage.fs import FileSystem
from kpy.storage.log import Log, LogConfig
from kpy.storage.retention import size_breached, start_offset_breached, time_breached

# Three 2-record batches (95 bytes each) per segment: six offsets.
CONFIG = LogConfig(segment_bytes=300, index_interval_bytes=100, retention_ms=-1)


def fill(log: Log, batches: int, *, timestamp: int = 1000, step: int = 1) -> None:
    """``batches`` two-record batches with timestamps ``timestamp``, ``timestamp + step``, ..."""
    for i in range(batches):
        batch = build_batch([(None, b"record-%03d" % i)] * 2, timestamp=timestamp + i * step)
        log.append(*request(batch), now_ms=0)


def bases(log: Log) -> list[int]:
    return [s.base_offset for s in log.segments]


def names(fs: FileSystem, directory: Path, suffix: str) -> list[str]:
    return sorted(fs.names_ending(directory, suffix))


def with_config(log: Log, **changes: object) -> None:
    log.config = dataclasses.replace(log.config, **changes)  # type: ignore[arg-type]


# --- 1. The predicates ---


def test_time_rule_compares_the_largest_timestamp(
    fs: FileSystem, tmp_path: Path, opened: Opened
) -> None:
    log = opened(Log.open(tmp_path, CONFIG, fs=fs))
    fill(log, 6, timestamp=1000, step=100)  # segments [1000, 1100, 1200], [1300, 1400, 1500]
    first, second = log.segments[:2]
    assert first.largest_timestamp() == 1200
    rule = time_breached(now_ms=1300, retention_ms=99)
    assert rule is not None
    assert rule(first, second)  # 1300 - 1200 > 99
    assert not time_breached(now_ms=1300, retention_ms=100)(first, second)  # type: ignore[misc]
    assert time_breached(now_ms=0, retention_ms=-1) is None  # no time limit


def test_time_rule_falls_back_to_the_file_time_without_timestamps(
    fs: FileSystem, tmp_path: Path, opened: Opened
) -> None:
    log = opened(Log.open(tmp_path, CONFIG, fs=fs))
    fill(log, 2, timestamp=-1, step=0)  # records without a timestamp
    segment = log.active_segment
    fs.utime(segment.log_path, 5_000_000_000)  # 5000 ms
    assert segment.largest_timestamp() == 5000
    assert time_breached(5101, 100)(segment, None)  # type: ignore[misc]
    assert not time_breached(5100, 100)(segment, None)  # type: ignore[misc]


def test_size_rule_keeps_the_log_at_or_above_the_limit(
    fs: FileSystem, tmp_path: Path, opened: Opened
) -> None:
    log = opened(Log.open(tmp_path, CONFIG, fs=fs))
    fill(log, 9)  # three full segments
    sizes = [s.size for s in log.segments]
    assert len(sizes) == 3
    total = sum(sizes)
    assert size_breached(total, total + 1) is None  # under the limit
    assert size_breached(total, -1) is None  # no limit
    # One byte over: no whole segment fits in the excess.
    rule = size_breached(total, total - 1)
    assert rule is not None and not rule(log.segments[0], log.segments[1])
    # Excess of one segment and a bit: exactly the first goes.
    rule = size_breached(total, total - sizes[0] - 10)
    assert rule is not None
    assert rule(log.segments[0], log.segments[1])
    assert not rule(log.segments[1], log.segments[2])


def test_start_offset_rule_needs_the_next_segment_at_or_below_the_start(
    fs: FileSystem, tmp_path: Path, opened: Opened
) -> None:
    log = opened(Log.open(tmp_path, CONFIG, fs=fs))
    fill(log, 7)
    first, second, third = log.segments
    assert start_offset_breached(6)(first, second)  # second starts at 6
    assert not start_offset_breached(5)(first, second)
    assert not start_offset_breached(100)(third, None)  # never the active segment


# --- 2. delete_old_segments ---


def test_time_retention_deletes_old_segments_and_moves_the_start(
    fs: FileSystem, tmp_path: Path, opened: Opened
) -> None:
    log = opened(Log.open(tmp_path, CONFIG, fs=fs))
    fill(log, 6, timestamp=1000)  # segments [0, 6): timestamps 1000..1005
    fill(log, 4, timestamp=5000)  # then 5000..5003: last segment is active
    assert bases(log) == [0, 6, 12, 18]
    with_config(log, retention_ms=1000)
    deletion = log.delete_old_segments(now_ms=6000)
    assert [s.base_offset for s in deletion.segments] == [0, 6]
    assert log.log_start_offset == 12 and bases(log) == [12, 18]
    # Renamed, not yet unlinked: that is the caller's (after file.delete.delay.ms).
    assert names(fs, tmp_path, ".log.deleted") == [f"{0:020d}.log.deleted", f"{6:020d}.log.deleted"]
    deletion.delete_files()
    assert names(fs, tmp_path, ".deleted") == []
    assert not log.delete_old_segments(now_ms=6000)  # nothing more is old enough


def test_an_idle_log_past_retention_rolls_and_keeps_only_an_empty_segment(
    fs: FileSystem, tmp_path: Path, opened: Opened
) -> None:
    log = opened(Log.open(tmp_path, dataclasses.replace(CONFIG, retention_ms=100), fs=fs))
    fill(log, 7, timestamp=1000)
    end = log.log_end_offset
    deletion = log.delete_old_segments(now_ms=1_000_000)
    assert len(deletion.segments) == 3  # the active one too, as Kafka deletes it
    assert bases(log) == [end] and log.active_segment.size == 0
    assert log.log_start_offset == end == log.log_end_offset
    deletion.delete_files()
    assert not log.delete_old_segments(now_ms=2_000_000)  # an empty active segment stays
    fill(log, 1, timestamp=2_000_000)
    assert log.read(end, 1 << 20)


def test_size_retention_deletes_the_oldest_segments(
    fs: FileSystem, tmp_path: Path, opened: Opened
) -> None:
    log = opened(Log.open(tmp_path, CONFIG, fs=fs))
    fill(log, 10)  # 4 segments: 3 full and the active one with one batch
    sizes = [s.size for s in log.segments]
    with_config(log, retention_bytes=sizes[-1] + sizes[-2] + 1)
    deletion = log.delete_old_segments(now_ms=0)
    assert len(deletion.segments) == 1  # the second one would leave the log under the limit
    assert bases(log) == [6, 12, 18] and log.log_start_offset == 6
    assert log.size >= log.config.retention_bytes
    with_config(log, retention_bytes=0)
    deletion = log.delete_old_segments(now_ms=0)
    assert log.size == 0 and log.log_start_offset == log.log_end_offset == 20
    deletion.delete_files()


def test_rules_run_in_kafkas_order_each_on_what_the_last_left(
    fs: FileSystem, tmp_path: Path, opened: Opened
) -> None:
    log = opened(Log.open(tmp_path, CONFIG, fs=fs))
    fill(log, 6, timestamp=1000)
    fill(log, 6, timestamp=9000)  # segments 0, 6 old; 12, 18 (active) new
    assert log.advance_start(7)  # DeleteRecords into the second segment
    first_size = log.segments[0].size
    # Size: the log minus the first segment (which the start rule takes) is within the limit.
    with_config(log, retention_bytes=log.size - first_size, retention_ms=5000)
    deletion = log.delete_old_segments(now_ms=10_000)
    # Start rule: segment 0; size rule: nothing more; time rule: segment 6 (max ts 1005).
    assert [s.base_offset for s in deletion.segments] == [0, 6]
    assert log.log_start_offset == 12
    deletion.delete_files()


def test_without_delete_in_the_policy_only_the_start_rule_applies(
    fs: FileSystem, tmp_path: Path, opened: Opened
) -> None:
    log = opened(Log.open(tmp_path, dataclasses.replace(CONFIG, cleanup_policy="compact"), fs=fs))
    fill(log, 9, timestamp=1000)
    with_config(log, retention_ms=1, retention_bytes=0)
    assert not log.delete_old_segments(now_ms=1_000_000)
    assert log.advance_start(6)
    deletion = log.delete_old_segments(now_ms=1_000_000)
    assert [s.base_offset for s in deletion.segments] == [0]
    deletion.delete_files()
    with_config(log, cleanup_policy="compact,delete")
    deletion = log.delete_old_segments(now_ms=1_000_000)
    assert log.size == 0
    deletion.delete_files()


def test_the_new_start_holds_after_a_crash_before_the_unlink(
    fs: FileSystem, tmp_path: Path, opened: Opened
) -> None:
    log = opened(Log.open(tmp_path, dataclasses.replace(CONFIG, retention_ms=1000), fs=fs))
    fill(log, 6, timestamp=1000)
    fill(log, 3, timestamp=9000)
    log.delete_old_segments(now_ms=9500)
    assert log.log_start_offset == 12
    log.abandon()  # the process dies with *.deleted files on disk, the start not checkpointed
    reopened = opened(Log.open(tmp_path, CONFIG, recovery_point=0, log_start_offset=0, fs=fs))
    assert names(fs, tmp_path, ".deleted") == []  # open removed them
    assert reopened.log_start_offset == 12  # the first segment left
    assert bases(reopened)[0] == 12
