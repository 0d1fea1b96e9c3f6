"""OffsetDelete (key 47), v0.

Group-level answers first, at the top with no topics, as Kafka's coordinator gives them:
INVALID_GROUP_ID for the empty group id; GROUP_ID_NOT_FOUND for a group that neither the
coordinator knows nor has committed offsets (a group that has only offsets is Kafka's Empty
"simple group"), or that is Dead. Then, per partition: UNKNOWN_TOPIC_OR_PARTITION where the
topic or partition does not exist (KafkaApis checks metadata); GROUP_SUBSCRIBED_TO_TOPIC while
a member of the group subscribes to the topic (from the classic members' consumer protocol
metadata, or a KIP-848 group's subscriptions); NON_EMPTY_GROUP at the top for a non-empty classic
group whose subscriptions cannot be read (not the "consumer" protocol); otherwise NONE, with a
tombstone written for each partition that had an offset. A failed append
answers NOT_COORDINATOR (a storage error) or UNKNOWN_SERVER_ERROR at the top, as Kafka's
coordinator maps them.

Authorization (kpy.acl), first, as KafkaApis: DELETE on the group (GROUP_AUTHORIZATION_FAILED at
the top), then READ on each topic (TOPIC_AUTHORIZATION_FAILED on its partitions, before whether
they exist is looked at).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from kio.schema.errors import ErrorCode

from kpy.acl import AclOperation, ResourceType
from kpy.coordinator.offsets import GroupMembership, OffsetStore
from kpy.handlers.registry import error_response, handles
from kpy.protocol.messages import make, response_module
from kpy.storage import errors as se

if TYPE_CHECKING:
    from kpy.broker import RequestContext

KEY = 47
EMPTY, DEAD = "Empty", "Dead"


@handles(KEY)
async def handle(ctx: RequestContext, request: Any) -> Any:
    broker: Any = ctx.broker
    offsets: OffsetStore = broker.offsets
    groups: GroupMembership = broker.groups
    group_id = request.group_id
    auth = broker.authorizer
    if not auth.authorize(ctx, AclOperation.DELETE, ResourceType.GROUP, group_id):
        return _error_response(ctx, request, ErrorCode.group_authorization_failed)
    names = {topic.name for topic in request.topics}
    unreadable = names - auth.allowed(ctx, AclOperation.READ, ResourceType.TOPIC, names)
    if not group_id:
        return _error_response(ctx, request, ErrorCode.invalid_group_id)
    consumer_groups: Any = getattr(broker, "consumer_groups", None)
    if consumer_groups is not None and group_id in consumer_groups.groups:
        # A KIP-848 group: the members' subscriptions are known.
        cgroup = consumer_groups.groups[group_id]
        subscribed: set[str] = {
            t for m in cgroup.members.values() for t in m.subscribed_topic_names
        } | set(cgroup.subscription_metadata)
    else:
        state = groups.group_state(group_id)
        if state == DEAD or (state is None and not offsets.has_offsets(group_id)):
            return _error_response(ctx, request, ErrorCode.group_id_not_found)
        readable = set() if state in (None, EMPTY) else groups.subscribed_topics(group_id)
        if readable is None:
            # Members whose subscriptions Kafka cannot read (not the consumer protocol).
            return _error_response(ctx, request, ErrorCode.non_empty_group)
        subscribed = readable
    answers: list[tuple[str, list[tuple[int, ErrorCode]]]] = []
    doomed: list[tuple[str, int]] = []
    for topic in request.topics:
        partitions = []
        for p in topic.partitions:
            index = p.partition_index
            if topic.name in unreadable:
                error = ErrorCode.topic_authorization_failed
            elif broker.logs.get_log(topic.name, index) is None:
                error = ErrorCode.unknown_topic_or_partition
            elif topic.name in subscribed:
                error = ErrorCode.group_subscribed_to_topic
            else:
                error = ErrorCode.none
                doomed.append((topic.name, index))
            partitions.append((index, error))
        answers.append((topic.name, partitions))
    try:
        offsets.delete_offsets(group_id, doomed, now_ms=int(time.time() * 1000))
    except (se.RecordTooLarge, se.RecordBatchTooLarge):
        return _error_response(ctx, request, ErrorCode.unknown_server_error)
    except (se.StorageError, OSError):
        return _error_response(ctx, request, ErrorCode.not_coordinator)

    mod = response_module(KEY, ctx.version)
    return make(
        mod.OffsetDeleteResponse,
        error_code=ErrorCode.none,
        throttle_time=0,
        topics=tuple(
            make(
                mod.OffsetDeleteResponseTopic,
                name=name,
                partitions=tuple(
                    make(mod.OffsetDeleteResponsePartition, partition_index=i, error_code=e)
                    for i, e in partitions
                ),
            )
            for name, partitions in answers
        ),
    )


@error_response(KEY)
def _error_response(ctx: RequestContext, request: Any, error: ErrorCode) -> Any:
    """Kafka's OffsetDeleteRequest.getErrorResponse: the error at the top, no topics."""
    mod = response_module(KEY, ctx.version)
    return make(mod.OffsetDeleteResponse, error_code=error, throttle_time=0, topics=())
