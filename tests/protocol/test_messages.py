from __future__ import annotations

import contextlib
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kpy.protocol.hot_requests import PartitionProduceData, ProduceRequest, TopicProduceData
from kpy.protocol.messages import (
    FrameReader,
    ProtocolError,
    _safe_reader,
    decode_request,
    encode_response,
    is_flexible,
    make,
    parse_header,
    response_module,
)


def frame(body: bytes) -> bytes:
    return struct.pack(">i", len(body)) + body


def test_frames_arrive_whole_whatever_the_split() -> None:
    data = frame(b"abc") + frame(b"") + frame(b"hello world")
    for split in range(len(data) + 1):
        reader = FrameReader()
        reader.feed(data[:split])
        got = list(reader.frames())
        reader.feed(data[split:])
        got += list(reader.frames())
        assert got == [b"abc", b"", b"hello world"]
        assert reader.buffered == 0


@pytest.mark.parametrize("size", [-1, -(2**31), 101 * 1024 * 1024, 2**31 - 1])
def test_frame_size_out_of_range_is_a_protocol_error(size: int) -> None:
    reader = FrameReader(100 * 1024 * 1024)
    reader.feed(struct.pack(">i", size))
    with pytest.raises(ProtocolError):
        list(reader.frames())


def header_v1(key: int, version: int, corr: int, client: str | None) -> bytes:
    if client is None:
        return struct.pack(">hhih", key, version, corr, -1)
    raw = client.encode()
    return struct.pack(">hhih", key, version, corr, len(raw)) + raw


def test_parse_header_v1_and_v2() -> None:
    h = parse_header(header_v1(3, 1, 7, "me") + b"rest")
    assert (h.api_key, h.api_version, h.correlation_id, h.client_id) == (3, 1, 7, "me")
    assert h.size == 12
    # Metadata v9 is flexible: header v2 carries tagged fields, here one tag of 2 bytes.
    h2 = parse_header(header_v1(3, 9, 8, None) + b"\x01\x05\x02ab" + b"body")
    assert h2.client_id is None and h2.size == 10 + 5
    assert is_flexible(18, 3) and not is_flexible(18, 2)
    assert is_flexible(18, 99)  # newer ApiVersions than kio knows stays flexible


def test_truncated_header_is_a_protocol_error() -> None:
    with pytest.raises(ProtocolError):
        parse_header(b"\x00\x03\x00")
    with pytest.raises(ProtocolError):
        parse_header(header_v1(3, 1, 7, "client")[:-2])


def test_metadata_request_round_trip_and_response_header() -> None:
    body = struct.pack(">i", 1) + struct.pack(">h", 3) + b"foo"  # Metadata v1: topics ["foo"]
    raw = header_v1(3, 1, 42, "c") + body
    header = parse_header(raw)
    request = decode_request(header, raw)
    assert [t.name for t in request.topics] == ["foo"]
    mod = response_module(3, 1)
    response = make(mod.MetadataResponse, throttle_time=0, brokers=(), controller_id=1, topics=())
    out = encode_response(header, response)
    assert struct.unpack_from(">ii", out) == (len(out) - 4, 42)


def test_a_body_that_does_not_parse_is_a_protocol_error() -> None:
    raw = header_v1(3, 1, 1, "c") + struct.pack(">i", 5)  # claims 5 topics, has none
    with pytest.raises(ProtocolError):
        decode_request(parse_header(raw), raw)


@given(st.binary(max_size=200))
def test_any_bytes_give_a_request_or_a_protocol_error(data: bytes) -> None:
    reader = FrameReader(1 << 16)
    reader.feed(struct.pack(">i", len(data)) + data)
    try:
        for f in reader.frames():
            header = parse_header(f)
            if header.api_key in (0, 1, 2, 3, 18, 19, 20, 22):
                with contextlib.suppress(ProtocolError):
                    decode_request(header, f)
    except ProtocolError:
        pass


def test_unknown_tagged_fields_are_skipped_at_every_level() -> None:
    import datetime
    import io

    from kio.schema.produce.v10 import request as pr
    from kio.serial import entity_writer

    req = pr.ProduceRequest(
        acks=-1,
        timeout=datetime.timedelta(seconds=1),
        topic_data=(
            pr.TopicProduceData(
                name="t", partition_data=(pr.PartitionProduceData(index=0, records=b"abc"),)
            ),
        ),
    )
    buf = io.BytesIO()
    entity_writer(pr.ProduceRequest)(buf, req)
    body = buf.getvalue()
    # The body ends with: partition tags (0), topic tags (0), request tags (0). Give the
    # partition and the request one unknown tag each.
    assert body.endswith(b"\x00\x00\x00")
    patched = body[:-3] + b"\x01\x09\x01\xaa" + b"\x00" + b"\x02\x05\x02\xaa\xbb\x06\x00"
    raw = header_v1(0, 10, 3, "c") + b"\x00" + patched
    # kio's tolerant reader (the path of every API not decoded by hand)...
    assert _safe_reader(pr.ProduceRequest)(raw, parse_header(raw).size)[0] == req
    # ...and the hand-written Produce decoder
    got = decode_request(parse_header(raw), raw)
    assert got == ProduceRequest(
        None, -1, 1000, (TopicProduceData("t", (PartitionProduceData(0, b"abc"),)),)
    )


LEGACY_VERSIONS = [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1), (1, 2), (1, 3), (2, 0), (8, 0), (8, 1)]


@given(st.sampled_from([*LEGACY_VERSIONS, (9, 0)]), st.binary(max_size=200))
def test_removed_versions_decode_any_body_or_raise_a_protocol_error(
    key_version: tuple[int, int], body: bytes
) -> None:
    key, version = key_version
    raw = header_v1(key, version, 1, "c") + body
    with contextlib.suppress(ProtocolError):
        decode_request(parse_header(raw), raw)


def test_removed_versions_have_kpys_layouts() -> None:
    """Produce v0-v2, Fetch v0-v3, ListOffsets v0, OffsetCommit v0-v1, OffsetFetch v0: kio 0.6.5
    has none of them; kpy.protocol.legacy declares them."""
    from kpy.protocol import legacy
    from kpy.protocol.messages import request_type, response_module

    for key, version in LEGACY_VERSIONS:
        assert request_type(key, version) is legacy.REQUESTS[(key, version)]
        assert response_module(key, version) is legacy.RESPONSE_MODULES[(key, version)]
    fetch_v3 = header_v1(1, 3, 7, "c") + struct.pack(">iiiii", -1, 100, 1, 5000, 1)
    fetch_v3 += struct.pack(">h", 1) + b"t" + struct.pack(">iiqi", 1, 0, 42, 1024)
    request = decode_request(parse_header(fetch_v3), fetch_v3)
    assert (request.max_bytes, request.topics[0].partitions[0].fetch_offset) == (5000, 42)
