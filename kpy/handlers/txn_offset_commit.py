"""TxnOffsetCommit (key 28), v0-v4: a group's offsets committed inside a transaction.

Checks in the order of Kafka's KafkaApis and group coordinator: WRITE on the transactional id
(kpy.acl: TRANSACTIONAL_ID_AUTHORIZATION_FAILED on every partition), READ on the group
(GROUP_AUTHORIZATION_FAILED), READ on each topic (TOPIC_AUTHORIZATION_FAILED on its partitions);
partitions of topics that do not exist are UNKNOWN_TOPIC_OR_PARTITION; an empty group id is
INVALID_GROUP_ID; then, for all the other partitions at once, the transaction (the group's
``__consumer_offsets`` partition must have joined it through AddOffsetsToTxn, unless the producer
already wrote there in this transaction — KIP-890's verification: INVALID_PRODUCER_ID_MAPPING,
INVALID_PRODUCER_EPOCH for a fenced producer, CONCURRENT_TRANSACTIONS, and TRANSACTION_ABORTABLE
from v4, INVALID_TXN_STATE before) and the group (from v3 the member and generation are checked as
for OffsetCommit, but the group's state is not; a group the coordinator does not know accepts
generation -1 and answers ILLEGAL_GENERATION otherwise); then per partition
OFFSET_METADATA_TOO_LARGE. The rest are written in one transactional batch of the producer to the
group's partition (OffsetStore.commit_transactional) and become the group's offsets when the
transaction commits. A failed write answers what Kafka's coordinator maps it to (NOT_COORDINATOR for
a storage error, INVALID_PRODUCER_EPOCH for an epoch the partition has seen surpassed).

v5 (transaction.version 2) is not served.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from kio.schema.errors import ErrorCode

from kpy.acl import AclOperation, ResourceType
from kpy.coordinator.offsets import (
    NO_LEADER_EPOCH,
    OFFSETS_TOPIC,
    OffsetAndMetadata,
    java_string_length,
)
from kpy.handlers.registry import error_response, handles
from kpy.protocol.messages import make, response_module
from kpy.storage import errors as se

if TYPE_CHECKING:
    from kpy.broker import RequestContext

KEY = 28


@handles(KEY)
async def handle(ctx: RequestContext, request: Any) -> Any:
    broker: Any = ctx.broker
    now_ms = int(time.time() * 1000)
    max_metadata: int = broker.config.get_int("offset.metadata.max.bytes")
    auth = broker.authorizer
    txn_id = request.transactional_id
    if not auth.authorize(ctx, AclOperation.WRITE, ResourceType.TRANSACTIONAL_ID, txn_id):
        return _error_response(ctx, request, ErrorCode.transactional_id_authorization_failed)
    if not auth.authorize(ctx, AclOperation.READ, ResourceType.GROUP, request.group_id):
        return _error_response(ctx, request, ErrorCode.group_authorization_failed)
    names = {topic.name for topic in request.topics}
    unreadable = names - auth.allowed(ctx, AclOperation.READ, ResourceType.TOPIC, names)
    errors: dict[tuple[int, int], ErrorCode] = {}
    valid: list[tuple[int, int]] = []
    for ti, topic in enumerate(request.topics):
        for pi, p in enumerate(topic.partitions):
            if topic.name in unreadable:
                errors[(ti, pi)] = ErrorCode.topic_authorization_failed
            elif broker.logs.get_log(topic.name, p.partition_index) is None:
                errors[(ti, pi)] = ErrorCode.unknown_topic_or_partition
            else:
                valid.append((ti, pi))
    if valid:
        error = ErrorCode.none
        if not request.group_id:
            error = ErrorCode.invalid_group_id
        elif not await broker.ensure_offsets_topic():
            error = ErrorCode.coordinator_not_available
        else:
            error = _check(ctx, request)
        to_commit: dict[tuple[str, int], OffsetAndMetadata] = {}
        committing: list[tuple[int, int]] = []
        for ti, pi in valid:
            topic = request.topics[ti]
            p = topic.partitions[pi]
            metadata = p.committed_metadata if p.committed_metadata is not None else ""
            if error is not ErrorCode.none:
                errors[(ti, pi)] = error
            elif java_string_length(metadata) > max_metadata:
                errors[(ti, pi)] = ErrorCode.offset_metadata_too_large
            else:
                to_commit[(topic.name, p.partition_index)] = OffsetAndMetadata(
                    offset=p.committed_offset,
                    leader_epoch=getattr(p, "committed_leader_epoch", NO_LEADER_EPOCH),
                    metadata=metadata,
                    commit_timestamp_ms=now_ms,
                )
                committing.append((ti, pi))
        outcome = _store(ctx, request, to_commit, now_ms)
        for key in committing:
            errors[key] = outcome
    return _respond(ctx, request, lambda ti, pi: errors[(ti, pi)])


@error_response(KEY)
def _error_response(ctx: RequestContext, request: Any, error: ErrorCode) -> Any:
    return _respond(ctx, request, lambda ti, pi: error)


def _check(ctx: RequestContext, request: Any) -> ErrorCode:
    """The transaction's verification, then the group's checks."""
    broker: Any = ctx.broker
    partition = broker.offsets.partition_for(request.group_id)
    error: ErrorCode = broker.verify_transactional_write(
        request.transactional_id,
        request.producer_id,
        request.producer_epoch,
        (OFFSETS_TOPIC, partition),
        generic_error=ctx.version >= 4,
    )
    if error is not ErrorCode.none:
        return error
    group_id = request.group_id
    generation = getattr(request, "generation_id", -1)
    member_id = getattr(request, "member_id", "")
    instance_id = getattr(request, "group_instance_id", None)
    if group_id in broker.consumer_groups.groups:
        # A transactional commit is not bound to the OffsetCommit version rule of KIP-848
        # members (Kafka's ConsumerGroup.validateOffsetCommit skips it): checked as v9.
        result: ErrorCode = broker.consumer_groups.validate_offset_commit(
            group_id, member_id, generation, instance_id, api_version=9
        )
        return ErrorCode.illegal_generation if result is ErrorCode.stale_member_epoch else result
    if broker.groups.group_state(group_id) is None:
        return ErrorCode.none if generation < 0 else ErrorCode.illegal_generation
    result = broker.groups.validate_offset_commit(
        group_id, member_id, generation, instance_id, transactional=True
    )
    return result


def _store(
    ctx: RequestContext,
    request: Any,
    to_commit: dict[tuple[str, int], OffsetAndMetadata],
    now_ms: int,
) -> ErrorCode:
    try:
        ctx.broker.offsets.commit_transactional(
            request.group_id,
            to_commit,
            request.producer_id,
            request.producer_epoch,
            now_ms=now_ms,
        )
    except se.InvalidProducerEpoch:
        return ErrorCode.invalid_producer_epoch
    except (se.RecordTooLarge, se.RecordBatchTooLarge):
        return ErrorCode.unknown_server_error
    except (se.StorageError, OSError):
        return ErrorCode.not_coordinator
    return ErrorCode.none


def _respond(ctx: RequestContext, request: Any, error_for: Callable[[int, int], ErrorCode]) -> Any:
    mod = response_module(KEY, ctx.version)
    topics = tuple(
        make(
            mod.TxnOffsetCommitResponseTopic,
            name=topic.name,
            partitions=tuple(
                make(
                    mod.TxnOffsetCommitResponsePartition,
                    partition_index=p.partition_index,
                    error_code=error_for(ti, pi),
                )
                for pi, p in enumerate(topic.partitions)
            ),
        )
        for ti, topic in enumerate(request.topics)
    )
    return make(mod.TxnOffsetCommitResponse, throttle_time=0, topics=topics)
