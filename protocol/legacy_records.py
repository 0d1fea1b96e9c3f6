"""Message formats v0 and v1 (the MessageSet of Kafka before 0.11), and conversion to and from
record batches (v2). Hand-written, like records.py; kpy stores only v2 batches.

A message set is a sequence of entries, big-endian:

    offset        int64
    message_size  int32   bytes that follow this field
    crc           uint32  CRC-32 (IEEE) of magic..end
    magic         int8    0 or 1
    attributes    int8    bits 0-2 codec; bit 3 LogAppendTime (v1 only)
    timestamp     int64   v1 only
    key           int32 length (-1: null) + bytes
    value         int32 length (-1: null) + bytes

A compressed message (a "wrapper") holds, as its value, a compressed message set of uncompressed
inner messages of the same magic. In v1 the inner offsets are relative (0, 1, ...) and the
wrapper's offset is the absolute offset of the last inner message; in v0 the inner offsets are
absolute. A v1 wrapper with the LogAppendTime bit gives its timestamp to every inner message.

Up-conversion (Produce v0-v2) follows Kafka's LogValidator when the log's format is v2: the
shallow messages must share one magic; a compressed wrapper must be the only message; inner
messages must not be compressed and must carry the wrapper's magic; every CRC is checked. The
records become one v2 batch with offsets 0..n-1 (the log assigns the real ones), no producer id,
v0 timestamps as -1 (v0 has none), compressed with the wrapper's codec unless the topic's
compression.type names another.

Down-conversion (Fetch v0-v3) follows Kafka's RecordsUtil.downConvert: control batches are
dropped; an uncompressed v2 batch becomes one message per record, those below the fetch offset
dropped; a compressed batch becomes one wrapper with every record. zstd cannot be expressed in
v0/v1: where Kafka refuses the fetch, kpy sends such a batch's records uncompressed, so that an
old client can read what a new one wrote. LogAppendTime batches give each message the append
time and, in v1, the LogAppendTime bit. Headers are dropped (v0/v1 have none).

Pure functions over bytes; callers run big conversions on a worker thread.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass

from kpy.protocol import compression
from kpy.protocol import records as rb

MAGIC_OFFSET = 16  # where the magic byte sits in both layouts (and in a v2 batch header)
LOG_OVERHEAD = 12  # offset + message_size
_ENTRY = struct.Struct(">qiIbb")  # offset, size, crc, magic, attributes
_TIMESTAMP = struct.Struct(">q")
_INT32 = struct.Struct(">i")
HEADER_SIZE = {0: 14, 1: 22}  # crc..key length is at least this (v0: 4+1+1+4+4)
TIMESTAMP_TYPE_MASK = 0x08


class InvalidTimestamp(Exception):
    """A producer set the LogAppendTime bit where Kafka refuses it (INVALID_TIMESTAMP)."""


class UnsupportedCompression(Exception):
    """zstd in a v0/v1 message set, which those formats never had (UNSUPPORTED_COMPRESSION_TYPE)."""


@dataclass(frozen=True, slots=True)
class Message:
    offset: int
    magic: int
    attributes: int
    timestamp: int  # -1 in v0
    key: bytes | None
    value: bytes | None
    size: int  # bytes the entry occupies, offset and size fields included

    @property
    def codec(self) -> int:
        return self.attributes & 0x07

    @property
    def is_log_append_time(self) -> bool:
        return self.magic > 0 and bool(self.attributes & TIMESTAMP_TYPE_MASK)


def magic_of(buf: bytes | bytearray | memoryview) -> int:
    """The magic byte of the first entry (message or batch), or -1 when there is none."""
    return buf[MAGIC_OFFSET] if len(buf) > MAGIC_OFFSET else -1


def _read_bytes(buf: bytes, pos: int, end: int) -> tuple[bytes | None, int]:
    if pos + 4 > end:
        raise rb.CorruptRecordBatch("message field runs past the message")
    (length,) = _INT32.unpack_from(buf, pos)
    pos += 4
    if length < 0:
        return None, pos
    if pos + length > end:
        raise rb.CorruptRecordBatch("message field runs past the message")
    return buf[pos : pos + length], pos + length


def iter_messages(buf: bytes, pos: int = 0) -> Iterator[Message]:
    """The messages of a message set, shallowly; a partial message at the end is ignored (as
    Kafka trims it). Raises CorruptRecordBatch for a bad CRC or a message that does not parse,
    InvalidRecordBatch for an unknown magic."""
    end = len(buf)
    while end - pos >= LOG_OVERHEAD:
        offset, size = struct.unpack_from(">qi", buf, pos)
        start = pos + LOG_OVERHEAD
        stop = start + size
        if size < HEADER_SIZE[0]:
            raise rb.CorruptRecordBatch(f"message size {size} is below the minimum")
        if stop > end:
            return
        _, _, crc, magic, attributes = _ENTRY.unpack_from(buf, pos)
        if magic not in (0, 1):
            raise rb.InvalidRecordBatch(f"unsupported message format magic {magic}")
        if zlib.crc32(memoryview(buf)[start + 4 : stop]) != crc:
            raise rb.CorruptRecordBatch("message CRC-32 mismatch")
        field = start + 6
        timestamp = rb.NO_TIMESTAMP
        if magic == 1:
            if size < HEADER_SIZE[1]:
                raise rb.CorruptRecordBatch(f"message size {size} is below the minimum")
            (timestamp,) = _TIMESTAMP.unpack_from(buf, field)
            field += 8
        key, field = _read_bytes(buf, field, stop)
        value, field = _read_bytes(buf, field, stop)
        if field != stop:
            raise rb.CorruptRecordBatch("message size does not match its fields")
        yield Message(offset, magic, attributes, timestamp, key, value, LOG_OVERHEAD + size)
        pos = stop


def inner_messages(wrapper: Message, limit: int) -> list[Message]:
    """The messages inside a compressed wrapper, with absolute offsets and the timestamps
    readers see (Kafka's AbstractLegacyRecordBatch deep iterator)."""
    if wrapper.value is None:
        raise rb.InvalidRecordBatch("compressed message with a null value")
    try:
        data = _inner_set(wrapper, limit)
    except compression.DecompressionError as e:
        raise rb.CorruptRecordBatch(str(e)) from e
    inner = list(iter_messages(data))
    if not inner:
        raise rb.InvalidRecordBatch("compressed message set with no inner messages")
    out = []
    last_relative = inner[-1].offset
    for msg in inner:
        if msg.magic != wrapper.magic:
            raise rb.InvalidRecordBatch("inner message magic differs from its wrapper's")
        if msg.codec:
            raise rb.InvalidRecordBatch("inner messages must not be compressed")
        offset = msg.offset
        timestamp = msg.timestamp
        if wrapper.magic == 1:
            offset = wrapper.offset - last_relative + msg.offset
            if wrapper.is_log_append_time:
                timestamp = wrapper.timestamp
        out.append(
            Message(offset, msg.magic, msg.attributes, timestamp, msg.key, msg.value, msg.size)
        )
    return out


def _inner_set(wrapper: Message, limit: int) -> bytes:
    """The decompressed value of a wrapper, read piece by piece and checked as it comes: at the
    first message that cannot be whole (a size below the minimum) decompression stops, and
    iter_messages then refuses what came, in order. A few KiB that expand to junk cost a piece
    of memory, not the limit; messages that are whole are held, since they are converted."""
    assert wrapper.value is not None
    data = bytearray()
    pos = 0  # the first message not yet seen whole
    for piece in compression.stream(wrapper.codec, wrapper.value, limit, magic=wrapper.magic):
        data += piece
        while len(data) - pos >= LOG_OVERHEAD:
            (size,) = _INT32.unpack_from(data, pos + 8)
            if size < HEADER_SIZE[0]:
                return bytes(data)
            if pos + LOG_OVERHEAD + size > len(data):
                break
            pos += LOG_OVERHEAD + size
    return bytes(data)


# --- Produce: v0/v1 message sets up to a v2 batch -------------------------------------------


def to_record_batch(
    buf: bytes,
    *,
    log_append_time: bool,
    target_codec: int | None,
    limit: int = compression.DEFAULT_DECOMPRESSED_LIMIT,
) -> bytes:
    """Convert a produced v0/v1 message set to one v2 batch (base offset 0).

    ``target_codec`` None keeps the producer's codec (compression.type=producer). Raises
    InvalidRecordBatch, CorruptRecordBatch (also for a payload that does not decompress),
    InvalidTimestamp, UnsupportedCompression (zstd, which v0/v1 never allowed).
    """
    shallow = list(iter_messages(buf))
    if not shallow:
        raise rb.InvalidRecordBatch("message set has no messages")
    magic = shallow[0].magic
    source_codec = compression.NONE
    for msg in shallow:
        if msg.magic != magic:
            raise rb.InvalidRecordBatch("messages of one set must share one magic")
        if msg.codec == compression.ZSTD:
            raise UnsupportedCompression("zstd needs message format v2")
        if msg.codec > compression.ZSTD:
            raise rb.InvalidRecordBatch(f"unknown compression codec {msg.codec}")
        if msg.codec:
            source_codec = msg.codec
    if source_codec and len(shallow) > 1:
        raise rb.InvalidRecordBatch("Compressed outer record has more than one batch")
    flat: list[Message] = []
    for msg in shallow:
        _check_timestamp_type(msg, log_append_time)
        flat.extend(inner_messages(msg, limit) if msg.codec else [msg])
    records = [rb.Record(i, m.timestamp, m.key, m.value, ()) for i, m in enumerate(flat)]
    codec = source_codec if target_codec is None else target_codec
    return rb.encode_batch(records, base_offset=0, codec=codec)


def _check_timestamp_type(msg: Message, log_append_time: bool) -> None:
    # LogValidator.validateTimestamp: a CreateTime topic takes a timestamped record as it is;
    # otherwise a producer must not claim LogAppendTime.
    if not log_append_time and msg.timestamp != rb.NO_TIMESTAMP:
        return
    if msg.is_log_append_time:
        raise InvalidTimestamp(
            "Invalid timestamp type in message: a producer must not set LogAppendTime"
        )


# --- Fetch: stored v2 batches down to v0/v1 -------------------------------------------------


def encode_message(
    offset: int,
    magic: int,
    attributes: int,
    timestamp: int,
    key: bytes | None,
    value: bytes | None,
) -> bytes:
    body = bytearray(struct.pack(">bb", magic, attributes))
    if magic == 1:
        body += _TIMESTAMP.pack(timestamp)
    for field in (key, value):
        if field is None:
            body += _INT32.pack(-1)
        else:
            body += _INT32.pack(len(field))
            body += field
    return struct.pack(">qiI", offset, len(body) + 4, zlib.crc32(body)) + bytes(body)


def encode_message_set(
    records: list[tuple[int, int, bytes | None, bytes | None]],
    *,
    magic: int,
    codec: int = compression.NONE,
    log_append_time: int | None = None,
) -> bytes:
    """(offset, timestamp, key, value) records as messages of ``magic``: one message each, or
    with ``codec`` one wrapper around them all, as Kafka's MemoryRecordsBuilder writes them."""
    lat = log_append_time if log_append_time is not None and magic == 1 else None
    attributes = TIMESTAMP_TYPE_MASK if lat is not None else 0
    if not codec:
        return b"".join(
            encode_message(off, magic, attributes, ts if lat is None else lat, k, v)
            for off, ts, k, v in records
        )
    base = records[0][0]
    inner = b"".join(
        encode_message(
            off - base if magic == 1 else off,
            magic,
            attributes,
            ts if lat is None else lat,
            k,
            v,
        )
        for off, ts, k, v in records
    )
    max_ts = max((ts for _, ts, _, _ in records), default=rb.NO_TIMESTAMP)
    wrapper_ts = max_ts if lat is None else lat
    value = compression.compress(codec, inner, magic=magic)
    return encode_message(records[-1][0], magic, codec | attributes, wrapper_ts, None, value)


def down_convert(
    data: bytes,
    to_magic: int,
    fetch_offset: int,
    budget: int,
    limit: int = compression.DEFAULT_DECOMPRESSED_LIMIT,
) -> bytes:
    """Convert whole v2 batches (as Log.read returns them) to a v0/v1 message set.

    Stops before the message (or wrapper) that would take the output past ``budget`` bytes,
    though the first one always goes.
    """
    out = bytearray()
    for pos, header in rb.iter_headers(data):
        if header.is_control:
            continue
        try:
            records = rb.decode_records(memoryview(data)[pos : pos + header.size], limit)
        except compression.DecompressionError as e:
            raise rb.CorruptRecordBatch(str(e)) from e
        lat = header.max_timestamp if header.is_log_append_time else None
        codec = header.compression if header.compression != compression.ZSTD else compression.NONE
        # A wrapper holds the whole batch; plain messages start at the fetch offset.
        units = [records] if codec else [[r] for r in records if r.offset >= fetch_offset]
        for unit in units:
            if not unit:
                continue
            chunk = encode_message_set(
                [
                    (r.offset, _legacy_timestamp(r.timestamp, to_magic), r.key, r.value)
                    for r in unit
                ],
                magic=to_magic,
                codec=codec,
                log_append_time=lat,
            )
            if out and len(out) + len(chunk) > budget:
                return bytes(out)
            out += chunk
    return bytes(out)


def _legacy_timestamp(timestamp: int, magic: int) -> int:
    if magic == 0:
        return rb.NO_TIMESTAMP
    # v1 stores -1 for "no timestamp" and nothing else below 0.
    return timestamp if timestamp >= 0 else rb.NO_TIMESTAMP
