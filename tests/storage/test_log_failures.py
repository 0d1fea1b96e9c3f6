"""Failed writes, gaps in the offsets, recovery below the recovery point, directory fsyncs,
readers racing close/delete, topic creation seen from another thread, descriptor use."""

from __future__ import annotations

import errno
import json
import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from storage_helpers import Opened, offsets_in, request, truncate_file, write_at

from kpy.protocol.records import BatchHeader, build_batch, set_base_offset
from kpy.storage.errors import LogClosed, LogOffline
from kpy.storage.fs import FileSystem, OsFileSystem, StrPath
from kpy.storage.index_file import IndexFile
from kpy.storage.log import Log, LogConfig
from kpy.storage.log_manager import CLEAN_SHUTDOWN_FILE, TOPICS_FILE, LogManager
from kpy.storage.segment import LogSegment

CONFIG = LogConfig(segment_bytes=600, index_interval_bytes=100)


def append(log: Log, i: int, *, timestamp: int | None = None) -> int:
    """Append one two-record batch; return its size."""
    buf, headers = request(
        build_batch([(b"k", b"value-%d" % i)] * 2, timestamp=i if timestamp is None else timestamp)
    )
    log.append(buf, headers, now_ms=0)
    return headers[0].size


def fill(log: Log, batches: int, *, timestamp: int | None = None) -> list[int]:
    return [append(log, i, timestamp=timestamp) for i in range(batches)]


def assert_files_match(segment: LogSegment) -> None:
    """The segment's files hold exactly what its in-memory state says."""
    assert segment.log_path.stat().st_size == segment.size
    assert segment.index_path.stat().st_size == segment.offset_index.entries * 8
    assert segment.time_index_path.stat().st_size == segment.time_index.entries * 12


def flaky_write(real: Callable[[int, Any], int], *, partial: int) -> Callable[[int, Any], int]:
    """An os.write whose first call writes ``partial`` bytes and whose second raises ENOSPC."""
    calls = 0

    def write(fd: int, data: Any) -> int:
        nonlocal calls
        calls += 1
        if calls == 1:
            return real(fd, bytes(data)[:partial])
        if calls == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(fd, data)

    return write


# --- 1. A failed write is undone, or takes the log offline ---


def test_partial_write_then_enospc_is_truncated_away(
    tmp_path: Path, opened: Opened, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = opened(Log.open(tmp_path, CONFIG))
    fill(log, 3)
    end = log.log_end_offset
    with monkeypatch.context() as patch:
        patch.setattr(os, "write", flaky_write(os.write, partial=50))
        with pytest.raises(OSError, match="No space"):
            append(log, 3)
    assert log.log_end_offset == end
    assert not log.offline
    assert_files_match(log.active_segment)
    append(log, 3)
    append(log, 4)
    assert [b for b, _ in offsets_in(log.read(0, 1 << 20))] == [0, 2, 4, 6, 8]
    log.close()
    again = opened(Log.open(tmp_path, CONFIG, recovery_point=0, clean_shutdown=True))
    assert (again.log_end_offset, again.truncated_bytes) == (10, 0)
    assert [b for b, _ in offsets_in(again.read(6, 1 << 20))] == [6, 8]


def test_failed_index_append_truncates_the_log_write(
    tmp_path: Path, opened: Opened, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = opened(Log.open(tmp_path, LogConfig(index_interval_bytes=0)))
    fill(log, 3)
    end, size = log.log_end_offset, log.active_segment.size
    entries = log.active_segment.offset_index.entries
    real_append = IndexFile.append

    def half_then_eio(self: IndexFile, data: bytes) -> None:
        real_append(self, data[:3])
        raise OSError(errno.EIO, "I/O error")

    with monkeypatch.context() as patch:
        patch.setattr(IndexFile, "append", half_then_eio)
        with pytest.raises(OSError, match="I/O error"):
            append(log, 3)
    segment = log.active_segment
    assert (log.log_end_offset, segment.size, segment.offset_index.entries) == (end, size, entries)
    assert_files_match(segment)
    append(log, 3)
    assert_files_match(segment)
    log.close()
    again = opened(Log.open(tmp_path, LogConfig(index_interval_bytes=0), clean_shutdown=True))
    assert (again.log_end_offset, again.rebuilt_indexes, again.truncated_bytes) == (8, 0, 0)


def test_undo_failure_takes_the_log_offline_and_blocks_the_clean_marker(
    tmp_path: Path, opened: Opened, monkeypatch: pytest.MonkeyPatch
) -> None:
    manager = opened(LogManager.open(tmp_path))
    manager.create_topic("t", 1)
    log = manager.get_log("t", 0)
    assert log is not None
    fill(log, 3)

    def no_truncate(fd: int, length: int) -> None:
        raise OSError(errno.EIO, "I/O error")

    with monkeypatch.context() as patch:
        patch.setattr(os, "write", flaky_write(os.write, partial=50))
        patch.setattr(os, "ftruncate", no_truncate)
        with pytest.raises(LogOffline) as failed:
            append(log, 3)
    assert isinstance(failed.value.__context__, OSError)  # the write error is kept
    assert log.offline
    with pytest.raises(LogOffline):
        append(log, 3)
    assert [b for b, _ in offsets_in(log.read(0, 1 << 20))] == [0, 2, 4]  # reads still work
    manager.close()
    assert not (tmp_path / CLEAN_SHUTDOWN_FILE).exists()
    again = opened(LogManager.open(tmp_path))
    assert not again.had_clean_shutdown
    recovered = again.get_log("t", 0)
    assert recovered is not None
    assert recovered.log_end_offset == 6
    assert recovered.truncated_bytes == 50
    append(recovered, 3)
    assert [b for b, _ in offsets_in(recovered.read(0, 1 << 20))] == [0, 2, 4, 6]
    again.close()


def test_write_failing_before_any_byte_needs_no_undo(
    tmp_path: Path, opened: Opened, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = opened(Log.open(tmp_path, CONFIG))
    fill(log, 3)

    def fail(*args: object) -> int:
        raise OSError(errno.EIO, "I/O error")

    with monkeypatch.context() as patch:
        patch.setattr(os, "write", fail)
        patch.setattr(os, "ftruncate", fail)
        with pytest.raises(OSError, match="I/O error"):
            append(log, 3)
    assert not log.offline
    assert_files_match(log.active_segment)
    append(log, 3)
    assert log.log_end_offset == 8


# --- 2. Gaps in the offsets ---


def shorten_first_segment(fs: FileSystem, tmp_path: Path, opened: Opened) -> tuple[Log, int, int]:
    """A log of several segments whose first lost its last batch (at a batch boundary) after
    being written: returns (the log, closed; the gap's first offset; the log end offset)."""
    log = opened(Log.open(tmp_path, CONFIG, fs=fs))
    sizes = fill(log, 30)
    assert len(log.segments) >= 3
    first = log.segments[0]
    gap = log.segments[1].base_offset - 2
    end = log.log_end_offset
    log.close()
    truncate_file(fs, first.log_path, first.size - sizes[0])
    return log, gap, end


def test_read_steps_over_a_gap_between_segments(
    fs: FileSystem, tmp_path: Path, opened: Opened
) -> None:
    log, gap, end = shorten_first_segment(fs, tmp_path, opened)
    second = log.segments[1].base_offset
    again = opened(Log.open(tmp_path, CONFIG, recovery_point=end, clean_shutdown=True, fs=fs))
    assert again.log_end_offset == end
    assert offsets_in(again.read(gap, 1, min_one=True)) == [(second, second + 1)]
    assert offsets_in(again.read(gap + 1, 1, min_one=True)) == [(second, second + 1)]
    everything = [b for b, _ in offsets_in(again.read(0, 1 << 20))]
    assert everything == [b for b in range(0, end, 2) if b != gap]


def test_gap_in_an_unflushed_segment_is_kept_and_read_over(
    fs: FileSystem, tmp_path: Path, opened: Opened
) -> None:
    # Kafka keeps later segments when one ends cleanly short of the next (compaction makes such
    # gaps); only a torn or corrupt batch drops what follows.
    log, gap, end = shorten_first_segment(fs, tmp_path, opened)
    bases = [s.base_offset for s in log.segments]
    again = opened(Log.open(tmp_path, CONFIG, recovery_point=0, clean_shutdown=False, fs=fs))
    assert [s.base_offset for s in again.segments] == bases
    assert (again.log_end_offset, again.deleted_segments) == (end, 0)
    assert again.read(gap, 1 << 20)


def test_gap_below_the_recovery_point_is_kept(
    fs: FileSystem, tmp_path: Path, opened: Opened
) -> None:
    log, _, end = shorten_first_segment(fs, tmp_path, opened)
    bases = [s.base_offset for s in log.segments]
    again = opened(Log.open(tmp_path, CONFIG, recovery_point=end, clean_shutdown=False, fs=fs))
    assert [s.base_offset for s in again.segments] == bases
    assert (again.log_end_offset, again.deleted_segments) == (end, 0)


# --- 3. Recovery below the recovery point only rebuilds ---


def test_index_rebuild_below_recovery_point_deletes_nothing_after_it(
    fs: FileSystem, tmp_path: Path, opened: Opened
) -> None:
    log = opened(Log.open(tmp_path, CONFIG, fs=fs))
    sizes = fill(log, 35)
    log.flush(up_to=log.segments[2].base_offset)
    recovery_point = log.recovery_point
    bases = [s.base_offset for s in log.segments]
    end = log.log_end_offset
    first = log.segments[0]
    log.abandon()  # crash
    fs.unlink(first.index_path)  # index lost: rebuild
    byte = fs.read_bytes(first.log_path)[first.size - 5]  # one flipped byte in its last batch
    write_at(fs, first.log_path, first.size - 5, bytes([byte ^ 1]))
    again = opened(
        Log.open(tmp_path, CONFIG, recovery_point=recovery_point, clean_shutdown=False, fs=fs)
    )
    assert [s.base_offset for s in again.segments] == bases
    assert (again.log_end_offset, again.deleted_segments) == (end, 0)
    assert again.truncated_bytes == sizes[0]
    assert again.rebuilt_indexes == 1


def test_unclean_open_validates_each_segment_once(
    fs: FileSystem, tmp_path: Path, opened: Opened, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = opened(Log.open(tmp_path, CONFIG, fs=fs))
    fill(log, 30)
    log.abandon()  # crash
    for segment in log.segments:
        fs.unlink(segment.index_path)
    recovered: list[int] = []
    real_recover = LogSegment.recover

    def counting(self: LogSegment) -> int:
        recovered.append(self.base_offset)
        return real_recover(self)

    monkeypatch.setattr(LogSegment, "recover", counting)
    again = opened(Log.open(tmp_path, CONFIG, recovery_point=0, clean_shutdown=False, fs=fs))
    assert sorted(recovered) == [s.base_offset for s in log.segments]
    assert again.recovered_segments == again.rebuilt_indexes == len(log.segments)


# --- 4. Directory fsyncs and flushing what open rebuilt ---


@pytest.fixture
def dir_fsyncs(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    synced: list[Path] = []
    real = OsFileSystem.fsync_dir

    def record(self: OsFileSystem, directory: StrPath) -> None:
        synced.append(Path(directory))
        real(self, directory)

    monkeypatch.setattr(OsFileSystem, "fsync_dir", record)
    return synced


def test_flush_fsyncs_the_directory_after_a_roll(
    tmp_path: Path, opened: Opened, dir_fsyncs: list[Path]
) -> None:
    log = opened(Log.open(tmp_path, CONFIG))
    fill(log, 3)
    log.flush()
    assert dir_fsyncs == [tmp_path]  # open created the first segment
    append(log, 3)
    log.flush()
    assert dir_fsyncs == [tmp_path]  # no segment created since
    fill(log, 10)
    assert len(log.segments) > 1
    log.flush(up_to=log.log_end_offset - 1)
    assert dir_fsyncs == [tmp_path] * 2
    append(log, 99)
    log.flush()
    assert dir_fsyncs == [tmp_path] * 2


def test_recovery_that_deletes_fsyncs_the_directory(
    tmp_path: Path, opened: Opened, dir_fsyncs: list[Path]
) -> None:
    log = opened(Log.open(tmp_path, CONFIG))
    sizes = fill(log, 30)
    first = log.segments[0]
    log.close()
    os.truncate(first.log_path, first.size - sizes[0] // 2)  # torn mid-batch
    dir_fsyncs.clear()
    again = opened(Log.open(tmp_path, CONFIG, recovery_point=0, clean_shutdown=False))
    assert again.deleted_segments > 0
    assert dir_fsyncs == [tmp_path]


def test_segments_rebuilt_at_open_are_flushed(
    tmp_path: Path, opened: Opened, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = opened(Log.open(tmp_path, CONFIG))
    fill(log, 30)
    end = log.log_end_offset
    log.close()
    log.segments[0].index_path.unlink()
    flushed: list[int] = []
    real_flush = LogSegment.flush

    def record(self: LogSegment) -> None:
        flushed.append(self.base_offset)
        real_flush(self)

    monkeypatch.setattr(LogSegment, "flush", record)
    again = opened(Log.open(tmp_path, CONFIG, recovery_point=end, clean_shutdown=True))
    assert again.rebuilt_indexes == 1
    assert flushed == [0]


# --- 5. The max timestamp is published after the size, read before it ---


class Traced(LogSegment):
    events: list[str]

    def __setattr__(self, name: str, value: object) -> None:
        if name in ("_size", "_max_timestamp"):
            self.__dict__.setdefault("events", []).append("set" + name)
        super().__setattr__(name, value)

    def __getattribute__(self, name: str) -> Any:
        if name in ("_size", "_max_timestamp"):
            object.__getattribute__(self, "__dict__").setdefault("events", []).append("get" + name)
        return super().__getattribute__(name)


def test_append_publishes_max_timestamp_after_size(
    fs: FileSystem, tmp_path: Path, opened: Opened
) -> None:
    segment = opened(Traced(tmp_path, 0, fs=fs))
    segment.append(build_batch([(None, b"a")], timestamp=5))
    segment.events.clear()
    second = bytearray(build_batch([(None, b"b")], timestamp=7))
    set_base_offset(second, 0, 1)
    segment.append(second)
    sets = [e for e in segment.events if e.startswith("set")]
    assert sets == ["set_size", "set_max_timestamp"]
    segment.events.clear()
    assert segment.find_max_timestamp() == (1, 7)
    gets = [e for e in segment.events if e.startswith("get")]
    assert gets.index("get_max_timestamp") < gets.index("get_size")


# --- 6. Close and delete wait for readers on other threads ---


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


@pytest.mark.parametrize("how", ["delete", "close"])
def test_close_or_delete_waits_for_a_reader_on_another_thread(
    fs: FileSystem,
    tmp_path: Path,
    opened: Opened,
    paused_reads: tuple[threading.Event, threading.Event],
    how: str,
) -> None:
    inside, resume = paused_reads
    log = opened(Log.open(tmp_path / "t-0", CONFIG, fs=fs))
    fill(log, 30)
    results: list[object] = []
    thread = threading.Thread(target=lambda: results.append(_read_all(log)))
    thread.start()
    assert inside.wait(10)
    getattr(log, how)()
    assert log.closed
    assert not any(s.closed for s in log.segments)  # the reader still holds them
    with pytest.raises(LogClosed):
        log.read(0, 100)
    resume.set()
    thread.join(10)
    (result,) = results
    assert isinstance(result, list)
    assert [b for b, _ in result] == list(range(0, 60, 2))
    assert all(s.closed for s in log.segments)  # released by the reader on its way out
    with pytest.raises(LogClosed):
        log.max_timestamp()


def _read_all(log: Log) -> object:
    try:
        return offsets_in(log.read(0, 1 << 20))
    except Exception as exc:
        return exc


# --- 7. A topic becomes visible only with all its logs open ---


def test_create_topic_publishes_after_its_logs_are_open(
    fs: FileSystem, tmp_path: Path, opened: Opened, monkeypatch: pytest.MonkeyPatch
) -> None:
    manager = opened(LogManager.open(tmp_path, fs=fs))
    seen: list[tuple[bool, bool, bool]] = []
    real_open = Log.open

    def observing_open(path: Path | str, *args: Any, **kwargs: Any) -> Log:
        topics = json.loads(fs.read_text(tmp_path / TOPICS_FILE))["topics"]
        seen.append(
            (
                manager.topic("t") is not None,
                manager.get_log("t", 0) is not None,
                any(t["name"] == "t" for t in topics),
            )
        )
        return real_open(path, *args, **kwargs)

    fs.write_atomic(tmp_path / TOPICS_FILE, b'{"version": 1, "topics": []}')
    monkeypatch.setattr(Log, "open", observing_open)
    manager.create_topic("t", 3)
    assert seen == [(False, False, False)] * 3
    assert manager.topic("t") is not None
    assert all(manager.get_log("t", p) is not None for p in range(3))
    topics = json.loads(fs.read_text(tmp_path / TOPICS_FILE))["topics"]
    assert [t["name"] for t in topics] == ["t"]
    manager.close()


def test_create_topic_failure_leaves_nothing(
    fs: FileSystem, tmp_path: Path, opened: Opened, monkeypatch: pytest.MonkeyPatch
) -> None:
    manager = opened(LogManager.open(tmp_path, fs=fs))
    real_open = Log.open

    def failing_open(path: Path | str, *args: Any, **kwargs: Any) -> Log:
        if str(path).endswith("t-2"):
            raise OSError(errno.EMFILE, "Too many open files")
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(Log, "open", failing_open)
    with pytest.raises(OSError, match="Too many"):
        manager.create_topic("t", 3)
    assert manager.topic("t") is None
    assert manager.logs() == {}
    assert not any(fs.exists(manager.partition_dir("t", p)) for p in range(3))
    assert not fs.exists(tmp_path / TOPICS_FILE)
    monkeypatch.undo()
    manager.create_topic("t", 3)  # and it can be created afterwards
    manager.close()


# --- 8. The max timestamp of a segment costs a short scan ---


def test_max_timestamp_scans_only_past_the_last_index_entry(
    fs: FileSystem, tmp_path: Path, opened: Opened, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = LogConfig(segment_bytes=20_000, index_interval_bytes=300)
    log = opened(Log.open(tmp_path, config, fs=fs))
    fill(log, 100, timestamp=1000)  # one timestamp: a single time index entry, at the start
    append(log, 100, timestamp=999)
    end = log.log_end_offset
    assert len(log.segments) == 1
    log.close()
    scanned = 0
    real_iter = LogSegment._iter_batches

    def counting(self: LogSegment, pos: int, end: int) -> Iterator[tuple[int, BatchHeader]]:
        nonlocal scanned
        for item in real_iter(self, pos, end):
            scanned += 1
            yield item

    monkeypatch.setattr(LogSegment, "_iter_batches", counting)
    again = opened(Log.open(tmp_path, config, recovery_point=end, clean_shutdown=True, fs=fs))
    assert scanned < 10
    assert again.active_segment.max_timestamp_so_far() == (1000, 1)
    assert again.max_timestamp() == (0, 1000)


# --- 9. Inactive segments hold one descriptor ---


def _fd_count() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc/self/fd")
def test_inactive_segments_hold_only_their_log_descriptor(tmp_path: Path, opened: Opened) -> None:
    log = opened(Log.open(tmp_path, CONFIG))
    fill(log, 200)
    segments = log.segments
    assert len(segments) > 30
    assert not any(s.offset_index.has_fd or s.time_index.has_fd for s in segments[:-1])
    log.flush()  # fsyncs the parked indexes by reopening them briefly
    assert not any(s.offset_index.has_fd for s in segments[:-1])
    end = log.log_end_offset
    log.close()
    before = _fd_count()
    again = opened(Log.open(tmp_path, CONFIG, recovery_point=end, clean_shutdown=True))
    assert _fd_count() - before <= len(segments) + 2
    again.abandon()
    before = _fd_count()
    again = opened(Log.open(tmp_path, CONFIG, recovery_point=0, clean_shutdown=False))
    assert again.recovered_segments == len(segments)
    assert _fd_count() - before <= len(segments) + 2
    assert [b for b, _ in offsets_in(again.read(0, 1 << 20))] == list(range(0, end, 2))
