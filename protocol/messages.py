"""Framing, request headers, and kio-backed request decoding and response encoding. Sans-IO.

A Kafka frame is a big-endian int32 size followed by that many bytes: a request header, then the
body. ``FrameReader`` is fed bytes and hands back whole frames; ``parse_header`` reads the header
(hand-written: the header's layout depends on the request's own API key and version, which kio's
entity readers cannot know before reading them); kio's generated types decode bodies and encode
responses.

Header versions: v1 (api_key int16, api_version int16, correlation_id int32, client_id nullable
legacy string) for non-flexible request versions, v2 (v1 plus tagged fields) for flexible ones.
Responses carry header v0 (correlation_id) or v1 (plus tagged fields) likewise, except ApiVersions,
whose response header is always v0 so that a client can read it before it knows what we speak.
"""

from __future__ import annotations

import dataclasses
import datetime
import io
import struct
from collections.abc import Callable, Iterator
from functools import cache
from typing import Any, NamedTuple

from kio.index import UnknownAPIKey, UnknownEntity, load_request_schema, load_response_schema
from kio.schema.index import api_key_map, schema_name_map
from kio.serial import entity_writer
from kio.serial._introspect import (
    PrimitiveField,
    PrimitiveTupleField,
    classify_field,
    get_field_tag,
    get_schema_field_type,
    is_optional,
)
from kio.serial._parse import get_reader
from kio.serial.readers import read_compact_array_length, read_legacy_array_length

from kpy.protocol.hot_requests import decode_api_versions, decode_fetch, decode_produce
from kpy.protocol.wire import ProtocolError as ProtocolError  # re-exported: callers catch it here
from kpy.protocol.wire import read_uvarint, skip_tagged_fields

API_VERSIONS_KEY = 18
DEFAULT_MAX_REQUEST_SIZE = 100 * 1024 * 1024  # socket.request.max.bytes

_SIZE = struct.Struct(">i")
_SIZE_AND_CORRELATION = struct.Struct(">ii")
_HEADER_FIXED = struct.Struct(">hhih")  # api_key, api_version, correlation_id, client_id length


class FrameReader:
    """Turns a byte stream into frames. Raises ProtocolError on a size Kafka would refuse."""

    def __init__(self, max_request_size: int = DEFAULT_MAX_REQUEST_SIZE) -> None:
        self._buf = bytearray()
        self._max = max_request_size

    def feed(self, data: bytes) -> None:
        self._buf += data

    def frames(self) -> Iterator[bytes]:
        buf = self._buf
        pos = 0
        try:
            while len(buf) - pos >= 4:
                (size,) = _SIZE.unpack_from(buf, pos)
                if size < 0 or size > self._max:
                    raise ProtocolError(f"invalid frame size {size}")
                if len(buf) - pos - 4 < size:
                    break
                yield bytes(memoryview(buf)[pos + 4 : pos + 4 + size])  # one copy, not two
                pos += 4 + size
        finally:
            if pos:
                del buf[:pos]

    @property
    def buffered(self) -> int:
        return len(self._buf)

    @property
    def max_size(self) -> int:
        """The largest frame accepted (lower while a SASL connection authenticates)."""
        return self._max

    @max_size.setter
    def max_size(self, value: int) -> None:
        self._max = value

    @property
    def next_size(self) -> int | None:
        """The size the incomplete frame at the head of the buffer declares (checked by
        ``frames``), once its four bytes are in: what the rest of it will take."""
        return _SIZE.unpack_from(self._buf)[0] if len(self._buf) >= 4 else None


class RequestHeader(NamedTuple):
    """The header of one request (a NamedTuple: one is built per request)."""

    api_key: int
    api_version: int
    correlation_id: int
    client_id: str | None
    size: int  # bytes the header occupies in the frame; the body follows


# kio and kpy.protocol.legacy declare disjoint versions (legacy has only the ones Kafka 4
# removed), so kio is asked first and legacy, whose types cost start-up time to declare, is
# imported only when an old client asks for one of its versions.


@cache
def request_type(api_key: int, version: int) -> Any:
    """kio's request type for a key and version (or kpy's for the versions Kafka 4 removed),
    or None where there is none."""
    try:
        return load_request_schema(api_key, version)
    except (UnknownAPIKey, UnknownEntity):
        from kpy.protocol import legacy

        return legacy.request_type(api_key, version)


@cache
def response_type(api_key: int, version: int) -> Any:
    try:
        return load_response_schema(api_key, version)
    except (UnknownAPIKey, UnknownEntity):
        from kpy.protocol import legacy

        found = legacy.response_type(api_key, version)
        if found is None:
            raise
        return found


# The first flexible version of the APIs on a client's way to its first record, so that their
# headers are read without importing kio's schema modules (the JSON schemas' flexibleVersions).
_FLEXIBLE_FROM = {0: 9, 1: 12, 3: 9, 18: 3}

# Requests decoded by hand (hot_requests.py); the rest by kio.
_HAND_DECODERS: dict[int, Callable[[bytes, int, int], Any]] = {
    0: decode_produce,
    1: decode_fetch,
    18: decode_api_versions,
}


# The lowest and highest request version kio has a schema for, per API key it knows.
_KIO_VERSIONS = {
    key: (min(schema_name_map[name]), max(schema_name_map[name]))
    for key, name in api_key_map.items()
}


def is_flexible(api_key: int, version: int) -> bool:
    """Whether a request version uses the flexible (compact, tagged) encoding.

    For versions above what kio knows (ApiVersions from a newer client) the highest known
    version's answer stands: flexibility never goes away once introduced. Versions below the
    lowest (the ones Kafka 4 removed, kpy.protocol.legacy's) and unknown keys are not flexible.
    A header is read before its key and version are checked, so nothing here may cost more, or
    remember more, for a key or version that does not exist (a fuzzer found a header with an
    unknown key and version 32767 taking 32767 schema look-ups and 5 MB of cache).
    """
    first = _FLEXIBLE_FROM.get(api_key)
    if first is not None:
        return version >= first
    lowest, highest = _KIO_VERSIONS.get(api_key, (0, -1))
    version = min(version, highest)
    if version < lowest:
        return False
    return _flexible(api_key, version)


@cache
def _flexible(api_key: int, version: int) -> bool:
    cls = request_type(api_key, version)
    return cls is not None and bool(cls.__flexible__)


def parse_header(frame: bytes) -> RequestHeader:
    if len(frame) < _HEADER_FIXED.size:
        raise ProtocolError("frame shorter than a request header")
    api_key, api_version, correlation_id, client_len = _HEADER_FIXED.unpack_from(frame, 0)
    pos = _HEADER_FIXED.size
    client_id: str | None = None
    if client_len >= 0:
        if pos + client_len > len(frame):
            raise ProtocolError("client id runs past the frame")
        client_id = frame[pos : pos + client_len].decode("utf-8", "replace")
        pos += client_len
    elif client_len != -1:
        raise ProtocolError("invalid client id length")
    if is_flexible(api_key, api_version):
        pos = skip_tagged_fields(frame, pos)
    return RequestHeader(api_key, api_version, correlation_id, client_id, pos)


Reader = Callable[[bytes, int], tuple[Any, int]]  # (value, bytes consumed), as kio's readers


@cache
def _writer(cls: Any) -> Callable[[Any, Any], None]:
    return entity_writer(cls)


# Request bodies that kpy does not decode by hand are read by walking kio's dataclasses with kio's
# primitive readers, not with kio's native entity reader, for two reasons. The native reader sizes
# an array's storage by the length the frame claims before reading any element, so one request
# claiming two billion entries makes it ask for some hundred gigabytes and abort the whole process
# (a Rust allocation failure is not an exception); here an array may claim no more entries than
# there are bytes left in the frame, and a shorter frame is a ProtocolError. And it raises
# KeyError on a tagged field its schema does not name, where the protocol says an unknown tag must
# be skipped (a newer client may send tags this broker's schema predates); here it is skipped.
# The walk costs about 20 us for a small request, where the native reader takes 2; the requests a
# busy broker reads most (Produce, and every client's first, ApiVersions) are decoded by hand.


@cache
def _safe_reader(cls: Any) -> Reader:
    flexible = bool(cls.__flexible__)
    regular: list[tuple[str, Reader]] = []
    tagged: dict[int, tuple[str, Reader]] = {}
    for f in dataclasses.fields(cls):
        tag = get_field_tag(f)
        reader = _safe_field_reader(f, flexible, tag is not None)
        if tag is None:
            regular.append((f.name, reader))
        else:
            tagged[int(tag)] = (f.name, reader)

    def read(buf: bytes, start: int) -> tuple[Any, int]:
        values: dict[str, Any] = {}
        pos = start
        for name, field_reader in regular:
            values[name], size = field_reader(buf, pos)
            pos += size
        if flexible:
            count, pos = read_uvarint(buf, pos)
            for _ in range(count):
                tag, pos = read_uvarint(buf, pos)
                size, pos = read_uvarint(buf, pos)
                known = tagged.get(tag)
                if known is not None:
                    values[known[0]], _ = known[1](buf, pos)
                pos += size
        return cls(**values), pos - start

    return read


def _safe_field_reader(f: dataclasses.Field[Any], flexible: bool, is_tag: bool) -> Reader:
    optional = False if is_tag else is_optional(f)
    kind = classify_field(f)
    inner: Reader
    if isinstance(kind, PrimitiveField | PrimitiveTupleField):
        schema_type = get_schema_field_type(f)
        if schema_type == "timedelta_i64" and not optional:
            inner = _read_timedelta_i64
        else:
            inner = get_reader(schema_type, flexible, optional and not kind.is_array)
    else:
        inner = _safe_reader(kind.type_)
        if optional and not kind.is_array:
            inner = _nullable(inner)
    if kind.is_array:
        return _array(inner, flexible, optional)
    return inner


_I64 = struct.Struct(">q")
_TIMEDELTA_MAX_MS = datetime.timedelta.max // datetime.timedelta(milliseconds=1)
_TIMEDELTA_MIN_MS = datetime.timedelta.min // datetime.timedelta(milliseconds=1)


def _read_timedelta_i64(buf: bytes, pos: int) -> tuple[datetime.timedelta, int]:
    """An int64 of milliseconds as a timedelta, as kio reads it, except that a value past what a
    timedelta holds (Long.MAX_VALUE, "forever", included) is held at the largest one: Kafka
    takes any long there (OffsetCommit v2-v4's retention time), where kio's reader raises and
    the connection would close. A fuzzer found it."""
    if len(buf) - pos < 8:
        raise ProtocolError("int64 runs past the frame")
    (ms,) = _I64.unpack_from(buf, pos)
    ms = max(_TIMEDELTA_MIN_MS, min(ms, _TIMEDELTA_MAX_MS))
    return datetime.timedelta(milliseconds=ms), 8


def _array(item: Reader, flexible: bool, nullable: bool) -> Reader:
    """An array of ``item``s (null: None, where the schema allows it), its claimed length
    bounded by the bytes left."""
    read_length = read_compact_array_length if flexible else read_legacy_array_length

    def read(buf: bytes, start: int) -> tuple[Any, int]:
        count, size = read_length(buf, start)
        pos = start + size
        if count is None or count < 0:  # null (compact: None, legacy: -1)
            if not nullable:
                raise ProtocolError("null array where the schema has none")
            return None, size
        if count > len(buf) - pos:
            raise ProtocolError(f"array of {count} entries in {len(buf) - pos} bytes")
        items = []
        for _ in range(count):
            value, size = item(buf, pos)
            items.append(value)
            pos += size
        return tuple(items), pos - start

    return read


def _nullable(reader: Reader) -> Reader:
    def read(buf: bytes, pos: int) -> tuple[Any, int]:
        if buf[pos] == 0xFF:  # KIP-893 marker -1: null
            return None, 1
        value, size = reader(buf, pos + 1)
        return value, size + 1

    return read


def decode_request(header: RequestHeader, frame: bytes) -> Any:
    """Decode the body that follows ``header`` in ``frame``; ProtocolError if it does not parse."""
    hand = _HAND_DECODERS.get(header.api_key)
    if hand is not None:
        return hand(frame, header.size, header.api_version)
    cls = request_type(header.api_key, header.api_version)
    if cls is None:
        raise ProtocolError(f"no schema for api {header.api_key} v{header.api_version}")
    try:
        request, _ = _safe_reader(cls)(frame, header.size)
    except ProtocolError:
        raise
    except Exception as e:  # kio's readers raise BufferUnderflow, ValueError... for bad bytes
        raise ProtocolError(f"request body does not parse: {e!r}") from e
    return request


def decode_response(api_key: int, version: int, frame: bytes) -> Any:
    """Decode a response frame (without its size prefix) as a client does, with the same
    bounded readers as requests: the peer is no more trusted here than there."""
    pos = 4  # correlation id
    if api_key != API_VERSIONS_KEY and is_flexible(api_key, version):
        pos = skip_tagged_fields(frame, pos)
    try:
        response, _ = _safe_reader(response_type(api_key, version))(frame, pos)
    except ProtocolError:
        raise
    except Exception as e:
        raise ProtocolError(f"response body does not parse: {e!r}") from e
    return response


@dataclasses.dataclass(frozen=True, slots=True)
class EncodedBody:
    """A response body its handler encoded itself (kpy.protocol.hot_responses), as buffers that
    follow one another; ``encode_response`` puts the size and header in front."""

    parts: list[bytes | bytearray | memoryview]


def encode_response(header: RequestHeader, response: Any) -> bytes:
    """Size prefix, response header and body, ready for the socket."""
    if isinstance(response, EncodedBody):
        return _frame_encoded(header, response.parts)
    out = io.BytesIO()
    out.write(b"\0\0\0\0")
    out.write(_SIZE.pack(header.correlation_id))
    if header.api_key != API_VERSIONS_KEY and is_flexible(header.api_key, header.api_version):
        out.write(b"\0")  # no tagged fields in the response header
    response_cls: Any = type(response)
    _writer(response_cls)(out, response)
    data = out.getbuffer()
    _SIZE.pack_into(data, 0, len(data) - 4)
    del data
    return out.getvalue()


def _frame_encoded(header: RequestHeader, parts: list[bytes | bytearray | memoryview]) -> bytes:
    key = header.api_key
    flexible = key != API_VERSIONS_KEY and is_flexible(key, header.api_version)
    size = sum(map(len, parts)) + (5 if flexible else 4)
    prefix = _SIZE_AND_CORRELATION.pack(size, header.correlation_id) + (b"\0" if flexible else b"")
    return b"".join([prefix, *parts])  # the one copy of the records a fetch makes


# --- Building responses across versions ---------------------------------------------------

_TIMEDELTA_TYPES = {"timedelta_i32", "timedelta_i64"}


@cache
def _field_info(cls: Any) -> dict[str, str | None]:
    return {f.name: f.metadata.get("kafka_type") for f in dataclasses.fields(cls)}


def make(cls: Any, **values: Any) -> Any:
    """Instantiate a kio type with the fields it has, ignoring the ones its version lacks.

    Handlers describe a response once, with the union of the fields of all versions; this keeps
    what ``cls`` (one version's type) defines. Milliseconds given for duration fields become the
    timedelta kio writes.
    """
    info = _field_info(cls)
    kwargs = {}
    for name, value in values.items():
        if name not in info:
            continue
        if info[name] in _TIMEDELTA_TYPES and isinstance(value, int):
            value = datetime.timedelta(milliseconds=value)
        kwargs[name] = value
    return cls(**kwargs)


def has_field(cls: Any, name: str) -> bool:
    return name in _field_info(cls)


@cache
def response_module(api_key: int, version: int) -> Any:
    """The kio module holding one version's response type and its nested types (a namespace
    of kpy's types for the versions Kafka 4 removed)."""
    import importlib

    cls = response_type(api_key, version)
    if cls.__module__ == "kpy.protocol.legacy":
        from kpy.protocol import legacy

        return legacy.response_module(api_key, version)
    return importlib.import_module(cls.__module__)
