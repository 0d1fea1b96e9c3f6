"""Log: one partition directory, a sequence of segments plus producer state."""

from __future__ import annotations

import os
import shutil
import threading
import uuid
from bisect import bisect_right
from collections.abc import Iterable, Iterator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

from kpy.protocol.records import (
    BatchHeader,
    InvalidRecordBatch,
    decode_records,
    set_base_offset,
    set_log_append_time,
    set_partition_leader_epoch,
)
from kpy.storage.config import CREATE_TIME, LOG_APPEND_TIME, LogConfig
from kpy.storage.errors import (
    LogClosed,
    LogOffline,
    OffsetOutOfRange,
    RecordBatchTooLarge,
    RecordTooLarge,
)
from kpy.storage.files import fsync_dir
from kpy.storage.producer_state import (
    SNAPSHOT_SUFFIX,
    AppendOrigin,
    ControlMarker,
    ProducerStateManager,
)
from kpy.storage.segment import INDEX_SUFFIX, LOG_SUFFIX, TIME_INDEX_SUFFIX, LogSegment

__all__ = ["CREATE_TIME", "LOG_APPEND_TIME", "AppendResult", "Log", "LogConfig"]

# Leftovers of operations Kafka performs by renaming files; kpy has no cleaner, so any such file
# comes from a Kafka-written directory or an interrupted delete and is removed at open.
STRAY_SUFFIXES = (".cleaned", ".swap", ".deleted", ".tmp")

EARLIEST_TIMESTAMP = -2
LATEST_TIMESTAMP = -1
MAX_TIMESTAMP = -3


def _abandon_all(segments: Iterable[LogSegment]) -> None:
    """Abandon every segment; one failing does not stop the rest (its error is raised after)."""
    with ExitStack() as stack:
        for segment in segments:
            stack.callback(segment.abandon)


@dataclass(frozen=True, slots=True)
class AppendResult:
    """What a produce response needs from an append."""

    base_offset: int  # offset of the first record written (or of the duplicate batch)
    last_offset: int
    log_append_time_ms: int  # -1 for CreateTime; the cached batch timestamp for a duplicate
    log_start_offset: int
    duplicate: bool = False


class Log:
    """A partition's log: segments ``<base>.log/.index/.timeindex`` and ``<offset>.snapshot``
    files in one directory (formats: segment.py, producer_state.py).

    Invariants: segments are sorted by base offset and never overlap; only the last (active)
    segment is appended to; ``log_start_offset <= log_end_offset``; every offset below
    ``recovery_point`` has been fsynced; ``producer_state`` covers the log up to
    ``log_end_offset``.

    Threads: the event loop thread calls ``append``, ``roll``, ``flush``, ``close``, ``delete``,
    ``abandon``.
    ``read``, ``offset_for_timestamp`` and ``max_timestamp`` may run on a worker thread while an
    append runs: they take the segment tuple (replaced, never mutated, on roll) and each
    segment's size once, and read below those with ``os.pread``. They also register as readers
    (a counter under a lock held only to change it): ``close``, ``abandon`` and ``delete`` mark
    the log closed at once, but the descriptors are closed only when the last reader leaves, so
    a reader never preads a closed (or reused) descriptor. A read that starts after that raises
    LogClosed.

    Failed writes: a segment undoes a failed append (see segment.py), so the log stays as it
    was. If undoing fails the log goes offline: every later append raises LogOffline, ``close``
    only releases the files (no snapshot, no fsync, the recovery point stays), and LogManager
    does not write its clean shutdown marker, so the next start recovers the log.

    After a crash (``clean_shutdown=False``): segments from the one holding ``recovery_point``
    onward are recovered (every batch validated; the first bad or torn batch and everything
    after it, including later segments, is dropped), as Kafka's LogLoader does; a segment that
    ends cleanly before the next one's base offset leaves a gap that reads step over.
    Segments below it are trusted: one whose index is missing or insane gets its index rebuilt
    (which truncates it at a bad batch, if any) and nothing else, leaving a gap in the offsets
    that reads step over. After a clean shutdown only the index sanity checks run, and the
    active segment's tail is scanned from its last index entry (a torn tail found there still
    triggers recovery of that segment). Whatever open rebuilds is fsynced, and the directory is
    fsynced after files are deleted.
    """

    def __init__(
        self,
        directory: Path,
        config: LogConfig,
        segments: list[LogSegment],
        producer_state: ProducerStateManager,
        log_start_offset: int,
        recovery_point: int,
    ) -> None:
        self.dir = directory
        self.config = config
        # One attribute, swapped whole on roll, so a reader sees segments and bases that agree.
        self._view: tuple[tuple[LogSegment, ...], tuple[int, ...]] = (
            tuple(segments),
            tuple(s.base_offset for s in segments),
        )
        self.producer_state = producer_state
        self.log_end_offset = segments[-1].read_next_offset()
        self.log_start_offset = log_start_offset
        self.recovery_point = min(recovery_point, self.log_end_offset)
        # Open statistics: how much recovery work ``open`` did.
        self.recovered_segments = 0
        self.rebuilt_indexes = 0
        self.truncated_bytes = 0
        self.deleted_segments = 0
        self._closed = False
        self._offline = False
        # Readers inside read/offset_for_timestamp/max_timestamp; the descriptors are released
        # by whoever leaves last once the log is closed (``_release_pending``).
        self._reader_lock = threading.Lock()
        self._readers = 0
        self._release_pending = False
        # A segment file was created since the directory was last fsynced (Kafka's
        # LocalLog.flush fsyncs the directory when it flushes a new segment).
        self._dir_dirty = False

    # --- Opening and recovery ---

    @classmethod
    def open(
        cls,
        path: Path | str,
        config: LogConfig | None = None,
        *,
        recovery_point: int = 0,
        clean_shutdown: bool = False,
        now_ms: int = 0,
        log_start_offset: int = 0,
    ) -> Log:
        directory = Path(path)
        directory.mkdir(parents=True, exist_ok=True)
        config = config or LogConfig()
        bases, removed_files = cls._clean_directory(directory)
        segments: list[LogSegment] = []
        try:
            return cls._load(
                directory,
                config,
                bases,
                segments,
                removed_files=removed_files,
                recovery_point=recovery_point,
                clean_shutdown=clean_shutdown,
                now_ms=now_ms,
                log_start_offset=log_start_offset,
            )
        except BaseException:  # a failed open must not leave the segments' files open
            _abandon_all(segments)
            raise

    @classmethod
    def _load(
        cls,
        directory: Path,
        config: LogConfig,
        bases: list[int],
        segments: list[LogSegment],
        *,
        removed_files: int,
        recovery_point: int,
        clean_shutdown: bool,
        now_ms: int,
        log_start_offset: int,
    ) -> Log:
        """The body of ``open``; ``segments`` (filled in here) is what to release if it fails.
        ``removed_files``: how many stray files ``_clean_directory`` deleted."""
        rebuilt = truncated = deleted = 0
        # Segments before ``first`` hold only flushed offsets: trusted, at most re-indexed.
        first = max(bisect_right(bases, recovery_point) - 1, 0)
        last = len(bases) - 1
        for i, base in enumerate(bases):
            segment = cls._open_segment(directory, base, config, now_ms)
            segments.append(segment)
            if clean_shutdown or i < first:
                if segment.needs_recovery:  # missing or insane index: rebuild (validates too)
                    truncated += segment.recover()
                    segment.flush()
                    rebuilt += 1
                if i < last:
                    segment.park_indexes()
            # else: recovered below, which rebuilds the indexes anyway
        created = not segments
        if created:
            segments.append(cls._open_segment(directory, log_start_offset, config, now_ms))

        recovered = 0
        if not clean_shutdown:
            i = first
            while i < len(segments):
                segment = segments[i]
                if segment.needs_recovery:
                    rebuilt += 1
                cut = segment.recover()
                segment.flush()
                recovered += 1
                truncated += cut
                if i + 1 == len(segments):
                    break
                if cut:
                    # Torn or corrupt: nothing after it is trusted (Kafka's recoverLog). A
                    # segment that merely ends before the next one's base offset is kept, as
                    # in Kafka (compaction leaves such gaps); reads step over the gap.
                    for stale in segments[i + 1 :]:
                        stale.delete()
                        deleted += 1
                    del segments[i + 1 :]
                    break
                segment.park_indexes()
                i += 1
        active = segments[-1]
        active.load_tail()
        if active.needs_recovery:  # torn tail despite a clean shutdown marker
            truncated += active.recover()
            active.flush()
            recovered += 1

        end = active.read_next_offset()
        start = min(max(log_start_offset, segments[0].base_offset), end)
        producer_state = ProducerStateManager(directory)
        log = cls(
            directory,
            config,
            segments,
            producer_state,
            start,
            end,
        )
        log.recovered_segments = recovered
        log.rebuilt_indexes = rebuilt
        log.truncated_bytes = truncated
        log.deleted_segments = deleted
        removed_snapshots = log._rebuild_producer_state()
        if deleted or removed_snapshots or removed_files:
            fsync_dir(directory)  # make the deletions durable before anything builds on them
        log._dir_dirty = created
        return log

    @staticmethod
    def _clean_directory(directory: Path) -> tuple[list[int], int]:
        """Delete stray files; return the sorted base offsets of the segments present and the
        number of files deleted."""
        removed = 0
        bases: list[int] = []
        index_stems: list[tuple[str, Path]] = []
        for entry in directory.iterdir():
            name = entry.name
            if name.endswith(STRAY_SUFFIXES):
                if entry.is_file():
                    entry.unlink()
                    removed += 1
                continue
            stem, dot, suffix = name.partition(".")
            if not (dot and stem.isdigit() and len(stem) == 20):
                continue
            if "." + suffix == LOG_SUFFIX:
                bases.append(int(stem))
            elif "." + suffix in (INDEX_SUFFIX, TIME_INDEX_SUFFIX):
                index_stems.append((stem, entry))
        have = {f"{b:020d}" for b in bases}
        for stem, entry in index_stems:
            if stem not in have:  # an index without its log
                entry.unlink()
                removed += 1
        return sorted(bases), removed

    @staticmethod
    def _open_segment(directory: Path, base: int, config: LogConfig, now_ms: int) -> LogSegment:
        return LogSegment(
            directory,
            base,
            index_interval_bytes=config.index_interval_bytes,
            max_index_size=config.segment_index_bytes,
            now_ms=now_ms,
        )

    def _rebuild_producer_state(self) -> int:
        """Load the newest usable snapshot and replay the batches after it; returns how many
        snapshot files were deleted on the way."""
        state = self.producer_state
        removed = state.truncate_and_reload(self.log_start_offset, self.log_end_offset)
        for segment, pos, header in self._batches_from(state.map_end_offset):
            marker = None
            if header.is_control and header.producer_id >= 0:
                marker = self._read_marker(segment, pos, header)
            state.replay(header, marker)
        state.map_end_offset = self.log_end_offset
        return removed

    @staticmethod
    def _read_marker(segment: LogSegment, pos: int, header: BatchHeader) -> ControlMarker | None:
        batch = segment.read_at(pos, header.size)
        try:
            records = decode_records(batch)
            return ControlMarker.decode(records[0].key, records[0].value) if records else None
        except InvalidRecordBatch:
            return None

    def _batches_from(self, offset: int) -> Iterator[tuple[LogSegment, int, BatchHeader]]:
        """Every batch with last offset >= ``offset``, in order, with its segment and position."""
        segments, bases = self._view
        first = max(bisect_right(bases, offset) - 1, 0)
        for segment in segments[first:]:
            found = segment.find_batch(offset)
            if found is None:
                continue
            for pos, header in segment.iter_batches(found[0]):
                yield segment, pos, header

    # --- Properties ---

    @property
    def _segments(self) -> tuple[LogSegment, ...]:
        return self._view[0]

    @property
    def segments(self) -> tuple[LogSegment, ...]:
        return self._view[0]

    @property
    def active_segment(self) -> LogSegment:
        return self._segments[-1]

    @property
    def size(self) -> int:
        return sum(s.size for s in self._segments)

    # --- Appending (event loop thread) ---

    def append(
        self,
        batches: bytearray,
        headers: Sequence[BatchHeader],
        *,
        now_ms: int,
        log_append_time: bool | None = None,
        leader_epoch: int | None = None,
        origin: AppendOrigin = AppendOrigin.CLIENT,
    ) -> AppendResult:
        """Append validated batches (``headers`` as returned by validate_batches for ``batches``).

        Producer state is checked for every batch before anything is written (raising
        InvalidProducerEpoch, OutOfOrderSequence, DuplicateSequence, InvalidTxnState). A request
        holding exactly one batch that repeats a cached batch is answered from the cache and
        nothing is written. Otherwise the batches get offsets from ``log_end_offset`` on (patched
        into ``batches`` in place), LogAppendTime timestamps if asked (None: the topic's
        message.timestamp.type decides), and ``leader_epoch`` if given.

        If the write fails (OSError) the log is left as before the call. Raises LogOffline if the
        failed write could not be undone, and on every call after that.
        """
        if self._offline:
            raise LogOffline(f"{self.dir}: the log is offline after a failed write")
        if not headers:
            raise ValueError("append needs at least one batch")
        if origin is AppendOrigin.CLIENT:
            for header in headers:
                if header.is_control:
                    raise InvalidRecordBatch("clients may not write control batches")
        for header in headers:
            if header.size > self.config.max_message_bytes:
                raise RecordTooLarge(
                    f"batch of {header.size} bytes exceeds max.message.bytes "
                    f"{self.config.max_message_bytes}"
                )
        if len(batches) > self.config.segment_bytes:
            raise RecordBatchTooLarge(
                f"{len(batches)} bytes exceed segment.bytes {self.config.segment_bytes}"
            )
        if log_append_time is None:
            log_append_time = self.config.log_append_time

        first_offsets: list[int] = []
        max_timestamps: list[int] = []
        next_offset = self.log_end_offset
        max_timestamp = -1
        for header in headers:
            first_offsets.append(next_offset)
            next_offset += header.last_offset_delta + 1
            ts = now_ms if log_append_time else header.max_timestamp
            max_timestamps.append(ts)
            max_timestamp = max(max_timestamp, ts)
        last_offset = next_offset - 1

        markers: list[ControlMarker | None] | None = None
        if any(h.is_control for h in headers):
            markers = [self._marker_from(batches, headers, i) for i in range(len(headers))]
        analysis = self.producer_state.analyze(
            headers, first_offsets, max_timestamps, origin=origin, markers=markers
        )
        if analysis.duplicate is not None:
            dup = analysis.duplicate
            return AppendResult(
                dup.first_offset, dup.last_offset, dup.timestamp, self.log_start_offset, True
            )

        pos = 0
        for header, first_offset in zip(headers, first_offsets, strict=True):
            set_base_offset(batches, pos, first_offset)
            if leader_epoch is not None:
                set_partition_leader_epoch(batches, pos, leader_epoch)
            if log_append_time:
                set_log_append_time(batches, pos, header.size, now_ms)
            pos += header.size
        if pos != len(batches):
            raise ValueError("headers do not describe the batches")

        segment = self.active_segment
        if segment.should_roll(
            len(batches), now_ms, self.config, max_timestamp=max_timestamp, max_offset=last_offset
        ):
            segment = self.roll(now_ms)
        try:
            segment.append(batches)
        except LogOffline:
            self._offline = True
            raise
        self.log_end_offset = last_offset + 1
        self.producer_state.apply(analysis, self.log_end_offset)
        return AppendResult(
            first_offsets[0],
            last_offset,
            now_ms if log_append_time else -1,
            self.log_start_offset,
        )

    @staticmethod
    def _marker_from(
        batches: bytearray, headers: Sequence[BatchHeader], index: int
    ) -> ControlMarker | None:
        header = headers[index]
        if not header.is_control:
            return None
        pos = sum(h.size for h in headers[:index])
        records = decode_records(memoryview(batches)[pos : pos + header.size])
        return ControlMarker.decode(records[0].key, records[0].value) if records else None

    def roll(self, now_ms: int) -> LogSegment:
        """Start a new active segment at the log end offset (snapshotting producer state)."""
        old = self.active_segment
        if old.size == 0:
            return old
        self.producer_state.take_snapshot()
        old.on_become_inactive()
        new = self._open_segment(self.dir, self.log_end_offset, self.config, now_ms)
        if new.size:  # a leftover file at that name (Kafka deletes it too)
            new.delete()
            new = self._open_segment(self.dir, self.log_end_offset, self.config, now_ms)
        self._dir_dirty = True
        segments, bases = self._view
        self._view = ((*segments, new), (*bases, new.base_offset))
        return new

    # --- Reading (any thread) ---

    def _check_offset(self, offset: int) -> None:
        if offset < self.log_start_offset or offset > self.log_end_offset:
            raise OffsetOutOfRange(
                f"offset {offset} is outside [{self.log_start_offset}, {self.log_end_offset}]"
            )

    def _enter(self) -> None:
        with self._reader_lock:
            if self._closed:
                raise LogClosed(f"{self.dir}: the log is closed")
            self._readers += 1

    def _leave(self) -> None:
        with self._reader_lock:
            self._readers -= 1
            release = self._release_pending and not self._readers
            if release:
                self._release_pending = False
        if release:
            _abandon_all(self._segments)

    def read(self, offset: int, max_bytes: int, *, min_one: bool = True) -> bytes:
        """Whole batches from the one containing ``offset``, up to ``max_bytes`` in total.

        Continues into later segments while space remains, stepping over segments (and gaps in
        the offsets) that hold nothing at or after ``offset``. With ``min_one`` the first batch is
        returned even if larger than ``max_bytes``. Raises OffsetOutOfRange outside
        [log_start_offset, log_end_offset] and LogClosed once the log is closed or deleted; at
        the log end offset returns b"".
        """
        self._enter()
        try:
            self._check_offset(offset)
            segments, bases = self._view
            out: list[bytes] = []
            remaining = max_bytes
            for segment in segments[max(bisect_right(bases, offset) - 1, 0) :]:
                result = segment.read_to_end(offset, remaining, min_one=min_one and not out)
                if result is None:
                    continue  # nothing at or after ``offset`` here: try the next segment
                data, offset, to_end = result
                if not data:
                    break  # the next batch does not fit
                out.append(data)
                remaining -= len(data)
                if remaining <= 0 or not to_end:
                    break  # full, or this segment still holds batches that did not fit
            return b"".join(out)
        finally:
            self._leave()

    def offset_for_timestamp(self, timestamp: int) -> tuple[int, int] | None:
        """(offset, timestamp) of the first record with timestamp >= ``timestamp``, or None.

        Also accepts ListOffsets' special values: -2 earliest, -1 latest (timestamp -1 in the
        answer), -3 the record with the largest timestamp.
        """
        if timestamp == EARLIEST_TIMESTAMP:
            return self.log_start_offset, -1
        if timestamp == LATEST_TIMESTAMP:
            return self.log_end_offset, -1
        if timestamp == MAX_TIMESTAMP:
            return self.max_timestamp()
        self._enter()
        try:
            start = self.log_start_offset
            for segment in self._segments:
                if segment.max_timestamp_so_far()[0] >= timestamp:
                    return segment.find_offset_by_timestamp(timestamp, start)
            return None
        finally:
            self._leave()

    def earliest_offset(self) -> int:
        return self.log_start_offset

    def latest_offset(self) -> int:
        return self.log_end_offset

    def max_timestamp(self) -> tuple[int, int] | None:
        """(offset, timestamp) of the first record carrying the log's largest timestamp."""
        self._enter()
        try:
            best: LogSegment | None = None
            best_ts = -1
            for segment in self._segments:
                ts = segment.max_timestamp_so_far()[0]  # before the size: see segment.py
                if segment.size == 0:
                    continue
                if best is None or ts > best_ts:
                    best, best_ts = segment, ts
            return best.find_max_timestamp() if best is not None else None
        finally:
            self._leave()

    # --- Durability and lifecycle (event loop thread) ---

    def flush(self, up_to: int | None = None) -> None:
        """fsync segments holding offsets below ``up_to`` (default: all), and the directory if
        segments were created since it was last fsynced; advance ``recovery_point`` to it."""
        end = self.log_end_offset
        target = end if up_to is None else min(up_to, end)
        if target <= self.recovery_point:
            return
        segments, bases = self._view
        first = max(bisect_right(bases, self.recovery_point) - 1, 0)
        for segment in segments[first:]:
            if segment.base_offset >= target:
                break
            segment.flush()
        self._flush_dir()
        self.recovery_point = target

    def _flush_dir(self) -> None:
        """fsync the directory if a segment file was created since it was last fsynced."""
        if self._dir_dirty:
            fsync_dir(self.dir)
            self._dir_dirty = False

    def close(self) -> None:
        """Snapshot producer state, write final time index entries, fsync, close files.

        If any of that fails, the files not yet closed are abandoned (see ``abandon``) before the
        error propagates, so no descriptor outlives the call (or the last reader, see the class
        docstring). An offline log is only abandoned: its files hold bytes past the log end.
        """
        if self._closed:
            return
        try:
            if not self._offline:
                self.producer_state.map_end_offset = self.log_end_offset
                self.producer_state.take_snapshot()
                for segment in self._segments:
                    segment.finish()
                self._flush_dir()
                self.recovery_point = self.log_end_offset
        finally:
            self.abandon()

    def abandon(self) -> None:
        """Drop the log as a crash would: close every segment's files without fsync, final time
        index entries or a producer state snapshot.

        For crash simulation (a test abandons a log, damages its files and reopens the directory,
        which then recovers as after a real crash) and for releasing the file descriptors after a
        failure. ``recovery_point`` is left as is. Idempotent; a no-op after ``close``. With a
        reader inside (on a worker thread), the descriptors are closed when it leaves.
        """
        with self._reader_lock:
            self._closed = True
            if self._readers:
                self._release_pending = True
                return
        _abandon_all(self._segments)

    def delete(self) -> None:
        """Close without snapshots and remove the directory (renamed to ``*-delete`` first).

        A reader still inside keeps the (now unlinked) files open until it leaves."""
        self.abandon()
        doomed = self.dir.with_name(f"{self.dir.name}.{uuid.uuid4().hex}-delete")
        os.rename(self.dir, doomed)
        shutil.rmtree(doomed, ignore_errors=True)

    @property
    def offline(self) -> bool:
        """A failed write could not be undone; see the class docstring."""
        return self._offline

    @property
    def closed(self) -> bool:
        return self._closed

    def snapshot_offsets(self) -> list[int]:
        return sorted(
            int(p.name[: -len(SNAPSHOT_SUFFIX)]) for p in self.dir.glob("*" + SNAPSHOT_SUFFIX)
        )
