"""Batch builders for the storage tests (records with their own timestamps, producer fields),
and file helpers that work on either file system."""

from __future__ import annotations

import struct
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Protocol, TypeVar

import crc32c

from kpy.protocol.records import BatchHeader, build_batch, validate_batches
from kpy.storage.fs import FileSystem


def _varint(out: bytearray, value: int) -> None:
    raw = (value << 1) ^ (value >> 63)
    while raw >= 0x80:
        out.append((raw & 0x7F) | 0x80)
        raw >>= 7
    out.append(raw)


def batch_with_timestamps(
    values: Sequence[bytes],
    timestamps: Sequence[int],
    *,
    producer_id: int = -1,
    producer_epoch: int = -1,
    base_sequence: int = -1,
) -> bytes:
    """An uncompressed v2 batch whose records carry the given timestamps (one per value)."""
    assert values and len(values) == len(timestamps)
    base_ts = timestamps[0]
    body = bytearray()
    for delta, (value, ts) in enumerate(zip(values, timestamps, strict=True)):
        rec = bytearray([0])
        _varint(rec, ts - base_ts)
        _varint(rec, delta)
        _varint(rec, -1)  # null key
        _varint(rec, len(value))
        rec += value
        _varint(rec, 0)
        _varint(body, len(rec))
        body += rec
    tail = struct.pack(
        ">hiqqqhii",
        0,
        len(values) - 1,
        base_ts,
        max(timestamps),
        producer_id,
        producer_epoch,
        base_sequence,
        len(values),
    ) + bytes(body)
    head = struct.pack(">qiibI", 0, len(tail) + 9, -1, 2, crc32c.crc32c(tail))
    return head + tail


def idempotent_batch(
    pid: int, epoch: int, seq: int, count: int = 1, *, timestamp: int = 1000
) -> bytes:
    return build_batch(
        [(None, b"v%d" % i) for i in range(count)],
        timestamp=timestamp,
        producer_id=pid,
        producer_epoch=epoch,
        base_sequence=seq,
    )


def request(*batches: bytes) -> tuple[bytearray, list[BatchHeader]]:
    """The (buffer, headers) pair Log.append takes, as a produce handler would build it."""
    buf = bytearray(b"".join(batches))
    return buf, validate_batches(buf)


def offsets_in(data: bytes) -> list[tuple[int, int]]:
    """(base offset, last offset) of each batch in ``data``; also checks CRCs."""
    return [(h.base_offset, h.last_offset) for h in validate_batches(data)]


class Abandonable(Protocol):
    def abandon(self) -> None: ...


A = TypeVar("A", bound=Abandonable)


class Opened:
    """The ``opened`` fixture: ``opened(Log.open(path))`` returns the log and abandons it (drops
    it as a crash would, releasing its file descriptors) when the test ends. Works for anything
    with ``abandon``: LogManager, Log, LogSegment, OffsetIndex, TimeIndex. Abandoning what a test
    already closed, deleted or abandoned is a no-op."""

    def __init__(self, stack: ExitStack) -> None:
        self._stack = stack

    def __call__(self, resource: A) -> A:
        self._stack.callback(resource.abandon)
        return resource


# --- Files, on either file system (the ``fs`` fixture) ---


@contextmanager
def descriptor(fs: FileSystem, path: Path) -> Iterator[int]:
    """The file at ``path`` opened on ``fs`` (created if missing), closed after the block."""
    fd = fs.open(path)
    try:
        yield fd
    finally:
        fs.io.close(fd)


def file_size(fs: FileSystem, path: Path) -> int:
    return len(fs.read_bytes(path))


def truncate_file(fs: FileSystem, path: Path, size: int) -> None:
    """Cut the file at ``path`` to ``size`` bytes (os.truncate)."""
    with descriptor(fs, path) as fd:
        fs.io.ftruncate(fd, size)


def write_at(fs: FileSystem, path: Path, position: int, data: bytes) -> None:
    """Overwrite bytes of the file in place (same file, as a write at an offset would)."""
    with descriptor(fs, path) as fd:
        tail = fs.io.pread(fd, fs.file_size(fd), position + len(data))
        fs.io.ftruncate(fd, position)
        fs.io.write(fd, data + tail)  # O_APPEND: at ``position`` now


def append_to(fs: FileSystem, path: Path, data: bytes) -> None:
    """Append ``data`` to the file at ``path`` (creating it)."""
    with descriptor(fs, path) as fd:
        fs.io.write(fd, data)


def create_file(fs: FileSystem, path: Path, data: bytes = b"") -> None:
    """Create (or replace) the file at ``path`` holding ``data``."""
    fs.unlink(path, missing_ok=True)
    append_to(fs, path, data)
