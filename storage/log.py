"""Log: one partition directory, a sequence of segments plus producer state."""

from __future__ import annotations

import contextlib
import threading
import time
import uuid
from bisect import bisect_right
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from kpy.protocol.records import (
    BatchHeader,
    InvalidRecordBatch,
    build_control_batch,
    decode_records,
    iter_headers,
    read_header,
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
from kpy.storage.fs import OS_FS, FileSystem
from kpy.storage.producer_state import (
    SNAPSHOT_SUFFIX,
    AppendOrigin,
    CompletedTxn,
    ControlMarker,
    ProducerStateManager,
    list_snapshot_offsets,
    snapshot_path,
)
from kpy.storage.retention import (
    SegmentPredicate,
    size_breached,
    start_offset_breached,
    time_breached,
)
from kpy.storage.segment import (
    CLEANED_SUFFIX,
    DELETED_SUFFIX,
    INDEX_SUFFIX,
    LOG_SUFFIX,
    SWAP_SUFFIX,
    TIME_INDEX_SUFFIX,
    LogSegment,
    segment_paths,
    txn_index_path,
)
from kpy.storage.txn_index import TXN_INDEX_SUFFIX, AbortedTxn

__all__ = [
    "CREATE_TIME",
    "LOG_APPEND_TIME",
    "AppendResult",
    "Log",
    "LogConfig",
    "SegmentDeletion",
]

# Leftovers of interrupted deletes and writes, removed at open. ``.cleaned`` and ``.swap`` files
# (the log cleaner's) are sorted out first: see ``_finish_swaps``.
STRAY_SUFFIXES = (".deleted", ".tmp")

EARLIEST_TIMESTAMP = -2
LATEST_TIMESTAMP = -1
MAX_TIMESTAMP = -3


def _abandon_all(segments: Iterable[LogSegment]) -> None:
    """Abandon every segment; one failing does not stop the rest (its error is raised after)."""
    with ExitStack() as stack:
        for segment in segments:
            stack.callback(segment.abandon)


def _next_offset_of_file(fs: FileSystem, path: Path, base: int) -> int:
    """The offset after the last whole batch of a .log file (``base`` if it has none)."""
    data = fs.read_bytes(path)
    end = base
    for _, header in iter_headers(data):
        end = header.next_offset
    return end


def _unlink_segment_files(fs: FileSystem, directory: Path, base: int) -> None:
    for path in (*segment_paths(directory, base), txn_index_path(directory, base)):
        fs.unlink(path, missing_ok=True)


@dataclass(frozen=True, slots=True)
class SegmentDeletion:
    """Segments a log has let go of (``Log.delete_segments``): their files are renamed to
    ``*.deleted``, along with the producer snapshots below the log's first remaining segment.
    ``delete_files`` unlinks them all; it blocks on the disk, so it runs on a worker thread."""

    fs: FileSystem
    directory: Path
    segments: tuple[LogSegment, ...] = ()
    snapshots: tuple[Path, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.segments or self.snapshots)

    def __add__(self, other: SegmentDeletion) -> SegmentDeletion:
        """Both deletions (of the same log) as one."""
        return SegmentDeletion(
            self.fs,
            self.directory,
            self.segments + other.segments,
            self.snapshots + other.snapshots,
        )

    def delete_files(self) -> None:
        """Unlink every file and fsync the directory. A failure leaves ``*.deleted`` files,
        which the next open of the log removes."""
        if not self:
            return
        for segment in self.segments:
            segment.unlink_files()
        for path in self.snapshots:
            self.fs.unlink(path, missing_ok=True)
        with contextlib.suppress(FileNotFoundError):  # the whole log was deleted meanwhile
            self.fs.fsync_dir(self.directory)


class AppendResult(NamedTuple):
    """What a produce response needs from an append."""

    base_offset: int  # offset of the first record written (or of the duplicate batch)
    last_offset: int
    log_append_time_ms: int  # -1 for CreateTime; the cached batch timestamp for a duplicate
    log_start_offset: int
    duplicate: bool = False


class Log:
    """A partition's log: segments ``<base>.log/.index/.timeindex`` and ``<offset>.snapshot``
    files in one directory (formats: segment.py, producer_state.py), on the FileSystem ``fs``
    (the disk by default, or memory: fs.py), which its segments and producer state share.

    Invariants: segments are sorted by base offset and never overlap; only the last (active)
    segment is appended to; ``log_start_offset <= log_end_offset``; every offset below
    ``recovery_point`` has been fsynced; ``producer_state`` covers the log up to
    ``log_end_offset``.

    Threads: the event loop thread calls ``append``, ``roll``, ``advance_start``,
    ``delete_segments``, ``delete_old_segments``, ``close``, ``delete``, ``abandon``; ``flush``
    runs on any thread (worker threads: the periodic checkpoint, the flush policy, group commit),
    one call at a time per log (a lock serializes them).
    ``read``, ``offset_for_timestamp`` and ``max_timestamp`` may run on a worker thread while an
    append runs: they take the segment tuple (replaced, never mutated, on roll and on segment
    deletion) and each segment's size once, and read below those with ``pread``. They also
    register as readers (counted per generation under a lock held only to change the counts):
    ``close``, ``abandon`` and ``delete`` mark the log closed at once, but the descriptors are
    closed only when the last reader leaves, so a reader never preads a closed (or reused)
    descriptor. A read that starts after that raises LogClosed. Segments taken out of the log
    by ``delete_segments`` are retired the same way: the generation moves on, and their
    descriptors are closed once no reader of an older generation (which may hold the old tuple)
    is left. ``flush`` registers too, so it never fsyncs a descriptor closed under it.

    Log start offset (Kafka's UnifiedLog.maybeIncrementLogStartOffset, deleteSegments): records
    below ``log_start_offset`` are gone for readers (OffsetOutOfRange), whether or not their
    segment is still on disk. ``advance_start`` moves it forward, never past the high watermark
    (the log end offset: one replica), and raises the recovery point with it; the caller
    persists it (LogManager's log-start-offset-checkpoint) and then calls
    ``delete_segments_below_start``. Segment deletion (also for retention: ``deletable_segments``
    with a predicate, then ``delete_segments``) renames the files to ``*.deleted`` on the loop
    and leaves the unlinking to ``SegmentDeletion.delete_files`` on a worker thread. Producer
    state keeps every producer (as Kafka's does; producers expire by time, not by offset);
    producer snapshots below the first remaining segment go with the segments.

    Transactions: ``append_marker`` writes a transaction marker; ``last_stable_offset`` is the
    first offset of the oldest open transaction (else the log end offset); reads with
    ``max_offset`` stop there (read_committed); an abort marker that completes a transaction
    adds an AbortedTxn to the active segment's .txnindex (txn_index.py), which
    ``aborted_transactions`` searches. After an unclean shutdown the .txnindex files of the
    recovered segments that hold markers (and any that do not decode) are rebuilt by replaying
    the producer state from a snapshot below them.

    Retention (retention.py): ``delete_old_segments`` applies Kafka's three rules (log start
    breach, retention.bytes, retention.ms) and deletes what they select as above.

    Flush policy (Kafka's flush.messages and flush.ms): ``flush_due_by_messages`` after an
    append, ``flush_due_by_time`` from a periodic check; the caller then runs ``flush`` on a
    worker thread. ``last_flush_ms`` is when the recovery point last moved (or the open).

    Failed writes: a segment undoes a failed append (see segment.py), and a failed roll is
    undone too, so the log stays as it was and later appends may succeed (once the disk has
    room again). If undoing fails the log goes offline: every later append raises LogOffline,
    ``close`` only releases the files (no snapshot, no fsync, the recovery point stays), and
    LogManager does not write its clean shutdown marker, so the next start recovers the log. A
    failed fsync takes the log offline as well: after one, the kernel may have dropped the
    unwritten pages while a later fsync reports success, so only the recovery at the next start
    (which validates everything past the recovery point) can say what the disk holds.

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

    Open and the log start offset: segments wholly below the checkpointed log start (a crash
    came between the checkpoint and their deletion) are deleted before anything reads them, and
    so are the producer snapshots below the first segment left; the log start is the
    checkpointed one or the first segment's base offset, whichever is higher. If recovery
    leaves the log ending below the checkpointed start, every segment is deleted and the log
    starts empty at that offset (Kafka's LogLoader does the same), so a restart never moves the
    log start back.
    """

    def __init__(
        self,
        directory: Path,
        config: LogConfig,
        segments: list[LogSegment],
        producer_state: ProducerStateManager,
        log_start_offset: int,
        recovery_point: int,
        *,
        fs: FileSystem = OS_FS,
    ) -> None:
        self.dir = directory
        self.fs = fs  # where the files are: see fs.py
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
        self.last_flush_ms = 0
        # One flush at a time: flushes come from several worker threads.
        self._flush_lock = threading.Lock()
        # Readers inside read/offset_for_timestamp/max_timestamp/flush, counted by the
        # generation they entered in; the descriptors are released by whoever leaves last once
        # the log is closed (``_release_pending``). ``_generation`` moves on when segments are
        # retired; ``_retired`` holds (generation, segment) until no older reader is left.
        self._reader_lock = threading.Lock()
        self._readers = 0
        self._reader_generations: dict[int, int] = {}
        self._generation = 0
        self._retired: list[tuple[int, LogSegment]] = []
        self._release_pending = False
        # A segment file was created since the directory was last fsynced (Kafka's
        # LocalLog.flush fsyncs the directory when it flushes a new segment).
        self._dir_dirty = False
        # The log cleaner is rewriting segments (cleaner.py): segment deletion waits, as
        # Kafka's retention skips a log its cleaner holds, so the segments it replaces stay.
        self.cleaning = False

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
        on_segment_checked: Callable[[], None] | None = None,
        fs: FileSystem = OS_FS,
    ) -> Log:
        """``on_segment_checked`` is called after each segment recovery validates (progress
        reporting for a long recovery)."""
        directory = Path(path)
        fs.mkdir(directory)
        config = config or LogConfig()
        bases, removed_files = cls._clean_directory(fs, directory)
        segments: list[LogSegment] = []
        try:
            return cls._load(
                fs,
                directory,
                config,
                bases,
                segments,
                removed_files=removed_files,
                recovery_point=recovery_point,
                clean_shutdown=clean_shutdown,
                now_ms=now_ms,
                log_start_offset=log_start_offset,
                on_segment_checked=on_segment_checked,
            )
        except BaseException:  # a failed open must not leave the segments' files open
            _abandon_all(segments)
            raise

    @classmethod
    def _load(
        cls,
        fs: FileSystem,
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
        on_segment_checked: Callable[[], None] | None,
    ) -> Log:
        """The body of ``open``; ``segments`` (filled in here) is what to release if it fails.
        ``removed_files``: how many stray files ``_clean_directory`` deleted."""
        rebuilt = truncated = deleted = 0
        # Segments wholly below the log start: a crash came before their deletion finished.
        below = max(bisect_right(bases, log_start_offset) - 1, 0)
        for base in bases[:below]:
            _unlink_segment_files(fs, directory, base)
            deleted += 1
        bases = bases[below:]
        for offset in list_snapshot_offsets(directory, fs) if bases else ():
            if offset >= bases[0]:
                break
            fs.unlink(snapshot_path(directory, offset))  # replay never starts below the start
            deleted += 1
        # Segments before ``first`` hold only flushed offsets: trusted, at most re-indexed.
        first = max(bisect_right(bases, recovery_point) - 1, 0)
        last = len(bases) - 1
        for i, base in enumerate(bases):
            segment = cls._open_segment(fs, directory, base, config, now_ms)
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
            segments.append(cls._open_segment(fs, directory, log_start_offset, config, now_ms))

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
                if on_segment_checked is not None:
                    on_segment_checked()
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

        # Transaction indexes are derived from the producer state at each marker: those of the
        # segments recovered here that hold markers (their tails may be gone, and with them
        # markers the index lists) and any that did not decode are rebuilt by replaying the log
        # from a snapshot below them. A recovered segment without markers has no entries left.
        txn_rebuild_from: int | None = None
        for segment in segments:
            if segment.txn_index_lost or segment.recovered_control:
                txn_rebuild_from = segment.base_offset
                break
        if created:
            txn_rebuild_from = None
        end = active.read_next_offset()
        producer_state = ProducerStateManager(directory, fs)
        if end < log_start_offset:
            # Recovery (or files lost outside kpy) left nothing at or past the checkpointed
            # start: start over empty there (Kafka's deleteSegmentsIfLogStartGreaterThanLogEnd).
            for segment in segments:
                segment.delete()
                deleted += 1
            segments.clear()
            deleted += len(list_snapshot_offsets(directory, fs))
            producer_state.delete_snapshots()
            segments.append(cls._open_segment(fs, directory, log_start_offset, config, now_ms))
            created = True
            end = log_start_offset
        start = min(max(log_start_offset, segments[0].base_offset), end)
        log = cls(
            directory,
            config,
            segments,
            producer_state,
            start,
            end,
            fs=fs,
        )
        log.recovered_segments = recovered
        log.rebuilt_indexes = rebuilt
        log.truncated_bytes = truncated
        log.deleted_segments = deleted
        log.last_flush_ms = now_ms
        removed_snapshots = log._rebuild_producer_state(txn_rebuild_from)
        if deleted or removed_snapshots or removed_files:
            fs.fsync_dir(directory)  # make the deletions durable before anything builds on them
        log._dir_dirty = created
        return log

    @staticmethod
    def _clean_directory(fs: FileSystem, directory: Path) -> tuple[list[int], int]:
        """Delete stray files; return the sorted base offsets of the segments present and the
        number of files deleted."""
        removed = Log._finish_swaps(fs, directory)
        bases: list[int] = []
        index_stems: list[tuple[str, Path]] = []
        for name in fs.listdir(directory):
            entry = directory / name
            if name.endswith(STRAY_SUFFIXES):
                if fs.is_file(entry):
                    fs.unlink(entry)
                    removed += 1
                continue
            stem, dot, suffix = name.partition(".")
            if not (dot and stem.isdigit() and len(stem) == 20):
                continue
            if "." + suffix == LOG_SUFFIX:
                bases.append(int(stem))
            elif "." + suffix in (INDEX_SUFFIX, TIME_INDEX_SUFFIX, TXN_INDEX_SUFFIX):
                index_stems.append((stem, entry))
        have = {f"{b:020d}" for b in bases}
        for stem, entry in index_stems:
            if stem not in have:  # an index without its log
                fs.unlink(entry)
                removed += 1
        return sorted(bases), removed

    @staticmethod
    def _finish_swaps(fs: FileSystem, directory: Path) -> int:
        """Complete or undo what the log cleaner left half done (Kafka's LogLoader
        removeTempFilesAndCollectSwapFiles and its swap completion); returns the files deleted.

        The cleaner writes ``X.*.cleaned``, renames them to ``X.*.swap`` (indexes first, .log
        last), renames the segments they replace to ``*.deleted``, then the swap files to the
        plain names (indexes first, .log last). So: ``.cleaned`` files are incomplete and go,
        and so do ``.swap`` files at or above the lowest ``.cleaned`` base offset (their rename
        was interrupted). A remaining ``X.log.swap`` is complete: every segment whose base
        offset lies in [X, its next offset) is replaced by it (deleted, then the swap files
        renamed in). Index ``.swap`` files without their .log (the last rename was under way)
        go; the loader rebuilds a missing index."""
        removed = 0
        cleaned: list[tuple[int, Path]] = []
        swaps: list[tuple[int, Path]] = []
        for name in fs.listdir(directory):
            entry = directory / name
            stem = name.partition(".")[0]
            if not (stem.isdigit() and len(stem) == 20):
                continue
            if name.endswith(CLEANED_SUFFIX):
                cleaned.append((int(stem), entry))
            elif name.endswith(SWAP_SUFFIX):
                swaps.append((int(stem), entry))
        lowest_cleaned = min((base for base, _ in cleaned), default=None)
        for _, path in cleaned:
            fs.unlink(path)
            removed += 1
        complete: list[int] = []
        for base, path in swaps:
            if lowest_cleaned is not None and base >= lowest_cleaned:
                fs.unlink(path)
                removed += 1
            elif path.name.endswith(LOG_SUFFIX + SWAP_SUFFIX):
                complete.append(base)
        for base in sorted(complete):
            swap_log = segment_paths(directory, base, SWAP_SUFFIX)[0]
            end = _next_offset_of_file(fs, swap_log, base)
            for other in fs.names_ending(directory, LOG_SUFFIX):
                stem = other[: -len(LOG_SUFFIX)]
                if stem.isdigit() and len(stem) == 20 and base <= int(stem) < max(end, base + 1):
                    _unlink_segment_files(fs, directory, int(stem))
                    removed += 1
            for swap, final in zip(
                (
                    txn_index_path(directory, base, SWAP_SUFFIX),
                    *segment_paths(directory, base, SWAP_SUFFIX),
                ),
                (txn_index_path(directory, base), *segment_paths(directory, base)),
                strict=True,
            ):
                with contextlib.suppress(FileNotFoundError):
                    fs.rename(swap, final)
        for leftover in fs.names_ending(directory, SWAP_SUFFIX):  # index swaps without a .log
            fs.unlink(directory / leftover)
            removed += 1
        return removed

    @staticmethod
    def _open_segment(
        fs: FileSystem, directory: Path, base: int, config: LogConfig, now_ms: int
    ) -> LogSegment:
        return LogSegment(
            directory,
            base,
            index_interval_bytes=config.index_interval_bytes,
            max_index_size=config.segment_index_bytes,
            now_ms=now_ms,
            fs=fs,
        )

    def _rebuild_producer_state(self, txn_rebuild_from: int | None = None) -> int:
        """Load the newest usable snapshot and replay the batches after it; returns how many
        snapshot files were deleted on the way.

        With ``txn_rebuild_from`` (a segment's base offset), the transaction indexes of that
        segment and every later one are rebuilt too: the replay starts from a snapshot at or
        below it (or the log start) and indexes each abort marker it meets there, as Kafka's
        LogSegment.recover does with the producer state."""
        state = self.producer_state
        at_most = None
        if txn_rebuild_from is not None:
            at_most = max(txn_rebuild_from, self.log_start_offset)
            for segment in self._segments:
                if segment.base_offset >= txn_rebuild_from:
                    segment.txn_index.reset()
        removed = state.truncate_and_reload(
            self.log_start_offset, self.log_end_offset, at_most=at_most
        )
        for segment, pos, header in self._batches_from(state.map_end_offset):
            marker = None
            if header.is_control and header.producer_id >= 0:
                marker = self._read_marker(segment, pos, header)
            completed = state.replay(header, marker)
            if txn_rebuild_from is not None and segment.base_offset >= txn_rebuild_from:
                self._index_aborted(segment, completed)
        state.map_end_offset = self.log_end_offset
        if txn_rebuild_from is not None:
            for segment in self._segments:
                segment.txn_index.flush()
        return removed

    def _index_aborted(self, segment: LogSegment, completed: Sequence[CompletedTxn]) -> None:
        """Add the aborted transactions among ``completed`` (markers in ``segment``, producer
        state already applied) to the segment's transaction index."""
        for txn in completed:
            if txn.is_aborted:
                segment.txn_index.append(
                    AbortedTxn(
                        txn.producer_id,
                        txn.first_offset,
                        txn.last_offset,
                        self.producer_state.last_stable_offset_after(txn),
                    )
                )

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
        if markers is not None:
            try:
                self._index_aborted(segment, analysis.completed)
            except OSError as e:
                # The marker is in the log but its index entry is not: only the recovery at
                # the next start (which rebuilds the index) can make them agree again.
                self._offline = True
                raise LogOffline(f"{self.dir}: writing the transaction index failed ({e})") from e
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

    def append_marker(
        self,
        producer_id: int,
        producer_epoch: int,
        *,
        commit: bool,
        coordinator_epoch: int,
        now_ms: int,
        leader_epoch: int | None = None,
    ) -> int:
        """Write a transaction marker (a control batch, Kafka's EndTransactionMarker) for the
        producer's transaction here; its offset. The producer's epoch may not be older than
        the partition has seen (InvalidProducerEpoch), nor the coordinator epoch older than the
        producer's last marker's (TransactionCoordinatorFenced). A marker for a producer with
        no transaction open here is written all the same and completes nothing, as in Kafka.
        An abort that completes a transaction is indexed (.txnindex). Fails as ``append``."""
        batch = build_control_batch(
            producer_id,
            producer_epoch,
            commit=commit,
            coordinator_epoch=coordinator_epoch,
            timestamp=now_ms,
        )
        result = self.append(
            batch,
            [read_header(batch)],
            now_ms=now_ms,
            log_append_time=False,
            leader_epoch=leader_epoch,
            origin=AppendOrigin.COORDINATOR,
        )
        return result.base_offset

    @property
    def last_stable_offset(self) -> int:
        """The offset below which no transaction is open (Kafka's LSO; one replica, so the
        high watermark is the log end offset)."""
        first = self.producer_state.first_unstable_offset()
        return self.log_end_offset if first is None else min(first, self.log_end_offset)

    def aborted_transactions(self, start_offset: int, upper_offset: int) -> list[AbortedTxn]:
        """Every aborted transaction overlapping [start_offset, upper_offset), in marker order,
        from the transaction indexes of the segment holding ``start_offset`` and those after it
        (a marker comes after its transaction's records). Any thread."""
        segments, bases = self._view
        found: list[AbortedTxn] = []
        for segment in segments[max(bisect_right(bases, start_offset) - 1, 0) :]:
            found += segment.txn_index.collect(start_offset, upper_offset)
        return found

    def roll(self, now_ms: int) -> LogSegment:
        """Start a new active segment at the log end offset (snapshotting producer state).

        If that fails (OSError: a full disk), the old segment stays active as it was: its final
        time index entry, whole or torn, is cut away again (LogOffline if even that fails). A
        snapshot or an empty segment file left behind is harmless: the next roll reuses them.
        """
        old = self.active_segment
        if old.size == 0:
            return old
        # Not fsynced here, on the event loop: ``flush`` fsyncs it with the segment it follows,
        # as Kafka's roll leaves it to the asynchronous flush. A snapshot torn by a crash fails
        # its CRC at the next open and an older one (or the log itself) is replayed instead.
        self.producer_state.take_snapshot(sync=False)
        time_entries = old.time_index.entries
        try:
            old.on_become_inactive()
            new = self._open_segment(self.fs, self.dir, self.log_end_offset, self.config, now_ms)
            if new.size:  # a leftover file at that name (Kafka deletes it too)
                new.delete()
                new = self._open_segment(
                    self.fs, self.dir, self.log_end_offset, self.config, now_ms
                )
        except OSError:
            try:
                old.time_index.truncate_to_entries(time_entries)
            except OSError as undo_error:
                self._offline = True
                raise LogOffline(
                    f"{self.dir}: a failed roll could not be undone ({undo_error})"
                ) from undo_error
            raise
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

    @contextlib.contextmanager
    def reading(self) -> Iterator[None]:
        """Register the caller as a reader for the block (see the class docstring): the
        descriptors of the segments it took from ``segments`` stay open until it leaves. Raises
        LogClosed if the log is closed. For the log cleaner's worker thread."""
        generation = self._enter()
        try:
            yield
        finally:
            self._leave(generation)

    def _enter(self, *, closed_ok: bool = False) -> int:
        """Register a reader; returns the generation to pass to ``_leave``."""
        with self._reader_lock:
            if self._closed and not closed_ok:
                raise LogClosed(f"{self.dir}: the log is closed")
            generation = self._generation
            counts = self._reader_generations
            counts[generation] = counts.get(generation, 0) + 1
            self._readers += 1
            return generation

    def _leave(self, generation: int) -> None:
        with self._reader_lock:
            self._readers -= 1
            counts = self._reader_generations
            counts[generation] -= 1
            if not counts[generation]:
                del counts[generation]
            release = self._releasable()
            if self._release_pending and not self._readers:
                self._release_pending = False
                release += self._segments
        _abandon_all(release)

    def _releasable(self) -> list[LogSegment]:
        """Take the retired segments no registered reader can hold. Under ``_reader_lock``."""
        if not self._retired:
            return []
        oldest = min(self._reader_generations, default=self._generation)
        free = [segment for generation, segment in self._retired if generation < oldest]
        if free:
            self._retired = [(g, seg) for g, seg in self._retired if g >= oldest]
        return free

    @staticmethod
    def _live(
        view: tuple[tuple[LogSegment, ...], tuple[int, ...]], start: int
    ) -> Sequence[LogSegment]:
        """The segments of ``view`` from the one holding ``start`` on (skipping any left wholly
        below the log start)."""
        segments, bases = view
        return segments[max(bisect_right(bases, start) - 1, 0) :]

    def read(
        self, offset: int, max_bytes: int, *, min_one: bool = True, max_offset: int | None = None
    ) -> bytes:
        """Whole batches from the one containing ``offset``, up to ``max_bytes`` in total.

        Continues into later segments while space remains, stepping over segments (and gaps in
        the offsets) that hold nothing at or after ``offset``. With ``min_one`` the first batch is
        returned even if larger than ``max_bytes``. Raises OffsetOutOfRange outside
        [log_start_offset, log_end_offset] (also when the log start passed ``offset`` during the
        read) and LogClosed once the log is closed or deleted; at the log end offset returns b"".
        """
        return b"".join(
            self.read_buffers(offset, max_bytes, min_one=min_one, max_offset=max_offset)
        )

    def read_buffers(
        self,
        offset: int,
        max_bytes: int,
        *,
        min_one: bool = True,
        max_offset: int | None = None,
    ) -> list[bytes | memoryview]:
        """As ``read``, the bytes as read from each segment (views where a segment's read was cut
        short), not joined: a Fetch sends them on without copying them first. With
        ``max_offset`` (read_committed: the last stable offset, always a batch boundary) only
        batches below it."""
        generation = self._enter()
        try:
            self._check_offset(offset)
            wanted = offset
            segments, bases = self._view
            out: list[bytes | memoryview] = []
            remaining = max_bytes
            first = max(bisect_right(bases, offset) - 1, 0)
            for i, segment in enumerate(segments[first:], first):
                max_position = None
                last = False
                if max_offset is not None:
                    if offset >= max_offset or segment.base_offset >= max_offset:
                        break
                    if i + 1 == len(segments) or bases[i + 1] > max_offset:
                        last = True  # the segment holding max_offset: stop at its batch
                        found = segment.find_batch(max_offset)
                        max_position = found[0] if found is not None else None
                result = segment.read_to_end(
                    offset, remaining, min_one=min_one and not out, max_position=max_position
                )
                if result is None:
                    if last:
                        break
                    continue  # nothing at or after ``offset``: try the next segment
                data, offset, to_end = result
                if not data:
                    break  # the next batch does not fit
                out.append(data)
                remaining -= len(data)
                if remaining <= 0 or not to_end or last:
                    break  # full, or this segment still holds batches that did not fit
            # The log start moves before segments leave the view: if it is still at or below
            # the offset asked for, the view read had them all.
            self._check_offset(wanted)
            return out
        finally:
            self._leave(generation)

    def offset_for_timestamp(self, timestamp: int) -> tuple[int, int] | None:
        """(offset, timestamp) of the first record at or after the log start with timestamp >=
        ``timestamp``, or None.

        Also accepts ListOffsets' special values: -2 earliest, -1 latest (timestamp -1 in the
        answer), -3 the record with the largest timestamp. Kafka looks only in the first segment
        whose largest timestamp reaches ``timestamp``; when that segment's only such records lie
        below the log start, the search goes on into later segments instead of answering none.
        """
        if timestamp == EARLIEST_TIMESTAMP:
            return self.log_start_offset, -1
        if timestamp == LATEST_TIMESTAMP:
            return self.log_end_offset, -1
        if timestamp == MAX_TIMESTAMP:
            return self.max_timestamp()
        generation = self._enter()
        try:
            start = self.log_start_offset
            for segment in self._live(self._view, start):
                if segment.max_timestamp_so_far()[0] >= timestamp:
                    found = segment.find_offset_by_timestamp(timestamp, start)
                    if found is not None:
                        return found
            return None
        finally:
            self._leave(generation)

    def earliest_offset(self) -> int:
        return self.log_start_offset

    def latest_offset(self) -> int:
        return self.log_end_offset

    def max_timestamp(self) -> tuple[int, int] | None:
        """(offset, timestamp) of the first record at or after the log start carrying the
        largest timestamp among those records."""
        generation = self._enter()
        try:
            start = self.log_start_offset
            best: tuple[int, int] | None = None
            for segment in self._live(self._view, start):
                ts = segment.max_timestamp_so_far()[0]  # before the size: see segment.py
                if segment.size == 0 or (best is not None and ts <= best[1]):
                    continue
                found = segment.find_max_timestamp(start if segment.base_offset < start else None)
                if found is not None and (best is None or found[1] > best[1]):
                    best = found
            return best
        finally:
            self._leave(generation)

    # --- The log start offset and segment deletion (event loop thread) ---

    def advance_start(self, offset: int) -> bool:
        """Move the log start offset up to ``offset`` (Kafka's maybeIncrementLogStartOffset);
        False if it is there already or past it. Raises OffsetOutOfRange past the high
        watermark. Changes nothing on disk: the caller checkpoints the new start, then calls
        ``delete_segments_below_start``."""
        if offset > self.log_end_offset:
            raise OffsetOutOfRange(
                f"cannot move the log start offset to {offset}: the high watermark is "
                f"{self.log_end_offset}"
            )
        if offset <= self.log_start_offset:
            return False
        self.log_start_offset = offset
        # Nothing below the start needs recovering (Kafka's updateLogStartOffset).
        self.recovery_point = max(self.recovery_point, offset)
        return True

    def deletable_segments(self, predicate: SegmentPredicate) -> list[LogSegment]:
        """The oldest segments, in order, while ``predicate(segment, next segment or None)``
        holds (Kafka's deletableSegments). A segment reaching past the high watermark is never
        deletable, nor an empty last segment."""
        segments = self._segments
        deletable: list[LogSegment] = []
        for i, segment in enumerate(segments):
            following = segments[i + 1] if i + 1 < len(segments) else None
            upper = following.base_offset if following is not None else self.log_end_offset
            if upper > self.log_end_offset or not predicate(segment, following):
                break
            if following is None and segment.size == 0:
                break
            deletable.append(segment)
        return deletable

    def delete_segments(self, doomed: Sequence[LogSegment], now_ms: int) -> SegmentDeletion:
        """Take the oldest segments ``doomed`` (from ``deletable_segments``) out of the log
        (Kafka's deleteSegments): roll first if that is every segment, move the log start up to
        the first remaining segment, rename their files to ``*.deleted`` and those of the
        producer snapshots below it, and retire their descriptors (see the class docstring).

        If a rename fails, the segments before it are deleted and the rest stay (below the log
        start, unread; the next open deletes them); the error is raised. Call ``delete_files``
        on the result, on a worker thread.
        """
        doomed = list(doomed)
        if not doomed or self.cleaning:  # the next retention pass deletes them
            return SegmentDeletion(self.fs, self.dir)
        segments = self._segments
        if list(segments[: len(doomed)]) != doomed:
            raise ValueError("delete_segments takes the oldest segments, in order")
        if len(doomed) == len(segments):
            # A log keeps at least one segment: roll (Kafka does this too).
            new = self.roll(now_ms)
            if new is doomed[-1]:  # the active segment was empty: it stays
                doomed.pop()
            if not doomed:
                return SegmentDeletion(self.fs, self.dir)
        segments, bases = self._view
        first_kept = segments[len(doomed)].base_offset
        if first_kept > self.log_start_offset:
            self.advance_start(first_kept)
        gone: list[LogSegment] = []
        try:
            for segment in doomed:
                segment.mark_deleted()
                gone.append(segment)
        finally:
            if gone:
                kept = len(gone)
                self._view = (segments[kept:], bases[kept:])
                self._retire(gone)
        snapshots = self._mark_snapshots_deleted(self._segments[0].base_offset)
        return SegmentDeletion(self.fs, self.dir, tuple(gone), snapshots)

    def delete_segments_below_start(self, now_ms: int) -> SegmentDeletion:
        """Delete the segments wholly below the log start (Kafka's
        deleteLogStartOffsetBreachedSegments). Unlike Kafka, which keeps the active segment
        until it rolls on its own, an active segment holding nothing at or past the log start
        is rolled first, so its space comes back now."""
        start = self.log_start_offset
        if start >= self.log_end_offset and self.active_segment.size:
            self.roll(now_ms)
        return self.delete_segments(
            self.deletable_segments(
                lambda _, following: following is not None and following.base_offset <= start
            ),
            now_ms,
        )

    def delete_old_segments(self, now_ms: int) -> SegmentDeletion:
        """Kafka's UnifiedLog.deleteOldSegments (rules in retention.py): the segments below the
        log start, and for a cleanup.policy with delete those past retention.bytes and then
        those past retention.ms, each rule deleting with ``delete_segments``. The log start
        moves up to the first segment kept; the caller checkpoints it and runs
        ``delete_files`` of the result (after file.delete.delay.ms) on a worker thread.

        If a rename fails (OSError), the deletions of the rules before are returned, so that
        their files still go, and the rest waits for the next check; with nothing to return,
        the error is raised. Files the failed rule had renamed already stay as ``*.deleted``
        until the next open removes them."""
        deletion = SegmentDeletion(self.fs, self.dir)
        rules: list[Callable[[], SegmentPredicate | None]] = [
            lambda: start_offset_breached(self.log_start_offset)
        ]
        if self.config.delete:
            rules.append(lambda: size_breached(self.size, self.config.retention_bytes))
            rules.append(lambda: time_breached(now_ms, self.config.retention_ms))
        for rule in rules:
            predicate = rule()  # built now: the previous rule changed the log
            if predicate is None:
                continue
            try:
                deletion += self.delete_segments(self.deletable_segments(predicate), now_ms)
            except OSError:
                if not deletion:
                    raise
                break
        return deletion

    def replace_segments(self, old: Sequence[LogSegment], new: LogSegment) -> None:
        """Put ``new`` (the cleaner's rewrite, its files already renamed in) where the
        consecutive inactive segments ``old`` are (Kafka's replaceSegments), and retire
        ``old`` (already renamed to ``*.deleted``) once no reader holds them. Event loop."""
        segments, _ = self._view
        first = segments.index(old[0])
        if list(segments[first : first + len(old)]) != list(old) or first + len(old) >= len(
            segments
        ):
            raise ValueError("replace_segments takes consecutive inactive segments")
        kept = (*segments[:first], new, *segments[first + len(old) :])
        self._view = (kept, tuple(s.base_offset for s in kept))
        self._retire(old)

    def _mark_snapshots_deleted(self, below: int) -> tuple[Path, ...]:
        """Rename the producer snapshots below offset ``below`` to ``*.deleted``."""
        renamed: list[Path] = []
        for offset in list_snapshot_offsets(self.dir, self.fs):
            if offset >= below:
                break
            path = snapshot_path(self.dir, offset)
            target = path.with_name(path.name + DELETED_SUFFIX)
            try:
                self.fs.rename(path, target)
            except FileNotFoundError:
                continue
            renamed.append(target)
        return tuple(renamed)

    def _retire(self, segments: Sequence[LogSegment]) -> None:
        """Close the descriptors of segments no longer in the view once no reader that may
        still hold them is left (now, if none is inside)."""
        with self._reader_lock:
            generation = self._generation
            self._generation += 1
            self._retired.extend((generation, segment) for segment in segments)
            release = self._releasable()
        _abandon_all(release)

    # --- Durability and lifecycle (event loop thread) ---

    def flush(self, up_to: int | None = None) -> None:
        """fsync segments holding offsets below ``up_to`` (default: all), and the directory if
        segments were created since it was last fsynced; advance ``recovery_point`` to it and
        set ``last_flush_ms``. Any thread; one flush at a time.

        A failed fsync takes the log offline (see the class docstring) and raises the OSError;
        an offline log raises LogOffline. A closed log is not flushed (its files may be gone).
        """
        with self._flush_lock:
            if self._offline:
                raise LogOffline(f"{self.dir}: the log is offline after a failed write")
            end = self.log_end_offset
            target = end if up_to is None else min(up_to, end)
            if target <= self.recovery_point or self._closed:
                return
            generation = self._enter(closed_ok=True)  # segments deleted meanwhile stay open
            try:
                segments, bases = self._view
                first = max(bisect_right(bases, self.recovery_point) - 1, 0)
                for segment in segments[first:]:
                    if segment.base_offset >= target:
                        break
                    segment.flush()  # a no-op for a segment deleted meanwhile
                if any(self.recovery_point < b <= target for b in bases[first:]):
                    self._flush_snapshots(self.recovery_point, target)  # rolled: see ``roll``
                self._flush_dir()
            except OSError:
                if not self._closed:  # else deleted under the flush: nothing to make durable
                    self._offline = True
                raise
            finally:
                self._leave(generation)
            # ``advance_start`` may have raised it meanwhile.
            self.recovery_point = max(self.recovery_point, target)
            self.last_flush_ms = int(time.time() * 1000)

    @property
    def unflushed_messages(self) -> int:
        """Offsets appended since the last flush (Kafka's unflushedMessages)."""
        return self.log_end_offset - self.recovery_point

    def flush_due_by_messages(self) -> bool:
        """flush.messages: checked after each append; Kafka then flushes before answering."""
        return self.unflushed_messages >= self.config.flush_messages

    def flush_due_by_time(self, now_ms: int) -> bool:
        """flush.ms: checked every log.flush.scheduler.interval.ms (Kafka's flushDirtyLogs)."""
        return now_ms - self.last_flush_ms >= self.config.flush_ms

    def _flush_snapshots(self, above: int, up_to: int) -> None:
        """fsync the producer snapshots taken at rolls to offsets in (``above``, ``up_to``]."""
        for offset in list_snapshot_offsets(self.dir, self.fs):
            if above < offset <= up_to:
                # Pruned or deleted with its segment meanwhile: nothing to make durable.
                with contextlib.suppress(FileNotFoundError):
                    self.fs.fsync_path(snapshot_path(self.dir, offset))

    def _flush_dir(self) -> None:
        """fsync the directory if a segment file was created since it was last fsynced."""
        if self._dir_dirty:
            self.fs.fsync_dir(self.dir)
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
            retired = [segment for _, segment in self._retired]
            self._retired = []
        _abandon_all([*retired, *self._segments])

    def delete(self) -> None:
        """Close without snapshots and remove the directory (renamed to ``*-delete`` first).

        A reader still inside keeps the (now unlinked) files open until it leaves."""
        self.abandon()
        doomed = self.dir.with_name(f"{self.dir.name}.{uuid.uuid4().hex}-delete")
        self.fs.rename(self.dir, doomed)
        self.fs.rmtree(doomed)

    @property
    def offline(self) -> bool:
        """A failed write could not be undone; see the class docstring."""
        return self._offline

    @property
    def closed(self) -> bool:
        return self._closed

    def snapshot_offsets(self) -> list[int]:
        return sorted(
            int(name[: -len(SNAPSHOT_SUFFIX)])
            for name in self.fs.names_ending(self.dir, SNAPSHOT_SUFFIX)
        )
