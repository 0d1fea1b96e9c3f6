"""LogSegment: one ``.log`` file of record batches and its two indexes."""

from __future__ import annotations

import struct
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import TypeVar

from kpy.protocol.records import (
    HEADER_SIZE,
    LOG_OVERHEAD,
    BatchHeader,
    CorruptRecordBatch,
    InvalidRecordBatch,
    batch_size_at,
    decode_records,
    iter_headers,
    read_header,
    validate_batches,
)
from kpy.storage.config import LogConfig
from kpy.storage.errors import CorruptIndex, IndexOffsetOverflow, LogOffline
from kpy.storage.fs import OS_FS, FileSystem
from kpy.storage.offset_index import DEFAULT_MAX_INDEX_SIZE, OffsetIndex
from kpy.storage.time_index import NO_TIMESTAMP, TimeIndex
from kpy.storage.txn_index import TXN_INDEX_SUFFIX, TransactionIndex

LOG_SUFFIX = ".log"
INDEX_SUFFIX = ".index"
TIME_INDEX_SUFFIX = ".timeindex"
# Kafka's LogFileUtils.DELETED_FILE_SUFFIX: a segment being deleted has its files renamed with
# it first, so a crash before the unlink leaves files the loader removes, never a segment.
DELETED_SUFFIX = ".deleted"
# Kafka's CLEANED_FILE_SUFFIX and SWAP_FILE_SUFFIX: the log cleaner writes a segment's
# replacement as ``*.cleaned``, renames it to ``*.swap`` once complete, and to the plain names
# once the segments it replaces are renamed to ``*.deleted`` (see cleaner.py and Log.open).
CLEANED_SUFFIX = ".cleaned"
SWAP_SUFFIX = ".swap"

_I = TypeVar("_I", OffsetIndex, TimeIndex)

_SCAN_CHUNK = 64 * 1024
# The fields find_batch reads of each batch it passes: baseOffset, batchLength (at 0) and
# lastOffsetDelta (at 23: after partitionLeaderEpoch, magic, crc and attributes).
_OFFSET_AND_LENGTH = struct.Struct(">qi")
_LAST_OFFSET_DELTA = struct.Struct(">i")
_RECOVER_CHUNK = 1024 * 1024


def _whole_batches(data: bytes) -> tuple[int, int]:
    """(end of the last whole batch, its position or -1) in ``data``, which starts at a batch:
    the batches are stepped over by their length fields alone (a fetch reads dozens)."""
    pos = 0
    last = -1
    end = len(data)
    while end - pos >= HEADER_SIZE:
        length = batch_size_at(data, pos)
        if length < HEADER_SIZE or pos + length > end:
            break
        last = pos
        pos += length
    return (pos if last >= 0 else 0), last


def offset_file_name(offset: int) -> str:
    """Kafka's file name stem: the offset zero-padded to 20 digits."""
    return f"{offset:020d}"


def segment_paths(directory: Path, base_offset: int, suffix: str = "") -> tuple[Path, Path, Path]:
    stem = offset_file_name(base_offset)
    return (
        directory / (stem + LOG_SUFFIX + suffix),
        directory / (stem + INDEX_SUFFIX + suffix),
        directory / (stem + TIME_INDEX_SUFFIX + suffix),
    )


def txn_index_path(directory: Path, base_offset: int, suffix: str = "") -> Path:
    return directory / (offset_file_name(base_offset) + TXN_INDEX_SUFFIX + suffix)


class LogSegment:
    """A slice of a partition's log starting at ``base_offset``.

    Files, in the partition directory (Kafka's names and formats):

        <20-digit base offset>.log        record batches (message format v2), back to back, each
                                          exactly as Kafka stores it: 61-byte header (see
                                          kpy.protocol.records), then the records. No file header.
        <20-digit base offset>.index      OffsetIndex, see offset_index.py
        <20-digit base offset>.timeindex  TimeIndex, see time_index.py
        <20-digit base offset>.txnindex   TransactionIndex (aborted transactions whose abort
                                          marker is here), see txn_index.py; only when any

    Invariants: batches sit back to back from position 0 with increasing offsets, all in
    [base_offset, base_offset + 2**31 - 1]; an offset index entry is added for a batch once more
    than ``index_interval_bytes`` have been appended since the last entry (so after a rebuild the
    indexes come out identical); the time index tracks the running maximum timestamp. No
    preallocation: the .log size is the data size.

    Descriptors: the .log stays open for the segment's life (reads need it); the two indexes are
    parked (descriptor closed, see index_file.py) once the segment becomes inactive, and
    reopened only if a recovery, truncation or fsync needs them. Files and descriptors are the
    segment's FileSystem's (``fs``: the disk, or memory; see fs.py), its descriptor calls
    ``fs.io`` (on disk, the os module itself).

    Threads: one writer, the event loop thread (``append``, ``recover``, ``flush``, ``close``).
    ``read``, ``find_offset_by_timestamp`` and ``find_max_timestamp`` may run on a worker thread
    concurrently with an append: they use ``pread`` (no shared file position) and never look
    past the ``size`` they read when they start; ``append`` publishes the new size only after
    the bytes are written, and the new max timestamp only after the size (readers take the max
    timestamp before the size, so the batch holding it is always within the size they see).
    Closing or deleting a segment while a reader is inside it is the caller's problem: Log
    counts its readers and defers closing the descriptors until the last one leaves.

    A failed append (ENOSPC, EIO, part of a batch written) is undone: the .log and both indexes
    are truncated back to where the append started, so the file never holds bytes the size does
    not cover. If that truncation fails too, ``append`` raises LogOffline and the caller must
    stop writing (Log marks itself offline; a restart recovers the segment).

    After a crash: the .log may end in a torn batch, and anything after the last fsync may be
    garbage; the indexes may be short, torn or stale. ``recover`` validates every batch (CRC and
    structure), truncates the .log at the first bad one and rebuilds both indexes. The log runs
    it on the segments past the recovery point after an unclean shutdown, and on any segment
    whose index is missing or fails its sanity check.

    Deletion in steps, as Kafka's LocalLog.deleteSegmentFiles: ``mark_deleted`` renames the
    three files to ``*.deleted`` (the segment is then retired: ``flush`` does nothing, reads
    still work through the open descriptor), ``unlink_files`` removes them (any thread), and the
    owner closes the descriptors (``abandon``) once no reader can be inside.
    """

    def __init__(
        self,
        directory: Path,
        base_offset: int,
        *,
        index_interval_bytes: int = 4096,
        max_index_size: int = DEFAULT_MAX_INDEX_SIZE,
        now_ms: int = 0,
        suffix: str = "",
        fs: FileSystem = OS_FS,
    ) -> None:
        """Open the segment's files (on ``fs``), creating any that are missing. ``suffix`` (the
        cleaner's ``.cleaned``) is appended to the three file names; ``rename_suffix`` changes it.

        Never raises CorruptIndex: an index that is missing (for a non-empty .log) or fails its
        sanity check is replaced with an empty one and ``needs_recovery`` is set.
        """
        self.directory = directory
        self.base_offset = base_offset
        self.fs = fs
        # The descriptor calls (the os module on disk), looked up once: see fs.py.
        self._io = fs.io
        self.index_interval_bytes = index_interval_bytes
        self.log_path, self.index_path, self.time_index_path = segment_paths(
            directory, base_offset, suffix
        )
        self.needs_recovery = False
        self.retired = False  # renamed to *.deleted: see ``mark_deleted``
        # (position, header) of the batch appended last, for find_batch; None until an append.
        self._tail: tuple[int, BatchHeader] | None = None
        # If opening fails half way, nothing else would ever close what was opened so far.
        with ExitStack() as opened:
            self._fd = fs.open(self.log_path)
            opened.callback(self._io.close, self._fd)
            self._size = fs.file_size(self._fd)
            self.offset_index = self._open_index(OffsetIndex, self.index_path, max_index_size)
            opened.callback(self.offset_index.abandon)
            self.time_index = self._open_index(TimeIndex, self.time_index_path, max_index_size)
            opened.callback(self.time_index.abandon)
            try:
                self.offset_index.sanity_check(self._size)
            except CorruptIndex:
                self._reset_indexes()
            opened.pop_all()  # opened: the segment owns the descriptors now
        txn_path = txn_index_path(directory, base_offset, suffix)
        # An index that does not decode is dropped: Log rebuilds it (``txn_index_lost``), and
        # so it does when ``recover`` met a transaction marker (``recovered_control``).
        self.txn_index_lost = False
        self.recovered_control = False
        try:
            self.txn_index = TransactionIndex(txn_path, fs)
        except CorruptIndex:
            fs.unlink(txn_path, missing_ok=True)
            self.txn_index = TransactionIndex(txn_path, fs)
            self.txn_index_lost = True
        self._bytes_since_last_index_entry = 0
        self._created_ms = now_ms
        # First batch's max timestamp (Kafka's rollingBasedTimestamp); None until loaded.
        self._rolling_timestamp: int | None = None
        # (max timestamp, last offset of the first batch reaching it); None until loaded.
        self._max_timestamp: tuple[int, int] | None = None
        self._next_offset: int | None = None
        if self._size == 0:
            self._max_timestamp = (NO_TIMESTAMP, base_offset)
            self._next_offset = base_offset

    def _open_index(self, cls: type[_I], path: Path, max_index_size: int) -> _I:
        fs = self.fs
        existed = fs.exists(path)
        try:
            index = cls(path, self.base_offset, max_index_size, fs=fs)
        except CorruptIndex:
            fs.unlink(path)
            index = cls(path, self.base_offset, max_index_size, fs=fs)
            self.needs_recovery = True
        if not existed and self._size > 0:
            self.needs_recovery = True
        return index

    def _reset_indexes(self) -> None:
        self.offset_index.reset()
        self.time_index.reset()
        self.needs_recovery = True

    # --- Sizes and offsets ---

    @property
    def size(self) -> int:
        """Bytes of batches in the .log (what a reader may read)."""
        return self._size

    def read_next_offset(self) -> int:
        """The offset after the last batch (base offset when empty).

        The first call scans batch headers from the last offset index entry (at most about
        index.interval.bytes plus one batch); later calls are free.
        """
        if self._next_offset is None:
            self.load_tail()
        assert self._next_offset is not None
        return self._next_offset

    def load_tail(self) -> None:
        """Find the next offset and the max timestamp by scanning past the last index entries.

        Sets ``needs_recovery`` when the scan does not end exactly at the end of the .log (a torn
        tail), or when the time index names an offset past the last batch.
        """
        size = self._size
        next_offset, end, tail_max = self._scan_tail(size)
        if end != size:
            self.needs_recovery = True
        self._next_offset = next_offset
        try:
            self.time_index.sanity_check(next_offset)
        except CorruptIndex:
            self._reset_indexes()
        self._max_timestamp = self._merge_time_index(tail_max)

    def _scan_tail(self, size: int) -> tuple[int, int, tuple[int, int]]:
        """Scan the batches from the last offset index entry to ``size``: (next offset, position
        where the scan stopped, (max timestamp, its first batch's last offset) among them).

        Every batch before that entry is reflected in the time index (an offset index entry is
        always added together with a time index entry for the max timestamp so far)."""
        _, position = self.offset_index.lookup(self.offset_index.last_offset)
        next_offset = self.base_offset
        end = position
        best = (NO_TIMESTAMP, self.base_offset)
        for pos, header in self._iter_batches(position, size):
            next_offset = header.next_offset
            end = pos + header.size
            if header.max_timestamp > best[0]:
                best = (header.max_timestamp, header.last_offset)
        return next_offset, end, best

    def _merge_time_index(self, tail_max: tuple[int, int]) -> tuple[int, int]:
        timestamp, offset = self.time_index.last_entry()
        if tail_max[0] > timestamp:
            return tail_max
        return timestamp, offset

    def max_timestamp_so_far(self) -> tuple[int, int]:
        """(largest max timestamp, last offset of the first batch with it); (-1, base) if none.

        Known after ``load_tail``, ``recover`` or an append; otherwise (an inactive segment of a
        clean open) the first call combines the last time index entry with a scan of the
        batches after the last offset index entry, as ``load_tail`` does.
        """
        cached = self._max_timestamp
        if cached is not None:
            return cached
        _, _, tail_max = self._scan_tail(self._size)
        result = self._merge_time_index(tail_max)
        self._max_timestamp = result
        return result

    def largest_timestamp(self) -> int:
        """What time retention compares (Kafka's LogSegment.largestTimestamp): the largest
        record timestamp, or the .log file's last modification time (ms) when no record has
        one."""
        timestamp = self.max_timestamp_so_far()[0]
        if timestamp >= 0:
            return timestamp
        return self.modified_ms()

    def modified_ms(self) -> int:
        """The .log file's last modification time, in ms (Java's File.lastModified)."""
        return self.fs.file_mtime_ns(self._fd) // 1_000_000

    # --- Writing ---

    def append(self, batches: bytes | bytearray | memoryview) -> None:
        """Append whole, offset-assigned batches (offsets above everything already here).

        Adds index entries per batch as Kafka does, then publishes the new size.
        Raises IndexOffsetOverflow (nothing written) if an offset does not fit this segment.
        If writing fails, the .log and the indexes are truncated back before the error
        propagates; LogOffline (from the truncation's error) if that fails too.
        """
        if not batches:
            return
        headers = list(iter_headers(batches))
        if not headers or headers[-1][0] + headers[-1][1].size != len(batches):
            raise ValueError("append expects whole record batches")
        last = headers[-1][1]
        if not self.offset_index.can_append_offset(last.last_offset):
            raise IndexOffsetOverflow(
                f"offset {last.last_offset} does not fit segment {self.base_offset}"
            )
        start = self._size
        max_timestamp = self.max_timestamp_so_far()
        offset_entries = self.offset_index.entries
        time_entries = self.time_index.entries
        since_entry = self._bytes_since_last_index_entry
        touched = False  # whether anything may have reached a file (else nothing to undo)
        try:
            view = memoryview(batches)
            while view:
                written = self._io.write(self._fd, view)
                touched = True
                view = view[written:]
            for rel, header in headers:
                if header.max_timestamp > max_timestamp[0]:
                    max_timestamp = (header.max_timestamp, header.last_offset)
                if since_entry > self.index_interval_bytes:
                    self.offset_index.append(header.last_offset, start + rel)
                    self.time_index.maybe_append(*max_timestamp)
                    since_entry = 0
                since_entry += header.size
        except BaseException:
            try:
                if touched:
                    self._undo_append(start, offset_entries, time_entries)
            except BaseException as undo_error:
                raise LogOffline(
                    f"{self.log_path}: a failed append could not be undone ({undo_error}); "
                    "the segment holds bytes past its size"
                ) from undo_error
            raise
        if start == 0:
            self._rolling_timestamp = max(h.max_timestamp for _, h in headers)
        self._bytes_since_last_index_entry = since_entry
        self._next_offset = last.next_offset
        self._tail = (start + headers[-1][0], last)
        self._size = start + len(batches)
        self._max_timestamp = max_timestamp  # after the size: see the class docstring

    def _undo_append(self, size: int, offset_entries: int, time_entries: int) -> None:
        """Cut the .log and both indexes back to what they held before a failed append."""
        self._io.ftruncate(self._fd, size)
        self.offset_index.truncate_to_entries(offset_entries)
        self.time_index.truncate_to_entries(time_entries)

    def recover(self) -> int:
        """Validate every batch, truncate at the first bad one, rebuild the indexes.

        Returns the number of bytes truncated from the .log.
        """
        self.offset_index.reset()
        self.time_index.reset()
        file_size = self.fs.file_size(self._fd)
        max_timestamp = (NO_TIMESTAMP, self.base_offset)
        next_offset = self.base_offset
        valid = 0
        last_index_entry = 0
        rolling: int | None = None
        self.recovered_control = False
        for pos, batch in self._iter_raw_batches(file_size):
            try:
                (header,) = validate_batches(batch, dense=False)  # compaction thins batches
            except (InvalidRecordBatch, CorruptRecordBatch):
                break
            if header.base_offset < next_offset or not self.offset_index.can_append_offset(
                header.last_offset
            ):
                break
            if rolling is None:
                rolling = header.max_timestamp
            if header.is_control:
                self.recovered_control = True
            if header.max_timestamp > max_timestamp[0]:
                max_timestamp = (header.max_timestamp, header.last_offset)
            if pos - last_index_entry > self.index_interval_bytes:
                self.offset_index.append(header.last_offset, pos)
                self.time_index.maybe_append(*max_timestamp)
                last_index_entry = pos
            valid = pos + header.size
            next_offset = header.next_offset
        truncated = file_size - valid
        if truncated:
            self._io.ftruncate(self._fd, valid)
            self.txn_index.truncate_to(next_offset)
        self._tail = None
        self._size = valid
        self._next_offset = next_offset
        self._max_timestamp = max_timestamp  # after the size: see the class docstring
        self._rolling_timestamp = rolling
        self._bytes_since_last_index_entry = valid - last_index_entry
        self.time_index.maybe_append(*max_timestamp, skip_full_check=True)
        self.needs_recovery = False
        return truncated

    def _iter_raw_batches(self, file_size: int) -> Iterator[tuple[int, memoryview]]:
        """(position, bytes) of each batch whose length field fits the file; stops otherwise."""
        pos = 0
        buf = b""
        buf_start = 0
        while file_size - pos >= HEADER_SIZE:
            rel = pos - buf_start
            if rel + LOG_OVERHEAD > len(buf):
                buf = self._io.pread(self._fd, min(_RECOVER_CHUNK, file_size - pos), pos)
                buf_start, rel = pos, 0
            size = batch_size_at(buf, rel)
            if size < HEADER_SIZE or pos + size > file_size:
                return
            if rel + size > len(buf):
                buf = self._io.pread(self._fd, max(size, min(_RECOVER_CHUNK, file_size - pos)), pos)
                buf_start, rel = pos, 0
                if len(buf) < size:
                    return
            yield pos, memoryview(buf)[rel : rel + size]
            pos += size

    def should_roll(
        self,
        messages_size: int,
        now_ms: int,
        config: LogConfig,
        *,
        max_timestamp: int,
        max_offset: int,
    ) -> bool:
        """Kafka's LogSegment.shouldRoll (without segment.jitter.ms)."""
        size = self._size
        return (
            size > config.segment_bytes - messages_size
            or (size > 0 and self.time_waited_for_roll(now_ms, max_timestamp) > config.segment_ms)
            or self.offset_index.is_full
            or self.time_index.is_full
            or not self.offset_index.can_append_offset(max_offset)
        )

    def time_waited_for_roll(self, now_ms: int, message_timestamp: int) -> int:
        """Time since the first batch's timestamp, or since creation when it has none."""
        if self._rolling_timestamp is None and self._size >= HEADER_SIZE:
            header = read_header(self._io.pread(self._fd, HEADER_SIZE, 0))
            self._rolling_timestamp = header.max_timestamp
        rolling = self._rolling_timestamp
        if rolling is not None and rolling >= 0:
            return message_timestamp - rolling
        return now_ms - self._created_ms

    def on_become_inactive(self) -> None:
        """Record the final max timestamp in the time index (Kafka does this at roll), then park
        the index descriptors: from now on lookups use only the in-memory entries."""
        self.time_index.maybe_append(*self.max_timestamp_so_far(), skip_full_check=True)
        self.park_indexes()

    def park_indexes(self) -> None:
        """Close the index descriptors; a later write, truncation or fsync reopens them."""
        self.offset_index.park()
        self.time_index.park()

    def flush(self) -> None:
        if self.retired:  # its records are gone from the log: nothing to make durable
            return
        self.fs.fsync_file(self._fd, self.log_path)
        self.offset_index.flush()
        self.time_index.flush()
        self.txn_index.flush()

    def finish(self) -> None:
        """Record the final time index entry and fsync; the files stay open (``close`` is this
        plus ``abandon``)."""
        if self._fd < 0:
            return
        if self._max_timestamp is not None:
            self.time_index.maybe_append(*self._max_timestamp, skip_full_check=True)
        self.flush()

    def close(self) -> None:
        """Record the final time index entry, fsync, close. Nothing to trim: no preallocation.

        The descriptors are released even when the final entry or the fsync fails.
        """
        if self._fd < 0:
            return
        try:
            self.finish()
        finally:
            self.abandon()

    def abandon(self) -> None:
        """Close the three files as a crash would: no final time index entry, no fsync.

        For crash simulation (tests drop a segment and reopen its directory) and for releasing
        the descriptors after a failure. What was written but not flushed stays in the page
        cache, exactly as after a process crash. Idempotent; a no-op after ``close``.
        """
        fd, self._fd = self._fd, -1
        with ExitStack() as stack:  # all three, even if one fails
            if fd >= 0:
                stack.callback(self._io.close, fd)
            stack.callback(self.time_index.abandon)
            stack.callback(self.offset_index.abandon)

    @property
    def closed(self) -> bool:
        return self._fd < 0

    def delete(self) -> None:
        self.abandon()
        self.offset_index.delete()
        self.time_index.delete()
        self.txn_index.unlink()
        self.fs.unlink(self.log_path, missing_ok=True)

    def mark_deleted(self) -> None:
        """Rename the files to ``*.deleted`` (the .log first, so a crash half way leaves only
        index files without a log, which the loader removes) and retire the segment. The
        descriptors stay open: readers that already hold the segment keep reading it."""
        if self.retired:
            return
        self.retired = True
        deleted = DELETED_SUFFIX
        log_path = self.log_path.with_name(self.log_path.name + deleted)
        self.fs.rename(self.log_path, log_path)
        self.log_path = log_path
        self.index_path = self.index_path.with_name(self.index_path.name + deleted)
        self.offset_index.rename(self.index_path)
        self.time_index_path = self.time_index_path.with_name(self.time_index_path.name + deleted)
        self.time_index.rename(self.time_index_path)
        txn = self.txn_index.path
        self.txn_index.rename(txn.with_name(txn.name + deleted))

    def rename_suffix(self, suffix: str) -> None:
        """Rename the three files to the plain names plus ``suffix`` (the cleaner's
        ``.cleaned`` to ``.swap`` to nothing), the indexes first and the .log last: a .log with
        a suffix then means its indexes may carry either suffix, which Log.open copes with.
        The descriptors stay open."""
        log_path, index_path, time_index_path = segment_paths(
            self.directory, self.base_offset, suffix
        )
        self.offset_index.rename(index_path)
        self.index_path = index_path
        self.time_index.rename(time_index_path)
        self.time_index_path = time_index_path
        self.txn_index.rename(txn_index_path(self.directory, self.base_offset, suffix))
        self.fs.rename(self.log_path, log_path)
        self.log_path = log_path

    def unlink_files(self) -> None:
        """Remove the segment's files (after ``mark_deleted``), leaving the descriptors open:
        the space is freed once the owner closes them. Safe on any thread."""
        for path in (self.log_path, self.index_path, self.time_index_path, self.txn_index.path):
            self.fs.unlink(path, missing_ok=True)

    # --- Reading (safe from a worker thread) ---

    def _iter_batches(self, pos: int, end: int) -> Iterator[tuple[int, BatchHeader]]:
        """(position, header) of each whole batch in [pos, end), reading headers in chunks."""
        buf = b""
        buf_start = pos
        while end - pos >= HEADER_SIZE:
            rel = pos - buf_start
            if rel + HEADER_SIZE > len(buf):
                buf = self._io.pread(self._fd, min(_SCAN_CHUNK, end - pos), pos)
                buf_start, rel = pos, 0
                if len(buf) < HEADER_SIZE:
                    return
            header = read_header(buf, rel)
            if header.batch_length < HEADER_SIZE - LOG_OVERHEAD or pos + header.size > end:
                return
            yield pos, header
            pos += header.size

    def find_batch(self, offset: int, size: int | None = None) -> tuple[int, BatchHeader] | None:
        """Position and header of the first batch (below ``size``) with last offset >= offset.

        A consumer at the end of the log asks for the batch appended last: that one is kept
        (``_tail``). Otherwise the scan starts at the index entry and reads only the base
        offset, length and last offset delta of the batches it passes."""
        end = self._size if size is None else size
        tail = self._tail
        if tail is not None:
            pos, header = tail
            if header.base_offset <= offset <= header.last_offset and pos + header.size <= end:
                return tail
        _, pos = self.offset_index.lookup(offset)
        buf = b""
        buf_start = pos
        while end - pos >= HEADER_SIZE:
            rel = pos - buf_start
            if rel + HEADER_SIZE > len(buf):
                buf = self._io.pread(self._fd, min(_SCAN_CHUNK, end - pos), pos)
                buf_start, rel = pos, 0
                if len(buf) < HEADER_SIZE:
                    return None
            base_offset, batch_length = _OFFSET_AND_LENGTH.unpack_from(buf, rel)
            batch_size = batch_length + LOG_OVERHEAD
            if batch_length < HEADER_SIZE - LOG_OVERHEAD or pos + batch_size > end:
                return None
            if base_offset + _LAST_OFFSET_DELTA.unpack_from(buf, rel + 23)[0] >= offset:
                return pos, read_header(buf, rel)
            pos += batch_size
        return None

    def read(
        self,
        start_offset: int,
        max_bytes: int,
        *,
        max_position: int | None = None,
        min_one: bool = False,
    ) -> bytes | None:
        """Whole batches from the one containing ``start_offset``, at most ``max_bytes``.

        With ``min_one`` the first batch is returned even if it alone exceeds ``max_bytes``
        (KIP-74). Returns b"" when the first batch does not fit, and None when no batch below
        ``max_position`` (default: the current size) holds ``start_offset`` or a later offset.
        """
        result = self.read_with_next_offset(
            start_offset, max_bytes, max_position=max_position, min_one=min_one
        )
        return None if result is None else result[0]

    def read_with_next_offset(
        self,
        start_offset: int,
        max_bytes: int,
        *,
        max_position: int | None = None,
        min_one: bool = False,
    ) -> tuple[bytes, int] | None:
        """As ``read``, also returning the offset after the last batch returned."""
        result = self._read_span(start_offset, max_bytes, max_position, min_one)
        return None if result is None else (bytes(result[0]), result[1])

    def _read_span(
        self, start_offset: int, max_bytes: int, max_position: int | None, min_one: bool
    ) -> tuple[bytes | memoryview, int, bool] | None:
        """As ``read_with_next_offset``, also saying whether the bytes returned reach the end of
        the segment (the size read at the start), i.e. no later batch of it was left out. The
        bytes are a view of what was read when a batch at its end did not fit (no copy)."""
        if max_bytes < 0:
            raise ValueError(f"invalid max_bytes {max_bytes}")
        size = self._size if max_position is None else min(max_position, self._size)
        found = self.find_batch(start_offset, size)
        if found is None:
            return None
        position, first = found
        limit = max(max_bytes, first.size) if min_one else max_bytes
        limit = min(limit, size - position)
        if limit < first.size:
            return b"", start_offset, False
        data = self._io.pread(self._fd, limit, position)
        end, last = _whole_batches(data)
        next_offset = start_offset if last < 0 else read_header(data, last).next_offset
        whole = data if end == len(data) else memoryview(data)[:end]
        return whole, next_offset, position + end >= size

    def read_to_end(
        self,
        start_offset: int,
        max_bytes: int,
        *,
        min_one: bool = False,
        max_position: int | None = None,
    ) -> tuple[bytes | memoryview, int, bool] | None:
        """As ``read_with_next_offset``, plus whether the bytes returned end at the segment's
        end (or ``max_position``), so a reader may go on into the next segment."""
        return self._read_span(start_offset, max_bytes, max_position, min_one)

    def read_at(self, position: int, size: int) -> bytes:
        """Raw bytes of the .log (for one batch whose position and size are known)."""
        return self._io.pread(self._fd, size, position)

    def iter_batches(self, position: int = 0) -> Iterator[tuple[int, BatchHeader]]:
        """(position, header) of each whole batch from ``position`` to the current size."""
        return self._iter_batches(position, self._size)

    def find_offset_by_timestamp(
        self, timestamp: int, starting_offset: int | None = None
    ) -> tuple[int, int] | None:
        """(offset, timestamp) of the first record with timestamp >= ``timestamp`` and offset >=
        ``starting_offset``, or None if this segment has none (Kafka's findOffsetByTimestamp)."""
        start = self.base_offset if starting_offset is None else starting_offset
        size = self._size
        _, indexed_offset = self.time_index.lookup(timestamp)
        _, position = self.offset_index.lookup(max(indexed_offset, start))
        for pos, header in self._iter_batches(position, size):
            if header.max_timestamp >= timestamp and header.last_offset >= start:
                for record in decode_records(self._io.pread(self._fd, header.size, pos)):
                    if record.timestamp >= timestamp and record.offset >= start:
                        return record.offset, record.timestamp
        return None

    def find_max_timestamp(self, starting_offset: int | None = None) -> tuple[int, int] | None:
        """(offset, timestamp) of the first record carrying the largest timestamp among this
        segment's records at or after ``starting_offset`` (default: all), or None if none.

        The segment's cached maximum answers unless its record lies below ``starting_offset``
        (the log start moved into this segment); then the batches from there are scanned."""
        timestamp, offset = self.max_timestamp_so_far()  # before the size: see the class docstring
        size = self._size
        if size == 0:
            return None
        _, position = self.offset_index.lookup(offset)
        found: tuple[int, int] | None = None
        for pos, header in self._iter_batches(position, size):
            if header.max_timestamp == timestamp:
                found = self._first_record_with(pos, header, timestamp, 0)
                break
        if found is None or starting_offset is None or found[0] >= starting_offset:
            return found
        return self._max_timestamp_from(starting_offset, size)

    def _first_record_with(
        self, pos: int, header: BatchHeader, timestamp: int, starting_offset: int
    ) -> tuple[int, int] | None:
        """(offset, timestamp) of the batch's first record at or after ``starting_offset`` with
        exactly ``timestamp``."""
        for record in decode_records(self._io.pread(self._fd, header.size, pos)):
            if record.timestamp == timestamp and record.offset >= starting_offset:
                return record.offset, record.timestamp
        return None

    def _max_timestamp_from(self, starting_offset: int, size: int) -> tuple[int, int] | None:
        """``find_max_timestamp`` over the records at or after ``starting_offset`` by a scan: a
        batch wholly past it counts by its header, the one it falls inside by its records."""
        found = self.find_batch(starting_offset, size)
        if found is None:
            return None
        best: tuple[int, int] | None = None  # (timestamp, position of its batch)
        straddling: tuple[int, int] | None = None  # (timestamp, offset) inside the first batch
        for pos, header in self._iter_batches(found[0], size):
            if header.base_offset >= starting_offset:
                if best is None or header.max_timestamp > best[0]:
                    best = (header.max_timestamp, pos)
                continue
            for record in decode_records(self._io.pread(self._fd, header.size, pos)):
                if record.offset >= starting_offset and (
                    straddling is None or record.timestamp > straddling[0]
                ):
                    straddling = (record.timestamp, record.offset)
        if straddling is not None and (best is None or straddling[0] >= best[0]):
            return straddling[1], straddling[0]
        if best is None:
            return None
        ts, pos = best
        header = read_header(self._io.pread(self._fd, HEADER_SIZE, pos))
        return self._first_record_with(pos, header, ts, starting_offset)
