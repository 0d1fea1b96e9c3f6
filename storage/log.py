"""Log: one partition directory, a sequence of segments plus producer state."""

from __future__ import annotations

import os
import shutil
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
from kpy.storage.errors import OffsetOutOfRange, RecordBatchTooLarge, RecordTooLarge
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
    segment's size once, and read below those with ``os.pread``.

    After a crash (``clean_shutdown=False``): segments from the one holding ``recovery_point``
    onward are recovered (every batch validated; the first bad or torn batch and everything
    after it, including later segments, is dropped), as Kafka's LogLoader does. After a clean
    shutdown only the index sanity checks run, and the active segment's tail is scanned from its
    last index entry (a torn tail found there still triggers recovery of that segment).
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
        bases = cls._clean_directory(directory)
        segments: list[LogSegment] = []
        try:
            return cls._load(
                directory,
                config,
                bases,
                segments,
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
        recovery_point: int,
        clean_shutdown: bool,
        now_ms: int,
        log_start_offset: int,
    ) -> Log:
        """The body of ``open``; ``segments`` (filled in here) is what to release if it fails."""
        rebuilt = truncated = 0
        deleted = 0
        for i, base in enumerate(bases):
            segment = cls._open_segment(directory, base, config, now_ms)
            segments.append(segment)
            if segment.needs_recovery:  # missing or insane index: rebuild (validates too)
                cut = segment.recover()
                truncated += cut
                rebuilt += 1
                if cut and not clean_shutdown:  # a torn segment: nothing after it is trusted
                    for later in bases[i + 1 :]:
                        cls._open_segment(directory, later, config, now_ms).delete()
                        deleted += 1
                    break
        if not segments:
            segments.append(cls._open_segment(directory, log_start_offset, config, now_ms))

        recovered = 0
        if not clean_shutdown:
            first = max(bisect_right([s.base_offset for s in segments], recovery_point) - 1, 0)
            for i in range(first, len(segments)):
                cut = segments[i].recover()
                segments[i].flush()
                recovered += 1
                if cut:
                    truncated += cut
                    for stale in segments[i + 1 :]:
                        stale.delete()
                        deleted += 1
                    del segments[i + 1 :]
                    break
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
        log._rebuild_producer_state()
        return log

    @staticmethod
    def _clean_directory(directory: Path) -> list[int]:
        """Delete stray files, return the sorted base offsets of the segments present."""
        bases: list[int] = []
        index_stems: list[tuple[str, Path]] = []
        for entry in directory.iterdir():
            name = entry.name
            if name.endswith(STRAY_SUFFIXES):
                if entry.is_file():
                    entry.unlink()
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
        return sorted(bases)

    @staticmethod
    def _open_segment(directory: Path, base: int, config: LogConfig, now_ms: int) -> LogSegment:
        return LogSegment(
            directory,
            base,
            index_interval_bytes=config.index_interval_bytes,
            max_index_size=config.segment_index_bytes,
            now_ms=now_ms,
        )

    def _rebuild_producer_state(self) -> None:
        state = self.producer_state
        state.truncate_and_reload(self.log_start_offset, self.log_end_offset)
        for segment, pos, header in self._batches_from(state.map_end_offset):
            marker = None
            if header.is_control and header.producer_id >= 0:
                marker = self._read_marker(segment, pos, header)
            state.replay(header, marker)
        state.map_end_offset = self.log_end_offset

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
        """
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
        segment.append(batches)
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
        segments, bases = self._view
        self._view = ((*segments, new), (*bases, new.base_offset))
        return new

    # --- Reading (any thread) ---

    def _check_offset(self, offset: int) -> None:
        if offset < self.log_start_offset or offset > self.log_end_offset:
            raise OffsetOutOfRange(
                f"offset {offset} is outside [{self.log_start_offset}, {self.log_end_offset}]"
            )

    def read(self, offset: int, max_bytes: int, *, min_one: bool = True) -> bytes:
        """Whole batches from the one containing ``offset``, up to ``max_bytes`` in total.

        Continues into later segments while space remains. With ``min_one`` the first batch is
        returned even if larger than ``max_bytes``. Raises OffsetOutOfRange outside
        [log_start_offset, log_end_offset]; at the log end offset returns b"".
        """
        self._check_offset(offset)
        segments, bases = self._view
        i = max(bisect_right(bases, offset) - 1, 0)
        out: list[bytes] = []
        remaining = max_bytes
        for j in range(i, len(segments)):
            if j > i and offset < bases[j]:
                break  # the previous segment still holds batches that did not fit
            result = segments[j].read_with_next_offset(
                offset, remaining, min_one=min_one and not out
            )
            if result is None:
                continue
            data, offset = result
            if not data:
                break
            out.append(data)
            remaining -= len(data)
            if remaining <= 0:
                break
        return b"".join(out)

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
        start = self.log_start_offset
        for segment in self._segments:
            if segment.max_timestamp_so_far()[0] >= timestamp:
                return segment.find_offset_by_timestamp(timestamp, start)
        return None

    def earliest_offset(self) -> int:
        return self.log_start_offset

    def latest_offset(self) -> int:
        return self.log_end_offset

    def max_timestamp(self) -> tuple[int, int] | None:
        """(offset, timestamp) of the first record carrying the log's largest timestamp."""
        best: LogSegment | None = None
        best_ts = -1
        for segment in self._segments:
            if segment.size == 0:
                continue
            ts = segment.max_timestamp_so_far()[0]
            if best is None or ts > best_ts:
                best, best_ts = segment, ts
        return best.find_max_timestamp() if best is not None else None

    # --- Durability and lifecycle (event loop thread) ---

    def flush(self, up_to: int | None = None) -> None:
        """fsync segments holding offsets below ``up_to`` (default: all) and advance
        ``recovery_point`` to it."""
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
        self.recovery_point = target

    def close(self) -> None:
        """Snapshot producer state, write final time index entries, fsync, close files.

        If any of that fails, the files not yet closed are abandoned (see ``abandon``) before the
        error propagates, so no descriptor outlives the call.
        """
        if self._closed:
            return
        try:
            self.producer_state.map_end_offset = self.log_end_offset
            self.producer_state.take_snapshot()
            for segment in self._segments:
                segment.close()
            self.recovery_point = self.log_end_offset
        finally:
            self.abandon()

    def abandon(self) -> None:
        """Drop the log as a crash would: close every segment's files without fsync, final time
        index entries or a producer state snapshot.

        For crash simulation (a test abandons a log, damages its files and reopens the directory,
        which then recovers as after a real crash) and for releasing the file descriptors after a
        failure. ``recovery_point`` is left as is. Idempotent; a no-op after ``close``.
        """
        self._closed = True
        _abandon_all(self._segments)

    def delete(self) -> None:
        """Close without snapshots and remove the directory (renamed to ``*-delete`` first)."""
        try:
            for segment in self._segments:
                segment.delete()
        finally:
            self.abandon()
        doomed = self.dir.with_name(f"{self.dir.name}.{uuid.uuid4().hex}-delete")
        os.rename(self.dir, doomed)
        shutil.rmtree(doomed, ignore_errors=True)

    @property
    def closed(self) -> bool:
        return self._closed

    def snapshot_offsets(self) -> list[int]:
        return sorted(
            int(p.name[: -len(SNAPSHOT_SUFFIX)]) for p in self.dir.glob("*" + SNAPSHOT_SUFFIX)
        )
