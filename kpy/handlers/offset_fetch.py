"""OffsetFetch (key 9), v0-v9.

v0 has v1's layout; Kafka read its answers from ZooKeeper, where OffsetCommit v0 wrote them,
and kpy, without ZooKeeper, from the one store of committed offsets (see offset_commit.py).
v1-v7 ask for one group, v8+ for several (each answered on its own). Topics null (v2+) asks for
all of the group's committed offsets. A partition without a commit, including one of a topic
that does not exist, answers offset -1, leader epoch -1, metadata "" and no error, as Kafka does
(it checks no metadata here). The committed leader epoch (v5+) is -1 when the commit carried
none. A group the coordinator does not know is answered from its offsets, which is what Kafka's
"simple group" holds; a Dead group has none.

require_stable (v7+): a partition with an offset committed inside a transaction that has not
ended yet (TxnOffsetCommit) answers UNSTABLE_OFFSET_COMMIT and offset -1, which the client
retries; without it the offset committed before shows. member_id and member_epoch (v9) belong
to the KIP-848 protocol and are ignored for classic groups, as Kafka does. The empty group id
is accepted (Kafka keeps it for backward compatibility).

Authorization (kpy.acl), as KafkaApis: DESCRIBE on each group (GROUP_AUTHORIZATION_FAILED, as
the error response of the version carries it: on the group from v8, at the top from v2, on each
partition before), then DESCRIBE on the topics: a topic named without it answers
TOPIC_AUTHORIZATION_FAILED and offset -1 on its partitions; asked for all of a group's offsets,
the topics without it are left out.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from kio.schema.errors import ErrorCode

from kpy.acl import AclOperation, ResourceType
from kpy.coordinator.offsets import (
    NO_LEADER_EPOCH,
    GroupMembership,
    OffsetAndMetadata,
    OffsetStore,
)
from kpy.handlers.registry import error_response, handles
from kpy.protocol.messages import make, response_module

if TYPE_CHECKING:
    from kpy.broker import RequestContext

KEY = 9
BATCHED_VERSION = 8  # the first version asking for several groups
DEAD = "Dead"

# (topic, [(partition, offset and metadata, None for "no commit", or the partition's error)])
# in answer order
Answer = OffsetAndMetadata | ErrorCode | None
TopicAnswer = tuple[str, list[tuple[int, Answer]]]


@handles(KEY)
async def handle(ctx: RequestContext, request: Any) -> Any:
    broker: Any = ctx.broker
    offsets: OffsetStore = broker.offsets
    groups: GroupMembership = broker.groups
    mod = response_module(KEY, ctx.version)
    auth = broker.authorizer
    if ctx.version >= BATCHED_VERSION:
        answers = []
        for g in request.groups:
            if not auth.authorize(ctx, AclOperation.DESCRIBE, ResourceType.GROUP, g.group_id):
                error = ErrorCode.group_authorization_failed
            else:
                error = _validate_member(broker, g)
            if error is not ErrorCode.none:
                answers.append(
                    make(
                        mod.OffsetFetchResponseGroup,
                        group_id=g.group_id,
                        topics=(),
                        error_code=error,
                    )
                )
                continue
            topics = _lookup(offsets, groups, g.group_id, g.topics, request.require_stable)
            visible = _describable(ctx, topics, named=g.topics is not None)
            answers.append(_group_response(mod, g.group_id, visible))
        return make(mod.OffsetFetchResponse, throttle_time=0, groups=tuple(answers))
    if not auth.authorize(ctx, AclOperation.DESCRIBE, ResourceType.GROUP, request.group_id):
        return _error_response(ctx, request, ErrorCode.group_authorization_failed)
    stable = getattr(request, "require_stable", False)
    found = _lookup(offsets, groups, request.group_id, request.topics, stable)
    topics = _describable(ctx, found, named=request.topics is not None)
    return make(
        mod.OffsetFetchResponse,
        throttle_time=0,
        topics=tuple(_topic(mod, "OffsetFetchResponseTopic", t) for t in topics),
        error_code=ErrorCode.none,
    )


@error_response(KEY)
def _error_response(ctx: RequestContext, request: Any, error: ErrorCode) -> Any:
    """Kafka's OffsetFetchRequest.getErrorResponse: before v2 (no top-level error) the error
    goes on every partition asked about; v2-v7 answer it at the top; v8+ on every group."""
    mod = response_module(KEY, ctx.version)
    if ctx.version >= BATCHED_VERSION:
        answers = tuple(
            make(mod.OffsetFetchResponseGroup, group_id=g.group_id, topics=(), error_code=error)
            for g in request.groups
        )
        return make(mod.OffsetFetchResponse, throttle_time=0, groups=answers)
    topics: tuple[Any, ...] = ()
    if ctx.version < 2:
        topics = tuple(
            make(
                mod.OffsetFetchResponseTopic,
                name=t.name,
                partitions=tuple(_partition(mod, i, None, error) for i in t.partition_indexes),
            )
            for t in request.topics
        )
    return make(mod.OffsetFetchResponse, throttle_time=0, topics=topics, error_code=error)


def _describable(ctx: RequestContext, topics: list[TopicAnswer], named: bool) -> list[TopicAnswer]:
    """The answers without what the client may not see: a topic it ``named`` answers
    TOPIC_AUTHORIZATION_FAILED on each partition; when it asked for all of a group's offsets,
    the topic is left out."""
    auth = ctx.broker.authorizer
    if not auth.enabled:
        return topics
    names = {name for name, _ in topics}
    allowed = auth.allowed(ctx, AclOperation.DESCRIBE, ResourceType.TOPIC, names)
    denied = ErrorCode.topic_authorization_failed
    if not named:
        return [(name, answers) for name, answers in topics if name in allowed]
    return [
        (name, answers if name in allowed else [(p, denied) for p, _ in answers])
        for name, answers in topics
    ]


def _validate_member(broker: Any, group: Any) -> ErrorCode:
    """v9 names the member and its epoch: a consumer group checks them (Kafka's
    ConsumerGroup.validateOffsetFetch: UNKNOWN_MEMBER_ID, STALE_MEMBER_EPOCH)."""
    consumer_groups: Any = getattr(broker, "consumer_groups", None)
    if consumer_groups is None or group.group_id not in consumer_groups.groups:
        return ErrorCode.none
    error: ErrorCode = consumer_groups.validate_offset_fetch(
        group.group_id, getattr(group, "member_id", None), getattr(group, "member_epoch", -1)
    )
    return error


def _lookup(
    offsets: OffsetStore,
    groups: GroupMembership,
    group_id: str,
    topics: Iterable[Any] | None,
    require_stable: bool,
) -> list[TopicAnswer]:
    dead = groups.group_state(group_id) == DEAD

    def answer(tp: tuple[str, int], value: OffsetAndMetadata | None) -> Answer:
        if require_stable and offsets.has_pending(group_id, tp):
            return ErrorCode.unstable_offset_commit
        return value

    if topics is None:  # all of the group's offsets
        stored = {} if dead else offsets.fetch(group_id)
        by_topic: dict[str, list[tuple[int, Answer]]] = {}
        for (topic, partition), value in sorted(stored.items()):
            by_topic.setdefault(topic, []).append((partition, answer((topic, partition), value)))
        return list(by_topic.items())
    wanted = [(t.name, p) for t in topics for p in t.partition_indexes]
    found = {} if dead else offsets.fetch(group_id, wanted)
    return [
        (t.name, [(p, answer((t.name, p), found.get((t.name, p)))) for p in t.partition_indexes])
        for t in topics
    ]


def _group_response(mod: Any, group_id: str, topics: list[TopicAnswer]) -> Any:
    return make(
        mod.OffsetFetchResponseGroup,
        group_id=group_id,
        topics=tuple(_topic(mod, "OffsetFetchResponseTopics", t) for t in topics),
        error_code=ErrorCode.none,
    )


def _topic(mod: Any, type_name: str, answer: TopicAnswer) -> Any:
    name, partitions = answer
    return make(
        getattr(mod, type_name),
        name=name,
        partitions=tuple(
            _partition(mod, p, None, value)
            if isinstance(value, ErrorCode)
            else _partition(mod, p, value, ErrorCode.none)
            for p, value in partitions
        ),
    )


def _partition(mod: Any, index: int, value: OffsetAndMetadata | None, error: ErrorCode) -> Any:
    cls = getattr(mod, "OffsetFetchResponsePartitions", None) or mod.OffsetFetchResponsePartition
    return make(
        cls,
        partition_index=index,
        committed_offset=value.offset if value is not None else -1,
        committed_leader_epoch=value.leader_epoch if value is not None else NO_LEADER_EPOCH,
        metadata=value.metadata if value is not None else "",
        error_code=error,
    )
