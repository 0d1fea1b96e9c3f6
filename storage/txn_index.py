"""TransactionIndex: the aborted transactions of one segment, Kafka's ``.txnindex`` file.

File ``<20-digit base offset>.txnindex`` beside the segment's ``.log``, entries of 34 bytes
back to back, big-endian (Kafka's AbortedTxn; kafka-dump-log reads it):

    0   version              int16   0
    2   producer id          int64
    10  first offset         int64   the transaction's first offset (may lie in an earlier segment)
    18  last offset          int64   the offset of its abort marker, which is in this segment
    26  last stable offset   int64   the partition's LSO once the transaction completed

An entry goes to the index of the segment holding the marker, in marker order, so last offsets
increase. The file is created with the first entry (as Kafka creates it lazily): a segment
without aborted transactions has none. Entries are kept in memory too (a few per segment),
which is what reads use.

Threads: the event loop appends, truncates and renames; ``entries`` (a tuple, replaced whole)
may be read from any thread. ``flush`` may run on a worker thread.

After a crash: the file may end in a torn entry (ignored at load) or hold entries whose
markers the recovery of the .log cut away; Log rebuilds the indexes of the segments it
recovers by replaying the producer state, so only flushed segments' files are trusted.
"""

from __future__ import annotations

import contextlib
import struct
from dataclasses import dataclass
from pathlib import Path

from kpy.storage.errors import CorruptIndex
from kpy.storage.fs import OS_FS, FileSystem

TXN_INDEX_SUFFIX = ".txnindex"
VERSION = 0
_ENTRY = struct.Struct(">hqqqq")
ENTRY_SIZE = _ENTRY.size  # 34


@dataclass(frozen=True, slots=True)
class AbortedTxn:
    producer_id: int
    first_offset: int
    last_offset: int
    last_stable_offset: int

    def encode(self) -> bytes:
        return _ENTRY.pack(
            VERSION, self.producer_id, self.first_offset, self.last_offset, self.last_stable_offset
        )


def decode_entries(data: bytes) -> list[AbortedTxn]:
    """The whole entries of a file's bytes (a torn last entry is left out); CorruptIndex for an
    unknown version."""
    out = []
    for pos in range(0, len(data) - ENTRY_SIZE + 1, ENTRY_SIZE):
        version, pid, first, last, lso = _ENTRY.unpack_from(data, pos)
        if version != VERSION:
            raise CorruptIndex(f"transaction index entry at {pos} has version {version}")
        out.append(AbortedTxn(pid, first, last, lso))
    return out


class TransactionIndex:
    """One segment's aborted transactions (see the module docstring)."""

    def __init__(self, path: Path, fs: FileSystem = OS_FS) -> None:
        """Load the file if there is one. Raises CorruptIndex if it does not decode (the
        caller then starts it empty with ``reset`` and has it rebuilt)."""
        self.path = path
        self.fs = fs
        self._dirty = False
        self.entries: tuple[AbortedTxn, ...] = ()
        if fs.exists(path):
            self.entries = tuple(decode_entries(fs.read_bytes(path)))

    def append(self, txn: AbortedTxn) -> None:
        """Add an entry (its marker must come after every marker already indexed)."""
        if self.entries and txn.last_offset <= self.entries[-1].last_offset:
            raise ValueError(
                f"aborted transaction ending at {txn.last_offset} does not follow the last "
                f"one, ending at {self.entries[-1].last_offset}"
            )
        fd = self.fs.open(self.path)
        try:
            data = txn.encode()
            if self.fs.io.write(fd, data) != len(data):
                raise OSError(f"{self.path}: short write")
        finally:
            self.fs.io.close(fd)
        self.entries = (*self.entries, txn)
        self._dirty = True

    def truncate_to(self, offset: int) -> None:
        """Drop the entries whose marker is at or past ``offset`` (the log was cut there)."""
        kept = tuple(t for t in self.entries if t.last_offset < offset)
        if kept != self.entries:
            self._rewrite(kept)

    def reset(self) -> None:
        """Forget every entry and remove the file (a rebuild follows)."""
        self.entries = ()
        self.fs.unlink(self.path, missing_ok=True)
        self._dirty = False

    def _rewrite(self, entries: tuple[AbortedTxn, ...]) -> None:
        if not entries:
            self.reset()
            return
        self.fs.write_atomic(self.path, b"".join(t.encode() for t in entries), sync=False)
        self.entries = entries
        self._dirty = True

    def collect(self, start_offset: int, upper_offset: int) -> list[AbortedTxn]:
        """The entries overlapping [start_offset, upper_offset)."""
        return [
            t
            for t in self.entries
            if t.last_offset >= start_offset and t.first_offset < upper_offset
        ]

    def flush(self) -> None:
        if self._dirty:
            with contextlib.suppress(FileNotFoundError):  # deleted meanwhile
                self.fs.fsync_path(self.path)
            self._dirty = False

    def rename(self, path: Path) -> None:
        """Rename the file (if there is one) and follow it."""
        if self.fs.exists(self.path):
            self.fs.rename(self.path, path)
        self.path = path

    def unlink(self) -> None:
        self.fs.unlink(self.path, missing_ok=True)
