"""The file under an index: fixed-size entries, appended with plain writes, never preallocated.

Kafka preallocates its index files (segment.index.bytes) and memory-maps them, then trims them
to the valid entries when the segment rolls or closes; a crash leaves a file padded with zeros
that the loader must see through. kpy writes each entry with a plain append instead, so the file
always holds exactly the entries written, and the in-memory copy (an array kept by the index
classes) is the only thing lookups touch. After a crash the file may lack the last entries or
end in a torn one; the length check (a multiple of the entry size) and the ordering checks of
the owning index catch the latter, and the log rebuilds any index it cannot trust.

Thread use: only the event loop thread writes. The index classes read their in-memory arrays,
never the file, so readers on a worker thread do not touch this object.
"""

from __future__ import annotations

import os
from array import array
from bisect import bisect_left
from pathlib import Path


class IndexFile:
    """An append-only file of fixed-size entries, opened with O_APPEND."""

    __slots__ = ("_fd", "entry_size", "path")

    def __init__(self, path: Path, entry_size: int) -> None:
        self.path = path
        self.entry_size = entry_size
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)

    def read_all(self) -> bytes:
        size = os.fstat(self._fd).st_size
        return os.pread(self._fd, size, 0) if size else b""

    def append(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            written = os.write(self._fd, view)
            view = view[written:]

    def truncate_entries(self, entries: int) -> None:
        os.ftruncate(self._fd, entries * self.entry_size)

    def flush(self) -> None:
        os.fsync(self._fd)

    def close(self) -> None:
        """Release the descriptor (no fsync: call ``flush`` first for durability). Idempotent."""
        fd, self._fd = self._fd, -1
        if fd >= 0:
            os.close(fd)

    def delete(self) -> None:
        self.close()
        self.path.unlink(missing_ok=True)

    @property
    def closed(self) -> bool:
        return self._fd < 0


class AbstractIndex:
    """What OffsetIndex and TimeIndex share (Kafka's AbstractIndex): an IndexFile, its entries
    kept in memory as two parallel arrays (``_offsets``, relative to ``base_offset``, and one
    column of the subclass's own), truncation, and the file's life cycle.

    Subclasses set ``_offsets`` and ``_columns`` in their constructor: ``_columns`` holds both
    arrays, first the one lookups search. Appends extend the searched column last and truncation
    shrinks it first, so a lookup on a worker thread always finds the other column's value for
    the slot it picks.
    """

    ENTRY_SIZE: int
    _offsets: array[int]
    _columns: tuple[array[int], array[int]]

    def __init__(self, path: Path, base_offset: int, max_index_size: int) -> None:
        self.path = path
        self.base_offset = base_offset
        self.max_entries = max(max_index_size // self.ENTRY_SIZE, 1)
        self._file = IndexFile(path, self.ENTRY_SIZE)

    @property
    def entries(self) -> int:
        return len(self._offsets)

    @property
    def is_full(self) -> bool:
        return len(self._offsets) >= self.max_entries

    def truncate_to(self, offset: int) -> None:
        """Remove every entry with offset >= ``offset``."""
        self._truncate_entries(bisect_left(self._offsets, offset - self.base_offset))

    def reset(self) -> None:
        self._truncate_entries(0)

    def _truncate_entries(self, keep: int) -> None:
        if keep >= len(self._offsets):
            return
        searched, other = self._columns
        del searched[keep:]
        del other[keep:]
        self._file.truncate_entries(keep)

    def flush(self) -> None:
        self._file.flush()

    def close(self) -> None:
        """Close the file. Entries are plain writes, so there is nothing to finalize first."""
        self._file.close()

    def abandon(self) -> None:
        """Release the file descriptor as a crash would, without fsync.

        For crash simulation and for releasing resources after a failure. The same as ``close``
        today (no preallocation, nothing to trim); kept separate so callers say which they mean.
        """
        self._file.close()

    def delete(self) -> None:
        self._file.delete()
