"""AddOffsetsToTxn (key 25), v0-v4: a group's ``__consumer_offsets`` partition joins a
producer's transaction, so that its TxnOffsetCommit records get the transaction's marker.

As Kafka's KafkaApis: the partition is the group's (OffsetStore.partition_for) and the
coordinator adds it as AddPartitionsToTxn would, with the same errors (PRODUCER_FENCED from v2,
INVALID_PRODUCER_EPOCH before). ``__consumer_offsets`` is created first if no group made it yet.
Authorization (kpy.acl), first: WRITE on the transactional id
(TRANSACTIONAL_ID_AUTHORIZATION_FAILED), then READ on the group (GROUP_AUTHORIZATION_FAILED).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from kio.schema.errors import ErrorCode

from kpy.acl import AclOperation, ResourceType
from kpy.coordinator.offsets import OFFSETS_TOPIC
from kpy.coordinator.transaction import fenced_error
from kpy.handlers.registry import error_response, handles
from kpy.protocol.messages import make, response_module

if TYPE_CHECKING:
    from kpy.broker import RequestContext

KEY = 25


@handles(KEY)
async def handle(ctx: RequestContext, request: Any) -> Any:
    broker = ctx.broker
    auth = broker.authorizer
    txn_id = request.transactional_id
    if not auth.authorize(ctx, AclOperation.WRITE, ResourceType.TRANSACTIONAL_ID, txn_id):
        return _response(ctx, ErrorCode.transactional_id_authorization_failed)
    if not auth.authorize(ctx, AclOperation.READ, ResourceType.GROUP, request.group_id):
        return _response(ctx, ErrorCode.group_authorization_failed)
    if not request.transactional_id:
        return _response(ctx, ErrorCode.invalid_request)
    if not await broker.ensure_offsets_topic():
        return _response(ctx, ErrorCode.coordinator_not_available)
    partition = (OFFSETS_TOPIC, broker.offsets.partition_for(request.group_id))
    error = broker.transactions.add_partitions(
        request.transactional_id,
        request.producer_id,
        request.producer_epoch,
        [partition],
        int(time.time() * 1000),
    )
    return _response(ctx, fenced_error(error, ctx.version, 2))


@error_response(KEY)
def _error_response(ctx: RequestContext, request: Any, error: ErrorCode) -> Any:
    return _response(ctx, error)


def _response(ctx: RequestContext, error: ErrorCode) -> Any:
    mod = response_module(KEY, ctx.version)
    return make(mod.AddOffsetsToTxnResponse, throttle_time=0, error_code=error)
