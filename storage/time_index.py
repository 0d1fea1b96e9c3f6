"""TimeIndex: the sparse timestamp-to-offset index of one segment (Kafka's ``.timeindex`` file)."""

from __future__ import annotations

import struct
from array import array
from bisect import bisect_right
from itertools import pairwise
from pathlib import Path

from kpy.storage.errors import CorruptIndex, IndexOffsetOverflow, InvalidIndexEntry
from kpy.storage.fs import OS_FS, FileSystem
from kpy.storage.index_file import AbstractIndex
from kpy.storage.offset_index import DEFAULT_MAX_INDEX_SIZE, INT32_MAX

NO_TIMESTAMP = -1

_ENTRY = struct.Struct(">qi")


class TimeIndex(AbstractIndex):
    """Maps timestamps to offsets: entry (T, X) says the largest timestamp of any record at or
    before offset X is T, and T was first reached in the batch whose last offset is X.

    Layout (Kafka's exactly): a sequence of 12-byte entries, big-endian, no header, no checksum:

        0  timestamp        int64   a record timestamp in ms
        8  relative_offset  int32   offset - segment base offset

    Invariants: timestamps strictly increase (``maybe_append`` drops anything not larger than
    the last entry), relative offsets never decrease and are >= 0. The file holds exactly
    ``entries * 12`` bytes (no preallocation). At most ``max_index_size // 12`` entries, plus one
    appended past the limit when the segment becomes inactive (as Kafka does).

    Threads: the event loop thread appends and truncates; ``lookup`` and ``last_entry`` may run on
    a worker thread concurrently (offsets grow before timestamps, shrink after them).

    After a crash: derived data, like OffsetIndex. The constructor raises CorruptIndex on a bad
    length or ordering and the log rebuilds the index from the segment's batch headers.
    """

    ENTRY_SIZE = 12

    def __init__(
        self,
        path: Path,
        base_offset: int,
        max_index_size: int = DEFAULT_MAX_INDEX_SIZE,
        *,
        fs: FileSystem = OS_FS,
    ) -> None:
        super().__init__(path, base_offset, max_index_size, fs)

    def _load(self, data: bytes) -> None:
        self._timestamps: array[int] = array("q")
        self._offsets = array("i")
        for timestamp, relative in _ENTRY.iter_unpack(data):
            self._timestamps.append(timestamp)
            self._offsets.append(relative)
        self._columns = (self._timestamps, self._offsets)

    def _check_order(self) -> None:
        timestamps, offsets = self._timestamps, self._offsets
        if not offsets:
            return
        if offsets[0] < 0:
            raise CorruptIndex(f"{self.path}: negative relative offset")
        if not all(a < b for a, b in pairwise(timestamps)):
            raise CorruptIndex(f"{self.path}: timestamps do not strictly increase")
        if not all(a <= b for a, b in pairwise(offsets)):
            raise CorruptIndex(f"{self.path}: offsets decrease")

    def sanity_check(self, next_offset: int) -> None:
        """Raise CorruptIndex if an entry names an offset the segment does not hold."""
        if self._offsets and self.base_offset + self._offsets[-1] >= next_offset:
            raise CorruptIndex(f"{self.path}: last entry is past the segment end ({next_offset})")

    def last_entry(self) -> tuple[int, int]:
        """(timestamp, offset) of the last entry, or (-1, base offset) when empty."""
        timestamps, offsets = self._timestamps, self._offsets
        n = min(len(timestamps), len(offsets))
        if n == 0:
            return NO_TIMESTAMP, self.base_offset
        return timestamps[n - 1], self.base_offset + offsets[n - 1]

    def entry(self, n: int) -> tuple[int, int]:
        return self._timestamps[n], self.base_offset + self._offsets[n]

    def lookup(self, timestamp: int) -> tuple[int, int]:
        """(timestamp, offset) of the entry with the largest timestamp <= ``timestamp``.

        (-1, base offset) when every entry is larger or the index is empty.
        """
        timestamps = self._timestamps
        slot = bisect_right(timestamps, timestamp) - 1
        if slot < 0:
            return NO_TIMESTAMP, self.base_offset
        return timestamps[slot], self.base_offset + self._offsets[slot]

    def maybe_append(self, timestamp: int, offset: int, *, skip_full_check: bool = False) -> None:
        """Append (timestamp, offset) if ``timestamp`` is larger than the last entry's."""
        if not skip_full_check and self.is_full:
            raise InvalidIndexEntry(f"{self.path}: time index is full ({self.max_entries} entries)")
        relative = offset - self.base_offset
        if not 0 <= relative <= INT32_MAX:
            raise IndexOffsetOverflow(
                f"{self.path}: offset {offset} overflows base {self.base_offset}"
            )
        if self._offsets:
            if relative < self._offsets[-1]:
                raise InvalidIndexEntry(
                    f"{self.path}: offset {offset} is below the last entry's {self.last_entry()[1]}"
                )
            if timestamp <= self._timestamps[-1]:
                return
        elif timestamp <= NO_TIMESTAMP:
            return
        self._file.append(_ENTRY.pack(timestamp, relative))
        self._offsets.append(relative)
        self._timestamps.append(timestamp)
