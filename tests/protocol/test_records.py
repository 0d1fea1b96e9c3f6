from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kpy.protocol import compression
from kpy.protocol import records as rb


def test_build_validate_and_decode_round_trip() -> None:
    batch = rb.build_batch([(b"k", b"v"), (None, b""), (b"k2", None)], timestamp=1_700_000_000_123)
    (header,) = rb.validate_batches(batch)
    assert header.records_count == 3 and header.last_offset_delta == 2
    assert header.size == len(batch)
    recs = rb.decode_records(batch)
    assert [(r.key, r.value) for r in recs] == [(b"k", b"v"), (None, b""), (b"k2", None)]
    assert all(r.timestamp == 1_700_000_000_123 for r in recs)


def test_crc_mismatch_is_corrupt() -> None:
    batch = bytearray(rb.build_batch([(b"k", b"value")]))
    batch[-1] ^= 0xFF
    with pytest.raises(rb.CorruptRecordBatch):
        rb.validate_batches(batch)


def test_truncated_batch_is_invalid() -> None:
    batch = rb.build_batch([(b"k", b"value")])
    with pytest.raises(rb.InvalidRecordBatch):
        rb.validate_batches(batch[:-3])
    with pytest.raises(rb.InvalidRecordBatch):
        rb.validate_batches(batch[:30])


def test_patching_base_offset_keeps_crc_and_log_append_time_fixes_it() -> None:
    batch = bytearray(rb.build_batch([(b"a", b"b"), (b"c", b"d")], timestamp=5))
    rb.set_base_offset(batch, 0, 1234)
    rb.set_partition_leader_epoch(batch, 0, 3)
    (h,) = rb.validate_batches(batch)
    assert h.base_offset == 1234 and h.partition_leader_epoch == 3
    rb.set_log_append_time(batch, 0, len(batch), 99_000)
    (h,) = rb.validate_batches(batch)
    assert h.is_log_append_time and h.max_timestamp == 99_000
    assert [r.timestamp for r in rb.decode_records(batch)] == [99_000, 99_000]
    assert [r.offset for r in rb.decode_records(batch)] == [1234, 1235]


def test_iter_headers_stops_at_a_partial_batch() -> None:
    a = rb.build_batch([(b"a", b"1")])
    b = rb.build_batch([(b"b", b"2")])
    got = list(rb.iter_headers(a + b[:-1]))
    assert [pos for pos, _ in got] == [0]


@pytest.mark.parametrize(
    "codec", [compression.GZIP, compression.SNAPPY, compression.LZ4, compression.ZSTD]
)
def test_codecs_round_trip_and_refuse_bombs(codec: int) -> None:
    data = b"kafka " * 10000
    packed = compression.compress(codec, data)
    assert compression.decompress(codec, packed, len(data)) == data
    with pytest.raises(compression.DecompressionError):
        compression.decompress(codec, packed, len(data) - 1)
    with pytest.raises(compression.DecompressionError):
        compression.decompress(codec, b"\x00garbage" * 3, 1 << 20)


def test_xerial_snappy_framing() -> None:
    import cramjam

    block = bytes(cramjam.snappy.compress_raw(b"hello " * 100))
    framed = b"\x82SNAPPY\x00" + struct.pack(">ii", 1, 1) + struct.pack(">i", len(block)) + block
    assert compression.decompress(compression.SNAPPY, framed, 1 << 20) == b"hello " * 100


@given(st.binary(max_size=300))
def test_decoding_any_bytes_raises_only_batch_errors(data: bytes) -> None:
    try:
        for _, h in rb.iter_headers(data):
            rb.validate_batches(data[: h.size])
            rb.decode_records(data[: h.size], max_uncompressed=1 << 16)
    except (rb.InvalidRecordBatch, rb.CorruptRecordBatch, compression.DecompressionError):
        pass
