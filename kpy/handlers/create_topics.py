"""CreateTopics (key 19), v2-v7.

Checks in Kafka's order and with its messages: a legal name, not already there, no collision
with a name that differs only by '.' and '_', partitions and replication factor (v4+ take -1 for
the broker defaults; a factor above 1 cannot be met by one broker), manual assignments that name
this broker only, known config names. validate_only checks without creating. v5+ answers with the
partition count, replication factor and the topic's configs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from kio.schema.errors import ErrorCode

from kpy.handlers.registry import handles
from kpy.protocol.messages import has_field, make, response_module

if TYPE_CHECKING:
    from kpy.broker import RequestContext

KEY = 19


@handles(KEY, "CreateTopics", 2, 7)
async def handle(ctx: RequestContext, request: Any) -> Any:
    broker = ctx.broker
    mod = response_module(KEY, ctx.version)
    results = []
    seen: set[str] = set()
    error: ErrorCode
    message: str | None
    for topic in request.topics:
        if topic.name in seen:
            error, message = ErrorCode.invalid_request, "Duplicate topic name in the request."
        else:
            seen.add(topic.name)
            configs = {c.name: c.value for c in topic.configs}
            partitions = topic.num_partitions
            if topic.assignments:
                partitions_from_assignment = len(topic.assignments)
                if partitions != -1 or topic.replication_factor != -1:
                    error, message = (
                        ErrorCode.invalid_request,
                        "Both numPartitions or replicationFactor and replicasAssignments were set. "
                        "Both cannot be used at the same time.",
                    )
                    results.append(_result(mod, topic.name, error, message))
                    continue
                if any(list(a.broker_ids) != [broker.node_id] for a in topic.assignments):
                    error, message = (
                        ErrorCode.invalid_replica_assignment,
                        f"Replica assignments must name broker {broker.node_id} only",
                    )
                    results.append(_result(mod, topic.name, error, message))
                    continue
                partitions = partitions_from_assignment
            error, message = await broker.create_topic(
                topic.name,
                partitions,
                topic.replication_factor if not topic.assignments else 1,
                configs,
                validate_only=request.validate_only,
            )
        info = broker.logs.topic(topic.name) if error is ErrorCode.none else None
        results.append(_result(mod, topic.name, error, message, info, broker))
    return make(mod.CreateTopicsResponse, throttle_time=0, topics=tuple(results))


def _result(
    mod: Any,
    name: str,
    error: ErrorCode,
    message: str | None,
    info: Any = None,
    broker: Any = None,
) -> Any:
    configs = None
    if info is not None and has_field(mod.CreatableTopicResult, "configs"):
        configs = tuple(
            make(
                mod.CreatableTopicConfigs,
                name=k,
                value=v,
                read_only=False,
                config_source=1 if k in info.configs else 5,  # TOPIC_CONFIG or DEFAULT_CONFIG
                is_sensitive=False,
            )
            for k, v in sorted(broker.effective_topic_config(info).items())
        )
    return make(
        mod.CreatableTopicResult,
        name=name,
        topic_id=info.topic_id if info is not None else None,
        error_code=error,
        error_message=message,
        topic_config_error_code=0,
        num_partitions=info.partitions if info is not None else -1,
        replication_factor=1 if info is not None else -1,
        configs=configs,
    )
