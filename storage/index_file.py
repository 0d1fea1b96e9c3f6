"""The file under an index: fixed-size entries, appended with plain writes, never preallocated.

Kafka preallocates its index files (segment.index.bytes) and memory-maps them, then trims them
to the valid entries when the segment rolls or closes; a crash leaves a file padded with zeros
that the loader must see through. kpy writes each entry with a plain append instead, so the file
always holds exactly the entries written, and the in-memory copy (an array kept by the index
classes) is the only thing lookups touch. After a crash the file may lack the last entries or
end in a torn one; the length check (a multiple of the entry size) and the ordering checks of
the owning index catch the latter, and the log rebuilds any index it cannot trust.

The descriptor of an inactive segment's index is parked (closed, reopened only if a write,
truncation or fsync needs it), so a log holds about one descriptor per segment, not three.

Thread use: only the event loop thread writes. The index classes read their in-memory arrays,
never the file, so readers on a worker thread do not touch this object.
"""

from __future__ import annotations

import contextlib
from array import array
from bisect import bisect_left
from pathlib import Path

from kpy.storage.errors import CorruptIndex
from kpy.storage.fs import OS_FS, FileSystem


class IndexFile:
    """An append-only file of fixed-size entries, opened with O_APPEND.

    The descriptor can be parked (closed while the file stays in use): an inactive segment's
    indexes are only ever read from memory, so they need no descriptor, and a log with many
    segments would otherwise hold two per segment for nothing. A write or truncation reopens the
    file; ``flush`` of a parked file with unsynced writes opens it just for the fsync. ``close``
    is final.
    """

    __slots__ = ("_dirty", "_fd", "_released", "entry_size", "fs", "path")

    def __init__(self, path: Path, entry_size: int, fs: FileSystem = OS_FS) -> None:
        self.path = path
        self.entry_size = entry_size
        self.fs = fs
        self._released = False
        self._dirty = False  # written or truncated since the last fsync
        self._fd = fs.open(path)

    def _writable_fd(self) -> int:
        if self._fd < 0:
            if self._released:
                raise ValueError(f"{self.path}: index file is closed")
            self._fd = self.fs.open(self.path)
        return self._fd

    def read_all(self) -> bytes:
        fd = self._writable_fd()
        size = self.fs.file_size(fd)
        return self.fs.io.pread(fd, size, 0) if size else b""

    def append(self, data: bytes) -> None:
        fd = self._writable_fd()
        self._dirty = True
        view = memoryview(data)
        write = self.fs.io.write
        while view:
            written = write(fd, view)
            view = view[written:]

    def truncate_entries(self, entries: int) -> None:
        fd = self._writable_fd()
        self._dirty = True
        self.fs.io.ftruncate(fd, entries * self.entry_size)

    def flush(self) -> None:
        if self._fd >= 0:
            self.fs.fsync_file(self._fd, self.path)
        elif self._dirty and not self._released:  # parked before its writes were synced
            self.fs.fsync_path(self.path)
        self._dirty = False

    def park(self) -> None:
        """Close the descriptor until the next write, truncation or flush needs it."""
        fd, self._fd = self._fd, -1
        if fd >= 0:
            self.fs.io.close(fd)

    def close(self) -> None:
        """Release the descriptor for good (no fsync: call ``flush`` first). Idempotent."""
        self._released = True
        self.park()

    def delete(self) -> None:
        self.close()
        self.fs.unlink(self.path, missing_ok=True)

    def rename(self, path: Path) -> None:
        """Move the file to ``path``; an open descriptor stays valid, a parked file reopens
        (if a flush needs it) under the new name. A file already gone is not an error."""
        with contextlib.suppress(FileNotFoundError):
            self.fs.rename(self.path, path)
        self.path = path

    @property
    def closed(self) -> bool:
        """Closed for good (a parked file is not closed)."""
        return self._released

    @property
    def has_fd(self) -> bool:
        return self._fd >= 0


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

    def __init__(
        self, path: Path, base_offset: int, max_index_size: int, fs: FileSystem = OS_FS
    ) -> None:
        self.path = path
        self.base_offset = base_offset
        self.max_entries = max(max_index_size // self.ENTRY_SIZE, 1)
        self._file = IndexFile(path, self.ENTRY_SIZE, fs)
        try:
            data = self._file.read_all()
            if len(data) % self.ENTRY_SIZE:
                raise CorruptIndex(
                    f"{path}: length {len(data)} is not a multiple of {self.ENTRY_SIZE}"
                )
            self._load(data)
            self._check_order()
        except BaseException:
            self._file.close()
            raise

    def _load(self, data: bytes) -> None:
        """Parse the file's entries into the arrays and set ``_offsets`` and ``_columns``."""
        raise NotImplementedError

    def _check_order(self) -> None:
        """Raise CorruptIndex unless the entries are ordered as the format requires."""
        raise NotImplementedError

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

    def truncate_to_entries(self, keep: int) -> None:
        """Keep the first ``keep`` entries, and cut the file to exactly their bytes even when the
        arrays already hold no more (a failed append may have left part of an entry there)."""
        searched, other = self._columns
        del searched[keep:]
        del other[keep:]
        self._file.truncate_entries(keep)

    def _truncate_entries(self, keep: int) -> None:
        if keep >= len(self._offsets):
            return
        searched, other = self._columns
        del searched[keep:]
        del other[keep:]
        self._file.truncate_entries(keep)

    def flush(self) -> None:
        self._file.flush()

    def park(self) -> None:
        """Release the descriptor until a write needs it again (see IndexFile)."""
        self._file.park()

    @property
    def has_fd(self) -> bool:
        return self._file.has_fd

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

    def rename(self, path: Path) -> None:
        """Move the file (see IndexFile.rename); lookups keep working from memory."""
        self._file.rename(path)
        self.path = path
