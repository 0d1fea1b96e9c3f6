"""CreatePartitions (key 37), v0-v3: grows a topic, as `kafka-topics --alter --partitions` asks.

Checks and messages as Kafka's controller (ReplicationControlManager.createPartitions): the
topic must exist, the count must increase, manual assignments must cover exactly the new
partitions and name this broker only; a name given twice is INVALID_REQUEST. validate_only
checks without creating. New partitions are empty and start at offset 0. More than 10,000 new
partitions in one request fail it whole with POLICY_VIOLATION, as Kafka's controller bounds the
records of one request. After the duplicates, each topic needs ALTER on it (kpy.acl), else
TOPIC_AUTHORIZATION_FAILED (no message, as Kafka's controller answers).
"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, Any

from kio.schema.errors import ErrorCode

from kpy.acl import AclOperation, ResourceType
from kpy.handlers.registry import error_response, handles
from kpy.protocol.messages import make, response_module
from kpy.topics import EXCESSIVE_BATCH, MAX_RECORDS_PER_USER_OP

if TYPE_CHECKING:
    from kpy.broker import RequestContext

KEY = 37


@handles(KEY)
async def handle(ctx: RequestContext, request: Any) -> Any:
    broker = ctx.broker
    counts = Counter(t.name for t in request.topics)
    results: list[tuple[str, ErrorCode, str | None]] = [
        (name, ErrorCode.invalid_request, "Duplicate topic name.")
        for name, n in sorted(counts.items())
        if n > 1
    ]
    alterable = broker.authorizer.allowed(ctx, AclOperation.ALTER, ResourceType.TOPIC, counts)
    unique = [t for t in request.topics if counts[t.name] == 1]
    results += [
        (t.name, ErrorCode.topic_authorization_failed, None)
        for t in unique
        if t.name not in alterable
    ]
    checked = [(t, _check(ctx, t)) for t in unique if t.name in alterable]
    added = sum(
        t.count - info.partitions
        for t, (error, _) in checked
        if error is ErrorCode.none and (info := broker.logs.topic(t.name)) is not None
    )
    if added > MAX_RECORDS_PER_USER_OP:  # one PartitionRecord each, in Kafka's controller
        results += [(t.name, ErrorCode.policy_violation, EXCESSIVE_BATCH) for t, _ in checked]
        return _response(ctx, results)
    for topic, (error, message) in checked:
        if error is ErrorCode.none and not request.validate_only:
            async with broker.admin_lock:
                # On the loop thread: no request sees the topic grown before its logs exist.
                broker.logs.create_partitions(topic.name, topic.count)
        results.append((topic.name, error, message))
    return _response(ctx, results)


def _check(ctx: RequestContext, topic: Any) -> tuple[ErrorCode, str | None]:
    info = ctx.broker.logs.topic(topic.name)
    if info is None:
        return ErrorCode.unknown_topic_or_partition, f"Unable to find topic {topic.name}"
    current = info.partitions
    if topic.count < current:
        return (
            ErrorCode.invalid_partitions,
            f"The topic {topic.name} currently has {current} partition(s); {topic.count} would "
            "not be an increase.",
        )
    if topic.count == current:
        return ErrorCode.invalid_partitions, f"Topic already has {current} partition(s)."
    if topic.assignments is not None:
        added = topic.count - current
        if len(topic.assignments) != added:
            return (
                ErrorCode.invalid_replica_assignment,
                f"Attempted to add {added} additional partition(s), but only "
                f"{len(topic.assignments)} assignment(s) were specified.",
            )
        node = ctx.broker.node_id
        if any(list(a.broker_ids) != [node] for a in topic.assignments):
            return (
                ErrorCode.invalid_replica_assignment,
                f"The manual partition assignment includes broker(s) other than {node}, the only "
                "one registered.",
            )
    return ErrorCode.none, None


@error_response(KEY)
def _error_response(ctx: RequestContext, request: Any, error: ErrorCode) -> Any:
    return _response(ctx, [(t.name, error, None) for t in request.topics])


def _response(ctx: RequestContext, results: list[tuple[str, ErrorCode, str | None]]) -> Any:
    mod = response_module(KEY, ctx.version)
    return make(
        mod.CreatePartitionsResponse,
        throttle_time=0,
        results=tuple(
            make(mod.CreatePartitionsTopicResult, name=n, error_code=e, error_message=m)
            for n, e, m in results
        ),
    )
