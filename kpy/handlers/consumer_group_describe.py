"""ConsumerGroupDescribe (key 69), v0-v1: the groups of the KIP-848 protocol, with each
member's current and target assignment.

As Kafka's GroupMetadataManager.consumerGroupDescribe: the empty group id is INVALID_GROUP_ID,
a group id that is not a consumer group GROUP_ID_NOT_FOUND, with Kafka's message: "Group g not
found." or, for a classic group (one known only by committed offsets too), "Group g is not a
consumer group". Kafka's admin client falls back to DescribeGroups on that error and reports
this message if the group is not found there either. The
assignor named is the one the group's members prefer, or the default ("uniform"). member_type
(v1) is 1 for every member: kpy's consumer groups have no classic members. Topics that were
deleted since they were assigned are left out.

Authorization (kpy.acl), as Kafka 4.1's KafkaApis: DESCRIBE on each group, else
GROUP_AUTHORIZATION_FAILED; a group whose members' assignments (current or target) hold a topic
the client may not DESCRIBE answers TOPIC_AUTHORIZATION_FAILED ("The group has described
topic(s) that the client is not authorized to describe.") without its members. Authorized
operations (when asked) are what the authorizer grants on the group.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

from kio.schema.errors import ErrorCode

from kpy import authorized
from kpy.acl import AclOperation, ResourceType
from kpy.coordinator.consumer_group import Assignment, ConsumerGroupCoordinator
from kpy.handlers.registry import error_response, handles
from kpy.protocol.messages import make, response_module

if TYPE_CHECKING:
    from kpy.broker import RequestContext

KEY = 69
CONSUMER_MEMBER = 1
HIDDEN_TOPICS_MESSAGE = (
    "The group has described topic(s) that the client is not authorized to describe."
)


@handles(KEY)
async def handle(ctx: RequestContext, request: Any) -> Any:
    broker: Any = ctx.broker
    groups: ConsumerGroupCoordinator = broker.consumer_groups
    mod = response_module(KEY, ctx.version)
    auth = broker.authorizer
    described = []
    for group_id in request.group_ids:
        if not auth.authorize(ctx, AclOperation.DESCRIBE, ResourceType.GROUP, group_id):
            denied = ErrorCode.group_authorization_failed
            described.append(_error_group(mod, group_id, denied))
            continue
        if not group_id:
            described.append(_error_group(mod, group_id, ErrorCode.invalid_group_id))
            continue
        group = groups.describe(group_id)
        if group is None:
            message = _not_found_message(broker, group_id)
            described.append(_error_group(mod, group_id, ErrorCode.group_id_not_found, message))
            continue
        members = tuple(
            make(
                mod.Member,
                member_id=m.member_id,
                instance_id=m.instance_id,
                rack_id=m.rack_id,
                member_epoch=m.member_epoch,
                client_id=m.client_id,
                client_host=m.client_host,
                subscribed_topic_names=m.subscribed_topic_names,
                subscribed_topic_regex=m.subscribed_topic_regex,
                assignment=_assignment(mod, groups, m.assigned),
                target_assignment=_assignment(mod, groups, groups.target_of(group, m.member_id)),
                member_type=CONSUMER_MEMBER,
            )
            for m in group.members.values()
        )
        if auth.enabled:
            topics = {
                t.topic_name
                for m in members
                for a in (m.assignment, m.target_assignment)
                for t in a.topic_partitions
            }
            if auth.allowed(ctx, AclOperation.DESCRIBE, ResourceType.TOPIC, topics) != topics:
                denied = ErrorCode.topic_authorization_failed
                described.append(_error_group(mod, group_id, denied, HIDDEN_TOPICS_MESSAGE))
                continue
        ops = authorized.NOT_REQUESTED
        if request.include_authorized_operations:
            ops = auth.authorized_operations(ctx, ResourceType.GROUP, group_id)
        described.append(
            make(
                mod.DescribedGroup,
                error_code=ErrorCode.none,
                error_message=None,
                group_id=group_id,
                group_state=group.state,
                group_epoch=group.group_epoch,
                assignment_epoch=group.assignment_epoch,
                assignor_name=groups.assignor_name(group),
                members=members,
                authorized_operations=ops,
            )
        )
    return make(mod.ConsumerGroupDescribeResponse, throttle_time=0, groups=tuple(described))


@error_response(KEY)
def _error_response(ctx: RequestContext, request: Any, error: ErrorCode) -> Any:
    mod = response_module(KEY, ctx.version)
    groups = tuple(_error_group(mod, g, error) for g in request.group_ids)
    return make(mod.ConsumerGroupDescribeResponse, throttle_time=0, groups=groups)


def _not_found_message(broker: Any, group_id: str) -> str:
    if group_id in broker.groups.groups or broker.offsets.has_offsets(group_id):
        return f"Group {group_id} is not a consumer group"
    return f"Group {group_id} not found."


def _error_group(mod: Any, group_id: str, error: ErrorCode, message: str | None = None) -> Any:
    return make(
        mod.DescribedGroup,
        error_code=error,
        error_message=message,
        group_id=group_id,
        group_state="",
        group_epoch=0,
        assignment_epoch=0,
        assignor_name="",
        members=(),
        authorized_operations=authorized.NOT_REQUESTED,
    )


def _assignment(mod: Any, groups: ConsumerGroupCoordinator, assignment: Assignment) -> Any:
    topics = []
    for tid, partitions in sorted(assignment.items(), key=lambda kv: str(kv[0])):
        name = groups.topic_name_of(tid)
        if name is None:
            continue
        topics.append(_topic(mod, tid, name, sorted(partitions)))
    return make(mod.Assignment, topic_partitions=tuple(topics))


def _topic(mod: Any, topic_id: uuid.UUID, name: str, partitions: list[int]) -> Any:
    return make(
        mod.TopicPartitions, topic_id=topic_id, topic_name=name, partitions=tuple(partitions)
    )
