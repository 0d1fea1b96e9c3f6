"""ElectLeaders (key 43), v0-v2: preferred or unclean leader election.

As Kafka's controller (ReplicationControlManager.electLeaders) answers it, on a single broker
that leads every partition with its only (and so preferred) replica: every existing partition
is ELECTION_NOT_NEEDED, for a preferred (0) or an unclean (1) election alike, and a topic or
partition that does not exist is UNKNOWN_TOPIC_OR_PARTITION, with Kafka's messages. A null
topic list means every partition of every topic; then, as Kafka, partitions that needed no
election are not listed, so each topic comes back with an empty result list. Any other
election type is INVALID_REQUEST on every partition named (Kafka's getErrorResponse). v0
cannot name a type: it asks for a preferred election. ALTER on the cluster is needed first
(kpy.acl): CLUSTER_AUTHORIZATION_FAILED at the top and on every partition named.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from kio.schema.errors import ErrorCode

from kpy.acl import AclOperation
from kpy.handlers.registry import error_response, handles
from kpy.protocol.messages import make, response_module

if TYPE_CHECKING:
    from kpy.broker import RequestContext

KEY = 43
PREFERRED, UNCLEAN = 0, 1
# Kafka's ApiError(ELECTION_NOT_NEEDED) carries the error's default message.
NOT_NEEDED_MESSAGE = "Leader election not needed for topic partition."

Result = tuple[int, ErrorCode, str | None]  # partition, error, message


@handles(KEY)
async def handle(ctx: RequestContext, request: Any) -> Any:
    if not ctx.broker.authorizer.authorize_cluster(ctx, AclOperation.ALTER):
        return _error_response(ctx, request, ErrorCode.cluster_authorization_failed)
    election_type = getattr(request, "election_type", PREFERRED)
    if election_type not in (PREFERRED, UNCLEAN):
        message = f"Unknown election type {election_type}"
        return _errors(ctx, request, ErrorCode.invalid_request, message)
    logs = ctx.broker.logs
    results: list[tuple[str, list[Result]]] = []
    if request.topic_partitions is None:
        # Every partition needs no election, and those are left out of an all-partitions answer.
        results = [(t.name, []) for t in logs.topics()]
    else:
        for topic in request.topic_partitions:
            results.append((topic.topic, [_elect(ctx, topic.topic, p) for p in topic.partitions]))
    return _response(ctx, ErrorCode.none, results)


def _elect(ctx: RequestContext, topic: str, partition: int) -> Result:
    info = ctx.broker.logs.topic(topic)
    if info is None:
        return partition, ErrorCode.unknown_topic_or_partition, f"No such topic as {topic}"
    if not 0 <= partition < info.partitions:
        message = f"No such partition as {topic}-{partition}"
        return partition, ErrorCode.unknown_topic_or_partition, message
    # The leader is the only replica: it is the preferred one, and a leader exists.
    return partition, ErrorCode.election_not_needed, NOT_NEEDED_MESSAGE


@error_response(KEY)
def _error_response(ctx: RequestContext, request: Any, error: ErrorCode) -> Any:
    return _errors(ctx, request, error, None)


def _errors(ctx: RequestContext, request: Any, error: ErrorCode, message: str | None) -> Any:
    """Kafka's getErrorResponse: the error at the top and on every partition named."""
    results = [
        (t.topic, [(p, error, message) for p in t.partitions])
        for t in request.topic_partitions or ()
    ]
    return _response(ctx, error, results)


def _response(
    ctx: RequestContext, error: ErrorCode, results: list[tuple[str, list[Result]]]
) -> Any:
    mod = response_module(KEY, ctx.version)
    return make(
        mod.ElectLeadersResponse,
        throttle_time=0,
        error_code=error,
        replica_election_results=tuple(
            make(
                mod.ReplicaElectionResult,
                topic=topic,
                partition_result=tuple(
                    make(mod.PartitionResult, partition_id=p, error_code=e, error_message=m)
                    for p, e, m in parts
                ),
            )
            for topic, parts in results
        ),
    )
