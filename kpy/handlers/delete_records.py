"""DeleteRecords (key 21), v0-v2: move partitions' log start offsets up (KIP-107).

Kafka's KafkaApis.handleDeleteRecordsRequest: a partition of a topic without DELETE (kpy.acl) is
TOPIC_AUTHORIZATION_FAILED; a partition this broker does not have is
UNKNOWN_TOPIC_OR_PARTITION; the rest go to Broker.delete_records (internal topics refused,
cleanup.policy without delete is POLICY_VIOLATION, offset -1 means the high watermark, a negative
offset or one past the high watermark is OFFSET_OUT_OF_RANGE). low_watermark is the partition's
log start offset after the call, -1 with an error. A partition named twice is answered once, for
the last offset given (Kafka collects the request into a map). Partitions come back grouped by
topic, in the order the request first names them.

The timeout bounds Kafka's wait for followers to reach the new start; with one replica there is
nothing to wait for, so it is not used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from kio.schema.errors import ErrorCode

from kpy.acl import AclOperation, ResourceType
from kpy.handlers.registry import error_response, handles
from kpy.protocol.messages import make, response_module

if TYPE_CHECKING:
    from kpy.broker import RequestContext

KEY = 21

TopicPartition = tuple[str, int]


@handles(KEY)
async def handle(ctx: RequestContext, request: Any) -> Any:
    broker = ctx.broker
    wanted = _partitions(request)
    results: dict[TopicPartition, tuple[ErrorCode, int]] = {}
    known: dict[TopicPartition, int] = {}
    names = {topic for topic, _ in wanted}
    deletable = broker.authorizer.allowed(ctx, AclOperation.DELETE, ResourceType.TOPIC, names)
    for (topic, partition), offset in wanted.items():
        info = broker.logs.topic(topic)
        if topic not in deletable:
            results[(topic, partition)] = (ErrorCode.topic_authorization_failed, -1)
        elif info is None or not 0 <= partition < info.partitions:
            results[(topic, partition)] = (ErrorCode.unknown_topic_or_partition, -1)
        else:
            known[(topic, partition)] = offset
    if known:
        results.update(await broker.delete_records(known))
    return _response(ctx, wanted, results)


@error_response(KEY)
def _error_response(ctx: RequestContext, request: Any, error: ErrorCode) -> Any:
    wanted = _partitions(request)
    return _response(ctx, wanted, dict.fromkeys(wanted, (error, -1)))


def _partitions(request: Any) -> dict[TopicPartition, int]:
    """The offset asked for each partition (the last one where a partition repeats), in the
    order the partitions first appear."""
    wanted: dict[TopicPartition, int] = {}
    for topic in request.topics:
        for p in topic.partitions:
            wanted[(topic.name, p.partition_index)] = p.offset
    return wanted


def _response(
    ctx: RequestContext,
    wanted: dict[TopicPartition, int],
    results: dict[TopicPartition, tuple[ErrorCode, int]],
) -> Any:
    mod = response_module(KEY, ctx.version)
    by_topic: dict[str, list[Any]] = {}
    for topic, partition in wanted:
        error, low_watermark = results[(topic, partition)]
        by_topic.setdefault(topic, []).append(
            make(
                mod.DeleteRecordsPartitionResult,
                partition_index=partition,
                low_watermark=low_watermark,
                error_code=error,
            )
        )
    return make(
        mod.DeleteRecordsResponse,
        throttle_time=0,
        topics=tuple(
            make(mod.DeleteRecordsTopicResult, name=name, partitions=tuple(parts))
            for name, parts in by_topic.items()
        ),
    )
