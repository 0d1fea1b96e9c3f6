"""The primitives that the kio-backed (messages.py) and the hand-written (hot_requests.py,
hot_responses.py) codecs share: the protocol error, unsigned varints, tagged-field skipping."""

from __future__ import annotations


class ProtocolError(Exception):
    """The peer broke the protocol; Kafka closes the connection."""


def read_uvarint(buf: bytes, pos: int) -> tuple[int, int]:
    """An unsigned varint (compact lengths, tags) at ``pos``: (value, position after it)."""
    if pos < len(buf) and buf[pos] < 0x80:  # one byte: nearly every length and count
        return buf[pos], pos + 1
    shift = value = 0
    while True:
        if pos >= len(buf):
            raise ProtocolError("truncated varint")
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7
        if shift > 28:
            raise ProtocolError("varint too long")


def skip_tagged_fields(buf: bytes, pos: int) -> int:
    """Skip a tagged-field section (count, then tag, size and bytes for each); the position
    after it."""
    count, pos = read_uvarint(buf, pos)
    for _ in range(count):
        _, pos = read_uvarint(buf, pos)
        size, pos = read_uvarint(buf, pos)
        pos += size
        if pos > len(buf):
            raise ProtocolError("tagged field runs past the frame")
    return pos


def uvarint(value: int) -> bytes:
    """``value`` as an unsigned varint."""
    if value < 0x80:
        return bytes((value,))
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)
