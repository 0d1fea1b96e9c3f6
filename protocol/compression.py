"""Record batch codecs: gzip, snappy, lz4 and zstd, by Kafka's codec ids.

The libraries do the compression (zlib, cramjam for snappy, lz4.frame, zstandard); this module
maps Kafka's ids to them, handles the framings Kafka's clients put around the payloads, and
bounds the decompressed size so that a small hostile batch cannot exhaust memory.

Framings, as Kafka reads and writes them:

- snappy: Kafka's Java code writes the xerial framing (magic ``\\x82SNAPPY\\x00``, version 1,
  compatible version 1, then blocks of big-endian int32 length + raw snappy, 32 KiB of input
  each); librdkafka and others send raw snappy. Both decode; ``compress`` writes xerial, as
  Kafka does, which every client reads.
- lz4: the LZ4 frame format, written with independent blocks and no content size (what Kafka's
  KafkaLZ4BlockOutputStream writes). In message format v0 Kafka computed the frame descriptor's
  header checksum over the wrong bytes (KAFKA-3160): the v0 reader ignores that checksum and
  the v0 writer reproduces the wrong one, because clients of that era check for it.
- gzip and zstd: plain streams.

Everything here is pure (bytes in, bytes out) and may run on a worker thread. The codec
libraries are imported on first use: a broker whose clients do not compress (or use one codec)
does not pay 5-8 ms of start-up for the others.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Callable, Iterator

NONE, GZIP, SNAPPY, LZ4, ZSTD = 0, 1, 2, 3, 4
NAMES = {NONE: "none", GZIP: "gzip", SNAPPY: "snappy", LZ4: "lz4", ZSTD: "zstd"}
# compression.type values (topic and broker configs) -> codec; "producer" keeps the source's.
BY_CONFIG_NAME = {"uncompressed": NONE, "gzip": GZIP, "snappy": SNAPPY, "lz4": LZ4, "zstd": ZSTD}

# Decompressed bytes one batch may expand to. Kafka streams and sets no bound; kpy holds a
# batch's records in memory when it must look inside, so a batch whose payload expands past
# this is refused (CORRUPT_MESSAGE on produce) rather than allowed to exhaust memory.
DEFAULT_DECOMPRESSED_LIMIT = 64 * 1024 * 1024

_XERIAL_MAGIC = b"\x82SNAPPY\x00"
_XERIAL_HEADER = _XERIAL_MAGIC + struct.pack(">ii", 1, 1)
_XERIAL_BLOCK = 32 * 1024
_INT32 = struct.Struct(">i")


class DecompressionError(Exception):
    """The payload does not decode with its codec, or decodes past the allowed size."""


def _too_large() -> DecompressionError:
    return DecompressionError("decompressed batch exceeds the allowed size")


# Decompressed bytes handed out at a time by ``stream``: what decoding one batch holds at once,
# whatever the batch expands to.
CHUNK = 256 * 1024
# zstd's decoder has no bound on the output of one call, but no block expands past 128 KiB: the
# input is fed at most this many blocks at a time (found by walking the frame's block headers),
# at most 2 MiB out per call (which python-zstandard joins from its parts: twice that at the
# peak). Where the walk cannot follow the frame (a truncated or unusual one), the input goes in
# pieces of _ZSTD_PIECE bytes, which hold at most 17 blocks (none takes fewer than 4 bytes).
_ZSTD_BLOCKS = 16
_ZSTD_PIECE = 64
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
# No snappy element expands more than a 3-byte copy of 64 bytes: a raw block claiming more than
# this many times its size (plus its length header) is corrupt, and is refused before the codec
# allocates what it claims.
_SNAPPY_MAX_RATIO = 22


def _gunzip(data: bytes, chunk: int) -> Iterator[bytes]:
    d = zlib.decompressobj(wbits=47)  # gzip or zlib header, detected
    pending = data
    while True:
        out = d.decompress(pending, chunk)
        pending = d.unconsumed_tail
        if out:
            yield out
        if d.eof:
            return
        if not out and not pending:
            raise DecompressionError("truncated gzip stream")


def _unsnappy(data: bytes, chunk: int) -> Iterator[bytes]:
    if data.startswith(_XERIAL_MAGIC):
        yield from _unxerial(data)
    else:
        yield _snappy_block(data)


def _snappy_block(block: bytes | memoryview) -> bytes:
    import cramjam

    if cramjam.snappy.decompress_raw_len(block) > _SNAPPY_MAX_RATIO * len(block) + 16:
        raise DecompressionError("snappy block claims more than its bytes can hold")
    return bytes(cramjam.snappy.decompress_raw(block))


def _unxerial(data: bytes) -> Iterator[bytes]:
    pos = len(_XERIAL_HEADER)  # magic (8) + version (4) + compatible version (4)
    while pos < len(data):
        if pos + 4 > len(data):
            raise DecompressionError("truncated xerial snappy block")
        (length,) = _INT32.unpack_from(data, pos)
        pos += 4
        if length < 0 or pos + length > len(data):
            raise DecompressionError("xerial snappy block runs past the payload")
        yield _snappy_block(memoryview(data)[pos : pos + length])
        pos += length


def _unlz4(data: bytes, chunk: int) -> Iterator[bytes]:
    import lz4.frame

    d = lz4.frame.LZ4FrameDecompressor()
    out = d.decompress(data, max_length=chunk)
    while True:
        if out:
            yield bytes(out)
        if d.eof:
            return
        if d.needs_input:
            raise DecompressionError("truncated lz4 frame")
        out = d.decompress(b"", max_length=chunk)


def _unzstd(data: bytes, chunk: int) -> Iterator[bytes]:
    import zstandard

    d = zstandard.ZstdDecompressor().decompressobj()
    view = memoryview(data)
    cuts = _zstd_cuts(data)
    if cuts is None:
        cuts = list(range(_ZSTD_PIECE, len(data) + _ZSTD_PIECE, _ZSTD_PIECE))
    start = 0
    for end in cuts:
        out = d.decompress(view[start:end])
        start = end
        if out:
            yield out
        if d.eof:
            return
    raise DecompressionError("truncated zstd frame")


def _zstd_cuts(data: bytes) -> list[int] | None:
    """Where to cut a zstd frame so that each piece holds at most _ZSTD_BLOCKS blocks, from the
    frame and block headers (RFC 8878, sections 3.1.1 and 3.1.1.2); None where the headers do
    not describe one whole frame. Hand-written: python-zstandard decodes but does not expose the
    block structure. Only the cuts come from here; the decoder checks everything itself."""
    if len(data) < 6 or not data.startswith(_ZSTD_MAGIC):
        return None
    descriptor = data[4]
    single_segment = descriptor >> 5 & 1
    pos = 5 + (1 - single_segment)  # the window descriptor, absent for a single segment
    pos += (0, 1, 2, 4)[descriptor & 3]  # dictionary id
    pos += (single_segment, 2, 4, 8)[descriptor >> 6]  # frame content size
    cuts = []
    blocks = 0
    while pos + 3 <= len(data):
        header = int.from_bytes(data[pos : pos + 3], "little")
        pos += 3 + (1 if header >> 1 & 3 == 1 else header >> 3)  # an RLE block holds one byte
        blocks += 1
        if header & 1:  # the last block; a checksum may follow
            cuts.append(pos + (4 if descriptor & 0x04 else 0))
            return cuts
        if blocks % _ZSTD_BLOCKS == 0:
            cuts.append(pos)
    return None


_DECODERS: dict[int, Callable[[bytes, int], Iterator[bytes]]] = {
    GZIP: _gunzip,
    SNAPPY: _unsnappy,
    LZ4: _unlz4,
    ZSTD: _unzstd,
}


def stream(
    codec: int,
    data: bytes,
    limit: int = DEFAULT_DECOMPRESSED_LIMIT,
    *,
    magic: int = 2,
    chunk: int = CHUNK,
) -> Iterator[bytes]:
    """Decode ``data`` piece by piece, so that a caller that walks the output (produce
    validation) holds one piece at a time rather than all a small hostile payload expands to.

    Pieces are at most ``chunk`` bytes for gzip and lz4, one xerial block (or the whole raw
    block, at most 22 times its size) for snappy, and at most 2 MiB for zstd. Raises
    DecompressionError when the payload does not decode, is truncated, or its output passes
    ``limit`` (raised before the piece that passes it is handed out). ``magic`` is the message
    format the payload came in: v0 lz4 carries Kafka's wrong header checksum, which is ignored.
    """
    try:
        decoder = _DECODERS[codec]
    except KeyError:
        raise DecompressionError(f"unknown compression codec {codec}") from None
    total = 0
    try:
        if codec == LZ4 and magic == 0:
            data = _fix_lz4_header_checksum(data)
        for piece in decoder(data, chunk):
            total += len(piece)
            if total > limit:
                raise _too_large()
            yield piece
    except DecompressionError:
        raise
    except Exception as e:  # each library raises its own types for bad input
        raise DecompressionError(f"{NAMES[codec]} payload does not decode: {e}") from e


def decompress(
    codec: int, data: bytes, limit: int = DEFAULT_DECOMPRESSED_LIMIT, *, magic: int = 2
) -> bytes:
    """Decode ``data`` whole; DecompressionError if it does not decode or expands past
    ``limit``. ``magic`` as for ``stream``."""
    pieces = list(stream(codec, data, limit, magic=magic))
    if len(pieces) == 1:
        return pieces[0]
    return b"".join(pieces)


def compress(codec: int, data: bytes, *, magic: int = 2) -> bytes:
    """Encode ``data`` as Kafka writes it for message format ``magic``."""
    if codec == GZIP:
        c = zlib.compressobj(wbits=31)
        return c.compress(data) + c.flush()
    if codec == SNAPPY:
        return _xerial(data)
    if codec == LZ4:
        import lz4.frame

        frame = bytes(lz4.frame.compress(data, block_linked=False, store_size=False))
        return _break_lz4_header_checksum(frame) if magic == 0 else frame
    if codec == ZSTD:
        import zstandard

        return bytes(zstandard.ZstdCompressor().compress(data))
    raise ValueError(f"unknown compression codec {codec}")


def _xerial(data: bytes) -> bytes:
    import cramjam

    out = bytearray(_XERIAL_HEADER)
    view = memoryview(data)
    for start in range(0, len(data), _XERIAL_BLOCK):
        block = bytes(cramjam.snappy.compress_raw(view[start : start + _XERIAL_BLOCK]))
        out += _INT32.pack(len(block))
        out += block
    return bytes(out)


# --- LZ4 frame descriptor checksum (KAFKA-3160) ---------------------------------------------
# The descriptor is: magic (4) FLG (1) BD (1) [content size (8) if FLG bit 3] [dictionary id
# (4) if FLG bit 0] HC (1). HC is the second byte of xxHash32 (seed 0) of FLG..the byte before
# HC; Kafka's v0 code hashed from the magic instead.

_LZ4_MAGIC = b"\x04\x22\x4d\x18"


def _lz4_descriptor_end(frame: bytes) -> int:
    """Index of HC in ``frame``'s descriptor."""
    if len(frame) < 7 or not frame.startswith(_LZ4_MAGIC):
        raise DecompressionError("not an lz4 frame")
    flg = frame[4]
    end = 6 + (8 if flg & 0x08 else 0) + (4 if flg & 0x01 else 0)
    if len(frame) <= end:
        raise DecompressionError("truncated lz4 frame descriptor")
    return end


def _fix_lz4_header_checksum(frame: bytes) -> bytes:
    hc = _lz4_descriptor_end(frame)
    good = (xxh32(frame[4:hc]) >> 8) & 0xFF
    return frame[:hc] + bytes([good]) + frame[hc + 1 :]


def _break_lz4_header_checksum(frame: bytes) -> bytes:
    hc = _lz4_descriptor_end(frame)
    wrong = (xxh32(frame[:hc]) >> 8) & 0xFF
    return frame[:hc] + bytes([wrong]) + frame[hc + 1 :]


_P1, _P2, _P3, _P4, _P5 = 2654435761, 2246822519, 3266489917, 668265263, 374761393
_M32 = 0xFFFFFFFF


def _rotl(x: int, r: int) -> int:
    return ((x << r) | (x >> (32 - r))) & _M32


def xxh32(data: bytes, seed: int = 0) -> int:
    """xxHash32, for the few bytes of an LZ4 frame descriptor (the lz4 package hides its own)."""
    n = len(data)
    pos = 0
    if n >= 16:
        v = [(seed + _P1 + _P2) & _M32, (seed + _P2) & _M32, seed & _M32, (seed - _P1) & _M32]
        while pos + 16 <= n:
            for i in range(4):
                (lane,) = struct.unpack_from("<I", data, pos + 4 * i)
                v[i] = (_rotl((v[i] + lane * _P2) & _M32, 13) * _P1) & _M32
            pos += 16
        h = (_rotl(v[0], 1) + _rotl(v[1], 7) + _rotl(v[2], 12) + _rotl(v[3], 18)) & _M32
    else:
        h = (seed + _P5) & _M32
    h = (h + n) & _M32
    while pos + 4 <= n:
        (word,) = struct.unpack_from("<I", data, pos)
        h = (_rotl((h + word * _P3) & _M32, 17) * _P4) & _M32
        pos += 4
    while pos < n:
        h = (_rotl((h + data[pos] * _P5) & _M32, 11) * _P1) & _M32
        pos += 1
    h ^= h >> 15
    h = (h * _P2) & _M32
    h ^= h >> 13
    h = (h * _P3) & _M32
    h ^= h >> 16
    return h
