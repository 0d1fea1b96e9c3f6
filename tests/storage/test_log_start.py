"""Moving the log start offset: reads below it, segment deletion (rename, then unlink), producer
state, restarts clean and unclean, a crash between the rename and the unlink, readers on other
threads, and the retention-style use of ``deletable_segments``/``delete_segments``."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from storage_helpers import Opened, batch_with_timestamps, idempotent_batch, offsets_in, request

from kpy.protocol.records import build_batch
from kpy.storage.errors import OffsetOutOfRange
from kpy.storage.fs import FileSystem
from kpy.storage.log import Log, LogConfig
from kpy.storage.log_manager import (
    LOG_START_OFFSET_CHECKPOINT,
    LogManager,
    read_offset_checkpoint,
)
from kpy.storage.segment import LogSegment

CONFIG = LogConfig(segment_bytes=400, index_interval_bytes=100)
SEGMENT_BYTES = {"internal.segment.bytes": "400", "index.interval.bytes": "100"}


def fill(log: Log, batches: int, *, records: int = 2) -> None:
    for i in range(batches):
        batch = build_batch([(None, b"record-%03d" % i)] * records, timestamp=1000 + i)
        log.append(*request(batch), now_ms=0)


def bases(log: Log) -> list[int]:
    return [s.base_offset for s in log.segments]


def files(fs: FileSystem, directory: Path, suffix: str) -> list[str]:
    return sorted(fs.names_ending(directory, suffix))


def first_offset(log: Log, offset: int) -> int:
    """The first offset of what a read at ``offset`` returns."""
    return offsets_in(log.read(offset, 1 << 20))[0][0]


# --- 1. Advancing the start ---


def test_advance_start_hides_records_below_it(
    fs: FileSystem, tmp_path: Path, opened: Opened
) -> None:
    log = opened(Log.open(tmp_path, CONFIG, fs=fs))
    fill(log, 20)  # offsets 0..39, two per batch
    assert log.advance_start(11)
    assert log.log_start_offset == 11 and log.earliest_offset() == 11
    assert log.recovery_point >= 11  # nothing below the start needs recovering
    with pytest.raises(OffsetOutOfRange):
        log.read(10, 1 << 20)
    # Reads return whole batches: the one holding 11 starts at 10.
    assert first_offset(log, 11) == 10
    assert not log.advance_start(11) and not log.advance_start(3)  # never backwards
    assert log.log_start_offset == 11
    with pytest.raises(OffsetOutOfRange):
        log.advance_start(41)  # past the high watermark
    assert log.advance_start(40)  # exactly the high watermark
    assert log.read(40, 100) == b""
    assert log.offset_for_timestamp(-2) == (40, -1)


def test_appends_report_the_new_start(fs: FileSystem, tmp_path: Path, opened: Opened) -> None:
    log = opened(Log.open(tmp_path, CONFIG, fs=fs))
    fill(log, 3)
    log.advance_start(4)
    result = log.append(*request(build_batch([(None, b"x")])), now_ms=0)
    assert (result.base_offset, result.log_start_offset) == (6, 4)


# --- 2. Deleting the segments below it ---


def test_segments_wholly_below_the_start_are_renamed_then_unlinked(
    fs: FileSystem, tmp_path: Path, opened: Opened
) -> None:
    log = opened(Log.open(tmp_path, CONFIG, fs=fs))
    fill(log, 30)
    before = bases(log)
    assert len(before) >= 4
    start = before[2] + 1  # inside the third segment
    doomed = list(log.segments[:2])
    log.advance_start(start)
    deletion = log.delete_segments_below_start(now_ms=0)
    assert bases(log) == before[2:]  # the segment holding the start stays
    assert deletion.segments == tuple(doomed)
    # Renamed first: nothing left under a segment's name, the .deleted files still there.
    names = set(fs.listdir(tmp_path))
    for base in before[:2]:
        stem = f"{base:020d}"
        assert not {stem + ".log", stem + ".index", stem + ".timeindex"} & names
        assert {stem + ".log.deleted", stem + ".index.deleted"} <= names
    assert all(s.closed for s in doomed)  # no reader inside: released at once
    deletion.delete_files()
    assert files(fs, tmp_path, ".deleted") == []
    assert files(fs, tmp_path, ".log") == [f"{b:020d}.log" for b in before[2:]]
    # Snapshots below the first remaining segment went with the segments.
    assert all(o >= before[2] for o in log.snapshot_offsets())
    assert log.log_start_offset == start
    assert [b for b, _ in offsets_in(log.read(start, 1 << 20))][-1] == 58
    fill(log, 1)
    assert log.log_end_offset == 62


def test_start_at_the_end_rolls_the_active_segment_away(
    fs: FileSystem, tmp_path: Path, opened: Opened
) -> None:
    log = opened(Log.open(tmp_path, CONFIG, fs=fs))
    fill(log, 30)
    log.advance_start(log.log_end_offset)
    log.delete_segments_below_start(now_ms=0).delete_files()
    assert bases(log) == [60]  # a fresh active segment at the log end, nothing else
    assert log.active_segment.size == 0
    assert files(fs, tmp_path, ".log") == [f"{60:020d}.log"]
    assert log.read(60, 100) == b""
    # Nothing left to delete: a second call changes nothing.
    assert not log.delete_segments_below_start(now_ms=0)
    assert bases(log) == [60]


def test_start_inside_the_only_segment_deletes_nothing(
    fs: FileSystem, tmp_path: Path, opened: Opened
) -> None:
    log = opened(Log.open(tmp_path, fs=fs))
    fill(log, 5)
    log.advance_start(3)
    assert not log.delete_segments_below_start(now_ms=0)
    assert bases(log) == [0] and log.log_start_offset == 3


def test_producer_state_survives_the_deletion(
    fs: FileSystem, tmp_path: Path, opened: Opened
) -> None:
    log = opened(Log.open(tmp_path, CONFIG, fs=fs))
    for seq in range(0, 40, 2):
        log.append(*request(idempotent_batch(7, 0, seq, count=2)), now_ms=0)
    log.advance_start(log.log_end_offset)
    log.delete_segments_below_start(now_ms=0).delete_files()
    # The producer goes on with its next sequence; a retry of its last batch is a duplicate.
    retry = log.append(*request(idempotent_batch(7, 0, 38, count=2)), now_ms=0)
    assert retry.duplicate and retry.base_offset == 38
    nxt = log.append(*request(idempotent_batch(7, 0, 40, count=2)), now_ms=0)
    assert not nxt.duplicate and nxt.base_offset == 40
    log.close()
    again = opened(Log.open(tmp_path, CONFIG, clean_shutdown=True, log_start_offset=40, fs=fs))
    entry = again.producer_state.last_entry(7)
    assert entry is not None and entry.last_seq == 41


# --- 3. Restarts ---


def test_new_start_survives_a_clean_restart(fs: FileSystem, tmp_path: Path, opened: Opened) -> None:
    manager = opened(LogManager.open(tmp_path, SEGMENT_BYTES, fs=fs))
    manager.create_topic("t", 1)
    log = manager.get_log("t", 0)
    assert log is not None
    fill(log, 30)
    log.advance_start(25)
    manager.write_checkpoints()
    assert read_offset_checkpoint(tmp_path / LOG_START_OFFSET_CHECKPOINT, fs)[("t", 0)] == 25
    log.delete_segments_below_start(now_ms=0).delete_files()
    kept = bases(log)
    manager.close()
    again = opened(LogManager.open(tmp_path, SEGMENT_BYTES, fs=fs))
    relog = again.get_log("t", 0)
    assert relog is not None
    assert relog.log_start_offset == 25 and relog.log_end_offset == 60
    assert bases(relog) == kept
    with pytest.raises(OffsetOutOfRange):
        relog.read(24, 100)
    assert first_offset(relog, 25) == 24


def test_crash_after_the_checkpoint_deletes_the_segments_at_open(
    fs: FileSystem, tmp_path: Path, opened: Opened
) -> None:
    manager = opened(LogManager.open(tmp_path, SEGMENT_BYTES, fs=fs))
    manager.create_topic("t", 1)
    log = manager.get_log("t", 0)
    assert log is not None
    fill(log, 30)
    manager.checkpoint()
    before = bases(log)
    log.advance_start(before[3])
    manager.write_checkpoints()
    manager.abandon()  # SIGKILL: the segments below the start were never deleted
    again = opened(LogManager.open(tmp_path, SEGMENT_BYTES, fs=fs))
    assert not again.had_clean_shutdown
    relog = again.get_log("t", 0)
    assert relog is not None
    assert relog.log_start_offset == before[3]
    assert bases(relog) == before[3:]
    assert files(fs, tmp_path / "t-0", ".log") == [f"{b:020d}.log" for b in before[3:]]
    assert relog.log_end_offset == 60


def test_crash_before_the_checkpoint_keeps_the_old_start(
    fs: FileSystem, tmp_path: Path, opened: Opened
) -> None:
    """The new start lives in memory until checkpointed: a crash before that loses it, but the
    segments are still all there (they are deleted only after the checkpoint)."""
    manager = opened(LogManager.open(tmp_path, SEGMENT_BYTES, fs=fs))
    manager.create_topic("t", 1)
    log = manager.get_log("t", 0)
    assert log is not None
    fill(log, 30)
    manager.checkpoint()
    log.advance_start(33)
    manager.abandon()
    again = opened(LogManager.open(tmp_path, SEGMENT_BYTES, fs=fs))
    relog = again.get_log("t", 0)
    assert relog is not None
    assert relog.log_start_offset == 0 and first_offset(relog, 0) == 0


@pytest.mark.parametrize("renamed", ["all", "only-one-log-file"])
def test_crash_between_rename_and_unlink_leaves_a_valid_log(
    fs: FileSystem, tmp_path: Path, opened: Opened, renamed: str
) -> None:
    manager = opened(LogManager.open(tmp_path, SEGMENT_BYTES, fs=fs))
    manager.create_topic("t", 1)
    log = manager.get_log("t", 0)
    assert log is not None
    fill(log, 30)
    manager.checkpoint()
    before = bases(log)
    k = len(before) - 2  # the start goes into the last but one segment
    start = before[k] + 2
    log.advance_start(start)
    manager.write_checkpoints()
    directory = tmp_path / "t-0"
    if renamed == "all":
        log.delete_segments_below_start(now_ms=0)  # renamed; delete_files never runs
        assert files(fs, directory, ".log.deleted")
        manager.abandon()
    else:  # the crash came in the middle of renaming the first segment's files
        assert min(log.snapshot_offsets()) < before[k]  # left for the open to delete
        manager.abandon()
        first = directory / f"{before[0]:020d}.log"
        fs.rename(first, first.with_name(first.name + ".deleted"))
    again = opened(LogManager.open(tmp_path, SEGMENT_BYTES, fs=fs))
    relog = again.get_log("t", 0)
    assert relog is not None
    assert relog.log_start_offset == start
    assert bases(relog) == before[k:]
    assert files(fs, directory, ".deleted") == []
    stems = {name.split(".")[0] for name in fs.listdir(directory) if name[0].isdigit()}
    assert all(int(stem) >= before[k] for stem in stems), stems  # no orphan index or snapshot
    assert first_offset(relog, start) == start
    assert relog.log_end_offset == 60


def test_log_ending_below_the_checkpointed_start_starts_over_there(
    fs: FileSystem, tmp_path: Path, opened: Opened
) -> None:
    """Recovery cut the log below the checkpointed start (or its files were lost): the start
    stays, and the log is empty from there on (Kafka's LogLoader)."""
    log = opened(Log.open(tmp_path, CONFIG, fs=fs))
    fill(log, 10)  # offsets 0..19
    log.close()
    again = opened(Log.open(tmp_path, CONFIG, log_start_offset=50, recovery_point=20, fs=fs))
    assert (again.log_start_offset, again.log_end_offset) == (50, 50)
    assert bases(again) == [50]
    assert files(fs, tmp_path, ".log") == [f"{50:020d}.log"]
    assert again.snapshot_offsets() == []
    result = again.append(*request(build_batch([(None, b"x")])), now_ms=0)
    assert result.base_offset == 50


# --- 4. Lookups by time never answer below the start ---


def test_time_lookups_ignore_records_below_the_start(
    fs: FileSystem, tmp_path: Path, opened: Opened
) -> None:
    log = opened(Log.open(tmp_path, LogConfig(segment_bytes=250, index_interval_bytes=0), fs=fs))
    # Offsets 0-2 | 3-4 | 5-7 | 8; the largest timestamp (90) sits at offset 1.
    for group in ([10, 90, 20], [25, 50], [40, 45, 70], [60]):
        log.append(*request(batch_with_timestamps([b"v"] * len(group), group)), now_ms=0)
    assert len(log.segments) > 1
    assert log.offset_for_timestamp(-3) == (1, 90)
    assert log.offset_for_timestamp(80) == (1, 90)
    log.advance_start(2)
    assert log.offset_for_timestamp(-3) == (7, 70)
    # Kafka would stop at the first segment (its largest timestamp, 90, reaches 55) and find
    # nothing at or after the start there; the next segments hold the answer.
    assert log.offset_for_timestamp(55) == (7, 70)
    assert log.offset_for_timestamp(15) == (2, 20)
    assert log.offset_for_timestamp(0) == (2, 20)
    assert log.offset_for_timestamp(95) is None
    log.advance_start(8)
    assert log.offset_for_timestamp(-3) == (8, 60)
    assert log.offset_for_timestamp(0) == (8, 60)


def test_max_timestamp_inside_a_batch_straddling_the_start(
    fs: FileSystem, tmp_path: Path, opened: Opened
) -> None:
    log = opened(Log.open(tmp_path, fs=fs))
    log.append(*request(batch_with_timestamps([b"v"] * 4, [10, 90, 30, 20])), now_ms=0)
    log.append(*request(batch_with_timestamps([b"v"] * 2, [25, 30])), now_ms=0)
    log.advance_start(2)
    assert log.offset_for_timestamp(-3) == (2, 30)  # the first record with it wins
    log.advance_start(3)
    assert log.offset_for_timestamp(-3) == (5, 30)


# --- 5. Readers and flushes on other threads ---


@pytest.fixture
def paused_reads(
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[tuple[threading.Event, threading.Event]]:
    """(inside, resume): the next segment lookup on a thread other than the main one signals
    ``inside`` and waits for ``resume``."""
    inside, resume = threading.Event(), threading.Event()
    real = LogSegment.find_batch

    def paused(self: LogSegment, *args: Any, **kwargs: Any) -> Any:
        if threading.current_thread() is not threading.main_thread() and not inside.is_set():
            inside.set()
            assert resume.wait(10)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(LogSegment, "find_batch", paused)
    yield inside, resume
    resume.set()


def test_deleted_segments_stay_open_for_a_reader_inside(
    fs: FileSystem,
    tmp_path: Path,
    opened: Opened,
    paused_reads: tuple[threading.Event, threading.Event],
) -> None:
    inside, resume = paused_reads
    log = opened(Log.open(tmp_path, CONFIG, fs=fs))
    fill(log, 30)
    results: list[object] = []

    def read_all() -> None:
        try:
            results.append(offsets_in(log.read(0, 1 << 20)))
        except Exception as exc:
            results.append(exc)

    thread = threading.Thread(target=read_all)
    thread.start()
    assert inside.wait(10)  # the reader holds the old segment tuple
    doomed = list(log.segments[:2])
    log.advance_start(log.segments[2].base_offset)
    deletion = log.delete_segments_below_start(now_ms=0)
    deletion.delete_files()  # unlinked: the open descriptors keep the data readable
    assert not any(s.closed for s in doomed)
    # A reader that comes later sees the new log and does not hold the release back.
    assert first_offset(log, log.log_start_offset) == log.log_start_offset
    assert not any(s.closed for s in doomed)
    resume.set()
    thread.join(10)
    (result,) = results
    # It read the data it saw, and then learned that the start had passed its offset.
    assert isinstance(result, OffsetOutOfRange)
    assert all(s.closed for s in doomed)  # released by the reader on its way out
    assert all(not s.closed for s in log.segments)


def test_flush_after_deletion_skips_the_deleted_segments(
    fs: FileSystem, tmp_path: Path, opened: Opened
) -> None:
    manager = opened(LogManager.open(tmp_path, SEGMENT_BYTES, fs=fs))
    manager.create_topic("t", 1)
    log = manager.get_log("t", 0)
    assert log is not None
    fill(log, 30)  # nothing flushed yet: the recovery point is 0
    doomed = list(log.segments[:3])
    log.advance_start(log.segments[3].base_offset)
    log.delete_segments_below_start(now_ms=0).delete_files()
    assert all(s.retired for s in doomed)
    manager.checkpoint(flush_active=True)  # would fail on an unlinked, parked index
    assert log.recovery_point == 60
    assert read_offset_checkpoint(tmp_path / LOG_START_OFFSET_CHECKPOINT, fs)[("t", 0)] == (
        log.log_start_offset
    )


# --- 6. The same deletion for retention ---


def test_retention_style_deletion_moves_the_start_to_the_next_segment(
    fs: FileSystem, tmp_path: Path, opened: Opened
) -> None:
    log = opened(Log.open(tmp_path, CONFIG, fs=fs))
    fill(log, 30)
    before = bases(log)
    doomed = log.deletable_segments(lambda segment, _: segment.base_offset < before[2])
    assert [s.base_offset for s in doomed] == before[:2]
    log.delete_segments(doomed, now_ms=0).delete_files()
    assert log.log_start_offset == before[2]
    assert bases(log) == before[2:]
    with pytest.raises(ValueError):
        log.delete_segments(list(log.segments[1:2]), now_ms=0)  # not the oldest
    # Everything deletable: the log rolls first and keeps the new empty segment.
    everything = log.deletable_segments(lambda *_: True)
    assert len(everything) == len(log.segments)
    log.delete_segments(everything, now_ms=0).delete_files()
    assert bases(log) == [60] and log.log_start_offset == 60
    assert log.deletable_segments(lambda *_: True) == []  # an empty last segment never is
    assert files(fs, tmp_path, ".log") == [f"{60:020d}.log"]
