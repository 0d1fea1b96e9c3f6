"""Produce, Fetch and ApiVersions requests, decoded by hand: the busiest requests and the first
one every client sends.

Hand-written because kio's reader costs at both ends of a broker's life. At start-up, reading one
of these through kio imports that version's schema module, whose frozen dataclasses take 5-20 ms
to declare, all on the way to a client's first acknowledged record. Under load, kio builds and
type-checks a frozen dataclass for the request, each topic and each partition of every Produce
and Fetch, and the safe walk of kio's types that kpy uses for other requests (messages.py) costs
ten times more. Here the same fields come out as NamedTuples with kio's field names (a field a
version lacks holds Kafka's default; Fetch's wait is ``max_wait_ms``, an int), read straight
from the frame in the layouts of Kafka's ProduceRequest.json (v0-v11, flexible from v9),
FetchRequest.json (v0-v16, flexible from v12) and ApiVersionsRequest.json (v0-v4, flexible from
v3). Tagged fields are skipped: the protocol asks that unknown ones be, and the ones Fetch
defines (ClusterId, ReplicaState, ReplicaDirectoryId) concern followers, which a single broker
has none of. Anything that does not parse is a ProtocolError, on which Kafka closes the
connection. tests/protocol/test_hot_requests.py checks every version against kio's reader.
"""

from __future__ import annotations

import struct
import uuid
from typing import NamedTuple

from kpy.protocol.wire import ProtocolError, read_uvarint, skip_tagged_fields

PRODUCE_KEY = 0
FETCH_KEY = 1
API_VERSIONS_KEY = 18
PRODUCE_FLEXIBLE = 9
FETCH_FLEXIBLE = 12
API_VERSIONS_FLEXIBLE = 3

_I16 = struct.Struct(">h")
_I32 = struct.Struct(">i")
_ACKS_TIMEOUT = struct.Struct(">hi")
_I32_PAIR = struct.Struct(">ii")
_I64 = struct.Struct(">q")
_I8 = struct.Struct(">b")
_WAIT_MIN = struct.Struct(">ii")  # max_wait_ms, min_bytes
_SESSION = struct.Struct(">ii")  # session_id, session_epoch


class PartitionProduceData(NamedTuple):
    index: int  # type: ignore[assignment]  # kio's name; shadows tuple.index, unused here
    records: bytes | None


class TopicProduceData(NamedTuple):
    name: str
    partition_data: tuple[PartitionProduceData, ...]


class ProduceRequest(NamedTuple):
    transactional_id: str | None
    acks: int
    timeout_ms: int
    topic_data: tuple[TopicProduceData, ...]


class FetchPartition(NamedTuple):
    partition: int
    current_leader_epoch: int  # v9+, else -1
    fetch_offset: int
    last_fetched_epoch: int  # v12+, else -1
    log_start_offset: int  # v5+, else -1
    partition_max_bytes: int


class FetchTopic(NamedTuple):
    topic: str | None  # v0-v12
    topic_id: uuid.UUID | None  # v13+ (None: the zero UUID, as kio reads it)
    partitions: tuple[FetchPartition, ...]


class ForgottenTopic(NamedTuple):
    topic: str | None
    topic_id: uuid.UUID | None
    partitions: tuple[int, ...]


class FetchRequest(NamedTuple):
    replica_id: int  # v0-v14, else -1
    max_wait_ms: int
    min_bytes: int
    max_bytes: int  # v3+, else 0x7FFFFFFF
    isolation_level: int  # v4+, else 0
    session_id: int  # v7+, else 0
    session_epoch: int  # v7+, else -1
    topics: tuple[FetchTopic, ...]
    forgotten_topics_data: tuple[ForgottenTopic, ...]  # v7+
    rack_id: str  # v11+, else ""


class ApiVersionsRequest(NamedTuple):
    client_software_name: str  # "" before v3
    client_software_version: str


def decode_produce(frame: bytes, pos: int, version: int) -> ProduceRequest:
    try:
        if version >= PRODUCE_FLEXIBLE:
            return _produce_flexible(frame, pos)
        return _produce_classic(frame, pos, version)
    except (struct.error, IndexError, UnicodeDecodeError) as e:
        raise ProtocolError(f"Produce v{version} does not parse: {e!r}") from e


def decode_fetch(frame: bytes, pos: int, version: int) -> FetchRequest:
    try:
        return _fetch(frame, pos, version)
    except (struct.error, IndexError, UnicodeDecodeError) as e:
        raise ProtocolError(f"Fetch v{version} does not parse: {e!r}") from e


def _fetch(buf: bytes, pos: int, version: int) -> FetchRequest:
    flexible = version >= FETCH_FLEXIBLE
    by_id = version >= 13
    i32, i64 = _I32.unpack_from, _I64.unpack_from
    replica_id = -1
    if version <= 14:
        (replica_id,) = i32(buf, pos)
        pos += 4
    max_wait_ms, min_bytes = _WAIT_MIN.unpack_from(buf, pos)
    pos += 8
    max_bytes, isolation_level, session_id, session_epoch = 0x7FFFFFFF, 0, 0, -1
    if version >= 3:
        (max_bytes,) = i32(buf, pos)
        pos += 4
    if version >= 4:
        (isolation_level,) = _I8.unpack_from(buf, pos)
        pos += 1
    if version >= 7:
        session_id, session_epoch = _SESSION.unpack_from(buf, pos)
        pos += 8
    count, pos = _array_length(buf, pos, flexible)
    topics = []
    for _ in range(count):
        name = topic_id = None
        if by_id:
            topic_id, pos = _uuid(buf, pos)
        else:
            name, pos = _string(buf, pos, flexible)
        partition_count, pos = _array_length(buf, pos, flexible)
        partitions = []
        for _ in range(partition_count):
            (partition,) = i32(buf, pos)
            pos += 4
            current_leader_epoch = last_fetched_epoch = log_start_offset = -1
            if version >= 9:
                (current_leader_epoch,) = i32(buf, pos)
                pos += 4
            (fetch_offset,) = i64(buf, pos)
            pos += 8
            if flexible:
                (last_fetched_epoch,) = i32(buf, pos)
                pos += 4
            if version >= 5:
                (log_start_offset,) = i64(buf, pos)
                pos += 8
            (partition_max_bytes,) = i32(buf, pos)
            pos += 4
            if flexible:
                pos = pos + 1 if buf[pos] == 0 else skip_tagged_fields(buf, pos)
            partitions.append(
                FetchPartition(
                    partition,
                    current_leader_epoch,
                    fetch_offset,
                    last_fetched_epoch,
                    log_start_offset,
                    partition_max_bytes,
                )
            )
        if flexible:
            pos = pos + 1 if buf[pos] == 0 else skip_tagged_fields(buf, pos)
        topics.append(FetchTopic(name, topic_id, tuple(partitions)))
    forgotten = []
    if version >= 7:
        count, pos = _array_length(buf, pos, flexible)
        for _ in range(count):
            name = topic_id = None
            if by_id:
                topic_id, pos = _uuid(buf, pos)
            else:
                name, pos = _string(buf, pos, flexible)
            partition_count, pos = _array_length(buf, pos, flexible)
            end = pos + 4 * partition_count
            if end > len(buf):
                raise ProtocolError("forgotten partitions run past the frame")
            indexes = struct.unpack_from(f">{partition_count}i", buf, pos)
            pos = end
            if flexible:
                pos = skip_tagged_fields(buf, pos)
            forgotten.append(ForgottenTopic(name, topic_id, indexes))
    rack_id = ""
    if version >= 11:
        rack_id, pos = _string(buf, pos, flexible)
    if flexible:
        skip_tagged_fields(buf, pos)
    return FetchRequest(
        replica_id,
        max_wait_ms,
        min_bytes,
        max_bytes,
        isolation_level,
        session_id,
        session_epoch,
        tuple(topics),
        tuple(forgotten),
        rack_id,
    )


def _array_length(buf: bytes, pos: int, flexible: bool) -> tuple[int, int]:
    """A non-nullable array's length, at most the bytes left (every entry takes one or more)."""
    if flexible:
        count, pos = read_uvarint(buf, pos)
        count -= 1
    else:
        (count,) = _I32.unpack_from(buf, pos)
        pos += 4
    if count < 0:
        raise ProtocolError("null or negative array length")
    if count > len(buf) - pos:
        raise ProtocolError(f"array of {count} entries in {len(buf) - pos} bytes")
    return count, pos


def _string(buf: bytes, pos: int, flexible: bool) -> tuple[str, int]:
    """A non-nullable string."""
    if flexible:
        text, pos = _compact_string(buf, pos)
    else:
        (size,) = _I16.unpack_from(buf, pos)
        text = _text(buf, pos + 2, size) if size >= 0 else None
        pos += 2 + max(size, 0)
    if text is None:
        raise ProtocolError("null string where the schema has none")
    return text, pos


def _uuid(buf: bytes, pos: int) -> tuple[uuid.UUID | None, int]:
    raw = buf[pos : pos + 16]
    if len(raw) < 16:
        raise ProtocolError("uuid runs past the frame")
    return (uuid.UUID(bytes=raw) if any(raw) else None), pos + 16


def decode_api_versions(frame: bytes, pos: int, version: int) -> ApiVersionsRequest:
    if version < API_VERSIONS_FLEXIBLE:
        return ApiVersionsRequest("", "")
    try:
        name, pos = _compact_string(frame, pos)
        software_version, pos = _compact_string(frame, pos)
        skip_tagged_fields(frame, pos)
    except (IndexError, UnicodeDecodeError) as e:
        raise ProtocolError(f"ApiVersions v{version} does not parse: {e!r}") from e
    if name is None or software_version is None:
        raise ProtocolError("ApiVersions: null client software name or version")
    return ApiVersionsRequest(name, software_version)


def _produce_classic(buf: bytes, pos: int, version: int) -> ProduceRequest:
    """v0-v8: int16-sized strings, int32-sized arrays and bytes."""
    i16, i32 = _I16.unpack_from, _I32.unpack_from
    transactional_id = None
    if version >= 3:
        (size,) = i16(buf, pos)
        pos += 2
        if size >= 0:
            transactional_id = _text(buf, pos, size)
            pos += size
        elif size != -1:
            raise ProtocolError(f"invalid string length {size}")
    acks, timeout_ms = _ACKS_TIMEOUT.unpack_from(buf, pos)
    pos += 6
    (topic_count,) = i32(buf, pos)
    pos += 4
    _check_count(topic_count)
    topics = []
    for _ in range(topic_count):
        (size,) = i16(buf, pos)
        pos += 2
        if size < 0:
            raise ProtocolError("null topic name")
        name = _text(buf, pos, size)
        pos += size
        (partition_count,) = i32(buf, pos)
        pos += 4
        _check_count(partition_count)
        partitions = []
        for _ in range(partition_count):
            index, size = _I32_PAIR.unpack_from(buf, pos)
            pos += 8
            records = None
            if size >= 0:
                end = pos + size
                if end > len(buf):
                    raise ProtocolError("records run past the frame")
                records = buf[pos:end]
                pos = end
            elif size != -1:
                raise ProtocolError(f"invalid records length {size}")
            partitions.append(PartitionProduceData(index, records))
        topics.append(TopicProduceData(name, tuple(partitions)))
    return ProduceRequest(transactional_id, acks, timeout_ms, tuple(topics))


def _produce_flexible(buf: bytes, pos: int) -> ProduceRequest:
    """v9+: compact (varint length + 1) strings, arrays and bytes; tagged fields after each
    partition, topic and the request. Written for speed: one-byte varints (nearly every count
    and length) are read inline, and the NamedTuples are made without their keyword-handling
    constructors."""
    new = tuple.__new__
    transactional_id, pos = _compact_string(buf, pos)
    acks, timeout_ms = _ACKS_TIMEOUT.unpack_from(buf, pos)
    pos += 6
    topic_count = buf[pos]
    if topic_count < 0x80:
        pos += 1
    else:
        topic_count, pos = read_uvarint(buf, pos)
    if topic_count == 0:
        raise ProtocolError("null topic array")
    topics = []
    for _ in range(topic_count - 1):
        size = buf[pos]
        if 0 < size < 0x80:  # a short name: inline
            end = pos + size
            if end > len(buf):
                raise ProtocolError("string runs past the frame")
            name = buf[pos + 1 : end].decode("utf-8")
            pos = end
        else:
            text, pos = _compact_string(buf, pos)
            if text is None:
                raise ProtocolError("null topic name")
            name = text
        partition_count = buf[pos]
        if partition_count < 0x80:
            pos += 1
        else:
            partition_count, pos = read_uvarint(buf, pos)
        if partition_count == 0:
            raise ProtocolError("null partition array")
        partitions = []
        for _ in range(partition_count - 1):
            (index,) = _I32.unpack_from(buf, pos)
            size, pos = read_uvarint(buf, pos + 4)
            records = None
            if size:
                end = pos + size - 1
                if end > len(buf):
                    raise ProtocolError("records run past the frame")
                records = buf[pos:end]
                pos = end
            pos = pos + 1 if buf[pos] == 0 else skip_tagged_fields(buf, pos)
            partitions.append(new(PartitionProduceData, (index, records)))
        pos = pos + 1 if buf[pos] == 0 else skip_tagged_fields(buf, pos)
        topics.append(new(TopicProduceData, (name, tuple(partitions))))
    skip_tagged_fields(buf, pos)
    return new(ProduceRequest, (transactional_id, acks, timeout_ms, tuple(topics)))


def _compact_string(buf: bytes, pos: int) -> tuple[str | None, int]:
    size, pos = read_uvarint(buf, pos)
    if size == 0:
        return None, pos
    return _text(buf, pos, size - 1), pos + size - 1


def _text(buf: bytes, pos: int, size: int) -> str:
    end = pos + size
    if end > len(buf):
        raise ProtocolError("string runs past the frame")
    return buf[pos:end].decode("utf-8")


def _check_count(count: int) -> None:
    if count < 0:
        raise ProtocolError(f"invalid array length {count}")
