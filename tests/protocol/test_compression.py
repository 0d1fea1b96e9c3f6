"""The codecs: round trips, the framings old clients use, and the limits on hostile payloads."""

from __future__ import annotations

import gzip
import zlib

import cramjam
import lz4.frame
import pytest
import xxhash
import zstandard
from hypothesis import given, settings
from hypothesis import strategies as st

from kpy.protocol import compression as c

CODECS = [c.GZIP, c.SNAPPY, c.LZ4, c.ZSTD]


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(CODECS), st.integers(0, 2), st.binary(max_size=100_000))
def test_round_trip_any_codec_any_magic(codec: int, magic: int, data: bytes) -> None:
    packed = c.compress(codec, data, magic=magic)
    assert c.decompress(codec, packed, len(data), magic=magic) == data


@given(st.binary(max_size=64), st.integers(0, 2**32 - 1))
def test_xxh32_matches_the_reference(data: bytes, seed: int) -> None:
    assert c.xxh32(data, seed) == xxhash.xxh32(data, seed=seed).intdigest()


def test_snappy_is_written_in_xerial_framing_and_both_framings_decode() -> None:
    data = bytes(range(256)) * 1000  # several 32 KiB xerial blocks
    packed = c.compress(c.SNAPPY, data)
    assert packed.startswith(b"\x82SNAPPY\x00\x00\x00\x00\x01\x00\x00\x00\x01")
    assert c.decompress(c.SNAPPY, packed) == data
    raw = bytes(cramjam.snappy.compress_raw(data))
    assert c.decompress(c.SNAPPY, raw) == data


def test_foreign_encoders_decode() -> None:
    data = b"kafka " * 5000
    assert c.decompress(c.GZIP, gzip.compress(data)) == data
    assert c.decompress(c.LZ4, lz4.frame.compress(data)) == data  # linked blocks, content size
    assert c.decompress(c.ZSTD, zstandard.ZstdCompressor().compress(data)) == data


def test_lz4_v0_carries_kafkas_wrong_header_checksum() -> None:
    """KAFKA-3160: v0 hashes the descriptor from the magic; the v0 reader ignores HC."""
    data = b"abc" * 1000
    v0 = c.compress(c.LZ4, data, magic=0)
    v1 = c.compress(c.LZ4, data, magic=1)
    assert v0[:6] == v1[:6] and v0[7:] == v1[7:]  # only HC differs
    assert v0[6] == (xxhash.xxh32(v0[:6]).intdigest() >> 8) & 0xFF
    assert v1[6] == (xxhash.xxh32(v1[4:6]).intdigest() >> 8) & 0xFF
    assert c.decompress(c.LZ4, v0, magic=0) == data
    assert c.decompress(c.LZ4, v1, magic=0) == data  # HC ignored either way
    with pytest.raises(c.DecompressionError):
        c.decompress(c.LZ4, v0, magic=1)  # a v1 reader checks it


@pytest.mark.parametrize("codec", CODECS)
def test_truncated_or_garbled_payloads_are_refused(codec: int) -> None:
    data = bytes(range(256)) * 400
    packed = c.compress(codec, data)
    with pytest.raises(c.DecompressionError):
        c.decompress(codec, packed[: len(packed) // 2])
    with pytest.raises(c.DecompressionError):
        c.decompress(codec, b"\x00garbage that is no compressed stream at all\xff" * 3)


@pytest.mark.parametrize("codec", CODECS)
def test_a_bomb_stops_at_the_limit(codec: int) -> None:
    """64 MiB of zeros compress to little; decompression stops past the limit."""
    zeros = bytes(64 * 1024 * 1024)
    if codec == c.GZIP:
        packed = zlib.compress(zeros, 9)
    elif codec == c.ZSTD:
        packed = zstandard.ZstdCompressor(level=19).compress(zeros)
    else:
        packed = c.compress(codec, zeros)
    assert len(packed) < len(zeros) // 20
    with pytest.raises(c.DecompressionError, match="allowed size"):
        c.decompress(codec, packed, 1024 * 1024)


def test_unknown_codec() -> None:
    with pytest.raises(c.DecompressionError):
        c.decompress(5, b"x")
    with pytest.raises(ValueError):
        c.compress(7, b"x")


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(CODECS), st.binary(max_size=300))
def test_any_bytes_decode_or_raise_decompression_error(codec: int, data: bytes) -> None:
    try:
        out = c.decompress(codec, data, 1 << 20)
    except c.DecompressionError:
        return
    assert len(out) <= 1 << 20
