"""OffsetCommit (key 8), v0-v9 (v10, which names topics by id, is not served).

Checks in Kafka's order: partitions of topics that do not exist answer UNKNOWN_TOPIC_OR_PARTITION
(KafkaApis looks at metadata before the coordinator sees the request); then the group decides
for all the other partitions at once (GroupCoordinator.validate_offset_commit: ILLEGAL_GENERATION,
UNKNOWN_MEMBER_ID, REBALANCE_IN_PROGRESS, FENCED_INSTANCE_ID, COORDINATOR_NOT_AVAILABLE); then
each partition whose metadata is longer than offset.metadata.max.bytes (counted in UTF-16 units,
as Java's String.length) gets OFFSET_METADATA_TOO_LARGE and the rest are stored, in one append
to ``__consumer_offsets`` (kpy.coordinator.offsets).

A group the coordinator does not know: a commit with generation -1 (a simple consumer or the
admin client) is accepted, and the offsets alone make the group exist, as Kafka's "simple
group". With a generation of 0 or more Kafka answers GROUP_ID_NOT_FOUND from v9 and
ILLEGAL_GENERATION before, or UNKNOWN_MEMBER_ID when the group exists only through its offsets
(an Empty group without members). The empty group id is accepted, as Kafka does for backward
compatibility (only OffsetDelete and the membership APIs refuse it).

A failed append answers what Kafka's coordinator maps it to: NOT_COORDINATOR for a storage
error, UNKNOWN_SERVER_ERROR for a batch too large.

v0 names no generation or member: Kafka stored its offsets in ZooKeeper, apart from the group,
without asking the group anything; kpy has no ZooKeeper and keeps them with every other commit,
still without asking the group (so an old client's v0 commits and v0/v1 fetches see each
other). v1 carries a commit timestamp per partition, kept as the commit time unless it is -1.

Authorization (kpy.acl), first, as KafkaApis: READ on the group (GROUP_AUTHORIZATION_FAILED on
every partition), then READ on each topic (TOPIC_AUTHORIZATION_FAILED on its partitions, before
whether they exist is looked at).

Not done: retention_time_ms (v2-v4) is ignored, where Kafka stores an expire timestamp (and then
writes OffsetCommitValue v1); offsets expire by offsets.retention.minutes only.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from kio.schema.errors import ErrorCode

from kpy.acl import AclOperation, ResourceType
from kpy.coordinator.offsets import (
    NO_LEADER_EPOCH,
    GroupMembership,
    OffsetAndMetadata,
    OffsetStore,
    java_string_length,
)
from kpy.handlers.registry import error_response, handles
from kpy.protocol.messages import make, response_module
from kpy.storage import errors as se

if TYPE_CHECKING:
    from kpy.broker import RequestContext

KEY = 8


@handles(KEY)
async def handle(ctx: RequestContext, request: Any) -> Any:
    broker: Any = ctx.broker
    offsets: OffsetStore = broker.offsets
    groups: GroupMembership = broker.groups
    now_ms = int(time.time() * 1000)
    max_metadata: int = broker.config.get_int("offset.metadata.max.bytes")
    group_id = request.group_id
    auth = broker.authorizer
    if not auth.authorize(ctx, AclOperation.READ, ResourceType.GROUP, group_id):
        return _error_response(ctx, request, ErrorCode.group_authorization_failed)
    names = {topic.name for topic in request.topics}
    denied = names - auth.allowed(ctx, AclOperation.READ, ResourceType.TOPIC, names)

    errors: dict[tuple[int, int], ErrorCode] = {}  # (topic index, partition index) -> error
    valid: list[tuple[int, int]] = []
    for ti, topic in enumerate(request.topics):
        for pi, p in enumerate(topic.partitions):
            if topic.name in denied:
                errors[(ti, pi)] = ErrorCode.topic_authorization_failed
            elif broker.logs.get_log(topic.name, p.partition_index) is None:
                errors[(ti, pi)] = ErrorCode.unknown_topic_or_partition
            else:
                valid.append((ti, pi))

    if valid:
        # Before the group checks: nothing may change the group between them and the append.
        ready = await broker.ensure_offsets_topic()
        group_error = (
            ErrorCode.none if ctx.version == 0 else _validate(ctx, offsets, groups, request)
        )
        if not ready and group_error is ErrorCode.none:
            group_error = ErrorCode.coordinator_not_available
        to_commit: dict[tuple[str, int], OffsetAndMetadata] = {}
        committing: list[tuple[int, int]] = []
        for ti, pi in valid:
            topic = request.topics[ti]
            p = topic.partitions[pi]
            metadata = p.committed_metadata if p.committed_metadata is not None else ""
            if group_error is not ErrorCode.none:
                errors[(ti, pi)] = group_error
            elif java_string_length(metadata) > max_metadata:
                errors[(ti, pi)] = ErrorCode.offset_metadata_too_large
            else:
                to_commit[(topic.name, p.partition_index)] = OffsetAndMetadata(
                    offset=p.committed_offset,
                    leader_epoch=getattr(p, "committed_leader_epoch", NO_LEADER_EPOCH),
                    metadata=metadata,
                    commit_timestamp_ms=_commit_time(p, now_ms),
                )
                committing.append((ti, pi))
        outcome = _store(offsets, group_id, to_commit, now_ms)
        for key in committing:
            errors[key] = outcome
    return _respond(ctx, request, lambda ti, pi: errors[(ti, pi)])


@error_response(KEY)
def _error_response(ctx: RequestContext, request: Any, error: ErrorCode) -> Any:
    return _respond(ctx, request, lambda ti, pi: error)


def _commit_time(partition: Any, now_ms: int) -> int:
    """v1's per-partition commit timestamp, where the client gave one."""
    given: int = getattr(partition, "commit_timestamp", -1)
    return now_ms if given == -1 else given


def _validate(
    ctx: RequestContext, offsets: OffsetStore, groups: GroupMembership, request: Any
) -> ErrorCode:
    group_id = request.group_id
    generation = request.generation_id_or_member_epoch
    consumer_groups: Any = getattr(ctx.broker, "consumer_groups", None)
    if consumer_groups is not None and group_id in consumer_groups.groups:
        error: ErrorCode = consumer_groups.validate_offset_commit(
            group_id, request.member_id, generation, api_version=ctx.version
        )
        return error
    if groups.group_state(group_id) is None:
        if generation < 0:
            return ErrorCode.none
        if offsets.has_offsets(group_id):
            return ErrorCode.unknown_member_id
        return ErrorCode.group_id_not_found if ctx.version >= 9 else ErrorCode.illegal_generation
    return groups.validate_offset_commit(
        group_id, request.member_id, generation, getattr(request, "group_instance_id", None)
    )


def _store(
    offsets: OffsetStore,
    group_id: str,
    to_commit: dict[tuple[str, int], OffsetAndMetadata],
    now_ms: int,
) -> ErrorCode:
    try:
        offsets.commit(group_id, to_commit, now_ms=now_ms)
    except (se.RecordTooLarge, se.RecordBatchTooLarge):
        return ErrorCode.unknown_server_error
    except (se.StorageError, OSError):
        return ErrorCode.not_coordinator
    return ErrorCode.none


def _respond(ctx: RequestContext, request: Any, error_for: Callable[[int, int], ErrorCode]) -> Any:
    mod = response_module(KEY, ctx.version)
    topics = tuple(
        make(
            mod.OffsetCommitResponseTopic,
            name=topic.name,
            partitions=tuple(
                make(
                    mod.OffsetCommitResponsePartition,
                    partition_index=p.partition_index,
                    error_code=error_for(ti, pi),
                )
                for pi, p in enumerate(topic.partitions)
            ),
        )
        for ti, topic in enumerate(request.topics)
    )
    return make(mod.OffsetCommitResponse, throttle_time=0, topics=topics)
