"""ApiVersions (key 18), v0-v4.

The list of APIs and versions comes from the handler registry. A request at a version kpy does
not serve is answered, as Kafka does, in the v0 layout with UNSUPPORTED_VERSION and kpy's ranges,
so that the client retries at a version both sides know. No features are advertised.
"""

from __future__ import annotations

import struct
from functools import cache
from typing import TYPE_CHECKING, Any

from kio.schema.errors import ErrorCode

from kpy.handlers.registry import REGISTRY, error_response, handles
from kpy.protocol.messages import RequestHeader, make, response_type

if TYPE_CHECKING:
    from kpy.broker import RequestContext

KEY = 18


@cache
def _response(version: int) -> Any:
    cls = response_type(KEY, version)
    mod = __import__(cls.__module__, fromlist=["ApiVersion"])
    keys = tuple(
        make(
            mod.ApiVersion,
            api_key=r.api_key,
            min_version=r.advertised_min,
            max_version=r.max_version,
        )
        for r in sorted(REGISTRY.values(), key=lambda r: r.api_key)
    )
    return make(
        cls,
        error_code=ErrorCode.none,
        api_keys=keys,
        throttle_time=0,
        supported_features=(),
        finalized_features_epoch=-1,
        finalized_features=(),
        zk_migration_ready=False,
    )


@handles(KEY, "ApiVersions", 0, 4)
async def handle(ctx: RequestContext, request: Any) -> Any:
    return _response(ctx.version)


@error_response(KEY)
def _error_response(ctx: RequestContext, request: Any, error: ErrorCode) -> Any:
    return make(response_type(KEY, ctx.version), error_code=error, api_keys=(), throttle_time=0)


def unsupported_version_response(header: RequestHeader) -> bytes:
    """The v0 layout: error code, then the array of (key, min, max); header v0."""
    regs = sorted(REGISTRY.values(), key=lambda r: r.api_key)
    body = struct.pack(">ihi", header.correlation_id, ErrorCode.unsupported_version, len(regs))
    body += b"".join(struct.pack(">hhh", r.api_key, r.advertised_min, r.max_version) for r in regs)
    return struct.pack(">i", len(body)) + body
