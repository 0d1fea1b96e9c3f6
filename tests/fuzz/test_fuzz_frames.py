"""Fuzzing frame splitting (FrameReader) and request headers (parse_header, v0-v2).

FrameReader: any byte stream, fed in any pieces, gives back exactly the frames it holds, or a
ProtocolError for a size Kafka refuses (negative, or above socket.request.max.bytes), sizes just
around the maximum included. parse_header: any bytes give a header or a ProtocolError, whatever
the key and version claim, at no cost that the claim can inflate.
"""

from __future__ import annotations

import struct
import tracemalloc

from fuzzing import budget, decodes, mutated, tagged_section
from hypothesis import example, given
from hypothesis import strategies as st

from kpy.protocol.messages import FrameReader, ProtocolError, is_flexible, parse_header

SIZE = struct.Struct(">i")


@st.composite
def framed_stream(draw: st.DrawFn) -> tuple[int, list[bytes], bytes]:
    """(max request size, the frames, the stream): frames of sizes at and around the maximum,
    sometimes followed by a size just past it or a negative one."""
    limit = draw(st.integers(0, 300))
    frames = []
    for _ in range(draw(st.integers(0, 6))):
        size = draw(st.one_of(st.integers(0, limit), st.sampled_from([limit, max(limit - 1, 0)])))
        frames.append(draw(st.binary(min_size=size, max_size=size)))
    stream = b"".join(SIZE.pack(len(f)) + f for f in frames)
    tail = draw(st.sampled_from([b"", SIZE.pack(limit + 1), SIZE.pack(-1), SIZE.pack(-(2**31))]))
    return limit, frames, stream + tail + draw(st.binary(max_size=3))  # never a whole size


@budget(300)
@given(framed_stream(), st.lists(st.integers(1, 64), max_size=20))
def test_frame_reader_gives_the_frames_whatever_the_pieces(
    case: tuple[int, list[bytes], bytes], cuts: list[int]
) -> None:
    limit, frames, stream = case

    def split() -> tuple[list[bytes], ProtocolError | None]:
        reader = FrameReader(limit)
        got: list[bytes] = []
        pos = 0
        pieces = [*cuts, len(stream)]
        try:
            for n in pieces:
                reader.feed(stream[pos : pos + n])
                pos += n
                got.extend(reader.frames())
        except ProtocolError as e:
            return got, e
        assert reader.buffered == len(stream) - sum(4 + len(f) for f in got)
        return got, None

    result = decodes("frame_reader", split, len(stream), ())
    assert not isinstance(result, BaseException)
    got, error = result
    assert got == frames[: len(got)]
    if error is None:
        assert got == frames
    else:
        assert len(got) == len(frames)  # the bad size comes after the good frames


@budget(300)
@given(st.binary(max_size=64))
def test_any_bytes_are_a_header_or_a_protocol_error(frame: bytes) -> None:
    result = decodes("header_raw", lambda: parse_header(frame), len(frame), (ProtocolError,))
    if not isinstance(result, BaseException):
        assert _HEADER_MIN <= result.size <= len(frame)


_HEADER_MIN = 10  # api key, version, correlation id, client id length


@st.composite
def headers(draw: st.DrawFn) -> bytes:
    """Headers v1 and v2 (v0, ControlledShutdown's, has no client id and kpy serves no API
    that uses it) of any key and version, client ids null or not, tagged fields known or not,
    then mutated."""
    key = draw(st.one_of(st.integers(0, 80), st.integers(-(2**15), 2**15 - 1)))
    version = draw(st.one_of(st.integers(0, 20), st.integers(-(2**15), 2**15 - 1)))
    client = draw(st.one_of(st.none(), st.binary(max_size=20)))
    out = struct.pack(">hhi", key, version, draw(st.integers(-(2**31), 2**31 - 1)))
    out += SIZE.pack(-1)[2:] if client is None else struct.pack(">h", len(client)) + client
    if is_flexible(key, version):
        out += draw(tagged_section())
    body = draw(st.binary(max_size=16))
    return draw(mutated(out + body, tagged=True)) if draw(st.booleans()) else out + body


@budget(400)
@given(headers())
@example(struct.pack(">hhih", 500, 32767, 1, -1))  # unknown key, highest version
@example(struct.pack(">hhih", 19, 32767, 1, -1) + b"\x00")  # CreateTopics from the future
def test_headers_parse_or_raise_a_protocol_error(frame: bytes) -> None:
    decodes("header_structured", lambda: parse_header(frame), len(frame), (ProtocolError,))


def test_a_header_of_an_unknown_key_or_version_costs_nothing_to_remember() -> None:
    """Regression (found by test_any_bytes_are_a_header_or_a_protocol_error's memory bound):
    is_flexible walked down from the claimed version to 0, one cached schema look-up per
    version, so that one 14-byte header with an unknown API key and version 32767 kept 5 MB in
    caches (and took a third of a second of the event loop); any number of keys, any amount."""
    for key in (999, 1000):
        parse_header(struct.pack(">hhih", key, 100, 1, -1))  # warm what is not per key
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for key in range(1001, 1011):
            for version in (32767, 30000):
                parse_header(struct.pack(">hhih", key, version, 1, -1))
        for version in range(20000, 20010):
            parse_header(struct.pack(">hhih", 19, version, 1, -1) + b"\x00")
        kept = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert kept < 16 * 1024, kept


@budget(200)
@given(st.data())
def test_frames_of_random_pieces_then_headers(data: st.DataObject) -> None:
    """Both together, as the server runs them: a stream of frames whose headers are fuzzed,
    split at random; every frame gives a header or a ProtocolError."""
    frames = data.draw(st.lists(headers(), max_size=5))
    stream = b"".join(SIZE.pack(len(f)) + f for f in frames)
    reader = FrameReader(1024)
    pos = 0
    for n in [*data.draw(st.lists(st.integers(1, 40), max_size=10)), len(stream)]:
        reader.feed(stream[pos : pos + n])
        pos += n
        for frame in reader.frames():
            decodes(
                "frames_then_headers", lambda f=frame: parse_header(f), len(frame), (ProtocolError,)
            )
