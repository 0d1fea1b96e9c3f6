"""ApiVersions (key 18), v0-v4.

The list of APIs and versions comes from the handler registry. A request at a version kpy does
not serve is answered, as Kafka does, in the v0 layout with UNSUPPORTED_VERSION and kpy's ranges,
so that the client retries at a version both sides know. From v3 the client's software name and
version must match Kafka's pattern, else INVALID_REQUEST (ApiVersionsRequest.isValid). No
features are advertised.

Every client sends this request first, so its response is encoded here by hand (once per
version, then reused) in the layout of Kafka's ApiVersionsResponse.json: error code, the array of
(key, min, max), the throttle time from v1, compact encodings and tagged fields from v3 (none
written: no features, the finalized epoch at its default). Through kio it would import kio's
schema module for the version on the way to every client's first request.
tests/protocol/test_hot_responses.py checks the bytes against kio's.
"""

from __future__ import annotations

import re
import struct
from functools import cache
from typing import TYPE_CHECKING, Any

from kio.schema.errors import ErrorCode

from kpy.handlers.registry import REGISTRY, error_response, handles
from kpy.protocol.hot_requests import API_VERSIONS_FLEXIBLE
from kpy.protocol.messages import EncodedBody, RequestHeader
from kpy.protocol.wire import uvarint

if TYPE_CHECKING:
    from kpy.broker import RequestContext

KEY = 18
# ApiVersionsRequest.SOFTWARE_NAME_VERSION_PATTERN
_SOFTWARE = re.compile(r"[a-zA-Z0-9](?:[a-zA-Z0-9\-.]*[a-zA-Z0-9])?")
_I16 = struct.Struct(">h")
_I32 = struct.Struct(">i")
_RANGE = struct.Struct(">hhh")


def encode(version: int, error: int, ranges: list[tuple[int, int, int]]) -> bytes:
    """An ApiVersions response body: ``error``, then (key, min, max) for each API."""
    flexible = version >= API_VERSIONS_FLEXIBLE
    parts = [_I16.pack(error)]
    if flexible:
        parts.append(uvarint(len(ranges) + 1))
        parts.extend(_RANGE.pack(*r) + b"\0" for r in ranges)
    else:
        parts.append(_I32.pack(len(ranges)))
        parts.extend(_RANGE.pack(*r) for r in ranges)
    if version >= 1:
        parts.append(_I32.pack(0))
    if flexible:
        parts.append(b"\0")  # no tagged fields
    return b"".join(parts)


def _ranges() -> list[tuple[int, int, int]]:
    return [(r.api_key, r.min_version, r.max_version) for _, r in sorted(REGISTRY.items())]


@cache
def _response(version: int) -> bytes:
    return encode(version, ErrorCode.none, _ranges())


@handles(KEY)
async def handle(ctx: RequestContext, request: Any) -> EncodedBody:
    if ctx.version >= API_VERSIONS_FLEXIBLE and not (
        _SOFTWARE.fullmatch(request.client_software_name)
        and _SOFTWARE.fullmatch(request.client_software_version)
    ):
        return EncodedBody([encode(ctx.version, ErrorCode.invalid_request, [])])
    return EncodedBody([_response(ctx.version)])


@error_response(KEY)
def _error_response(ctx: RequestContext, request: Any, error: ErrorCode) -> EncodedBody:
    return EncodedBody([encode(ctx.version, error, [])])


def unsupported_version_response(header: RequestHeader) -> bytes:
    """The v0 layout, with kpy's ranges; header v0."""
    body = _I32.pack(header.correlation_id) + encode(0, ErrorCode.unsupported_version, _ranges())
    return _I32.pack(len(body)) + body
