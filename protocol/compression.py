"""Record batch codecs: gzip, snappy, lz4 and zstd, by Kafka's codec ids.

The libraries do the compression (zlib, cramjam for snappy, lz4.frame, zstandard); this module
only maps Kafka's ids to them, unwraps the xerial framing some clients put around snappy, and
bounds the decompressed size so that a small hostile batch cannot exhaust memory.
"""

from __future__ import annotations

import struct
import zlib

import cramjam
import lz4.frame
import zstandard

NONE, GZIP, SNAPPY, LZ4, ZSTD = 0, 1, 2, 3, 4
NAMES = {NONE: "none", GZIP: "gzip", SNAPPY: "snappy", LZ4: "lz4", ZSTD: "zstd"}

_XERIAL_MAGIC = b"\x82SNAPPY\x00"


class DecompressionError(Exception):
    """The payload does not decode with its codec, or decodes past the allowed size."""


def _gunzip(data: bytes, limit: int) -> bytes:
    d = zlib.decompressobj(wbits=47)  # gzip or zlib header, detected
    out = d.decompress(data, limit + 1)
    if len(out) > limit:
        raise DecompressionError("decompressed batch exceeds the allowed size")
    return out


def _unsnappy(data: bytes, limit: int) -> bytes:
    if data.startswith(_XERIAL_MAGIC):
        parts = []
        total = 0
        pos = 16  # magic (8) + version (4) + compatible version (4)
        while pos < len(data):
            if pos + 4 > len(data):
                raise DecompressionError("truncated xerial snappy block")
            (length,) = struct.unpack_from(">i", data, pos)
            pos += 4
            block = bytes(cramjam.snappy.decompress_raw(data[pos : pos + length]))
            total += len(block)
            if total > limit:
                raise DecompressionError("decompressed batch exceeds the allowed size")
            parts.append(block)
            pos += length
        return b"".join(parts)
    if cramjam.snappy.decompress_raw_len(data) > limit:
        raise DecompressionError("decompressed batch exceeds the allowed size")
    return bytes(cramjam.snappy.decompress_raw(data))


def _unlz4(data: bytes, limit: int) -> bytes:
    d = lz4.frame.LZ4FrameDecompressor()
    out = d.decompress(data, max_length=limit + 1)
    if len(out) > limit:
        raise DecompressionError("decompressed batch exceeds the allowed size")
    return bytes(out)


def _unzstd(data: bytes, limit: int) -> bytes:
    out = bytearray()
    with zstandard.ZstdDecompressor().stream_reader(data) as reader:
        while chunk := reader.read(65536):
            out += chunk
            if len(out) > limit:
                raise DecompressionError("decompressed batch exceeds the allowed size")
    return bytes(out)


_DECODERS = {GZIP: _gunzip, SNAPPY: _unsnappy, LZ4: _unlz4, ZSTD: _unzstd}


def decompress(codec: int, data: bytes, limit: int) -> bytes:
    try:
        decoder = _DECODERS[codec]
    except KeyError:
        raise DecompressionError(f"unknown compression codec {codec}") from None
    try:
        return decoder(data, limit)
    except DecompressionError:
        raise
    except Exception as e:  # each library raises its own types for bad input
        raise DecompressionError(f"{NAMES[codec]} payload does not decode: {e}") from e


def compress(codec: int, data: bytes) -> bytes:
    if codec == GZIP:
        c = zlib.compressobj(wbits=31)
        return c.compress(data) + c.flush()
    if codec == SNAPPY:
        return bytes(cramjam.snappy.compress_raw(data))
    if codec == LZ4:
        return bytes(lz4.frame.compress(data))
    if codec == ZSTD:
        return bytes(zstandard.ZstdCompressor().compress(data))
    raise ValueError(f"unknown compression codec {codec}")
