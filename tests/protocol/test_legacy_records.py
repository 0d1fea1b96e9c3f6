"""Message formats v0/v1: parsing, up-conversion to v2 batches and down-conversion from them."""

from __future__ import annotations

import contextlib
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kpy.protocol import compression as c
from kpy.protocol import legacy_records as lr
from kpy.protocol import records as rb

KV = st.tuples(st.none() | st.binary(max_size=50), st.none() | st.binary(max_size=200))


def _records(base: int, items: list[tuple[bytes | None, bytes | None]], ts: int = 1_000):
    return [(base + i, ts + i, k, v) for i, (k, v) in enumerate(items)]


@settings(max_examples=80, deadline=None)
@given(
    st.lists(KV, min_size=1, max_size=20),
    st.sampled_from([0, 1]),
    st.sampled_from([c.NONE, c.GZIP, c.SNAPPY, c.LZ4]),
)
def test_message_set_up_to_v2_keeps_keys_values_and_timestamps(
    items: list[tuple[bytes | None, bytes | None]], magic: int, codec: int
) -> None:
    produced = lr.encode_message_set(_records(0, items), magic=magic, codec=codec)
    batch = lr.to_record_batch(produced, log_append_time=False, target_codec=None)
    (header,) = rb.validate_batches(batch)
    assert header.compression == codec
    assert header.records_count == len(items) and header.base_offset == 0
    recs = rb.decode_records(batch)
    assert [(r.key, r.value) for r in recs] == items
    assert [r.offset for r in recs] == list(range(len(items)))
    want_ts = [1_000 + i for i in range(len(items))] if magic == 1 else [-1] * len(items)
    assert [r.timestamp for r in recs] == want_ts
    assert header.max_timestamp == max(want_ts)


@settings(max_examples=80, deadline=None)
@given(
    st.lists(KV, min_size=1, max_size=20),
    st.sampled_from([0, 1]),
    st.sampled_from([c.NONE, c.GZIP, c.SNAPPY, c.LZ4]),
    st.integers(0, 10**9),
)
def test_v2_down_to_v0_v1_and_back(
    items: list[tuple[bytes | None, bytes | None]], magic: int, codec: int, base: int
) -> None:
    stored = rb.encode_batch(
        [rb.Record(o, t, k, v, ()) for o, t, k, v in _records(base, items)],
        base_offset=base,
        codec=codec,
    )
    converted = lr.down_convert(stored, magic, base, budget=1 << 30)
    shallow = list(lr.iter_messages(converted))
    assert all(m.magic == magic for m in shallow)
    if codec:
        (wrapper,) = shallow
        assert wrapper.offset == base + len(items) - 1  # the last inner offset
        inner = lr.inner_messages(wrapper, 1 << 20)
        raw = list(lr.iter_messages(c.decompress(codec, wrapper.value or b"", magic=magic)))
        relative = [m.offset for m in raw]
        # v1 inner offsets are relative, v0 absolute
        assert relative == [o - (base if magic == 1 else 0) for o in range(base, base + len(items))]
    else:
        inner = shallow
    assert [m.offset for m in inner] == list(range(base, base + len(items)))
    assert [(m.key, m.value) for m in inner] == items
    assert [m.timestamp for m in inner] == (
        [1_000 + i for i in range(len(items))] if magic == 1 else [-1] * len(items)
    )


def test_down_conversion_drops_records_below_the_fetch_offset_only_when_uncompressed() -> None:
    items = [(b"k%d" % i, b"v%d" % i) for i in range(5)]
    recs = [rb.Record(o, t, k, v, ()) for o, t, k, v in _records(100, items)]
    plain = rb.encode_batch(recs, base_offset=100)
    packed = rb.encode_batch(recs, base_offset=100, codec=c.GZIP)
    got = list(lr.iter_messages(lr.down_convert(plain, 1, 103, 1 << 20)))
    assert [m.offset for m in got] == [103, 104]
    (wrapper,) = lr.iter_messages(lr.down_convert(packed, 1, 103, 1 << 20))
    assert [m.offset for m in lr.inner_messages(wrapper, 1 << 20)] == [100, 101, 102, 103, 104]


def test_log_append_time_goes_to_every_message_and_the_v1_attribute() -> None:
    recs = [rb.Record(o, t, k, v, ()) for o, t, k, v in _records(0, [(b"a", b"1"), (b"b", b"2")])]
    for codec in (c.NONE, c.SNAPPY):
        stored = rb.encode_batch(recs, base_offset=0, codec=codec, log_append_time=77_000)
        shallow = list(lr.iter_messages(lr.down_convert(stored, 1, 0, 1 << 20)))
        assert all(m.is_log_append_time and m.timestamp == 77_000 for m in shallow)
        msgs = lr.inner_messages(shallow[0], 1 << 20) if codec else shallow
        assert [m.timestamp for m in msgs] == [77_000, 77_000]
        v0 = list(lr.iter_messages(lr.down_convert(stored, 0, 0, 1 << 20)))
        assert all(m.timestamp == -1 and not m.attributes & 0x08 for m in v0)


def test_budget_stops_between_messages_but_one_always_goes() -> None:
    items = [(None, b"x" * 100) for _ in range(10)]
    stored = rb.encode_batch(
        [rb.Record(o, t, k, v, ()) for o, t, k, v in _records(0, items)], base_offset=0
    )
    one = lr.down_convert(stored, 1, 0, budget=1)
    assert len(list(lr.iter_messages(one))) == 1
    some = lr.down_convert(stored, 1, 0, budget=600)
    assert len(some) <= 600 and len(list(lr.iter_messages(some))) == 4


def test_zstd_goes_down_uncompressed_and_control_batches_are_dropped() -> None:
    recs = [rb.Record(0, 1, b"k", b"v", ()), rb.Record(1, 2, b"k2", b"v2", ())]
    zstd = rb.encode_batch(recs, base_offset=0, codec=c.ZSTD)
    out = list(lr.iter_messages(lr.down_convert(zstd, 1, 1, 1 << 20)))
    assert [(m.offset, m.codec, m.timestamp, m.value) for m in out] == [(1, c.NONE, 2, b"v2")]
    plain = rb.encode_batch(recs[:1], base_offset=0)
    control = bytearray(rb.build_batch([(b"\x00\x00\x00\x00", b"")], attributes=0x30))
    assert lr.down_convert(bytes(control) + plain, 1, 0, 1 << 20)[:8] == bytes(8)
    assert len(list(lr.iter_messages(lr.down_convert(bytes(control), 1, 0, 1 << 20)))) == 0


def test_produce_checks() -> None:
    good = lr.encode_message_set(_records(0, [(b"k", b"v")]), magic=1)
    bad_crc = bytearray(good)
    bad_crc[-1] ^= 1
    with pytest.raises(rb.CorruptRecordBatch):
        lr.to_record_batch(bytes(bad_crc), log_append_time=False, target_codec=None)
    mixed = good + lr.encode_message_set(_records(1, [(b"k", b"v")]), magic=0)
    with pytest.raises(rb.InvalidRecordBatch, match="magic"):
        lr.to_record_batch(mixed, log_append_time=False, target_codec=None)
    two_wrappers = lr.encode_message_set(_records(0, [(b"k", b"v")]), magic=1, codec=c.GZIP) * 2
    with pytest.raises(rb.InvalidRecordBatch, match="more than one"):
        lr.to_record_batch(two_wrappers, log_append_time=False, target_codec=None)
    inner = lr.encode_message(0, 1, 0, 5, b"k", b"v")
    zstd_wrapper = lr.encode_message(0, 1, c.ZSTD, 5, None, c.compress(c.ZSTD, inner))
    with pytest.raises(lr.UnsupportedCompression):
        lr.to_record_batch(zstd_wrapper, log_append_time=False, target_codec=None)
    corrupt = lr.encode_message(0, 1, c.LZ4, 5, None, b"\x04\x22\x4d\x18 not lz4 at all")
    with pytest.raises(rb.CorruptRecordBatch):
        lr.to_record_batch(corrupt, log_append_time=False, target_codec=None)
    nested = lr.encode_message(
        0, 1, c.GZIP, 5, None, c.compress(c.GZIP, lr.encode_message(0, 1, c.GZIP, 5, None, b""))
    )
    with pytest.raises(rb.InvalidRecordBatch, match="must not be compressed"):
        lr.to_record_batch(nested, log_append_time=False, target_codec=None)
    lat = lr.encode_message(0, 1, 0x08, -1, b"k", b"v")
    with pytest.raises(lr.InvalidTimestamp):
        lr.to_record_batch(lat, log_append_time=False, target_codec=None)
    with pytest.raises(rb.InvalidRecordBatch):
        lr.to_record_batch(good[:10], log_append_time=False, target_codec=None)
    # A partial trailing message is dropped, as Kafka trims it.
    two = good + good
    batch = lr.to_record_batch(two[:-3], log_append_time=False, target_codec=None)
    assert rb.read_header(batch).records_count == 1


def test_target_codec_recompresses() -> None:
    produced = lr.encode_message_set(_records(0, [(b"k", b"v")] * 3), magic=1, codec=c.GZIP)
    batch = lr.to_record_batch(produced, log_append_time=False, target_codec=c.LZ4)
    assert rb.read_header(batch).compression == c.LZ4
    assert [r.value for r in rb.decode_records(batch)] == [b"v"] * 3


def test_v1_wrapper_offsets_become_absolute_from_the_wrapper() -> None:
    """Kafka's deep iterator: absolute = wrapper offset - last relative + relative."""
    inner = b"".join(lr.encode_message(i, 1, 0, 10 + i, None, b"v") for i in range(3))
    wrapper = next(
        lr.iter_messages(lr.encode_message(41, 1, c.GZIP, 12, None, c.compress(c.GZIP, inner)))
    )
    assert [m.offset for m in lr.inner_messages(wrapper, 1 << 20)] == [39, 40, 41]


def test_check_compressed_records() -> None:
    recs = [rb.Record(i, 50 + i, None, b"v", ()) for i in range(4)]
    batch = rb.encode_batch(recs, base_offset=0, codec=c.LZ4)
    assert rb.check_compressed_records(batch, 1 << 20) == 53
    bad = bytearray(batch)
    struct.pack_into(">i", bad, 57, 5)  # records_count
    with pytest.raises(rb.InvalidRecordBatch):
        rb.check_compressed_records(bad, 1 << 20)
    gappy = rb.encode_batch(
        [rb.Record(0, 1, None, b"v", ()), rb.Record(2, 1, None, b"v", ())],
        base_offset=0,
        codec=c.GZIP,
    )
    with pytest.raises(rb.InvalidRecordBatch, match="consecutive"):
        rb.check_compressed_records(gappy, 1 << 20)
    with pytest.raises(c.DecompressionError):
        rb.check_compressed_records(batch, 10)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_any_bytes_parse_or_raise_a_record_error(data: bytes) -> None:
    errors = (rb.InvalidRecordBatch, rb.CorruptRecordBatch, lr.InvalidTimestamp)
    with contextlib.suppress(*errors, lr.UnsupportedCompression):
        lr.to_record_batch(data, log_append_time=False, target_codec=None, limit=1 << 16)
