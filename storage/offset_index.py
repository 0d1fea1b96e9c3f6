"""OffsetIndex: the sparse offset-to-position index of one segment (Kafka's ``.index`` file)."""

from __future__ import annotations

import struct
import sys
from array import array
from bisect import bisect_right
from itertools import pairwise
from pathlib import Path

from kpy.storage.errors import CorruptIndex, IndexOffsetOverflow, InvalidIndexEntry
from kpy.storage.fs import OS_FS, FileSystem
from kpy.storage.index_file import AbstractIndex

DEFAULT_MAX_INDEX_SIZE = 10 * 1024 * 1024  # segment.index.bytes
INT32_MAX = 2**31 - 1

_ENTRY = struct.Struct(">ii")


def _unpack_pairs(data: bytes) -> tuple[array[int], array[int]]:
    """Split big-endian int32 pairs into two native arrays."""
    flat = array("i")
    flat.frombytes(data)
    if sys.byteorder == "little":
        flat.byteswap()
    return flat[0::2], flat[1::2]


class OffsetIndex(AbstractIndex):
    """Maps offsets to byte positions in the segment's .log, one entry per ~index.interval.bytes.

    Layout (Kafka's exactly): a sequence of 8-byte entries, big-endian, no header, no checksum:

        0  relative_offset  int32   offset - segment base offset
        4  position         int32   byte position of the batch in the .log file

    An entry (offset, position) says: the batch whose LAST offset is ``offset`` starts at
    ``position``. Invariants: relative offsets strictly increase, positions strictly increase,
    both are >= 0. The file holds exactly ``entries * 8`` bytes (no preallocation, see
    index_file.py); the entry count is bounded by ``max_index_size // 8``.

    Threads: the event loop thread appends and truncates; ``lookup`` may run on a worker thread at
    the same time. Appends extend ``_positions`` before ``_offsets`` and truncation shrinks them in
    the opposite order, so a concurrent lookup always finds a position for the slot it picks.

    After a crash: the index is derived data. The constructor raises CorruptIndex when the file
    length or the ordering is off, and the log rebuilds the index from the segment's batches
    (LogSegment.recover). A short but well-formed index is harmless: lookups only get coarser.
    """

    ENTRY_SIZE = 8

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
        self._offsets, self._positions = _unpack_pairs(data)
        self._columns = (self._offsets, self._positions)

    def _check_order(self) -> None:
        offsets, positions = self._offsets, self._positions
        if not offsets:
            return
        if offsets[0] < 0 or positions[0] < 0:
            raise CorruptIndex(f"{self.path}: negative first entry")
        if not all(a < b for a, b in pairwise(offsets)):
            raise CorruptIndex(f"{self.path}: offsets do not strictly increase")
        if not all(a < b for a, b in pairwise(positions)):
            raise CorruptIndex(f"{self.path}: positions do not strictly increase")

    def sanity_check(self, log_size: int) -> None:
        """Raise CorruptIndex if the last entry points past the end of the segment's log."""
        if self._positions and self._positions[-1] >= log_size:
            raise CorruptIndex(f"{self.path}: last entry points past the log end ({log_size})")

    @property
    def last_offset(self) -> int:
        """The offset of the last entry, or the base offset when empty."""
        offsets = self._offsets
        return self.base_offset + offsets[-1] if offsets else self.base_offset

    def entry(self, n: int) -> tuple[int, int]:
        return self.base_offset + self._offsets[n], self._positions[n]

    def lookup(self, offset: int) -> tuple[int, int]:
        """(offset, position) of the largest entry with offset <= ``offset``, else (base, 0)."""
        offsets = self._offsets
        slot = bisect_right(offsets, offset - self.base_offset) - 1
        if slot < 0:
            return self.base_offset, 0
        return self.base_offset + offsets[slot], self._positions[slot]

    def can_append_offset(self, offset: int) -> bool:
        return 0 <= offset - self.base_offset <= INT32_MAX

    def append(self, offset: int, position: int) -> None:
        """Add an entry; the offset must exceed the last one (Kafka: InvalidOffsetException)."""
        if self.is_full:
            raise InvalidIndexEntry(f"{self.path}: index is full ({self.max_entries} entries)")
        if not self.can_append_offset(offset):
            raise IndexOffsetOverflow(
                f"{self.path}: offset {offset} overflows base {self.base_offset}"
            )
        relative = offset - self.base_offset
        if self._offsets and (relative <= self._offsets[-1] or position <= self._positions[-1]):
            raise InvalidIndexEntry(
                f"{self.path}: entry ({offset}, {position}) is not after the last entry "
                f"({self.last_offset}, {self._positions[-1]})"
            )
        self._file.append(_ENTRY.pack(relative, position))
        self._positions.append(position)
        self._offsets.append(relative)
