"""InitProducerId (key 22), v0-v5, for idempotent producers.

Without a transactional id Kafka hands out a fresh producer id with epoch 0 on every call, even
when the request names an existing id and epoch (KIP-360 bumps only apply to transactional ids);
kpy does the same. Ids are never reused, across restarts too (ProducerIdManager). Transactional
ids need the transaction coordinator, which arrives with issue 9: until then they are answered
with COORDINATOR_NOT_AVAILABLE, so a transactional producer fails clearly instead of misbehaving.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import anyio
from kio.schema.errors import ErrorCode

from kpy.handlers.registry import error_response, handles
from kpy.protocol.messages import make, response_module

if TYPE_CHECKING:
    from kpy.broker import RequestContext

KEY = 22


@handles(KEY)
async def handle(ctx: RequestContext, request: Any) -> Any:
    mod = response_module(KEY, ctx.version)
    pid, epoch = getattr(request, "producer_id", -1), getattr(request, "producer_epoch", -1)
    if (pid == -1) != (epoch == -1) or request.transactional_id == "":
        return _response(mod, ErrorCode.invalid_request)
    if request.transactional_id is not None:
        return _response(mod, ErrorCode.coordinator_not_available)
    async with ctx.broker.admin_lock:
        producer_id = await anyio.to_thread.run_sync(ctx.broker.producer_ids.generate)
    return _response(mod, ErrorCode.none, producer_id, 0)


@error_response(KEY)
def _error_response(ctx: RequestContext, request: Any, error: ErrorCode) -> Any:
    return _response(response_module(KEY, ctx.version), error)


def _response(mod: Any, error: ErrorCode, producer_id: int = -1, epoch: int = -1) -> Any:
    return make(
        mod.InitProducerIdResponse,
        throttle_time=0,
        error_code=error,
        producer_id=producer_id,
        producer_epoch=epoch,
    )
