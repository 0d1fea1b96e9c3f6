"""SaslAuthenticate (key 36), v0-v2, once a connection is past authentication.

kpy.sasl takes SaslAuthenticate during authentication; one that reaches the handlers comes
after it (or on a listener without SASL), and Kafka's KafkaApis answers ILLEGAL_SASL_STATE.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from kio.schema.errors import ErrorCode

from kpy.handlers.registry import error_response, handles
from kpy.protocol.messages import make, response_module

if TYPE_CHECKING:
    from kpy.broker import RequestContext

KEY = 36


@handles(KEY)
async def handle(ctx: RequestContext, request: Any) -> Any:
    mod = response_module(KEY, ctx.version)
    return make(
        mod.SaslAuthenticateResponse,
        error_code=ErrorCode.illegal_sasl_state,
        error_message="SaslAuthenticate request received after successful authentication",
        auth_bytes=b"",
        session_lifetime=0,
    )


@error_response(KEY)
def _error_response(ctx: RequestContext, request: Any, error: ErrorCode) -> Any:
    mod = response_module(KEY, ctx.version)
    return make(
        mod.SaslAuthenticateResponse,
        error_code=error,
        error_message=None,
        auth_bytes=b"",
        session_lifetime=0,
    )
