"""AddPartitionsToTxn (key 24), v0-v5: partitions join a producer's transaction.

v0-v3 come from producers: one transactional id and its partitions. As Kafka's KafkaApis
checks first, WRITE on the transactional id is needed (kpy.acl:
TRANSACTIONAL_ID_AUTHORIZATION_FAILED on every partition); a partition of a topic the producer
may not WRITE, or of an internal topic (always, as Kafka leaves those out of its authorized
topics), is TOPIC_AUTHORIZATION_FAILED, one of a topic that does not exist
UNKNOWN_TOPIC_OR_PARTITION, and then every other partition of the request
OPERATION_NOT_ATTEMPTED; otherwise the coordinator's one
answer goes to every partition (INVALID_PRODUCER_ID_MAPPING, PRODUCER_FENCED — before v2
INVALID_PRODUCER_EPOCH —, CONCURRENT_TRANSACTIONS while the previous transaction ends, or NONE).

v4+ is what a partition leader sends its coordinator (KIP-890): several transactions at once,
each either added or, with verify_only, checked (TRANSACTION_ABORTABLE for a partition not in
the transaction; v4 gets INVALID_TXN_STATE instead, the code before KIP-890). It needs
CLUSTER_ACTION on the cluster (CLUSTER_AUTHORIZATION_FAILED for the whole request).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from kio.schema.errors import ErrorCode

from kpy.acl import AclOperation, ResourceType
from kpy.coordinator.transaction import fenced_error
from kpy.handlers.registry import error_response, handles
from kpy.protocol.messages import make, response_module
from kpy.topics import is_internal

if TYPE_CHECKING:
    from kpy.broker import RequestContext

KEY = 24
BROKER_VERSIONS = 4  # the first version sent by brokers, batching transactions

PartitionErrors = dict[tuple[str, int], ErrorCode]


@handles(KEY)
async def handle(ctx: RequestContext, request: Any) -> Any:
    mod = response_module(KEY, ctx.version)
    now_ms = int(time.time() * 1000)
    if ctx.version >= BROKER_VERSIONS and not ctx.broker.authorizer.authorize_cluster(
        ctx, AclOperation.CLUSTER_ACTION
    ):
        return _error_response(ctx, request, ErrorCode.cluster_authorization_failed)
    if ctx.version < BROKER_VERSIONS:
        errors = _one(
            ctx,
            request.v3_and_below_transactional_id,
            request.v3_and_below_producer_id,
            request.v3_and_below_producer_epoch,
            request.v3_and_below_topics,
            False,
            now_ms,
        )
        return make(
            mod.AddPartitionsToTxnResponse,
            throttle_time=0,
            results_by_topic_v3_and_below=_topic_results(mod, request.v3_and_below_topics, errors),
        )
    results = []
    for txn in request.transactions:
        errors = _one(
            ctx,
            txn.transactional_id,
            txn.producer_id,
            txn.producer_epoch,
            txn.topics,
            txn.verify_only,
            now_ms,
        )
        results.append(
            make(
                mod.AddPartitionsToTxnResult,
                transactional_id=txn.transactional_id,
                topic_results=_topic_results(mod, txn.topics, errors),
            )
        )
    return make(
        mod.AddPartitionsToTxnResponse,
        throttle_time=0,
        error_code=ErrorCode.none,
        results_by_transaction=tuple(results),
    )


@error_response(KEY)
def _error_response(ctx: RequestContext, request: Any, error: ErrorCode) -> Any:
    mod = response_module(KEY, ctx.version)
    if ctx.version < BROKER_VERSIONS:
        topics = request.v3_and_below_topics
        errors = {(t.name, p): error for t in topics for p in t.partitions}
        return make(
            mod.AddPartitionsToTxnResponse,
            throttle_time=0,
            results_by_topic_v3_and_below=_topic_results(mod, topics, errors),
        )
    return make(
        mod.AddPartitionsToTxnResponse,
        throttle_time=0,
        error_code=error,
        results_by_transaction=(),
    )


def _one(
    ctx: RequestContext,
    transactional_id: str,
    producer_id: int,
    producer_epoch: int,
    topics: Any,
    verify_only: bool,
    now_ms: int,
) -> PartitionErrors:
    broker = ctx.broker
    wanted = [(t.name, p) for t in topics for p in t.partitions]
    failed: dict[tuple[str, int], ErrorCode] = {}
    if ctx.version < BROKER_VERSIONS:  # from a producer
        auth = broker.authorizer
        if not auth.authorize(
            ctx, AclOperation.WRITE, ResourceType.TRANSACTIONAL_ID, transactional_id
        ):
            return dict.fromkeys(wanted, ErrorCode.transactional_id_authorization_failed)
        names = {t.name for t in topics if not is_internal(t.name)}
        writable = auth.allowed(ctx, AclOperation.WRITE, ResourceType.TOPIC, names)
        failed = {
            tp: ErrorCode.topic_authorization_failed for tp in wanted if tp[0] not in writable
        }
    if not transactional_id:
        return dict.fromkeys(wanted, ErrorCode.invalid_request)
    for tp in wanted:
        if tp not in failed and broker.logs.get_log(*tp) is None:
            failed[tp] = ErrorCode.unknown_topic_or_partition
    if failed:
        return {tp: failed.get(tp, ErrorCode.operation_not_attempted) for tp in wanted}
    coordinator = broker.transactions
    if verify_only:
        errors = coordinator.verify(transactional_id, producer_id, producer_epoch, wanted)
        if ctx.version < 5:
            errors = {
                tp: ErrorCode.invalid_txn_state if e is ErrorCode.transaction_abortable else e
                for tp, e in errors.items()
            }
        return errors
    error = coordinator.add_partitions(
        transactional_id, producer_id, producer_epoch, wanted, now_ms
    )
    return dict.fromkeys(wanted, fenced_error(error, ctx.version, 2))


def _topic_results(mod: Any, topics: Any, errors: PartitionErrors) -> tuple[Any, ...]:
    return tuple(
        make(
            mod.AddPartitionsToTxnTopicResult,
            name=t.name,
            results_by_partition=tuple(
                make(
                    mod.AddPartitionsToTxnPartitionResult,
                    partition_index=p,
                    partition_error_code=errors[(t.name, p)],
                )
                for p in t.partitions
            ),
        )
        for t in topics
    )
