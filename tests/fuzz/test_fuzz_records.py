"""Fuzzing record batches (v2) and message sets (v0/v1), as the produce path reads them.

v2: header, CRC, attributes, the four codecs with corrupt payloads, records inside; the checks
run in the handler's order (kpy/handlers/produce.py: iter_headers, validate_batches, then for a
compressed batch check_compressed_records), and the decoders of stored batches (decode_records,
split_records, down-conversion) on the same inputs. v0/v1: iter_messages and the up-conversion
to a v2 batch, nested compressed wrappers included. Every outcome is a result or a record error
(fuzzing.record_errors), within the memory bound.

Decompression bombs: for each codec, a payload of a few KiB that expands past kpy's limit
(kpy.protocol.compression.DEFAULT_DECOMPRESSED_LIMIT). Kafka streams a compressed batch through
its validator and never holds what it expands to; kpy streams it too
(records.check_compressed_records) and refuses one that passes the limit (CORRUPT_MESSAGE), so a
bomb costs one piece of memory.
"""

from __future__ import annotations

import functools
import struct
import zlib

import lz4.frame
import pytest
import zstandard
from fuzzing import (
    budget,
    build_v2_batch,
    decodes,
    fix_crc,
    message_sets,
    mutated,
    mutated_message_sets,
    mutated_v2_batches,
    record_errors,
    v2_batches,
)
from hypothesis import example, given
from hypothesis import strategies as st
from kio.serial.errors import DecodeError
from kio.serial.readers import read_signed_varint, read_signed_varlong

from kpy.protocol import compression
from kpy.protocol import legacy_records as lr
from kpy.protocol import records as rb
from kpy.protocol.wire import uvarint

ERRORS = record_errors()
LIMIT = compression.DEFAULT_DECOMPRESSED_LIMIT


def produce_checks(buf: bytes) -> object:
    """What the produce handler asks of a partition's v3+ records, in its order."""
    data = bytearray(buf)
    if not list(rb.iter_headers(data)):
        return None
    headers = rb.validate_batches(data)
    for header in headers:
        if 0 < header.compression <= compression.ZSTD:
            rb.check_compressed_records(data, LIMIT)
    return headers


def stored_decoders(buf: bytes) -> None:
    """What reads a stored batch: only batches that validate get stored."""
    for pos, header in rb.iter_headers(buf):
        one = memoryview(buf)[pos : pos + header.size]
        rb.decode_records(one, LIMIT)
        rb.split_records(one, LIMIT)
    lr.down_convert(buf, 1, 0, 1 << 20, LIMIT)
    lr.down_convert(buf, 0, 0, 1 << 20, LIMIT)


@budget(500)
@given(st.one_of(v2_batches(), mutated_v2_batches(), st.binary(max_size=120)))
def test_v2_batches_validate_or_raise_record_errors(buf: bytes) -> None:
    checked = decodes("v2_produce_checks", lambda: produce_checks(buf), len(buf), ERRORS)
    if isinstance(checked, list):
        decodes("v2_stored_decoders", lambda: stored_decoders(buf), len(buf), ERRORS)


@budget(200)
@given(v2_batches())
def test_valid_batches_pass_every_check(buf: bytes) -> None:
    result = decodes("v2_valid", lambda: produce_checks(buf), len(buf), ())
    assert isinstance(result, list) and len(result) == 1
    stored_decoders(buf)


def reference_walk(payload: bytes, count: int, base_ts: int) -> int:
    """The walk of a whole payload (what check_compressed_records did before it streamed), as
    the oracle of the streaming walk."""
    pos = 0
    end = len(payload)
    max_delta = -1 << 63
    try:
        for index in range(count):
            length, size = read_signed_varint(payload, pos)
            pos += size
            if length < 6 or pos + length > end:
                raise rb.InvalidRecordBatch("Incorrect declared batch size, premature EOF reached")
            ts_delta, size = read_signed_varlong(payload, pos + 1)
            offset_delta, _ = read_signed_varint(payload, pos + 1 + size)
            if offset_delta != index:
                raise rb.InvalidRecordBatch("record offset deltas are not consecutive from 0")
            max_delta = max(max_delta, ts_delta)
            pos += length
    except (DecodeError, ValueError):
        raise rb.InvalidRecordBatch(
            "Incorrect declared batch size, premature EOF reached"
        ) from None
    if pos != end:
        raise rb.InvalidRecordBatch("Incorrect declared batch size, records still remaining")
    return base_ts + max_delta if count else rb.NO_TIMESTAMP


def _outcome(fn: functools.partial[int]) -> object:
    try:
        return fn()
    except rb.InvalidRecordBatch as e:
        return str(e)


@budget(400)
@given(st.data())
def test_the_streaming_walk_agrees_with_the_whole_payload_walk(data: st.DataObject) -> None:
    """Records cut at any points between pieces are walked as if whole."""
    batch = data.draw(v2_batches())
    payload = bytes(batch[61:])
    header = rb.read_header(batch)
    if header.compression:
        payload = compression.decompress(header.compression, payload)
    payload = data.draw(st.one_of(st.just(payload), mutated(payload)))
    count = data.draw(st.one_of(st.just(header.records_count), st.integers(0, 8)))
    cuts = sorted(data.draw(st.lists(st.integers(0, len(payload)), max_size=8)))
    pieces = [payload[a:b] for a, b in zip([0, *cuts], [*cuts, len(payload)], strict=True)]
    streamed = _outcome(functools.partial(rb._walk_records, iter(pieces), count, 5))
    whole = _outcome(functools.partial(reference_walk, payload, count, 5))
    assert streamed == whole


# --- Decompression bombs --------------------------------------------------------------------


def _zeros(n: int) -> bytes:
    return bytes(n)


@functools.cache
def bomb(codec: int, kind: str) -> bytes:
    """A v2 batch of a few KiB whose payload expands past the limit: zeros, or records whose
    values are zeros (so that the walk must go past them to find the count wrong)."""
    size = LIMIT + (8 << 20)
    if kind == "zeros":
        raw_parts = [(_zeros(1 << 20), size >> 20)]
    else:  # three records, each with a value of a third of the bomb
        third = size // 3
        raw_parts = []
        for i in range(3):
            head = bytearray([0])  # attributes
            head += b"\x00" + bytes([i * 2])  # timestamp delta 0, offset delta i (zigzag)
            head += b"\x01"  # key: null (-1)
            value_len = third
            head += _zigzag(value_len)
            tail = b"\x00"  # no headers
            record_len = len(head) + value_len + len(tail)
            raw_parts += [(_zigzag(record_len) + bytes(head), 1)]
            raw_parts += [(_zeros(1 << 20), value_len >> 20), (_zeros(value_len % (1 << 20)), 1)]
            raw_parts += [(tail, 1)]
    payload = _compress_parts(codec, raw_parts)
    fields = {"codec": codec, "attributes": 0, "producer_id": -1, "producer_epoch": -1}
    fields |= {"base_sequence": -1, "base_offset": 0, "base_timestamp": 0}
    batch = bytearray(build_v2_batch([(None, b"x", ())], fields))  # the header to patch
    batch[61:] = payload
    struct.pack_into(">i", batch, 8, len(batch) - 12)
    struct.pack_into(">i", batch, 57, 1 if kind == "zeros" else 3)
    struct.pack_into(">i", batch, 23, 0 if kind == "zeros" else 2)
    fix_crc(batch)
    return bytes(batch)


def _zigzag(value: int) -> bytes:
    """A record's signed varint: zigzag, then the unsigned varint of protocol.wire."""
    return uvarint((value << 1) ^ (value >> 63))


def _compress_parts(codec: int, parts: list[tuple[bytes, int]]) -> bytes:
    """Compress the concatenation of (bytes, repeat) without ever holding it."""
    if codec == compression.GZIP:
        c = zlib.compressobj(9, wbits=31)
        out = [c.compress(chunk) for chunk, n in parts for _ in range(n)]
        return b"".join([*out, c.flush()])
    if codec == compression.LZ4:
        c4 = lz4.frame.LZ4FrameCompressor(block_linked=False)
        out = [c4.begin()] + [c4.compress(chunk) for chunk, n in parts for _ in range(n)]
        return b"".join([*out, c4.flush()])
    if codec == compression.ZSTD:
        cz = zstandard.ZstdCompressor(level=3).compressobj()
        out = [cz.compress(chunk) for chunk, n in parts for _ in range(n)]
        return b"".join([*out, cz.flush()])
    raise ValueError(codec)


# snappy expands at most 22 times (compression._SNAPPY_MAX_RATIO): no few-KiB snappy payload
# can pass the limit; the bound on what a snappy block claims is tested below instead.
BOMB_CODECS = [compression.GZIP, compression.LZ4, compression.ZSTD]


@pytest.mark.parametrize("kind", ["zeros", "records"])
@pytest.mark.parametrize("codec", BOMB_CODECS)
def test_a_bomb_is_refused_in_little_memory(codec: int, kind: str) -> None:
    """Regression: check_compressed_records decompressed the whole payload first, so a batch of
    a few KiB held 64 MiB (its limit) before it was refused, twice over for zstd."""
    batch = bomb(codec, kind)
    assert len(batch) < (400 if codec == compression.LZ4 else 100) * 1024  # lz4: 255x at most
    slack = 12 << 20  # fuzzing.MEMORY_SLACK: one piece
    result = decodes("bombs", lambda: produce_checks(batch), len(batch), ERRORS, slack=slack)
    assert isinstance(result, (compression.DecompressionError, rb.InvalidRecordBatch))
    if kind == "records":
        assert "allowed size" in str(result)


def test_a_snappy_block_claiming_more_than_it_can_hold_is_refused_before_allocation() -> None:
    claim = b"\xff\xff\xff\xff\x0f"  # 4 GiB
    with pytest.raises(compression.DecompressionError, match="claims more"):
        compression.decompress(compression.SNAPPY, claim + b"\x00" * 40)


@budget(150)
@given(st.sampled_from(BOMB_CODECS), st.sampled_from(["zeros", "records"]), st.data())
def test_mutated_bombs(codec: int, kind: str, data: st.DataObject) -> None:
    batch = bytearray(bomb(codec, kind))
    at = data.draw(st.integers(61, len(batch) - 1))
    batch[at] ^= data.draw(st.integers(1, 255))
    fix_crc(batch)
    decodes("bombs_mutated", lambda: produce_checks(bytes(batch)), len(batch), ERRORS)


@budget(200)
@given(st.sampled_from([1, 2, 3, 4]), st.binary(max_size=300))
@example(compression.ZSTD, zstandard.ZstdCompressor().compress(b"ab" * 100)[:-3])
def test_any_payload_of_any_codec_streams_or_raises(codec: int, payload: bytes) -> None:
    decodes(
        "codec_stream",
        lambda: sum(map(len, compression.stream(codec, payload, 1 << 20))),
        len(payload),
        (compression.DecompressionError,),
    )


# --- Message sets (v0/v1) -------------------------------------------------------------------


def up_convert(buf: bytes, log_append_time: bool, target: int | None) -> bytes:
    out = lr.to_record_batch(buf, log_append_time=log_append_time, target_codec=target)
    rb.validate_batches(out)  # what the handler does with it next
    return out


@budget(400)
@given(
    st.one_of(message_sets(), mutated_message_sets(), st.binary(max_size=120)),
    st.booleans(),
    st.sampled_from([None, 0, 1, 2, 3, 4]),
)
def test_message_sets_convert_or_raise_record_errors(
    buf: bytes, log_append_time: bool, target: int | None
) -> None:
    decodes("legacy_shallow", lambda: list(lr.iter_messages(buf)), len(buf), ERRORS)
    decodes(
        "legacy_up_convert",
        lambda: up_convert(buf, log_append_time, target),
        len(buf),
        ERRORS,
    )


@pytest.mark.parametrize("codec", [compression.GZIP, compression.LZ4])
@pytest.mark.parametrize("magic", [0, 1])
def test_a_legacy_wrapper_bomb_of_junk_is_refused_in_little_memory(codec: int, magic: int) -> None:
    """Regression: a wrapper whose value expands to junk (zeros) past the limit was decompressed
    whole (64 MiB) before its first message was found to be no message: CORRUPT_MESSAGE, now at
    the first piece."""
    wrapper = _legacy_bomb(codec, magic, b"")
    result = decodes("legacy_bombs", lambda: up_convert(wrapper, False, None), len(wrapper), ERRORS)
    assert isinstance(result, rb.CorruptRecordBatch)


@pytest.mark.parametrize("codec", [compression.GZIP, compression.LZ4])
def test_a_legacy_wrapper_bomb_of_one_huge_message_is_refused(codec: int) -> None:
    """A wrapper holding one message that claims (and has) more than the limit: CORRUPT_MESSAGE
    once the limit is passed. Up to there the message is held, as it would be converted (Kafka
    reads a legacy message whole too): the memory is what really decompressed, never a claim."""
    head = struct.pack(">qiIbb", 0, LIMIT + (8 << 20), 0, 1, 0)  # offset, size, crc, magic, attrs
    wrapper = _legacy_bomb(codec, 1, head)
    result = decodes(
        "legacy_bombs",
        lambda: up_convert(wrapper, False, None),
        len(wrapper),
        ERRORS,
        slack=LIMIT * 3,
    )
    assert isinstance(result, rb.CorruptRecordBatch)
    assert "allowed size" in str(result)


def _legacy_bomb(codec: int, magic: int, head: bytes) -> bytes:
    inner = _compress_parts(codec, [(head, 1), (_zeros(1 << 20), (LIMIT >> 20) + 8)])
    if codec == compression.LZ4 and magic == 0:
        inner = compression._break_lz4_header_checksum(inner)
    return lr.encode_message(0, magic, codec, -1, None, inner)


# --- Keys of compacted topics ---------------------------------------------------------------


@budget(300)
@given(st.one_of(v2_batches(), mutated_v2_batches()))
def test_keyless_records_streams_what_split_records_finds(buf: bytes) -> None:
    """The streaming walk of keys agrees with the records decoded whole, on what the handler
    walks: a batch that passed the produce checks."""
    try:
        if not produce_checks(buf):
            return
    except ERRORS:
        return
    try:
        expected: list[int] | None = [
            i for i, r in enumerate(rb.split_records(buf, LIMIT)) if r.key is None
        ]
    except ERRORS:
        expected = None
    got = decodes("v2_keyless", lambda: rb.keyless_records(buf, LIMIT), len(buf), ERRORS)
    if expected is not None and not isinstance(got, BaseException):
        assert got == expected


def test_keys_of_a_batch_of_many_small_records_are_checked_in_little_memory() -> None:
    """Regression: a produce to a compacted topic decoded every record of its batch at once
    (split_records), so 490 KB of zstd holding 600,000 small records held 108 MB."""
    from kpy.handlers.produce import _keyless_records

    records = [rb.Record(i, 0, b"k" if i % 3 else None, None, ()) for i in range(600_000)]
    batch = bytearray(rb.encode_batch(records, base_offset=0, codec=compression.ZSTD))
    result = decodes("v2_keyless", lambda: _keyless_records(batch), len(batch), ())
    assert result == list(range(0, 600_000, 3))


@budget(60)
@given(
    st.lists(st.tuples(st.binary(min_size=1, max_size=64), st.integers(1, 300_000)), max_size=6),
    st.booleans(),
    st.booleans(),
    st.integers(1, 9),
)
def test_zstd_frames_stream_whole_in_bounded_pieces(
    parts: list[tuple[bytes, int]], checksum: bool, content_size: bool, level: int
) -> None:
    """The zstd input is cut at block boundaries read from the frame (compression._zstd_cuts):
    whatever the frame's flags, the pieces decode to the data, none past 16 blocks' worth."""
    data = b"".join(chunk * n for chunk, n in parts)
    frame = zstandard.ZstdCompressor(
        level=level, write_checksum=checksum, write_content_size=content_size
    ).compress(data)
    pieces = list(compression.stream(compression.ZSTD, frame, len(data)))
    assert b"".join(pieces) == data
    assert all(len(p) <= 16 * 128 * 1024 for p in pieces)
