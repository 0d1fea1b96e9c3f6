"""ProducerStateManager: idempotent-producer sequence and epoch state of one partition.

State machine per producer id (Kafka's ProducerStateEntry/ProducerAppendInfo, client origin):

    no entry ──any epoch, any sequence──▶ entry(epoch E, last 5 batches)
    entry(E) ──batch epoch < E──────────▶ InvalidProducerEpoch (nothing changes)
    entry(E) ──epoch E, (first, last) seq equal to a cached batch──▶ duplicate: the caller
              answers with the cached offsets and timestamp and writes nothing
    entry(E) ──epoch E, first seq == last seq + 1 (0 after 2**31-1)──▶ entry(E) + batch
    entry(E) ──epoch E, other first seq─▶ OutOfOrderSequence
    entry(E) ──epoch F > E, first seq 0─▶ entry(F), cached batches cleared
    entry(E) ──epoch F > E, first seq≠0─▶ OutOfOrderSequence

Transactions: a transactional batch opens the producer's transaction here (its first offset,
``current_txn_first_offset``, kept in ``ongoing`` too), a non-transactional batch while one is
open is InvalidTxnState, and an end marker (a control batch) closes it, reported as a
CompletedTxn so the log can index an abort. A marker's coordinator epoch may not be older than
the producer's last one (TransactionCoordinatorFenced; Kafka's checkCoordinatorEpoch). The
first unstable offset is the first offset of the oldest open transaction.

Appends are split in two so a log can check every batch of a request before writing any:
``analyze`` raises or returns an ``AppendAnalysis`` without touching the state; ``apply`` (after
the write succeeded) installs it. Replayed batches (``replay``, used to rebuild state from the
log) skip sequence checks, as Kafka's REPLICATION origin does.

Snapshot files (Kafka's format, ``<20-digit offset>.snapshot`` in the partition directory; the
offset is the log end offset the state covers). Big-endian:

    0  version                    int16   1
    2  crc                        uint32  CRC-32C of every byte from offset 6 to the end
    6  entry count                int32
    10 entries, 46 bytes each:
       producer_id                int64
       epoch                      int16
       last_sequence              int32   -1 when no batch is cached
       last_offset                int64   -1 when no batch is cached
       offset_delta               int32   last_offset - first offset of the last batch
       timestamp                  int64   max timestamp of the last batch
       coordinator_epoch          int32
       current_txn_first_offset   int64   -1 when no transaction is open

Only the newest cached batch of each producer survives a snapshot (as in Kafka), so after a
restart duplicate detection covers one batch per producer until new batches arrive.

Threads: event loop thread only.

After a crash: snapshots are written to a temporary name, fsynced and renamed, so a snapshot
file is either whole or absent; a CRC mismatch (bit rot) makes the loader delete it and fall
back to an older one. State newer than the chosen snapshot is rebuilt by replaying the batch
headers of the log after the snapshot offset; snapshots above the log end offset (the log was
truncated by recovery) are deleted.
"""

from __future__ import annotations

import enum
import struct
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from kpy.protocol.crc import crc32c
from kpy.protocol.records import NO_PRODUCER_EPOCH, NO_SEQUENCE, BatchHeader, InvalidRecordBatch
from kpy.storage.errors import (
    CorruptSnapshot,
    DuplicateSequence,
    InvalidProducerEpoch,
    InvalidTxnState,
    OutOfOrderSequence,
    TransactionCoordinatorFenced,
)
from kpy.storage.fs import OS_FS, FileSystem

SNAPSHOT_SUFFIX = ".snapshot"
NUM_BATCHES_TO_RETAIN = 5
SNAPSHOT_VERSION = 1
SNAPSHOTS_TO_KEEP = 3
INT32_MAX = 2**31 - 1

_SNAPSHOT_HEADER = struct.Struct(">hIi")
_SNAPSHOT_ENTRY = struct.Struct(">qhiqiqiq")
_CRC_START = 6
_CONTROL_KEY = struct.Struct(">hh")
_CONTROL_VALUE = struct.Struct(">hi")


class AppendOrigin(enum.Enum):
    CLIENT = "client"  # full epoch and sequence validation, duplicate detection
    COORDINATOR = "coordinator"  # the broker's own writes: epoch check only
    REPLICATION = "replication"  # replay from the log: no checks


def decrement_sequence(sequence: int, decrement: int) -> int:
    if sequence < decrement:
        return INT32_MAX - (decrement - sequence) + 1
    return sequence - decrement


def _in_sequence(last_seq: int, next_seq: int) -> bool:
    return next_seq == last_seq + 1 or (next_seq == 0 and last_seq == INT32_MAX)


@dataclass(frozen=True, slots=True)
class BatchMetadata:
    last_seq: int
    last_offset: int
    offset_delta: int
    timestamp: int

    @property
    def first_seq(self) -> int:
        return decrement_sequence(self.last_seq, self.offset_delta)

    @property
    def first_offset(self) -> int:
        return self.last_offset - self.offset_delta


@dataclass(slots=True)
class ProducerStateEntry:
    producer_id: int
    producer_epoch: int = NO_PRODUCER_EPOCH
    coordinator_epoch: int = -1
    last_timestamp: int = -1
    current_txn_first_offset: int | None = None
    batches: deque[BatchMetadata] = field(
        default_factory=lambda: deque(maxlen=NUM_BATCHES_TO_RETAIN)
    )

    @property
    def is_empty(self) -> bool:
        return not self.batches

    @property
    def first_seq(self) -> int:
        return self.batches[0].first_seq if self.batches else NO_SEQUENCE

    @property
    def last_seq(self) -> int:
        return self.batches[-1].last_seq if self.batches else NO_SEQUENCE

    @property
    def last_data_offset(self) -> int:
        return self.batches[-1].last_offset if self.batches else -1

    @property
    def last_offset_delta(self) -> int:
        return self.batches[-1].offset_delta if self.batches else 0

    def without_batches(self) -> ProducerStateEntry:
        return ProducerStateEntry(
            self.producer_id,
            self.producer_epoch,
            self.coordinator_epoch,
            self.last_timestamp,
            self.current_txn_first_offset,
        )

    def maybe_update_epoch(self, epoch: int) -> None:
        if epoch != self.producer_epoch:
            self.batches.clear()
            self.producer_epoch = epoch

    def add_batch(
        self, epoch: int, last_seq: int, last_offset: int, offset_delta: int, timestamp: int
    ) -> None:
        self.maybe_update_epoch(epoch)
        self.batches.append(BatchMetadata(last_seq, last_offset, offset_delta, timestamp))
        self.last_timestamp = timestamp

    def update(self, other: ProducerStateEntry) -> None:
        self.maybe_update_epoch(other.producer_epoch)
        self.batches.extend(other.batches)
        self.coordinator_epoch = other.coordinator_epoch
        self.current_txn_first_offset = other.current_txn_first_offset
        self.last_timestamp = other.last_timestamp

    def find_duplicate_batch(self, header: BatchHeader) -> BatchMetadata | None:
        if header.producer_epoch != self.producer_epoch:
            return None
        first, last = header.base_sequence, header.last_sequence
        for batch in self.batches:
            if batch.first_seq == first and batch.last_seq == last:
                return batch
        return None


@dataclass(frozen=True, slots=True)
class ControlMarker:
    """The decoded record of a transaction marker batch."""

    abort: bool
    coordinator_epoch: int

    @classmethod
    def decode(cls, key: bytes | None, value: bytes | None) -> ControlMarker:
        if key is None or value is None or len(key) < 4 or len(value) < 6:
            raise InvalidRecordBatch("malformed control record")
        _, kind = _CONTROL_KEY.unpack_from(key)
        _, coordinator_epoch = _CONTROL_VALUE.unpack_from(value)
        return cls(abort=kind == 0, coordinator_epoch=coordinator_epoch)


@dataclass(frozen=True, slots=True)
class CompletedTxn:
    """A transaction an end marker completed (Kafka's CompletedTxn): its first offset, the
    marker's offset, and whether it was aborted."""

    producer_id: int
    first_offset: int
    last_offset: int
    is_aborted: bool


class ProducerAppendInfo:
    """The pending changes of one producer within one append (Kafka's ProducerAppendInfo)."""

    __slots__ = ("completed", "current", "origin", "producer_id", "updated")

    def __init__(self, producer_id: int, current: ProducerStateEntry, origin: AppendOrigin) -> None:
        self.producer_id = producer_id
        self.current = current
        self.origin = origin
        self.updated = current.without_batches()
        self.completed: list[CompletedTxn] = []

    def _check_epoch(self, epoch: int, offset: int) -> None:
        if epoch < self.updated.producer_epoch and self.origin is not AppendOrigin.REPLICATION:
            raise InvalidProducerEpoch(
                f"epoch {epoch} of producer {self.producer_id} at offset {offset} is older than "
                f"the last seen epoch {self.updated.producer_epoch}"
            )

    def _check_sequence(self, epoch: int, first_seq: int, offset: int) -> None:
        updated, current = self.updated, self.current
        if epoch != updated.producer_epoch:
            if first_seq != 0 and updated.producer_epoch != NO_PRODUCER_EPOCH:
                raise OutOfOrderSequence(
                    f"new epoch {epoch} of producer {self.producer_id} at offset {offset} "
                    f"starts at sequence {first_seq}, not 0 (epoch was {updated.producer_epoch})"
                )
            return
        if not updated.is_empty:
            last_seq = updated.last_seq
        elif epoch == current.producer_epoch:
            last_seq = current.last_seq
        else:
            last_seq = NO_SEQUENCE
        # No known epoch (a new producer, or its data is gone): any sequence is accepted.
        if current.producer_epoch != NO_PRODUCER_EPOCH and not _in_sequence(last_seq, first_seq):
            raise OutOfOrderSequence(
                f"out of order sequence for producer {self.producer_id} at offset {offset}: "
                f"{first_seq} (incoming), {last_seq} (current end)"
            )

    def append_data_batch(
        self,
        epoch: int,
        first_seq: int,
        last_seq: int,
        timestamp: int,
        first_offset: int,
        last_offset: int,
        is_transactional: bool,
    ) -> None:
        self._check_epoch(epoch, first_offset)
        if self.origin is AppendOrigin.CLIENT:
            self._check_sequence(epoch, first_seq, first_offset)
        self.updated.add_batch(epoch, last_seq, last_offset, last_offset - first_offset, timestamp)
        txn_first = self.updated.current_txn_first_offset
        if txn_first is not None and not is_transactional:
            raise InvalidTxnState(
                f"non-transactional write from producer {self.producer_id} at offset "
                f"{first_offset} while its transaction from offset {txn_first} is open"
            )
        if txn_first is None and is_transactional:
            self.updated.current_txn_first_offset = first_offset

    def append_end_txn_marker(
        self, marker: ControlMarker, epoch: int, offset: int, timestamp: int
    ) -> None:
        self._check_epoch(epoch, offset)
        updated = self.updated
        if (
            self.origin is not AppendOrigin.REPLICATION
            and updated.coordinator_epoch > marker.coordinator_epoch
        ):
            raise TransactionCoordinatorFenced(
                f"marker of producer {self.producer_id} at offset {offset} comes from "
                f"coordinator epoch {marker.coordinator_epoch}, older than "
                f"{updated.coordinator_epoch}"
            )
        updated.maybe_update_epoch(epoch)
        updated.coordinator_epoch = marker.coordinator_epoch
        if updated.current_txn_first_offset is not None:
            self.completed.append(
                CompletedTxn(
                    self.producer_id, updated.current_txn_first_offset, offset, marker.abort
                )
            )
        updated.current_txn_first_offset = None
        updated.last_timestamp = timestamp

    def append(
        self,
        header: BatchHeader,
        first_offset: int,
        max_timestamp: int,
        marker: ControlMarker | None = None,
    ) -> None:
        last_offset = first_offset + header.last_offset_delta
        if header.is_control:
            if marker is not None:
                self.append_end_txn_marker(
                    marker, header.producer_epoch, first_offset, max_timestamp
                )
            return
        self.append_data_batch(
            header.producer_epoch,
            header.base_sequence,
            header.last_sequence,
            max_timestamp,
            first_offset,
            last_offset,
            header.is_transactional,
        )


@dataclass(slots=True)
class AppendAnalysis:
    """What ``analyze`` found: the pending per-producer updates, or a duplicate batch."""

    updates: dict[int, ProducerAppendInfo]
    duplicate: BatchMetadata | None = None

    @property
    def completed(self) -> list[CompletedTxn]:
        """The transactions the append's markers complete, in marker order."""
        done = [txn for info in self.updates.values() for txn in info.completed]
        return sorted(done, key=lambda t: t.last_offset)


def snapshot_path(directory: Path, offset: int) -> Path:
    return directory / f"{offset:020d}{SNAPSHOT_SUFFIX}"


def encode_snapshot(entries: Iterable[ProducerStateEntry]) -> bytes:
    body = bytearray()
    count = 0
    for entry in sorted(entries, key=lambda e: e.producer_id):
        txn = entry.current_txn_first_offset
        body += _SNAPSHOT_ENTRY.pack(
            entry.producer_id,
            entry.producer_epoch,
            entry.last_seq,
            entry.last_data_offset,
            entry.last_offset_delta,
            entry.last_timestamp,
            entry.coordinator_epoch,
            -1 if txn is None else txn,
        )
        count += 1
    tail = struct.pack(">i", count) + bytes(body)
    return struct.pack(">hI", SNAPSHOT_VERSION, crc32c(tail)) + tail


def decode_snapshot(data: bytes) -> list[ProducerStateEntry]:
    if len(data) < _SNAPSHOT_HEADER.size:
        raise CorruptSnapshot("snapshot shorter than its header")
    version, crc, count = _SNAPSHOT_HEADER.unpack_from(data)
    if version != SNAPSHOT_VERSION:
        raise CorruptSnapshot(f"unknown snapshot version {version}")
    if count < 0 or len(data) != _SNAPSHOT_HEADER.size + count * _SNAPSHOT_ENTRY.size:
        raise CorruptSnapshot("snapshot length does not match its entry count")
    if crc32c(data[_CRC_START:]) != crc:
        raise CorruptSnapshot("snapshot CRC-32C mismatch")
    entries = []
    for pid, epoch, last_seq, last_offset, delta, ts, coord, txn in _SNAPSHOT_ENTRY.iter_unpack(
        data[_SNAPSHOT_HEADER.size :]
    ):
        entry = ProducerStateEntry(pid, epoch, coord, ts, None if txn < 0 else txn)
        if last_offset >= 0:
            entry.batches.append(BatchMetadata(last_seq, last_offset, delta, ts))
        entries.append(entry)
    return entries


def list_snapshot_offsets(directory: Path, fs: FileSystem = OS_FS) -> list[int]:
    offsets = []
    for name in fs.names_ending(directory, SNAPSHOT_SUFFIX):
        stem = name[: -len(SNAPSHOT_SUFFIX)]
        if stem.isdigit():
            offsets.append(int(stem))
    return sorted(offsets)


class ProducerStateManager:
    """Per-partition producer state, its snapshots, and the offset it is current to."""

    def __init__(self, directory: Path, fs: FileSystem = OS_FS) -> None:
        self.directory = directory
        self.fs = fs
        self.producers: dict[int, ProducerStateEntry] = {}
        # Producers with a transaction open here -> its first offset (Kafka's ongoingTxns).
        self.ongoing: dict[int, int] = {}
        self.map_end_offset = 0
        # Statistics for tests and metrics.
        self.loaded_snapshot_offset: int | None = None
        self.replayed_batches = 0

    def last_entry(self, producer_id: int) -> ProducerStateEntry | None:
        return self.producers.get(producer_id)

    # --- Client appends: analyze, then apply ---

    def analyze(
        self,
        headers: Sequence[BatchHeader],
        first_offsets: Sequence[int],
        max_timestamps: Sequence[int],
        *,
        origin: AppendOrigin = AppendOrigin.CLIENT,
        markers: Sequence[ControlMarker | None] | None = None,
    ) -> AppendAnalysis:
        """Validate the batches of one append against the state, changing nothing.

        ``first_offsets`` and ``max_timestamps`` are the values the batches will carry once
        written. Raises InvalidProducerEpoch, OutOfOrderSequence, InvalidTxnState,
        DuplicateSequence (a duplicate inside a multi-batch append) or InvalidRecordBatch (an
        idempotent client batch without a sequence). Returns a duplicate instead of updates when
        the only batch repeats a cached one.
        """
        updates: dict[int, ProducerAppendInfo] = {}
        for i, header in enumerate(headers):
            pid = header.producer_id
            if pid < 0:
                continue
            if origin is AppendOrigin.CLIENT:
                if header.base_sequence < 0:
                    raise InvalidRecordBatch(
                        f"invalid sequence {header.base_sequence} from producer {pid}"
                    )
                last = self.producers.get(pid)
                duplicate = last.find_duplicate_batch(header) if last is not None else None
                if duplicate is not None:
                    if len(headers) != 1:
                        raise DuplicateSequence(
                            f"batch {header.base_sequence}..{header.last_sequence} of producer "
                            f"{pid} was already written at offset {duplicate.first_offset}"
                        )
                    return AppendAnalysis({}, duplicate)
            info = updates.get(pid)
            if info is None:
                current = self.producers.get(pid) or ProducerStateEntry(pid)
                info = updates[pid] = ProducerAppendInfo(pid, current, origin)
            marker = markers[i] if markers is not None else None
            info.append(header, first_offsets[i], max_timestamps[i], marker)
        return AppendAnalysis(updates)

    def apply(self, analysis: AppendAnalysis, end_offset: int) -> None:
        """Install the updates of an append that was written; the state now covers end_offset."""
        for pid, info in analysis.updates.items():
            entry = self.producers.get(pid)
            if entry is None:
                self.producers[pid] = entry = ProducerStateEntry(pid)
            entry.update(info.updated)
            if entry.current_txn_first_offset is None:
                self.ongoing.pop(pid, None)
            else:
                self.ongoing[pid] = entry.current_txn_first_offset
        self.map_end_offset = end_offset

    def first_unstable_offset(self) -> int | None:
        """The first offset of the oldest transaction open here (Kafka's firstUndecidedOffset
        on a single replica), or None."""
        return min(self.ongoing.values()) if self.ongoing else None

    def last_stable_offset_after(self, txn: CompletedTxn) -> int:
        """The last stable offset once ``txn`` completed (Kafka's lastStableOffset(
        completedTxn)): the first offset of the oldest other open transaction, else the offset
        after the marker. Call after ``apply``."""
        others = [first for pid, first in self.ongoing.items() if pid != txn.producer_id]
        return min(others) if others else txn.last_offset + 1

    def replay(
        self, header: BatchHeader, marker: ControlMarker | None = None
    ) -> list[CompletedTxn]:
        """Rebuild step: apply a batch read back from the log, without validation; the
        transactions its marker completes."""
        completed: list[CompletedTxn] = []
        if header.producer_id >= 0:
            analysis = self.analyze(
                [header],
                [header.base_offset],
                [header.max_timestamp],
                origin=AppendOrigin.REPLICATION,
                markers=[marker],
            )
            self.apply(analysis, header.next_offset)
            completed = analysis.completed
            self.replayed_batches += 1
        self.map_end_offset = header.next_offset
        return completed

    # --- Snapshots ---

    def take_snapshot(self, *, sync: bool = True) -> Path | None:
        """Write ``<map_end_offset>.snapshot`` unless it exists; prune old snapshots."""
        fs = self.fs
        path = snapshot_path(self.directory, self.map_end_offset)
        if fs.exists(path):
            return None
        fs.write_atomic(path, encode_snapshot(self.producers.values()), sync=sync)
        for offset in list_snapshot_offsets(self.directory, fs)[:-SNAPSHOTS_TO_KEEP]:
            fs.unlink(snapshot_path(self.directory, offset), missing_ok=True)
        return path

    def truncate_and_reload(
        self, log_start_offset: int, log_end_offset: int, *, at_most: int | None = None
    ) -> int:
        """Drop snapshots above the log end, load the newest good one (or start empty); with
        ``at_most``, the newest at or below that offset (the caller replays from there to
        rebuild transaction indexes).

        Afterwards ``map_end_offset`` says where the caller must start replaying batches.
        Returns the number of files deleted (the caller fsyncs the directory if any).
        """
        fs = self.fs
        removed = 0
        for name in fs.names_ending(self.directory, SNAPSHOT_SUFFIX + ".tmp"):
            fs.unlink(self.directory / name, missing_ok=True)
            removed += 1
        self.producers = {}
        self.ongoing = {}
        self.loaded_snapshot_offset = None
        self.map_end_offset = log_start_offset
        for offset in reversed(list_snapshot_offsets(self.directory, fs)):
            path = snapshot_path(self.directory, offset)
            if offset > log_end_offset:
                fs.unlink(path, missing_ok=True)
                removed += 1
                continue
            if offset < log_start_offset:
                break
            if at_most is not None and offset > at_most:
                continue
            try:
                entries = decode_snapshot(fs.read_bytes(path))
            except CorruptSnapshot:
                fs.unlink(path, missing_ok=True)
                removed += 1
                continue
            self.producers = {e.producer_id: e for e in entries}
            self.ongoing = {
                e.producer_id: e.current_txn_first_offset
                for e in entries
                if e.current_txn_first_offset is not None
            }
            self.loaded_snapshot_offset = offset
            self.map_end_offset = offset
            break
        return removed

    def delete_snapshots(self) -> None:
        for offset in list_snapshot_offsets(self.directory, self.fs):
            self.fs.unlink(snapshot_path(self.directory, offset), missing_ok=True)
