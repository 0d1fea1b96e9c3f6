"""ConsumerGroupHeartbeat (key 68), v0-v1: the KIP-848 consumer group protocol.

One request does what JoinGroup, SyncGroup, Heartbeat and LeaveGroup do in the classic
protocol: join (member epoch 0), keep the session and learn the partitions to own (epoch > 0),
leave (-1; -2 for a static member coming back). The group state machine, the server-side
assignors and the reconciliation live in kpy.coordinator.consumer_group. From v1 the client
makes up its member id; in v0 the coordinator does for a joining member that sends none.
Topics travel as topic ids both ways. rack_id is kept and shown, not used to place partitions.
Authorization (kpy.acl), first, as Kafka 4.1's KafkaApis: READ on the group
(GROUP_AUTHORIZATION_FAILED), then DESCRIBE on every topic the member subscribes to by name
(TOPIC_AUTHORIZATION_FAILED); what a regular expression resolves to leaves out the topics the
member may not DESCRIBE, as Kafka's group coordinator does.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from kio.schema.errors import ErrorCode

from kpy.acl import AclOperation, ResourceType
from kpy.coordinator.consumer_group import ConsumerGroupCoordinator, HeartbeatResult
from kpy.handlers.registry import error_response, handles
from kpy.protocol.messages import make, response_module

if TYPE_CHECKING:
    from kpy.broker import RequestContext

KEY = 68


@handles(KEY)
async def handle(ctx: RequestContext, request: Any) -> Any:
    broker: Any = ctx.broker
    groups: ConsumerGroupCoordinator = broker.consumer_groups
    auth = broker.authorizer
    if not auth.authorize(ctx, AclOperation.READ, ResourceType.GROUP, request.group_id):
        return _error_response(ctx, request, ErrorCode.group_authorization_failed)
    subscribed = set(request.subscribed_topic_names or ())
    if subscribed and auth.enabled:
        allowed = auth.allowed(ctx, AclOperation.DESCRIBE, ResourceType.TOPIC, subscribed)
        if allowed != subscribed:
            return _response(ctx, HeartbeatResult(ErrorCode.topic_authorization_failed))
    owned = request.topic_partitions
    result = groups.heartbeat(
        group_id=request.group_id,
        member_id=request.member_id,
        member_epoch=request.member_epoch,
        instance_id=request.instance_id,
        rack_id=request.rack_id,
        rebalance_timeout_ms=_millis(request.rebalance_timeout),
        subscribed_topic_names=request.subscribed_topic_names,
        subscribed_topic_regex=getattr(request, "subscribed_topic_regex", None),
        server_assignor=request.server_assignor,
        owned=None if owned is None else [(t.topic_id, t.partitions) for t in owned],
        client_id=ctx.header.client_id or "",
        client_host="/" + ctx.peer.rsplit(":", 1)[0],
        api_version=ctx.version,
        describable=_describable(ctx) if auth.enabled else None,
    )
    return _response(ctx, result)


@error_response(KEY)
def _error_response(ctx: RequestContext, request: Any, error: ErrorCode) -> Any:
    return _response(ctx, HeartbeatResult(error))


def _describable(ctx: RequestContext) -> Callable[[list[str]], set[str]]:
    auth = ctx.broker.authorizer

    def describable(topics: list[str]) -> set[str]:
        return auth.allowed(
            ctx, AclOperation.DESCRIBE, ResourceType.TOPIC, topics, log_denied=False
        )

    return describable


def _millis(value: Any) -> int:
    """kio gives int32 durations as timedeltas; -1 ("unchanged") stays -1."""
    return round(value.total_seconds() * 1000) if hasattr(value, "total_seconds") else int(value)


def _response(ctx: RequestContext, result: HeartbeatResult) -> Any:
    mod = response_module(KEY, ctx.version)
    assignment = None
    if result.assignment is not None:
        assignment = make(
            mod.Assignment,
            topic_partitions=tuple(
                make(mod.TopicPartitions, topic_id=tid, partitions=tuple(ps))
                for tid, ps in result.assignment
            ),
        )
    return make(
        mod.ConsumerGroupHeartbeatResponse,
        throttle_time=0,
        error_code=result.error,
        error_message=result.message,
        member_id=result.member_id,
        member_epoch=result.member_epoch,
        heartbeat_interval=result.heartbeat_interval_ms,
        assignment=assignment,
    )
