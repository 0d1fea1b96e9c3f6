"""Record batches (message format v2) as bytes.

Hand-written: kio's record reader drops the milliseconds of timestamps and decodes every record,
and the broker's hot path must not decode records at all. This module reads and patches the
61-byte batch header in place and checks the CRC-32C; it decodes records only for the callers
that Kafka's semantics force to look inside (ListOffsets by timestamp, tests).

Layout of a v2 batch header (big-endian), offsets in bytes:

    0  base_offset            int64
    8  batch_length           int32   bytes that follow this field
    12 partition_leader_epoch int32
    16 magic                  int8    == 2
    17 crc                    uint32  CRC-32C of bytes [21, end)
    21 attributes             int16   bits 0-2 codec, 3 log-append-time, 4 transactional, 5 control
    23 last_offset_delta      int32
    27 base_timestamp         int64
    35 max_timestamp          int64
    43 producer_id            int64
    51 producer_epoch         int16
    53 base_sequence          int32
    57 records_count          int32
    61 records...

base_offset, batch_length and partition_leader_epoch lie outside the CRC, so the broker patches
them without recomputing it. Setting log-append-time changes attributes and max_timestamp, which
the CRC covers, so that path recomputes it.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator, Sequence
from typing import NamedTuple

from kio.serial.errors import DecodeError
from kio.serial.readers import read_signed_varint, read_signed_varlong

from kpy.protocol.crc import crc32c

HEADER_SIZE = 61
LOG_OVERHEAD = 12  # base_offset + batch_length: what precedes the length-counted part
MAGIC_OFFSET = 16
CRC_OFFSET = 17
ATTRIBUTES_OFFSET = 21

COMPRESSION_MASK = 0x07
TIMESTAMP_TYPE_MASK = 0x08
TRANSACTIONAL_MASK = 0x10
CONTROL_MASK = 0x20

NO_PRODUCER_ID = -1
NO_PRODUCER_EPOCH = -1
NO_SEQUENCE = -1
NO_TIMESTAMP = -1

_HEADER = struct.Struct(">qiibIhiqqqhii")
_BASE_OFFSET = struct.Struct(">q")
_INT32 = struct.Struct(">i")
_ATTRS_AND_REST = struct.Struct(">hiqq")  # attributes, last_offset_delta, base_ts, max_ts


class InvalidRecordBatch(Exception):
    """The bytes are not a well-formed v2 record batch (Kafka: INVALID_RECORD)."""


class CorruptRecordBatch(Exception):
    """The batch's CRC-32C does not match its bytes (Kafka: CORRUPT_MESSAGE)."""


class BatchHeader(NamedTuple):
    """The 61-byte header of a batch. A NamedTuple (built from the unpacked struct without a
    per-field ``__init__``): the hot paths read several per request, a fetch dozens."""

    base_offset: int
    batch_length: int
    partition_leader_epoch: int
    magic: int
    crc: int
    attributes: int
    last_offset_delta: int
    base_timestamp: int
    max_timestamp: int
    producer_id: int
    producer_epoch: int
    base_sequence: int
    records_count: int

    @property
    def size(self) -> int:
        """Bytes the whole batch occupies, header included."""
        return self.batch_length + LOG_OVERHEAD

    @property
    def last_offset(self) -> int:
        return self.base_offset + self.last_offset_delta

    @property
    def next_offset(self) -> int:
        return self.base_offset + self.last_offset_delta + 1

    @property
    def compression(self) -> int:
        return self.attributes & COMPRESSION_MASK

    @property
    def is_log_append_time(self) -> bool:
        return bool(self.attributes & TIMESTAMP_TYPE_MASK)

    @property
    def is_transactional(self) -> bool:
        return bool(self.attributes & TRANSACTIONAL_MASK)

    @property
    def is_control(self) -> bool:
        return bool(self.attributes & CONTROL_MASK)

    @property
    def has_producer_id(self) -> bool:
        return self.producer_id >= 0

    @property
    def last_sequence(self) -> int:
        if self.base_sequence == NO_SEQUENCE:
            return NO_SEQUENCE
        return (self.base_sequence + self.last_offset_delta) & 0x7FFFFFFF


_make_header = BatchHeader._make


def read_header(buf: bytes | bytearray | memoryview, pos: int = 0) -> BatchHeader:
    """Parse the 61-byte header at ``pos``. The caller guarantees the bytes are there."""
    return _make_header(_HEADER.unpack_from(buf, pos))


def batch_size_at(buf: bytes | bytearray | memoryview, pos: int) -> int:
    """Total size of the batch starting at ``pos`` (header included), from its length field."""
    return int(_INT32.unpack_from(buf, pos + 8)[0]) + LOG_OVERHEAD


def compute_crc(buf: bytes | bytearray | memoryview, pos: int, size: int) -> int:
    return int(crc32c(memoryview(buf)[pos + ATTRIBUTES_OFFSET : pos + size]))


def validate_batches(
    buf: bytes | bytearray | memoryview, *, dense: bool = True
) -> list[BatchHeader]:
    """Check that ``buf`` is a whole number of v2 batches with good CRCs and coherent headers.

    ``dense``: each non-control batch holds one record per offset of its range, as producers
    write them; stored batches (``dense=False``) may hold fewer, or none, after compaction.
    Raises InvalidRecordBatch for structure errors and CorruptRecordBatch for a CRC mismatch.
    """
    headers: list[BatchHeader] = []
    pos = 0
    end = len(buf)
    while pos < end:
        if end - pos < HEADER_SIZE:
            raise InvalidRecordBatch("truncated record batch header")
        if buf[pos + MAGIC_OFFSET] != 2:
            raise InvalidRecordBatch(f"unsupported message format magic {buf[pos + MAGIC_OFFSET]}")
        header = read_header(buf, pos)
        size = header.size
        if header.batch_length < HEADER_SIZE - LOG_OVERHEAD or pos + size > end:
            raise InvalidRecordBatch("record batch length does not match the bytes sent")
        if compute_crc(buf, pos, size) != header.crc:
            raise CorruptRecordBatch("record batch CRC-32C mismatch")
        if header.last_offset_delta < 0 or header.records_count < 0:
            raise InvalidRecordBatch("negative record count or offset delta")
        if dense and not header.is_control and header.records_count != header.last_offset_delta + 1:
            raise InvalidRecordBatch("record count does not match the last offset delta")
        headers.append(header)
        pos += size
    return headers


def iter_headers(
    buf: bytes | bytearray | memoryview, pos: int = 0
) -> Iterator[tuple[int, BatchHeader]]:
    """Yield (position, header) for each whole batch in ``buf``; stop at a partial one."""
    end = len(buf)
    while end - pos >= HEADER_SIZE:
        header = read_header(buf, pos)
        if header.batch_length < HEADER_SIZE - LOG_OVERHEAD or pos + header.size > end:
            return
        yield pos, header
        pos += header.size


def set_base_offset(buf: bytearray, pos: int, base_offset: int) -> None:
    """Patch the base offset (outside the CRC) of the batch at ``pos``."""
    _BASE_OFFSET.pack_into(buf, pos, base_offset)


def set_partition_leader_epoch(buf: bytearray, pos: int, epoch: int) -> None:
    _INT32.pack_into(buf, pos + 12, epoch)


def set_log_append_time(buf: bytearray, pos: int, size: int, timestamp: int) -> None:
    """Mark the batch at ``pos`` as LogAppendTime with max_timestamp ``timestamp``, fix the CRC."""
    attributes, last_delta, base_ts, _ = _ATTRS_AND_REST.unpack_from(buf, pos + ATTRIBUTES_OFFSET)
    _ATTRS_AND_REST.pack_into(
        buf,
        pos + ATTRIBUTES_OFFSET,
        attributes | TIMESTAMP_TYPE_MASK,
        last_delta,
        base_ts,
        timestamp,
    )
    struct.pack_into(">I", buf, pos + CRC_OFFSET, compute_crc(buf, pos, size))


# --- Decoding records: only where Kafka semantics need to look inside a batch. ---


class Record(NamedTuple):
    """One decoded record (NamedTuples, as BatchHeader: decoding builds one per record)."""

    offset: int
    timestamp: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes | None], ...]


def _read_uvarint(buf: bytes, pos: int) -> tuple[int, int]:
    shift = 0
    raw = 0
    while True:
        if pos >= len(buf):
            raise InvalidRecordBatch("truncated varint")
        byte = buf[pos]
        pos += 1
        raw |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return raw, pos
        shift += 7
        if shift > 63:
            raise InvalidRecordBatch("varint too long")


def _read_varint(buf: bytes, pos: int) -> tuple[int, int]:
    """A zigzag-encoded varint (record fields) at ``pos``: (value, position after it)."""
    if pos < len(buf) and buf[pos] < 0x80:  # one byte: most lengths, deltas and counts
        raw = buf[pos]
        return (raw >> 1) ^ -(raw & 1), pos + 1
    raw, pos = _read_uvarint(buf, pos)
    return (raw >> 1) ^ -(raw & 1), pos


def _read_varbytes(buf: bytes, pos: int) -> tuple[bytes | None, int]:
    length, pos = _read_varint(buf, pos)
    if length < 0:
        return None, pos
    if pos + length > len(buf):
        raise InvalidRecordBatch("record field runs past the batch")
    return buf[pos : pos + length], pos + length


def decode_records(
    batch: bytes | bytearray | memoryview, max_uncompressed: int = 1 << 30
) -> list[Record]:
    """Decode the records of one v2 batch (header included in ``batch``)."""
    from kpy.protocol.compression import decompress

    header = read_header(batch, 0)
    payload = bytes(memoryview(batch)[HEADER_SIZE : header.size])
    if header.compression:
        payload = decompress(header.compression, payload, max_uncompressed)
    log_append = header.is_log_append_time
    records: list[Record] = []
    pos = 0
    for _ in range(header.records_count):
        length, pos = _read_varint(payload, pos)
        end = pos + length
        if length < 0 or end > len(payload):
            raise InvalidRecordBatch("record length runs past the batch")
        pos += 1  # record attributes, unused
        ts_delta, pos = _read_varint(payload, pos)
        offset_delta, pos = _read_varint(payload, pos)
        key, pos = _read_varbytes(payload, pos)
        value, pos = _read_varbytes(payload, pos)
        n_headers, pos = _read_varint(payload, pos)
        headers = []
        for _ in range(max(n_headers, 0)):
            hkey, pos = _read_varbytes(payload, pos)
            hval, pos = _read_varbytes(payload, pos)
            headers.append(((hkey or b"").decode("utf-8", "replace"), hval))
        if pos != end:
            raise InvalidRecordBatch("record length does not match its fields")
        timestamp = header.max_timestamp if log_append else header.base_timestamp + ts_delta
        records.append(
            Record(header.base_offset + offset_delta, timestamp, key, value, tuple(headers))
        )
    return records


def check_compressed_records(batch: bytes | bytearray | memoryview, limit: int) -> int:
    """Decompress one compressed v2 batch and walk its records, as Kafka's LogValidator does on
    produce; return the largest record timestamp.

    The payload is decompressed and walked piece by piece (kpy.protocol.compression.stream), as
    Kafka streams it, so that what a batch expands to is never held at once: a 1 KiB batch whose
    payload expands to its limit costs one piece of memory, not the limit.

    Raises DecompressionError (kpy.protocol.compression) when the payload does not decode or
    expands past ``limit``, InvalidRecordBatch when the records do not match the header: their
    count, their lengths, offset deltas other than 0, 1, 2... (Kafka rewrites such a batch;
    kpy refuses it).
    """
    from kpy.protocol.compression import stream

    header = read_header(batch, 0)
    payload = bytes(memoryview(batch)[HEADER_SIZE : header.size])
    pieces = stream(header.compression, payload, limit)
    return _walk_records(pieces, header.records_count, header.base_timestamp)


def keyless_records(batch: bytes | bytearray | memoryview, limit: int) -> list[int]:
    """The indexes of the records without a key in one v2 batch, for Kafka's
    LogValidator.validateKey on compacted topics. Walked as a stream, as check_compressed_records
    walks, holding no record: a batch of many small records costs no more than one piece.

    Raises InvalidRecordBatch when the records do not fill the batch as their lengths and count
    say (Kafka's "Incorrect declared batch size"), DecompressionError as ``stream``.
    """
    from kpy.protocol.compression import stream

    header = read_header(batch, 0)
    payload = bytes(memoryview(batch)[HEADER_SIZE : header.size])
    pieces = stream(header.compression, payload, limit) if header.compression else iter((payload,))
    keyless: list[int] = []
    _walk_records(pieces, header.records_count, header.base_timestamp, keyless)
    return keyless


# The most bytes a record's head takes: length (varint), attributes, timestamp delta (varlong),
# offset delta (varint), key length (varint). A piece is walked while this much of it is left
# (or it is the last).
_RECORD_HEAD_MAX = 5 + 1 + 10 + 5 + 5


def _walk_records(
    pieces: Iterator[bytes], count: int, base_ts: int, keyless: list[int] | None = None
) -> int:
    # The hot loop of produce validation: each record's length, timestamp delta and offset
    # delta, read with kio's varint readers (native code, a third faster than decoding the
    # bytes here); the key, value and headers are stepped over by the length, across pieces
    # where a record runs past the one at hand (``skip``). The walk holds the piece at hand and
    # never copies one: a record's head cut by a piece's end is joined with the next piece's
    # first bytes only, the rest of that piece walked after them (``rest``). With ``keyless``,
    # the walk collects the indexes of records whose key is null instead of checking the offset
    # deltas (Kafka checks those of compressed batches only).
    buf: bytes | memoryview = b""
    pos = 0
    skip = 0  # bytes of the current record still to come in later pieces (then buf is empty)
    rest: memoryview | None = None  # what is left of a piece whose start was joined to a head
    last = False  # no piece is left: what buf holds is all there is
    index = 0
    max_delta = -1 << 63
    premature = "Incorrect declared batch size, premature EOF reached"
    misnumbered = ""  # the error of a record cut by a piece's end, if its length proves true
    while index < count:
        if skip or (not last and len(buf) - pos < _RECORD_HEAD_MAX):
            piece: bytes | memoryview | None = rest
            if rest is None:
                piece = next(pieces, None)
            rest = None
            if piece is None:
                if skip:
                    raise InvalidRecordBatch(premature)
                last = True
            elif skip >= len(piece):
                skip -= len(piece)
                if not skip and misnumbered:
                    raise InvalidRecordBatch(misnumbered)
            elif skip:
                if misnumbered:
                    raise InvalidRecordBatch(misnumbered)
                buf, pos, skip = memoryview(piece)[skip:], 0, 0
            elif pos < len(buf):  # a head cut short: join it to the piece's first bytes
                joined = _RECORD_HEAD_MAX * 2
                buf, pos = bytes(buf[pos:]) + bytes(piece[:joined]), 0
                if len(piece) > joined:
                    rest = memoryview(piece)[joined:]
            else:
                buf, pos = piece, 0
            continue
        end = len(buf)
        try:
            while index < count and (last or end - pos >= _RECORD_HEAD_MAX):
                length, size = read_signed_varint(buf, pos)
                pos += size
                record_end = pos + length
                if length < 6 or (last and record_end > end):
                    raise InvalidRecordBatch(premature)
                ts_delta, size = read_signed_varlong(buf, pos + 1)  # past the attributes
                offset_delta, delta_size = read_signed_varint(buf, pos + 1 + size)
                if keyless is not None:
                    key_length, _ = read_signed_varint(buf, pos + 1 + size + delta_size)
                    if key_length < 0:
                        keyless.append(index)
                elif offset_delta != index:
                    if record_end <= end:
                        raise InvalidRecordBatch("record offset deltas are not consecutive from 0")
                    # As for a whole payload: premature if the record's bytes fall short.
                    misnumbered = "record offset deltas are not consecutive from 0"
                if ts_delta > max_delta:
                    max_delta = ts_delta
                index += 1
                if record_end > end:
                    buf, pos, skip = b"", 0, record_end - end
                    break
                pos = record_end
        except (DecodeError, ValueError):  # truncated, or a varint longer than its type allows
            raise InvalidRecordBatch(premature) from None
    # Every record is there; nothing may follow the last one (nor may it be cut short).
    left = len(buf) - pos - skip + (len(rest) if rest is not None else 0)
    for piece in pieces:
        left += len(piece)
        if misnumbered and left >= 0:
            raise InvalidRecordBatch(misnumbered)
    if left < 0:
        raise InvalidRecordBatch(premature)
    if misnumbered:
        raise InvalidRecordBatch(misnumbered)
    if left > 0:
        raise InvalidRecordBatch("Incorrect declared batch size, records still remaining")
    return base_ts + max_delta if count else NO_TIMESTAMP


def set_max_timestamp(buf: bytearray, pos: int, size: int, timestamp: int) -> None:
    """Set the max timestamp of the (CreateTime) batch at ``pos`` and fix the CRC."""
    attributes, last_delta, base_ts, _ = _ATTRS_AND_REST.unpack_from(buf, pos + ATTRIBUTES_OFFSET)
    _ATTRS_AND_REST.pack_into(
        buf, pos + ATTRIBUTES_OFFSET, attributes, last_delta, base_ts, timestamp
    )
    struct.pack_into(">I", buf, pos + CRC_OFFSET, compute_crc(buf, pos, size))


def _write_varint(out: bytearray, value: int) -> None:
    raw = (value << 1) ^ (value >> 63)
    while raw >= 0x80:
        out.append((raw & 0x7F) | 0x80)
        raw >>= 7
    out.append(raw)


def _write_varbytes(out: bytearray, data: bytes | None) -> None:
    if data is None:
        _write_varint(out, -1)
    else:
        _write_varint(out, len(data))
        out += data


def encode_batch(
    records: Sequence[Record],
    *,
    base_offset: int,
    codec: int = 0,
    log_append_time: int | None = None,
    partition_leader_epoch: int = -1,
) -> bytes:
    """Encode records (absolute offsets, at or above ``base_offset``, increasing) as one v2
    batch, compressed with ``codec``; no producer id. As Kafka's MemoryRecordsBuilder: the base
    timestamp is the first record's, the max timestamp the largest (or ``log_append_time``,
    which also sets the timestamp type).
    """
    from kpy.protocol.compression import compress

    if not records:
        raise ValueError("a batch needs at least one record")
    base_ts = records[0].timestamp
    max_ts = NO_TIMESTAMP
    body = bytearray()
    for rec in records:
        max_ts = max(max_ts, rec.timestamp)
        one = bytearray([0])  # record attributes: none defined
        _write_varint(one, rec.timestamp - base_ts)
        _write_varint(one, rec.offset - base_offset)
        _write_varbytes(one, rec.key)
        _write_varbytes(one, rec.value)
        _write_varint(one, len(rec.headers))
        for hkey, hval in rec.headers:
            _write_varbytes(one, hkey.encode())
            _write_varbytes(one, hval)
        _write_varint(body, len(one))
        body += one
    payload = compress(codec, bytes(body)) if codec else bytes(body)
    attributes = codec
    if log_append_time is not None:
        attributes |= TIMESTAMP_TYPE_MASK
        max_ts = log_append_time
    tail = (
        struct.pack(
            ">hiqqqhii",
            attributes,
            records[-1].offset - base_offset,
            base_ts,
            max_ts,
            NO_PRODUCER_ID,
            NO_PRODUCER_EPOCH,
            NO_SEQUENCE,
            len(records),
        )
        + payload
    )
    crc = crc32c(tail)
    head = struct.pack(">qiibI", base_offset, len(tail) + 9, partition_leader_epoch, 2, crc)
    return head + tail


def build_batch(
    records: list[tuple[bytes | None, bytes | None]],
    *,
    base_offset: int = 0,
    timestamp: int = 0,
    producer_id: int = NO_PRODUCER_ID,
    producer_epoch: int = NO_PRODUCER_EPOCH,
    base_sequence: int = NO_SEQUENCE,
    attributes: int = 0,
    partition_leader_epoch: int = -1,
) -> bytes:
    """Encode an uncompressed v2 batch of (key, value) records; for the broker's own writes."""
    body = bytearray()
    for delta, (key, value) in enumerate(records):
        rec = bytearray([0])
        _write_varint(rec, 0)  # timestamp delta
        _write_varint(rec, delta)
        _write_varbytes(rec, key)
        _write_varbytes(rec, value)
        _write_varint(rec, 0)  # no headers
        _write_varint(body, len(rec))
        body += rec
    tail = struct.pack(
        ">hiqqqhii",
        attributes,
        len(records) - 1,
        timestamp,
        timestamp,
        producer_id,
        producer_epoch,
        base_sequence,
        len(records),
    ) + bytes(body)
    crc = crc32c(tail)
    head = struct.pack(">qiibI", base_offset, len(tail) + 9, partition_leader_epoch, 2, crc)
    return head + tail


CONTROL_ABORT, CONTROL_COMMIT = 0, 1  # Kafka's ControlRecordType


def build_control_batch(
    producer_id: int,
    producer_epoch: int,
    *,
    commit: bool,
    coordinator_epoch: int,
    timestamp: int,
) -> bytearray:
    """A transaction marker (Kafka's EndTransactionMarker): one v2 batch, transactional and
    control, base sequence -1, holding one record whose key is int16 version 0 and int16 type
    (0 abort, 1 commit) and whose value is int16 version 0 and int32 coordinator epoch."""
    key = struct.pack(">hh", 0, CONTROL_COMMIT if commit else CONTROL_ABORT)
    value = struct.pack(">hi", 0, coordinator_epoch)
    return bytearray(
        build_batch(
            [(key, value)],
            timestamp=timestamp,
            producer_id=producer_id,
            producer_epoch=producer_epoch,
            attributes=TRANSACTIONAL_MASK | CONTROL_MASK,
        )
    )


class RawRecord(NamedTuple):
    """One record of a batch as stored: its bytes (length prefix included) unchanged, so that a
    batch keeping its base offset and base timestamp can carry it over verbatim (the log
    cleaner's rewrite), plus what the cleaner decides on."""

    offset: int
    timestamp: int
    key: bytes | None
    is_tombstone: bool  # a null value
    raw: bytes


def split_records(
    batch: bytes | bytearray | memoryview, max_uncompressed: int = 1 << 30
) -> list[RawRecord]:
    """The records of one v2 batch (header included in ``batch``), decompressed, each with its
    stored bytes. Raises InvalidRecordBatch (or DecompressionError) on malformed records."""
    from kpy.protocol.compression import decompress

    header = read_header(batch, 0)
    payload = bytes(memoryview(batch)[HEADER_SIZE : header.size])
    if header.compression:
        payload = decompress(header.compression, payload, max_uncompressed)
    records: list[RawRecord] = []
    pos = 0
    for _ in range(header.records_count):
        start = pos
        length, pos = _read_varint(payload, pos)
        end = pos + length
        if length < 0 or end > len(payload):
            raise InvalidRecordBatch("record length runs past the batch")
        pos += 1  # record attributes, unused
        ts_delta, pos = _read_varint(payload, pos)
        offset_delta, pos = _read_varint(payload, pos)
        key, pos = _read_varbytes(payload, pos)
        value_length, _ = _read_varint(payload, pos)
        timestamp = (
            header.max_timestamp if header.is_log_append_time else header.base_timestamp + ts_delta
        )
        records.append(
            RawRecord(
                header.base_offset + offset_delta,
                timestamp,
                key,
                value_length < 0,
                payload[start:end],
            )
        )
        pos = end
    return records


def rebuild_batch(header: BatchHeader, records: Sequence[RawRecord]) -> bytes:
    """A batch like the one ``header`` describes holding only ``records`` (a subset of its own,
    in order), as Kafka's log cleaner writes retained records: base offset, last offset delta,
    base timestamp, attributes, producer id, epoch and base sequence kept (so offsets and the
    producer's sequence numbers stay as they were), the payload recompressed with the batch's
    codec, the max timestamp recomputed for CreateTime, the CRC recomputed.

    No records: an empty batch, header only and uncompressed, as Kafka keeps the last batch of a
    producer so that its sequence and epoch survive cleaning."""
    from kpy.protocol.compression import compress

    body = b"".join(r.raw for r in records)
    attributes = header.attributes
    if not records:
        attributes &= ~COMPRESSION_MASK
        payload = b""
    elif header.compression:
        payload = compress(header.compression, body)
    else:
        payload = body
    max_ts = header.max_timestamp
    if records and not header.is_log_append_time:
        max_ts = max(r.timestamp for r in records)
    tail = (
        struct.pack(
            ">hiqqqhii",
            attributes,
            header.last_offset_delta,
            header.base_timestamp,
            max_ts,
            header.producer_id,
            header.producer_epoch,
            header.base_sequence,
            len(records),
        )
        + payload
    )
    crc = crc32c(tail)
    head = struct.pack(
        ">qiibI", header.base_offset, len(tail) + 9, header.partition_leader_epoch, 2, crc
    )
    return head + tail
