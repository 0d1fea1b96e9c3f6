"""OffsetStore: committed offsets, kept as Kafka keeps them, in compacted ``__consumer_offsets``.

Where the offsets live: kpy's own log store holds an internal topic ``__consumer_offsets``
(offsets.topic.num.partitions partitions, 50 by default; cleanup.policy=compact,
compression.type=producer, segment.bytes=104857600, as Kafka creates it). A group's offsets all
go to one partition, Kafka's ``Utils.abs(groupId.hashCode()) % partitions``: Java's String
hash over UTF-16 code units, then abs with Integer.MIN_VALUE mapped to 0. Each commit appends
one uncompressed v2 batch (several if it exceeds max.message.bytes) with producer id -1 and the
batch timestamp of the commit; the in-memory map changes only after the append succeeded.

Record layout (Kafka's CoordinatorRecordSerde: a big-endian int16 version, then the message in
that version; strings are an int16 byte length and UTF-8; nothing here is kpy's own):

    key    OffsetCommitKey, written at version 1 (versions 0 and 1 are this same record)
               int16  version (1)
               string group
               string topic
               int32  partition
    value  OffsetCommitValue, written at version 3 (what Kafka 4 writes when no expire
           timestamp is set: the newest non-flexible version)
               int16  version (3)
               int64  offset
               int32  leaderEpoch          (-1: unknown)
               string metadata
               int64  commitTimestamp      (ms)
           or null: a tombstone, the offset is deleted.

Reading accepts what Kafka may have written: values v0 (offset, metadata, commitTimestamp), v1
(plus expireTimestamp, read and dropped), v2 (as v0), v3, and v4 (flexible: compact string,
tagged fields). Keys of other record types (group metadata, version 2; the KIP-848 records,
3 and up) are skipped.

Transactional commits (TxnOffsetCommit, ``commit_transactional``): the records go in a
transactional batch carrying the producer's id and epoch, and wait, per (partition, producer
id), until that producer's transaction marker comes to the partition: a commit marker
(``complete_transaction``, called by the broker as it writes the marker, and by replay on
reading it) installs them, an abort marker drops them. As Kafka's OffsetMetadataManager does, a
transactional offset is installed only if no commit written after it (its record offset is
higher) is there already, so that compaction of the topic cannot change which commit wins; and
a tombstone drops the pending offsets of its key too. ``has_pending`` tells OffsetFetch
(require_stable) which partitions wait on a transaction.

Invariants: the map equals the replay of every partition, last record per key winning and a
tombstone removing; every mutation writes its records before touching the map.

When the topic is made: as in Kafka, not at start but when a group first needs it. The broker
opens the store with ``create=False`` and calls ``create_topic`` (on a worker thread) on the
first FindCoordinator for a group and before the first commit; until then the topic is absent
from Metadata and every partition count comes from the configuration.

Threads: the event loop thread for everything after ``open``; ``open`` runs once at start and
``create_topic`` on a worker thread (it only publishes the topic, whole, at its end). Appends
are page-cache writes (Log.append), so a commit does not wait on the disk.

After a crash: the log store recovers the partitions (a torn tail batch is dropped), and
``open`` replays what survived. A commit is acknowledged after its append, so what is lost is
what the page cache lost, as with any partition under kpy's flush policy. The log cleaner
compacts the topic (every record here has a key): replay reads the latest record per key, and
the tombstones still kept, which is the same map.

Changing the record format: don't. It is Kafka's, so that Kafka's tools (kafka-dump-log
--offsets-decoder, kafka-console-consumer with the offsets formatter) read it; follow Kafka if
it ever writes a new version, and keep reading the old ones.
"""

from __future__ import annotations

import logging
import struct
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Protocol

from kio.schema.errors import ErrorCode

from kpy.protocol.records import (
    HEADER_SIZE,
    NO_SEQUENCE,
    TRANSACTIONAL_MASK,
    BatchHeader,
    CorruptRecordBatch,
    InvalidRecordBatch,
    Record,
    build_batch,
    decode_records,
    iter_headers,
    validate_batches,
)
from kpy.storage.errors import StorageError
from kpy.storage.log import Log
from kpy.storage.log_manager import LogManager
from kpy.storage.producer_state import AppendOrigin, ControlMarker

log = logging.getLogger("kpy.offsets")

OFFSETS_TOPIC = "__consumer_offsets"
DEFAULT_PARTITIONS = 50  # offsets.topic.num.partitions
DEFAULT_SEGMENT_BYTES = 104857600  # offsets.topic.segment.bytes
OFFSETS_TOPIC_CONFIGS = {
    "cleanup.policy": "compact",
    "compression.type": "producer",
}
OFFSET_COMMIT_KEY_VERSION = 1
OFFSET_COMMIT_VALUE_VERSION = 3
NO_LEADER_EPOCH = -1
_READ_CHUNK = 1 << 20
# Upper bound of a record's framing beyond its key and value bytes (varints for the length,
# timestamp delta, offset delta, key and value lengths; attributes; header count).
_RECORD_OVERHEAD = 24

TopicPartition = tuple[str, int]


@dataclass(frozen=True, slots=True)
class OffsetAndMetadata:
    """One committed offset, as OffsetCommitValue holds it."""

    offset: int
    leader_epoch: int  # -1 when the client gave none
    metadata: str
    commit_timestamp_ms: int


class GroupMembership(Protocol):
    """What the offset handlers ask of the group coordinator (kpy.coordinator.group)."""

    def validate_offset_commit(
        self,
        group_id: str,
        member_id: str,
        generation_id: int,
        group_instance_id: str | None,
        *,
        transactional: bool = False,
    ) -> ErrorCode: ...

    def group_state(self, group_id: str) -> str | None: ...

    def is_empty(self, group_id: str) -> bool: ...

    def subscribed_topics(self, group_id: str) -> set[str] | None: ...


# --- Placement -----------------------------------------------------------------------------


def java_string_hash(text: str) -> int:
    """Java's String.hashCode: s[0]*31^(n-1) + ... + s[n-1] over UTF-16 units, as an int32."""
    h = 0
    units = text.encode("utf-16-be", "surrogatepass")
    for i in range(0, len(units), 2):
        h = (31 * h + (units[i] << 8 | units[i + 1])) & 0xFFFFFFFF
    return h - (1 << 32) if h & 0x80000000 else h


def partition_for(group_id: str, partitions: int) -> int:
    """The ``__consumer_offsets`` partition of a group (Kafka's Utils.abs(hashCode) % n)."""
    h = java_string_hash(group_id)
    return (0 if h == -(1 << 31) else abs(h)) % partitions


def java_string_length(text: str) -> int:
    """Java's String.length(): UTF-16 code units (what offset.metadata.max.bytes counts)."""
    return len(text.encode("utf-16-le", "surrogatepass")) // 2


# --- Record codec --------------------------------------------------------------------------


class CorruptOffsetRecord(ValueError):
    """A record of ``__consumer_offsets`` that does not parse as its version says."""


def encode_string(text: str) -> bytes:
    raw = text.encode("utf-8")
    if len(raw) > 0x7FFF:
        raise ValueError(f"string of {len(raw)} bytes is too long for an int16 length")
    return struct.pack(">h", len(raw)) + raw


def encode_offset_key(group_id: str, topic: str, partition: int) -> bytes:
    return (
        struct.pack(">h", OFFSET_COMMIT_KEY_VERSION)
        + encode_string(group_id)
        + encode_string(topic)
        + struct.pack(">i", partition)
    )


def encode_offset_value(value: OffsetAndMetadata) -> bytes:
    return (
        struct.pack(">hqi", OFFSET_COMMIT_VALUE_VERSION, value.offset, value.leader_epoch)
        + encode_string(value.metadata)
        + struct.pack(">q", value.commit_timestamp_ms)
    )


class RecordReader:
    def __init__(self, buf: bytes) -> None:
        self.buf = buf
        self.pos = 0

    def take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.buf):
            raise CorruptOffsetRecord("record ends early")
        out = self.buf[self.pos : self.pos + n]
        self.pos += n
        return out

    def unpack(self, fmt: str) -> int:
        (value,) = struct.unpack(fmt, self.take(struct.calcsize(fmt)))
        return int(value)

    def uvarint(self) -> int:
        value = shift = 0
        while True:
            byte = self.take(1)[0]
            value |= (byte & 0x7F) << shift
            if not byte & 0x80:
                return value
            shift += 7
            if shift > 28:
                raise CorruptOffsetRecord("varint too long")

    def string(self) -> str:
        return self._utf8(self.take(self.unpack(">h")))

    def compact_string(self) -> str:
        length = self.uvarint() - 1
        if length < 0:
            raise CorruptOffsetRecord("null string in a non-nullable field")
        return self._utf8(self.take(length))

    def skip_tagged_fields(self) -> None:
        for _ in range(self.uvarint()):
            self.uvarint()
            self.take(self.uvarint())

    @staticmethod
    def _utf8(raw: bytes) -> str:
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as e:
            raise CorruptOffsetRecord(str(e)) from None


def decode_offset_key(key: bytes) -> tuple[str, str, int] | None:
    """(group, topic, partition) of an offset commit key; None for other record types."""
    r = RecordReader(key)
    version = r.unpack(">h")
    if version not in (0, 1):
        return None
    return r.string(), r.string(), r.unpack(">i")


def decode_offset_value(value: bytes) -> OffsetAndMetadata:
    r = RecordReader(value)
    version = r.unpack(">h")
    if not 0 <= version <= 4:
        raise CorruptOffsetRecord(f"unknown OffsetCommitValue version {version}")
    offset = r.unpack(">q")
    epoch = r.unpack(">i") if version >= 3 else NO_LEADER_EPOCH
    metadata = r.compact_string() if version >= 4 else r.string()
    timestamp = r.unpack(">q")
    if version == 1:
        r.unpack(">q")  # expireTimestamp: kpy keeps no per-offset expiry
    if version >= 4:
        r.skip_tagged_fields()
    return OffsetAndMetadata(offset, epoch, metadata, timestamp)


def decoded_batches(partition_log: Log) -> Iterator[tuple[BatchHeader, list[Record]]]:
    """Every batch of a coordinator's log partition from its start, with its records decoded;
    a batch that does not decode is skipped with a warning (replay keeps what it can read)."""
    offset = partition_log.log_start_offset
    while offset < partition_log.log_end_offset:
        data = partition_log.read(offset, _READ_CHUNK)
        if not data:
            return
        progressed = False
        for pos, header in iter_headers(data):
            progressed = True
            offset = header.next_offset
            try:
                records = decode_records(memoryview(data)[pos : pos + header.size])
            except (InvalidRecordBatch, CorruptRecordBatch, ValueError) as e:
                log.warning(
                    "%s: skipping undecodable batch at offset %d: %s",
                    partition_log.dir.name,
                    header.base_offset,
                    e,
                )
                continue
            yield header, records
        if not progressed:
            return


# --- The store -----------------------------------------------------------------------------


class OffsetStore:
    """Committed offsets by group, durable in ``__consumer_offsets`` (see the module docstring)."""

    def __init__(
        self,
        logs: LogManager,
        partitions: int,
        leader_epoch: int,
        segment_bytes: int = DEFAULT_SEGMENT_BYTES,
    ) -> None:
        self.logs = logs
        self.partitions = partitions
        self.leader_epoch = leader_epoch
        self._segment_bytes = segment_bytes
        self._offsets: dict[str, dict[TopicPartition, OffsetAndMetadata]] = {}
        # The log offset of the record each committed offset came from.
        self._positions: dict[tuple[str, TopicPartition], int] = {}
        # Transactional commits waiting for their marker: (partition, producer id) ->
        # (group, partition) -> (record offset, value).
        self._pending: dict[
            tuple[int, int], dict[tuple[str, TopicPartition], tuple[int, OffsetAndMetadata]]
        ] = {}

    @classmethod
    def open(
        cls,
        logs: LogManager,
        partitions: int = DEFAULT_PARTITIONS,
        now_ms: int | None = None,
        *,
        segment_bytes: int = DEFAULT_SEGMENT_BYTES,
        leader_epoch: int = 0,
        create: bool = True,
    ) -> OffsetStore:
        """Replay every partition of ``__consumer_offsets``; create the topic first when it is
        missing and ``create`` is true (without it, ``create_topic`` does that later).

        An existing topic keeps its partition count, as in Kafka (where the count cannot change
        once the topic exists without moving every group).
        """
        info = logs.topic(OFFSETS_TOPIC)
        store = cls(logs, partitions, leader_epoch, segment_bytes)
        if info is None:
            if create:
                store.create_topic(now_ms)
            return store
        if info.partitions != partitions:
            log.warning(
                "%s has %d partition(s), not the configured %d: keeping %d",
                OFFSETS_TOPIC,
                info.partitions,
                partitions,
                info.partitions,
            )
            store.partitions = info.partitions
        for partition in range(info.partitions):
            store._replay(partition)
        log.info(
            "loaded %d committed offset(s) of %d group(s) from %s",
            sum(len(g) for g in store._offsets.values()),
            len(store._offsets),
            OFFSETS_TOPIC,
        )
        return store

    @property
    def topic_exists(self) -> bool:
        return self.logs.topic(OFFSETS_TOPIC) is not None

    def create_topic(self, now_ms: int | None = None) -> None:
        """Create ``__consumer_offsets`` (compacted, ``partitions`` partitions) if it is not
        there. May run on a worker thread; the caller makes sure only one runs at a time."""
        if self.topic_exists:
            return
        # Below segment.bytes' minimum (tests): kpy's internal.segment.bytes, as for topics.
        name = "segment.bytes" if self._segment_bytes >= 1048576 else "internal.segment.bytes"
        configs = {**OFFSETS_TOPIC_CONFIGS, name: str(self._segment_bytes)}
        self.logs.create_topic(OFFSETS_TOPIC, self.partitions, configs, now_ms=now_ms)
        log.info("created %s with %d partition(s)", OFFSETS_TOPIC, self.partitions)

    def _log(self, partition: int) -> Log:
        partition_log = self.logs.get_log(OFFSETS_TOPIC, partition)
        if partition_log is None:
            raise StorageError(f"{OFFSETS_TOPIC}-{partition} does not exist")
        return partition_log

    def _replay(self, partition: int) -> None:
        for header, records in decoded_batches(self._log(partition)):
            if header.is_control:
                if header.producer_id >= 0 and records:
                    try:
                        marker = ControlMarker.decode(records[0].key, records[0].value)
                    except InvalidRecordBatch as e:
                        log.warning("%s-%d: %s", OFFSETS_TOPIC, partition, e)
                        continue
                    self.complete_transaction(partition, header.producer_id, not marker.abort)
                continue
            producer = header.producer_id if header.is_transactional else None
            for record in records:
                self._replay_record(partition, record.offset, record.key, record.value, producer)

    def _replay_record(
        self,
        partition: int,
        offset: int,
        key: bytes | None,
        value: bytes | None,
        producer_id: int | None = None,
    ) -> None:
        """``producer_id``: the producer of a transactional batch, None otherwise."""
        if key is None:
            return
        try:
            decoded = decode_offset_key(key)
            if decoded is None:
                return
            group_id, topic, tp_partition = decoded
            tp = (topic, tp_partition)
            if value is None:
                self._forget(group_id, tp)
            elif producer_id is not None:
                pending = self._pending.setdefault((partition, producer_id), {})
                pending[(group_id, tp)] = (offset, decode_offset_value(value))
            else:
                self._remember(group_id, tp, decode_offset_value(value), offset)
        except CorruptOffsetRecord as e:
            log.warning(
                "%s-%d: skipping record at offset %d: %s", OFFSETS_TOPIC, partition, offset, e
            )

    def _remember(
        self, group_id: str, tp: TopicPartition, value: OffsetAndMetadata, position: int
    ) -> None:
        self._offsets.setdefault(group_id, {})[tp] = value
        self._positions[(group_id, tp)] = position

    def _forget(self, group_id: str, tp: TopicPartition) -> None:
        group = self._offsets.get(group_id)
        if group is not None:
            group.pop(tp, None)
            if not group:
                del self._offsets[group_id]
        self._positions.pop((group_id, tp), None)
        partition = self.partition_for(group_id)
        for (part, _), pending in self._pending.items():
            if part == partition:
                pending.pop((group_id, tp), None)

    # --- Transactions ------------------------------------------------------------------------

    def complete_transaction(self, partition: int, producer_id: int, commit: bool) -> None:
        """A marker of ``producer_id`` came to ``partition``: install (commit) or drop its
        pending offsets there (Kafka's replayEndTransactionMarker)."""
        pending = self._pending.pop((partition, producer_id), None)
        if not pending or not commit:
            return
        for (group_id, tp), (position, value) in pending.items():
            current = self._positions.get((group_id, tp))
            if current is None or position > current:
                self._remember(group_id, tp, value, position)

    def has_pending(self, group_id: str, tp: TopicPartition) -> bool:
        """Whether a transaction not yet ended committed an offset of ``tp`` for the group."""
        partition = self.partition_for(group_id)
        return any(
            (group_id, tp) in pending
            for (part, _), pending in self._pending.items()
            if part == partition
        )

    def commit_transactional(
        self,
        group_id: str,
        offsets: Mapping[TopicPartition, OffsetAndMetadata],
        producer_id: int,
        producer_epoch: int,
        *,
        now_ms: int | None = None,
    ) -> None:
        """Write offsets committed inside a transaction (TxnOffsetCommit): pending until the
        producer's marker. Raises as ``Log.append`` does (InvalidProducerEpoch for an epoch
        older than the producer's); then nothing of the call is stored."""
        if not offsets:
            return
        records: list[tuple[bytes, bytes | None]] = [
            (encode_offset_key(group_id, topic, partition), encode_offset_value(value))
            for (topic, partition), value in offsets.items()
        ]
        partition = self.partition_for(group_id)
        first = self._append(
            partition, records, _now(now_ms), producer=(producer_id, producer_epoch)
        )
        pending = self._pending.setdefault((partition, producer_id), {})
        for i, (tp, value) in enumerate(offsets.items()):
            pending[(group_id, tp)] = (first + i, value)

    # --- Writing -----------------------------------------------------------------------------

    def partition_for(self, group_id: str) -> int:
        return partition_for(group_id, self.partitions)

    def _append(
        self,
        partition: int,
        records: list[tuple[bytes, bytes | None]],
        now_ms: int,
        *,
        producer: tuple[int, int] | None = None,
    ) -> int:
        """Append records to one partition, in as few batches as max.message.bytes allows
        (transactional batches of ``producer``, (id, epoch), if given); the offset of the
        first record (the rest follow it).

        Raises StorageError (RecordTooLarge, KafkaStorageError, ...) or OSError; then nothing
        of this call is in the log.
        """
        if not records:
            return -1
        batch_args: dict[str, int] = {}
        if producer is not None:
            batch_args = {
                "producer_id": producer[0],
                "producer_epoch": producer[1],
                "base_sequence": NO_SEQUENCE,
                "attributes": TRANSACTIONAL_MASK,
            }
        partition_log = self._log(partition)
        max_bytes = partition_log.config.max_message_bytes
        buf = bytearray()
        chunk: list[tuple[bytes | None, bytes | None]] = []
        size = HEADER_SIZE
        for key, value in records:
            record_size = len(key) + len(value or b"") + _RECORD_OVERHEAD
            if chunk and size + record_size > max_bytes:
                buf += build_batch(chunk, timestamp=now_ms, **batch_args)
                chunk, size = [], HEADER_SIZE
            chunk.append((key, value))
            size += record_size
        buf += build_batch(chunk, timestamp=now_ms, **batch_args)
        headers = validate_batches(buf)
        result = partition_log.append(
            buf,
            headers,
            now_ms=now_ms,
            leader_epoch=self.leader_epoch,
            origin=AppendOrigin.COORDINATOR,
        )
        return result.base_offset

    def _tombstone(
        self, targets: Iterable[tuple[str, TopicPartition]], now_ms: int | None = None
    ) -> int:
        """Write tombstones for (group, partition) pairs that have offsets, then drop them."""
        now = _now(now_ms)
        by_partition: dict[int, list[tuple[str, TopicPartition]]] = {}
        for group_id, tp in targets:
            if tp in self._offsets.get(group_id, {}):
                by_partition.setdefault(self.partition_for(group_id), []).append((group_id, tp))
        done = 0
        for partition, pairs in sorted(by_partition.items()):
            unique = list(dict.fromkeys(pairs))
            self._append(
                partition, [(encode_offset_key(g, t, p), None) for g, (t, p) in unique], now
            )
            for group_id, tp in unique:
                self._forget(group_id, tp)
            done += len(unique)
        return done

    def commit(
        self,
        group_id: str,
        offsets: Mapping[TopicPartition, OffsetAndMetadata],
        *,
        now_ms: int | None = None,
    ) -> None:
        """Store offsets for a group (all in one append to the group's partition).

        Membership and metadata size are the caller's checks. Raises as ``Log.append`` does;
        then no offset of the call is stored.
        """
        if not offsets:
            return
        records: list[tuple[bytes, bytes | None]] = [
            (encode_offset_key(group_id, topic, partition), encode_offset_value(value))
            for (topic, partition), value in offsets.items()
        ]
        first = self._append(self.partition_for(group_id), records, _now(now_ms))
        for i, (tp, value) in enumerate(offsets.items()):
            self._remember(group_id, tp, value, first + i)

    def fetch(
        self, group_id: str, partitions: Iterable[TopicPartition] | None = None
    ) -> dict[TopicPartition, OffsetAndMetadata]:
        """The group's committed offsets among ``partitions`` (None: all of them); partitions
        without a commit are absent from the answer."""
        stored = self._offsets.get(group_id, {})
        if partitions is None:
            return dict(stored)
        return {tp: stored[tp] for tp in partitions if tp in stored}

    def delete_offsets(
        self, group_id: str, partitions: Iterable[TopicPartition], *, now_ms: int | None = None
    ) -> int:
        """Tombstone the group's offsets of ``partitions`` (OffsetDelete); how many existed."""
        return self._tombstone(((group_id, tp) for tp in partitions), now_ms)

    def delete_group(self, group_id: str, *, now_ms: int | None = None) -> int:
        """Tombstone all of a group's offsets (DeleteGroups); how many there were."""
        return self._tombstone(
            ((group_id, tp) for tp in list(self._offsets.get(group_id, {}))), now_ms
        )

    def delete_topic(self, topic: str, *, now_ms: int | None = None) -> int:
        """Tombstone every group's offsets of a deleted topic; how many there were."""
        targets = [
            (group_id, tp)
            for group_id, stored in self._offsets.items()
            for tp in stored
            if tp[0] == topic
        ]
        return self._tombstone(targets, now_ms)

    def expire(self, now_ms: int, retention_ms: int, is_empty: Callable[[str], bool]) -> int:
        """Tombstone offsets committed ``retention_ms`` or longer ago (offsets.retention.minutes)
        in groups for which ``is_empty`` holds; how many expired.

        Kafka measures an Empty consumer group's retention from when it became Empty; kpy's
        groups keep no such timestamp, so it is measured from each offset's commit, as Kafka
        does for groups without a protocol type (simple consumers).
        """
        targets = [
            (group_id, tp)
            for group_id, stored in self._offsets.items()
            if is_empty(group_id)
            for tp, value in stored.items()
            if now_ms - value.commit_timestamp_ms >= retention_ms
        ]
        expired = self._tombstone(targets, now_ms)
        if expired:
            log.info("expired %d committed offset(s)", expired)
        return expired

    # --- Queries -----------------------------------------------------------------------------

    def groups(self) -> set[str]:
        """Groups that have committed offsets."""
        return set(self._offsets)

    def has_offsets(self, group_id: str) -> bool:
        return group_id in self._offsets


def _now(now_ms: int | None) -> int:
    return int(time.time() * 1000) if now_ms is None else now_ms
