"""DescribeProducers (key 61), v0: the producers a partition's log knows (its producer state).

For each partition: every producer id with its epoch, last sequence, the timestamp of its last
batch, the coordinator epoch of its last marker and the first offset of its open transaction
(-1 when none), as Kafka's Partition.activeProducerState. ``kafka-transactions
describe-producers`` and ``find-hanging`` read it. As KafkaApis checks a topic: an illegal name
is INVALID_TOPIC_EXCEPTION, then READ on it is needed (kpy.acl: TOPIC_AUTHORIZATION_FAILED),
then a partition that does not exist is UNKNOWN_TOPIC_OR_PARTITION; each with its message.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from kio.schema.errors import ErrorCode

from kpy.acl import DENIED_MESSAGES, AclOperation, ResourceType
from kpy.handlers.registry import error_response, handles
from kpy.protocol.messages import make, response_module
from kpy.topics import name_error

if TYPE_CHECKING:
    from kpy.broker import RequestContext

KEY = 61
# Kafka's ApiError(UNKNOWN_TOPIC_OR_PARTITION) carries the error's default message.
UNKNOWN_TOPIC_MESSAGE = "This server does not host this topic-partition."


@handles(KEY)
async def handle(ctx: RequestContext, request: Any) -> Any:
    mod = response_module(KEY, ctx.version)
    broker = ctx.broker

    auth = broker.authorizer
    topic_errors: dict[str, tuple[ErrorCode, str]] = {}
    for topic in request.topics:
        problem = name_error(topic.name)
        if problem is not None:
            topic_errors[topic.name] = (ErrorCode.invalid_topic_exception, problem)
        elif not auth.authorize(ctx, AclOperation.READ, ResourceType.TOPIC, topic.name):
            denied = ErrorCode.topic_authorization_failed
            topic_errors[topic.name] = (denied, DENIED_MESSAGES[denied])

    def partition(topic: str, index: int) -> Any:
        if topic in topic_errors:
            return _partition(mod, index, *topic_errors[topic])
        partition_log = broker.logs.get_log(topic, index)
        if partition_log is None:
            return _partition(
                mod, index, ErrorCode.unknown_topic_or_partition, UNKNOWN_TOPIC_MESSAGE
            )
        producers = tuple(
            make(
                mod.ProducerState,
                producer_id=entry.producer_id,
                producer_epoch=entry.producer_epoch,
                last_sequence=entry.last_seq,
                last_timestamp=entry.last_timestamp,
                coordinator_epoch=entry.coordinator_epoch,
                current_txn_start_offset=-1
                if entry.current_txn_first_offset is None
                else entry.current_txn_first_offset,
            )
            for entry in sorted(
                partition_log.producer_state.producers.values(), key=lambda e: e.producer_id
            )
        )
        return _partition(mod, index, ErrorCode.none, None, producers)

    return _respond(mod, request, partition)


@error_response(KEY)
def _error_response(ctx: RequestContext, request: Any, error: ErrorCode) -> Any:
    mod = response_module(KEY, ctx.version)
    return _respond(mod, request, lambda topic, index: _partition(mod, index, error, None))


def _partition(
    mod: Any, index: int, error: ErrorCode, message: str | None, producers: tuple[Any, ...] = ()
) -> Any:
    return make(
        mod.PartitionResponse,
        partition_index=index,
        error_code=error,
        error_message=message,
        active_producers=producers,
    )


def _respond(mod: Any, request: Any, partition: Any) -> Any:
    topics = tuple(
        make(
            mod.TopicResponse,
            name=topic.name,
            partitions=tuple(partition(topic.name, i) for i in topic.partition_indexes),
        )
        for topic in request.topics
    )
    return make(mod.DescribeProducersResponse, throttle_time=0, topics=topics)
