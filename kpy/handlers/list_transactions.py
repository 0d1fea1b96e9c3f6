"""ListTransactions (key 66), v0-v1: the transactional ids the coordinator knows.

As Kafka's listTransactionStates: filtered by state names (a name Kafka does not know is
returned in unknown_state_filters and matches nothing), by producer ids, and from v1 by
duration (transactions running for longer than it, in ms; -1 none). v2's regular expression
filter on the id is not served. Only the transactional ids the client may DESCRIBE (kpy.acl)
are listed.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from kio.schema.errors import ErrorCode

from kpy.acl import AclOperation, ResourceType
from kpy.handlers.registry import error_response, handles
from kpy.protocol.messages import make, response_module

if TYPE_CHECKING:
    from kpy.broker import RequestContext

KEY = 66


@handles(KEY)
async def handle(ctx: RequestContext, request: Any) -> Any:
    found, unknown = ctx.broker.transactions.list_transactions(
        request.state_filters,
        request.producer_id_filters,
        getattr(request, "duration_filter", -1),
        int(time.time() * 1000),
    )
    mod = response_module(KEY, ctx.version)
    auth = ctx.broker.authorizer
    if auth.enabled:
        ids = [meta.transactional_id for meta in found]
        visible = auth.allowed(ctx, AclOperation.DESCRIBE, ResourceType.TRANSACTIONAL_ID, ids)
        found = [meta for meta in found if meta.transactional_id in visible]
    states = tuple(
        make(
            mod.TransactionState,
            transactional_id=meta.transactional_id,
            producer_id=meta.producer_id,
            transaction_state=meta.state.kafka_name,
        )
        for meta in sorted(found, key=lambda m: m.transactional_id)
    )
    return make(
        mod.ListTransactionsResponse,
        throttle_time=0,
        error_code=ErrorCode.none,
        unknown_state_filters=tuple(unknown),
        transaction_states=states,
    )


@error_response(KEY)
def _error_response(ctx: RequestContext, request: Any, error: ErrorCode) -> Any:
    mod = response_module(KEY, ctx.version)
    return make(
        mod.ListTransactionsResponse,
        throttle_time=0,
        error_code=error,
        unknown_state_filters=(),
        transaction_states=(),
    )
