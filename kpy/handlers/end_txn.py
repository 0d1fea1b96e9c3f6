"""EndTxn (key 26), v0-v4: commit or abort a producer's transaction.

The coordinator (kpy.coordinator.transaction) writes PrepareCommit or PrepareAbort, the markers
to every partition of the transaction, then the Complete state, and only then is the answer
sent (Kafka answers after the Prepare write and sends the markers afterwards). Errors as
Kafka's handleEndTransaction: INVALID_PRODUCER_ID_MAPPING, PRODUCER_FENCED (INVALID_PRODUCER_EPOCH
before v2), CONCURRENT_TRANSACTIONS while markers are still to be written, INVALID_TXN_STATE for
an end that contradicts the state (commit after abort, or no transaction at all); ending a
transaction that just ended the same way again is NONE (a retry). WRITE on the transactional id
is needed first (kpy.acl: TRANSACTIONAL_ID_AUTHORIZATION_FAILED).

v5 (KIP-890 part 2, an epoch bump on every EndTxn) is not served: kpy does not advertise
transaction.version 2, so clients send v4 at most.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from kio.schema.errors import ErrorCode

from kpy.acl import AclOperation, ResourceType
from kpy.coordinator.transaction import fenced_error
from kpy.handlers.registry import error_response, handles
from kpy.protocol.messages import make, response_module

if TYPE_CHECKING:
    from kpy.broker import RequestContext

KEY = 26


@handles(KEY)
async def handle(ctx: RequestContext, request: Any) -> Any:
    if not ctx.broker.authorizer.authorize(
        ctx, AclOperation.WRITE, ResourceType.TRANSACTIONAL_ID, request.transactional_id
    ):
        return _response(ctx, ErrorCode.transactional_id_authorization_failed)
    if not request.transactional_id:
        return _response(ctx, ErrorCode.invalid_request)
    error = ctx.broker.transactions.end_transaction(
        request.transactional_id,
        request.producer_id,
        request.producer_epoch,
        request.committed,
        int(time.time() * 1000),
    )
    return _response(ctx, fenced_error(error, ctx.version, 2))


@error_response(KEY)
def _error_response(ctx: RequestContext, request: Any, error: ErrorCode) -> Any:
    return _response(ctx, error)


def _response(ctx: RequestContext, error: ErrorCode) -> Any:
    mod = response_module(KEY, ctx.version)
    return make(mod.EndTxnResponse, throttle_time=0, error_code=error)
