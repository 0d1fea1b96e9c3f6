"""Metadata (key 3), v0-v13.

One broker, which leads every partition with leader epoch 0 (the epoch written into stored
batches too, so that epochs agree everywhere). Topics are auto-created when the request allows it
(v4+) and auto.create.topics.enable is true; unlike Kafka, which answers LEADER_NOT_AVAILABLE
while the controller creates the topic, kpy creates it before answering and returns it ready.
Authorized operations (v8+), when asked, are every operation on the resource, as Kafka answers
without an authorizer (kpy has no ACLs); cluster operations can be asked for up to v10 only.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from kio.schema.errors import ErrorCode

from kpy import authorized
from kpy.handlers.registry import error_response, handles
from kpy.protocol.messages import make, response_module
from kpy.topics import is_internal, name_error

if TYPE_CHECKING:
    from kpy.broker import RequestContext

KEY = 3
NO_OPERATIONS = authorized.NOT_REQUESTED


@handles(KEY)
async def handle(ctx: RequestContext, request: Any) -> Any:
    broker = ctx.broker
    mod = response_module(KEY, ctx.version)
    logs = broker.logs
    if ctx.version < 12 and any(
        t.name is None or getattr(t, "topic_id", None) is not None for t in request.topics or ()
    ):
        # KafkaApis: v10-v11 carry topic ids but may use neither them nor null names; an
        # InvalidRequestException, answered with INVALID_REQUEST for every topic.
        return _error_response(ctx, request, ErrorCode.invalid_request)

    if request.topics is None or (ctx.version == 0 and not request.topics):
        wanted = [(t.name, None) for t in logs.topics()]
    else:
        wanted = [(t.name, getattr(t, "topic_id", None)) for t in request.topics]
    auto_create = broker.config.get_bool("auto.create.topics.enable") and getattr(
        request, "allow_auto_topic_creation", True
    )
    topic_operations = NO_OPERATIONS
    if getattr(request, "include_topic_authorized_operations", False):
        topic_operations = authorized.TOPIC
    cluster_operations = NO_OPERATIONS
    if getattr(request, "include_cluster_authorized_operations", False):
        cluster_operations = authorized.CLUSTER

    topics = []
    for name, topic_id in wanted:
        info = None
        if name is None and topic_id is not None:
            info = logs.topic_by_id(topic_id)
            if info is None:
                topics.append(_topic_error(mod, None, topic_id, ErrorCode.unknown_topic_id))
                continue
        else:
            if name_error(name) is not None:
                topics.append(
                    _topic_error(
                        mod, name, None, ErrorCode.invalid_topic_exception, topic_operations
                    )
                )
                continue
            info = logs.topic(name)
            if info is None and auto_create and not is_internal(name):
                error = (await broker.create_topic(name, -1, -1, {})).error
                if error not in (ErrorCode.none, ErrorCode.topic_already_exists):
                    topics.append(_topic_error(mod, name, None, error, topic_operations))
                    continue
                info = logs.topic(name)
            if info is None:
                error = ErrorCode.unknown_topic_or_partition
                topics.append(_topic_error(mod, name, None, error, topic_operations))
                continue
        partitions = tuple(
            make(
                mod.MetadataResponsePartition,
                error_code=ErrorCode.none,
                partition_index=p,
                leader_id=broker.node_id,
                leader_epoch=broker.leader_epoch,
                replica_nodes=(broker.node_id,),
                isr_nodes=(broker.node_id,),
                offline_replicas=(),
            )
            for p in range(info.partitions)
        )
        topics.append(
            make(
                mod.MetadataResponseTopic,
                error_code=ErrorCode.none,
                name=info.name,
                topic_id=info.topic_id,
                is_internal=is_internal(info.name),
                partitions=partitions,
                topic_authorized_operations=topic_operations,
            )
        )

    lst = broker.advertised_listener(ctx)
    brokers = (
        make(
            mod.MetadataResponseBroker,
            node_id=broker.node_id,
            host=lst.host,
            port=lst.port,
            rack=None,
        ),
    )
    return make(
        mod.MetadataResponse,
        throttle_time=0,
        brokers=brokers,
        cluster_id=broker.cluster_id,
        controller_id=broker.node_id,
        topics=tuple(topics),
        cluster_authorized_operations=cluster_operations,
        error_code=ErrorCode.none,
    )


@error_response(KEY)
def _error_response(ctx: RequestContext, request: Any, error: ErrorCode) -> Any:
    mod = response_module(KEY, ctx.version)
    # As Kafka's MetadataRequest.getErrorResponse: a null name is answered as "".
    topics = tuple(
        _topic_error(mod, t.name if t.name is not None else "", getattr(t, "topic_id", None), error)
        for t in request.topics or ()
    )
    return make(
        mod.MetadataResponse,
        throttle_time=0,
        brokers=(),
        cluster_id=None,
        controller_id=-1,
        topics=topics,
        cluster_authorized_operations=NO_OPERATIONS,
        error_code=error,
    )


def _topic_error(
    mod: Any,
    name: str | None,
    topic_id: Any,
    error: ErrorCode,
    operations: int = NO_OPERATIONS,
) -> Any:
    return make(
        mod.MetadataResponseTopic,
        error_code=error,
        name=name,
        topic_id=topic_id,
        is_internal=False,
        partitions=(),
        topic_authorized_operations=operations,
    )
