"""The flush policy (flush.messages, flush.ms), what a failed fsync or roll does to a log, and
the power-loss simulation (durability.py): what a cut keeps is exactly what was fsynced."""

from __future__ import annotations

import dataclasses
import errno
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from storage_helpers import Opened, offsets_in, request

from kpy.protocol.records import build_batch
from kpy.storage import durability
from kpy.storage.errors import LogOffline
from kpy.storage.log import Log, LogConfig
from kpy.storage.log_manager import (
    RECOVERY_POINT_CHECKPOINT,
    LogManager,
    read_offset_checkpoint,
)

CONFIG = LogConfig(segment_bytes=300, index_interval_bytes=100)  # 3 batches per segment


def fill(log: Log, batches: int, *, now_ms: int = 0) -> None:
    for i in range(batches):
        batch = build_batch([(None, b"record-%03d" % i)] * 2, timestamp=1000 + i)
        log.append(*request(batch), now_ms=now_ms)


def bases_read(log: Log) -> list[int]:
    return [b for b, _ in offsets_in(log.read(log.log_start_offset, 1 << 20))]


@pytest.fixture
def journal(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "journal"
    durability.enable(path)
    try:
        yield path
    finally:
        durability.disable()


# --- 1. flush.messages and flush.ms ---


def test_flush_messages_counts_offsets_since_the_last_flush(tmp_path: Path, opened: Opened) -> None:
    log = opened(Log.open(tmp_path / "p", dataclasses.replace(CONFIG, flush_messages=3)))
    fill(log, 1)  # offsets 0, 1
    assert log.unflushed_messages == 2 and not log.flush_due_by_messages()
    fill(log, 1)
    assert log.unflushed_messages == 4 and log.flush_due_by_messages()
    log.flush()
    assert log.recovery_point == 4 and log.unflushed_messages == 0
    assert not log.flush_due_by_messages()


def test_the_default_flush_messages_never_asks(tmp_path: Path, opened: Opened) -> None:
    log = opened(Log.open(tmp_path / "p", CONFIG))
    fill(log, 20)
    assert not log.flush_due_by_messages()


def test_flush_ms_counts_from_the_last_flush_that_moved_the_recovery_point(
    tmp_path: Path, opened: Opened
) -> None:
    log = opened(Log.open(tmp_path / "p", dataclasses.replace(CONFIG, flush_ms=500), now_ms=1000))
    assert log.last_flush_ms == 1000  # the open counts as a flush, as in Kafka
    assert not log.flush_due_by_time(1499) and log.flush_due_by_time(1500)
    fill(log, 1)
    log.flush()
    flushed_at = log.last_flush_ms
    assert flushed_at > 1500  # the wall clock
    assert not log.flush_due_by_time(flushed_at + 499)
    log.flush()  # nothing new: the time stays
    assert log.last_flush_ms == flushed_at
    assert not opened(Log.open(tmp_path / "q", CONFIG)).flush_due_by_time(2**62)


def test_checkpoint_carries_the_recovery_point_a_flush_reached(tmp_path: Path) -> None:
    manager = LogManager.open(tmp_path, {"flush.messages": "1"})
    try:
        manager.create_topic("t", 1)
        log = manager.get_log("t", 0)
        assert log is not None and log.config.flush_messages == 1
        fill(log, 3)
        assert log.flush_due_by_messages()
        log.flush()
        manager.write_checkpoints()
        assert read_offset_checkpoint(tmp_path / RECOVERY_POINT_CHECKPOINT)[("t", 0)] == 6
    finally:
        manager.close()


# --- 2. Failures ---


def test_a_failed_fsync_takes_the_log_offline(
    tmp_path: Path, opened: Opened, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After a failed fsync the kernel may have dropped the pages: the log stops taking writes
    until a restart recovers it, and reads go on."""
    log = opened(Log.open(tmp_path, CONFIG))
    fill(log, 2)

    def eio(fd: int) -> None:
        raise OSError(errno.EIO, "I/O error")

    with monkeypatch.context() as patch:
        patch.setattr(os, "fsync", eio)
        with pytest.raises(OSError, match="I/O error"):
            log.flush()
    assert log.offline and log.recovery_point == 0
    with pytest.raises(LogOffline):
        log.flush()
    with pytest.raises(LogOffline):
        fill(log, 1)
    assert bases_read(log) == [0, 2]


def test_a_roll_that_fails_leaves_the_active_segment_whole(
    tmp_path: Path, opened: Opened, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The roll's final time index entry is torn by ENOSPC: the roll is undone, the append
    fails with nothing written, and a later append rolls."""
    config = dataclasses.replace(CONFIG, index_interval_bytes=4096)  # the roll adds the entry
    log = opened(Log.open(tmp_path, config))
    fill(log, 3)  # a full segment: the next append rolls
    segment = log.active_segment
    entries = segment.time_index.entries
    real_write = os.write
    calls = 0

    def torn(fd: int, data: bytes) -> int:
        nonlocal calls
        calls += 1
        if calls == 1:
            return real_write(fd, bytes(data)[:5])
        raise OSError(errno.ENOSPC, "No space left on device")

    with monkeypatch.context() as patch:
        patch.setattr(os, "write", torn)
        with pytest.raises(OSError, match="No space"):
            fill(log, 1)
    assert calls == 2  # the time index entry of the roll, torn
    assert log.active_segment is segment and not log.offline
    assert segment.time_index.entries == entries
    assert segment.time_index_path.stat().st_size == entries * 12
    assert log.log_end_offset == 6
    fill(log, 1)
    assert [s.base_offset for s in log.segments] == [0, 6]
    log.close()
    again = opened(Log.open(tmp_path, config, clean_shutdown=True))
    assert (again.rebuilt_indexes, again.truncated_bytes) == (0, 0)
    assert bases_read(again) == [0, 2, 4, 6]


# --- 3. Power-loss simulation ---


def test_a_cut_keeps_what_was_fsynced_and_drops_the_rest(
    tmp_path: Path, opened: Opened, journal: Path
) -> None:
    directory = tmp_path / "p"
    log = opened(Log.open(directory, CONFIG))
    fill(log, 2)
    log.flush()
    fill(log, 1)  # in the page cache only
    log.abandon()  # a process crash: nothing is lost yet
    report = durability.cut_power(tmp_path, journal)
    assert report.truncated[directory / f"{0:020d}.log"] == 95  # the unflushed batch
    again = opened(Log.open(directory, CONFIG, recovery_point=4))
    assert again.log_end_offset == 4 and bases_read(again) == [0, 2]


def test_a_segment_no_directory_fsync_saw_is_gone_after_a_cut(
    tmp_path: Path, opened: Opened, journal: Path
) -> None:
    directory = tmp_path / "p"
    log = opened(Log.open(directory, CONFIG))
    fill(log, 3)
    log.flush()
    fill(log, 2)  # rolled: segment 6 exists, unflushed, its directory entry too
    log.abandon()
    report = durability.cut_power(tmp_path, journal)
    assert {p.name for p in report.removed} == {
        f"{6:020d}.log",
        f"{6:020d}.index",
        f"{6:020d}.timeindex",
    }
    again = opened(Log.open(directory, CONFIG, recovery_point=6))
    assert again.log_end_offset == 6


def test_without_a_journal_nothing_is_recorded(tmp_path: Path, opened: Opened) -> None:
    assert not durability.enabled()
    log = opened(Log.open(tmp_path / "p", CONFIG))
    fill(log, 1)
    log.flush()
    assert not list(tmp_path.glob("journal*"))


def test_a_roll_leaves_its_snapshot_to_the_flush(
    tmp_path: Path, opened: Opened, journal: Path
) -> None:
    """The roll (on the event loop) writes the producer snapshot without an fsync; the flush
    that covers the new segment's base fsyncs it."""
    directory = tmp_path / "p"
    log = opened(Log.open(directory, CONFIG))
    fill(log, 4)  # rolled at offset 6
    snapshot = directory / f"{6:020d}.snapshot"
    assert snapshot.exists()
    assert str(snapshot) not in journal.read_text()
    log.flush(up_to=5)
    assert str(snapshot) not in journal.read_text()  # the flush did not reach the roll
    log.flush(up_to=6)
    assert f" {snapshot}\n" in journal.read_text()
