"""DescribeTransactions (key 65), v0: the coordinator's state of each transactional id asked.

As Kafka's handleDescribeTransactions: an empty id is INVALID_REQUEST, an unknown (or expired)
one TRANSACTIONAL_ID_NOT_FOUND; otherwise the state's name (Empty, Ongoing, PrepareCommit, ...),
the producer id and epoch, the timeout, the start time of the transaction (-1 when none is
open) and its partitions by topic. An id answered with an error has every other field at the
schema's default (0, ""), as Kafka leaves them. Authorization (kpy.acl), first: DESCRIBE on the
transactional id (TRANSACTIONAL_ID_AUTHORIZATION_FAILED); the partitions of topics the client may
not DESCRIBE are left out.
"""

from __future__ import annotations

import datetime
from typing import TYPE_CHECKING, Any

from kio.schema.errors import ErrorCode

from kpy.acl import AclOperation, ResourceType
from kpy.coordinator.transaction import TxnMetadata
from kpy.handlers.registry import error_response, handles
from kpy.protocol.messages import make, response_module

if TYPE_CHECKING:
    from kpy.broker import RequestContext

KEY = 65


@handles(KEY)
async def handle(ctx: RequestContext, request: Any) -> Any:
    coordinator = ctx.broker.transactions
    auth = ctx.broker.authorizer

    def describe(txn_id: str) -> tuple[ErrorCode, TxnMetadata | None]:
        if not auth.authorize(ctx, AclOperation.DESCRIBE, ResourceType.TRANSACTIONAL_ID, txn_id):
            return ErrorCode.transactional_id_authorization_failed, None
        if not txn_id:
            return ErrorCode.invalid_request, None
        meta = coordinator.describe(txn_id)
        if meta is None:
            return ErrorCode.transactional_id_not_found, None
        return ErrorCode.none, meta

    return _respond(ctx, request, describe, auth.enabled)


@error_response(KEY)
def _error_response(ctx: RequestContext, request: Any, error: ErrorCode) -> Any:
    return _respond(ctx, request, lambda txn_id: (error, None))


def _ms(value: int) -> datetime.datetime:
    return datetime.datetime.fromtimestamp(value / 1000, datetime.UTC)


def _respond(ctx: RequestContext, request: Any, describe: Any, filtered: bool = False) -> Any:
    """``filtered``: leave out the partitions of topics the client may not DESCRIBE."""
    mod = response_module(KEY, ctx.version)
    auth = ctx.broker.authorizer
    states = []
    for txn_id in request.transactional_ids:
        error, meta = describe(txn_id)
        by_topic: dict[str, list[int]] = {}
        if meta is not None:
            for topic, partition in sorted(meta.partitions):
                by_topic.setdefault(topic, []).append(partition)
        if filtered:
            visible = auth.allowed(ctx, AclOperation.DESCRIBE, ResourceType.TOPIC, by_topic)
            by_topic = {t: ps for t, ps in by_topic.items() if t in visible}
        states.append(
            make(
                mod.TransactionState,
                error_code=error,
                transactional_id=txn_id,
                transaction_state=meta.state.kafka_name if meta else "",
                transaction_timeout=meta.timeout_ms if meta else 0,
                transaction_start_time=_ms(meta.start_ms if meta else 0),
                producer_id=meta.producer_id if meta else 0,
                producer_epoch=meta.producer_epoch if meta else 0,
                topics=tuple(
                    make(mod.TopicData, topic=topic, partitions=tuple(partitions))
                    for topic, partitions in by_topic.items()
                ),
            )
        )
    return make(mod.DescribeTransactionsResponse, throttle_time=0, transaction_states=tuple(states))
