"""SaslHandshake (key 17), v0-v1, once a connection is past authentication.

kpy.sasl answers SaslHandshake while a SASL connection authenticates (and when it begins
re-authentication). One that reaches the handlers came on a listener without SASL, or on an
authenticated connection that may not re-authenticate: Kafka's KafkaApis answers it with
ILLEGAL_SASL_STATE and no mechanisms.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from kio.schema.errors import ErrorCode

from kpy.handlers.registry import error_response, handles
from kpy.protocol.messages import make, response_module

if TYPE_CHECKING:
    from kpy.broker import RequestContext

KEY = 17


@handles(KEY)
async def handle(ctx: RequestContext, request: Any) -> Any:
    return _error_response(ctx, request, ErrorCode.illegal_sasl_state)


@error_response(KEY)
def _error_response(ctx: RequestContext, request: Any, error: ErrorCode) -> Any:
    mod = response_module(KEY, ctx.version)
    return make(mod.SaslHandshakeResponse, error_code=error, mechanisms=())
