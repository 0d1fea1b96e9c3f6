"""CreateTopics (key 19), v2-v7.

Checks in Kafka's order and with its messages: a legal name, not already there, no collision
with a name that differs only by '.' and '_', partitions and replication factor (v4+ take -1 for
the broker defaults; a factor above 1 cannot be met by one broker), manual assignments that name
this broker only, known config names. validate_only checks without creating. v5+ answers with the
partition count, replication factor and the topic's configs. A request whose topics would take
Kafka's controller more than 10,000 metadata records fails whole with POLICY_VIOLATION, as there
(counting the topics the client may create).

Authorization (kpy.acl), as Kafka's controller (ControllerApis.createTopics): after the
duplicates, each topic needs CREATE on the cluster or on itself, else TOPIC_AUTHORIZATION_FAILED
("Authorization failed."); a topic created without DESCRIBE_CONFIGS on it comes back without
its configs, partition count and replication factor, and topic_config_error_code
TOPIC_AUTHORIZATION_FAILED.
"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, Any

from kio.schema.errors import ErrorCode

from kpy.acl import AclOperation, ResourceType
from kpy.handlers.registry import error_response, handles
from kpy.protocol.messages import has_field, make, response_module
from kpy.topics import EXCESSIVE_BATCH, MAX_RECORDS_PER_USER_OP, name_error

if TYPE_CHECKING:
    from kpy.broker import RequestContext

KEY = 19


@handles(KEY)
async def handle(ctx: RequestContext, request: Any) -> Any:
    broker = ctx.broker
    mod = response_module(KEY, ctx.version)
    results = []
    counts = Counter(t.name for t in request.topics)
    for name in sorted(n for n, c in counts.items() if c > 1):
        results.append(_result(mod, name, ErrorCode.invalid_request, "Duplicate topic name."))
    auth = broker.authorizer
    names = set(counts)
    creatable = names
    if not auth.authorize_cluster(ctx, AclOperation.CREATE, log_denied=False):
        creatable = auth.allowed(ctx, AclOperation.CREATE, ResourceType.TOPIC, names)
    describable = auth.allowed(
        ctx, AclOperation.DESCRIBE_CONFIGS, ResourceType.TOPIC, names, log_denied=False
    )
    unique = [t for t in request.topics if counts[t.name] == 1]
    if sum(_records_of(broker, t) for t in unique if t.name in creatable) > MAX_RECORDS_PER_USER_OP:
        for t in unique:
            if t.name in creatable:
                results.append(_result(mod, t.name, ErrorCode.policy_violation, EXCESSIVE_BATCH))
            else:
                results.append(
                    _result(
                        mod, t.name, ErrorCode.topic_authorization_failed, "Authorization failed."
                    )
                )
        return make(mod.CreateTopicsResponse, throttle_time=0, topics=tuple(results))
    for topic in request.topics:
        if counts[topic.name] > 1:
            continue
        if topic.name not in creatable:
            results.append(
                _result(
                    mod, topic.name, ErrorCode.topic_authorization_failed, "Authorization failed."
                )
            )
            continue
        partitions, replication = topic.num_partitions, topic.replication_factor
        if topic.assignments:
            problem = _assignment_problem(topic, broker.node_id)
            if problem is not None:
                results.append(_result(mod, topic.name, *problem))
                continue
            partitions, replication = len(topic.assignments), 1
        created = await broker.create_topic(
            topic.name,
            partitions,
            replication,
            {c.name: c.value for c in topic.configs},
            validate_only=request.validate_only,
        )
        if topic.name not in describable and created.info is not None:
            # Created, but the client may not see its configs.
            results.append(_undescribed(mod, topic.name, created.info))
            continue
        results.append(
            _result(mod, topic.name, created.error, created.message, created.info, broker)
        )
    return make(mod.CreateTopicsResponse, throttle_time=0, topics=tuple(results))


@error_response(KEY)
def _error_response(ctx: RequestContext, request: Any, error: ErrorCode) -> Any:
    mod = response_module(KEY, ctx.version)
    results = tuple(_result(mod, t.name, error, None) for t in request.topics)
    return make(mod.CreateTopicsResponse, throttle_time=0, topics=results)


def _records_of(broker: Any, topic: Any) -> int:
    """The metadata records Kafka's controller would write to create ``topic``: the topic, each
    partition, each config; none for a topic it refuses by name or that exists."""
    if name_error(topic.name) is not None or broker.logs.topic(topic.name) is not None:
        return 0
    partitions = len(topic.assignments) if topic.assignments else topic.num_partitions
    if partitions == -1:
        partitions = broker.config.get_int("num.partitions")
    return 1 + partitions + len(topic.configs) if partitions > 0 else 0


def _assignment_problem(topic: Any, node_id: int) -> tuple[ErrorCode, str] | None:
    if topic.replication_factor != -1:
        return (
            ErrorCode.invalid_request,
            "A manual partition assignment was specified, but replication factor was not set "
            "to -1.",
        )
    if topic.num_partitions != -1:
        return (
            ErrorCode.invalid_request,
            "A manual partition assignment was specified, but numPartitions was not set to -1.",
        )
    indexes = sorted(a.partition_index for a in topic.assignments)
    if indexes != list(range(len(indexes))):
        return (
            ErrorCode.invalid_replica_assignment,
            f"Partitions should be a consecutive 0-based integer sequence, but got {indexes}.",
        )
    for a in topic.assignments:
        if list(a.broker_ids) != [node_id]:
            return (
                ErrorCode.invalid_replica_assignment,
                f"The manual partition assignment includes broker(s) other than {node_id}, the "
                "only one registered.",
            )
    return None


def _undescribed(mod: Any, name: str, info: Any) -> Any:
    return make(
        mod.CreatableTopicResult,
        name=name,
        topic_id=info.topic_id,
        error_code=ErrorCode.none,
        error_message=None,
        topic_config_error_code=ErrorCode.topic_authorization_failed,
        num_partitions=-1,
        replication_factor=-1,
        configs=(),
    )


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
                name=entry.name,
                value=entry.value,
                read_only=entry.read_only,
                config_source=int(entry.source),
                is_sensitive=entry.sensitive,
            )
            for entry in broker.describe_topic_configs(info)
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
