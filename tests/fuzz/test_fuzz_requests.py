"""Fuzzing request bodies: every API key and version kpy serves (handlers/registry.py APIS).

Structure-aware inputs: a request of the version's schema type with arbitrary field values
(hypothesis builds kio's entities from their types; records fields hold v2 batches, message sets
or junk), written by kio's writer, framed with a v1 or v2 header, then mutated (bytes flipped,
the frame cut or extended, lengths and counts replaced with huge, negative or null values,
tagged fields the schema does not know). Unmutated, it must decode, to what was written where
kio's types decode it; mutated, or as raw bytes, it decodes or raises ProtocolError, within the
memory bound (fuzzing.decodes). The path is the broker's: parse_header, then decode_request,
which uses the hand decoders (Produce, Fetch, ApiVersions) or the bounded walk of kio's types.
"""

from __future__ import annotations

import io
import struct
from typing import Any

import pytest
from fuzzing import budget, decodes, mutated, records_field
from hypothesis import given
from hypothesis import strategies as st
from kio.serial import entity_writer
from kio.static.primitive import Records

from kpy.handlers.registry import APIS
from kpy.protocol.messages import ProtocolError, decode_request, parse_header, request_type

st.register_type_strategy(Records, records_field().map(Records))

VERSIONS = [(key, v) for key, _, lo, hi, _ in APIS for v in range(lo, hi + 1)]
HAND_DECODED = {0, 1, 18}


def frame_of(key: int, version: int, body: bytes, client_id: bytes | None = b"fuzz") -> bytes:
    cls = request_type(key, version)
    header = struct.pack(">hhi", key, version, 7)
    header += struct.pack(">h", -1) if client_id is None else struct.pack(">h", len(client_id))
    header += client_id or b""
    if cls.__flexible__:
        header += b"\x00"
    return header + body


def encode(request: Any) -> bytes:
    out = io.BytesIO()
    entity_writer(type(request))(out, request)
    return out.getvalue()


def decode(frame: bytes) -> Any:
    return decode_request(parse_header(frame), frame)


@st.composite
def requests(draw: st.DrawFn) -> tuple[int, int, Any]:
    key, version = draw(st.sampled_from(VERSIONS))
    return key, version, draw(st.from_type(request_type(key, version)))


@budget(400)
@given(requests(), st.data())
def test_every_request_decodes_and_survives_mutation(
    case: tuple[int, int, Any], data: st.DataObject
) -> None:
    key, version, request = case
    frame = frame_of(key, version, encode(request), data.draw(st.sampled_from([b"fuzz", None])))
    got = decodes("request_valid", lambda: decode(frame), len(frame), ())
    if key not in HAND_DECODED:
        assert got == request
    damaged = data.draw(mutated(frame, tagged=bool(request_type(key, version).__flexible__)))
    decodes("request_mutated", lambda: decode(damaged), len(damaged), (ProtocolError,))


@budget(300)
@given(st.sampled_from(VERSIONS), st.binary(max_size=200))
def test_any_body_of_every_version_decodes_or_raises_a_protocol_error(
    key_version: tuple[int, int], body: bytes
) -> None:
    key, version = key_version
    frame = frame_of(key, version, body)
    decodes("request_raw", lambda: decode(frame), len(frame), (ProtocolError,))


@budget(200)
@given(st.sampled_from(VERSIONS), st.data())
def test_claimed_counts_cannot_allocate_past_the_frame(
    key_version: tuple[int, int], data: st.DataObject
) -> None:
    """A body made of the largest lengths and counts each encoding allows (int32 arrays of two
    billion, compact varints of four billion, strings of 32767), at every offset: the decoders
    refuse them by the bytes left before allocating anything (kio's native reader asked for
    126 GB here)."""
    key, version = key_version
    fillers = [b"\x7f\xff\xff\xff", b"\xff\xff\xff\xff\x0f", b"\x7f\xff", b"\x00\x00\x00\x01"]
    body = b"".join(data.draw(st.lists(st.sampled_from(fillers), min_size=1, max_size=12)))
    frame = frame_of(key, version, body)
    decodes("request_counts", lambda: decode(frame), len(frame), (ProtocolError,))


@pytest.mark.parametrize("version", [2, 3, 4])
@pytest.mark.parametrize("retention_ms", [2**63 - 1, -(2**63), 86_400_000 * 10**9])
def test_offset_commit_takes_any_retention_time(version: int, retention_ms: int) -> None:
    """Regression (found by atheris on test_every_request_decodes_and_survives_mutation):
    OffsetCommit v2-v4's retention_time is an int64 of milliseconds, which kio reads as a
    timedelta and refuses past about 10^8 days; Long.MAX_VALUE ("forever") made the request a
    ProtocolError and closed the connection. Kafka takes any long there; kpy ignores the field."""
    body = bytearray()
    body += struct.pack(">h", 1) + b"g"  # group id
    body += struct.pack(">i", 1)  # generation id
    body += struct.pack(">h", 1) + b"m"  # member id
    body += struct.pack(">q", retention_ms)
    body += struct.pack(">i", 1) + struct.pack(">h", 1) + b"t"  # one topic, "t"
    body += struct.pack(">i", 1) + struct.pack(">iqh", 0, 5, -1)  # partition 0, offset 5, null
    request = decode(frame_of(8, version, bytes(body)))
    assert request.retention_time.days == (999_999_999 if retention_ms > 0 else -999_999_999)
    assert request.topics[0].partitions[0].committed_offset == 5
