"""DescribeTopicPartitions (key 75), v0: topics and their partitions, a page at a time (KIP-966).

`kafka-topics --describe` and the 4.x admin client's describeTopics ask this first. As Kafka's
DescribeTopicPartitionsRequestHandler and KRaftMetadataCache.describeTopicResponse:

- The topics are the ones named (an empty list means every topic), deduplicated and taken in
  name order, from the cursor's topic on; the cursor's topic starts at the cursor's partition,
  later topics at partition 0. A named list must contain the cursor's topic, and the cursor's
  partition must not be negative: otherwise the request is INVALID_REQUEST.
- At most min(response_partition_limit, max.request.partition.size.limit), and at least 1,
  partitions are returned. A topic that does not fit whole ends the page with next_cursor at
  its first partition left out; when the limit is used up exactly, next_cursor names the next
  topic at partition 0 (whether or not it exists).
- A named topic that does not exist is UNKNOWN_TOPIC_OR_PARTITION (INVALID_TOPIC_EXCEPTION for
  an illegal name) with a zero topic id and no partitions; it takes no room in the page.
- Each partition: this broker leads it at the leader epoch every API reports, it is the only
  replica and the ISR; no ELR (KIP-966's eligible leader replicas are off), no offline replica.
- Authorization (kpy.acl): a topic needs DESCRIBE. Without it the topic is left out of an
  all-topics answer; a named one answers TOPIC_AUTHORIZATION_FAILED (zero topic id, no
  partitions, no authorized operations) after the page, without saying whether it exists. Such
  topics take no room in the page and are never the next cursor.
- Topic authorized operations are always filled in: what the authorizer grants (without one,
  every topic operation, as Kafka reports).
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

from kio.schema.errors import ErrorCode

from kpy import authorized
from kpy.acl import AclOperation, ResourceType
from kpy.handlers.registry import error_response, handles
from kpy.protocol.messages import make, response_module
from kpy.topics import is_internal, name_error

if TYPE_CHECKING:
    from kpy.broker import RequestContext
    from kpy.storage.log_manager import TopicInfo

KEY = 75
ZERO_UUID = uuid.UUID(int=0)


@handles(KEY)
async def handle(ctx: RequestContext, request: Any) -> Any:
    broker = ctx.broker
    mod = response_module(KEY, ctx.version)
    cursor = request.cursor
    start_name = cursor.topic_name if cursor is not None else ""
    all_topics = not request.topics
    if all_topics:
        names = {t.name for t in broker.logs.topics() if t.name >= start_name}
    else:
        names = {t.name for t in request.topics if t.name >= start_name}
        if cursor is not None and cursor.topic_name not in names:
            return _error_response(ctx, request, ErrorCode.invalid_request)
    if cursor is not None and cursor.partition_index < 0:
        return _error_response(ctx, request, ErrorCode.invalid_request)

    limit = max(
        min(
            broker.config.get_int("max.request.partition.size.limit"),
            request.response_partition_limit,
        ),
        1,
    )
    remaining = limit
    topics: list[Any] = []
    hidden: list[Any] = []  # named topics the client may not describe
    next_cursor = None
    auth = broker.authorizer
    for name in sorted(names):
        if not auth.authorize(
            ctx, AclOperation.DESCRIBE, ResourceType.TOPIC, name, log_denied=not all_topics
        ):
            if not all_topics:
                hidden.append(_hidden_topic(mod, name))
            continue
        if remaining == 0:
            # The page filled up exactly at the end of the previous topic.
            next_cursor = make(mod.Cursor, topic_name=name, partition_index=0)
            break
        info = broker.logs.topic(name)
        if info is None:
            if not all_topics:
                topics.append(_unknown_topic(ctx, mod, name))
            continue
        first = cursor.partition_index if cursor is not None and name == cursor.topic_name else 0
        end = min(info.partitions, first + remaining)
        topics.append(_topic(ctx, mod, info, range(first, end)))
        if end < info.partitions:
            next_cursor = make(mod.Cursor, topic_name=name, partition_index=end)
            break
        remaining -= max(end - first, 0)
    return make(
        mod.DescribeTopicPartitionsResponse,
        throttle_time=0,
        topics=(*topics, *hidden),
        next_cursor=next_cursor,
    )


@error_response(KEY)
def _error_response(ctx: RequestContext, request: Any, error: ErrorCode) -> Any:
    """Kafka's getErrorResponse: the error on every topic named, nothing else filled in."""
    mod = response_module(KEY, ctx.version)
    topics = tuple(
        make(
            mod.DescribeTopicPartitionsResponseTopic,
            error_code=error,
            name=t.name,
            topic_id=ZERO_UUID,
            is_internal=False,
            partitions=(),
            topic_authorized_operations=authorized.NOT_REQUESTED,
        )
        for t in request.topics
    )
    return make(mod.DescribeTopicPartitionsResponse, throttle_time=0, topics=topics)


def _topic(ctx: RequestContext, mod: Any, info: TopicInfo, indexes: range) -> Any:
    broker = ctx.broker
    node = broker.node_id
    partitions = tuple(
        make(
            mod.DescribeTopicPartitionsResponsePartition,
            error_code=ErrorCode.none,
            partition_index=p,
            leader_id=node,
            leader_epoch=broker.leader_epoch,
            replica_nodes=(node,),
            isr_nodes=(node,),
            eligible_leader_replicas=(),
            last_known_elr=(),
            offline_replicas=(),
        )
        for p in indexes
    )
    return make(
        mod.DescribeTopicPartitionsResponseTopic,
        error_code=ErrorCode.none,
        name=info.name,
        topic_id=info.topic_id,
        is_internal=is_internal(info.name),
        partitions=partitions,
        topic_authorized_operations=broker.authorizer.authorized_operations(
            ctx, ResourceType.TOPIC, info.name
        ),
    )


def _hidden_topic(mod: Any, name: str) -> Any:
    return make(
        mod.DescribeTopicPartitionsResponseTopic,
        error_code=ErrorCode.topic_authorization_failed,
        name=name,
        topic_id=ZERO_UUID,
        is_internal=False,
        partitions=(),
        topic_authorized_operations=authorized.NOT_REQUESTED,
    )


def _unknown_topic(ctx: RequestContext, mod: Any, name: str) -> Any:
    error = ErrorCode.unknown_topic_or_partition
    if name_error(name) is not None:
        error = ErrorCode.invalid_topic_exception
    return make(
        mod.DescribeTopicPartitionsResponseTopic,
        error_code=error,
        name=name,
        topic_id=ZERO_UUID,
        is_internal=is_internal(name),
        partitions=(),
        topic_authorized_operations=ctx.broker.authorizer.authorized_operations(
            ctx, ResourceType.TOPIC, name
        ),
    )
