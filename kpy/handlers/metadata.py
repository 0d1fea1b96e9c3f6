"""Metadata (key 3), v0-v13.

One broker, which leads every partition with leader epoch 0 (the epoch written into stored
batches too, so that epochs agree everywhere). Topics are auto-created when the request allows it
(v4+) and auto.create.topics.enable is true; unlike Kafka, which answers LEADER_NOT_AVAILABLE
while the controller creates the topic, kpy creates it before answering and returns it ready.
Authorization (kpy.acl), as KafkaApis.handleTopicMetadataRequest: a topic needs DESCRIBE. The
all-topics request leaves out the topics the client may not describe; a named one answers
TOPIC_AUTHORIZATION_FAILED (zero topic id, or by id: no name), without saying whether it
exists. Auto-creating a topic needs CREATE on the cluster or on the topic, else
TOPIC_AUTHORIZATION_FAILED. Authorized operations (v8+), when asked, are what the authorizer
grants on the resource (without one, every operation, as Kafka); cluster operations can be
asked for up to v10 only, and are 0 without DESCRIBE on the cluster.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

from kio.schema.errors import ErrorCode

from kpy import authorized
from kpy.acl import CLUSTER_NAME, AclOperation, ResourceType
from kpy.handlers.registry import error_response, handles
from kpy.protocol.messages import make, response_module
from kpy.topics import is_internal, name_error

if TYPE_CHECKING:
    from kpy.broker import RequestContext

KEY = 3
NO_OPERATIONS = authorized.NOT_REQUESTED
ZERO_UUID = uuid.UUID(int=0)


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

    auth = broker.authorizer
    all_topics = request.topics is None or (ctx.version == 0 and not request.topics)
    if all_topics:
        wanted = [(t.name, None) for t in logs.topics()]
        if auth.enabled:
            names = [n for n, _ in wanted]
            visible = auth.allowed(
                ctx, AclOperation.DESCRIBE, ResourceType.TOPIC, names, log_denied=False
            )
            wanted = [(n, i) for n, i in wanted if n in visible]
    else:
        wanted = [(t.name, getattr(t, "topic_id", None)) for t in request.topics]
    auto_create = broker.config.get_bool("auto.create.topics.enable") and getattr(
        request, "allow_auto_topic_creation", True
    )
    with_topic_operations = getattr(request, "include_topic_authorized_operations", False)

    def topic_operations(topic: str) -> int:
        if not with_topic_operations:
            return NO_OPERATIONS
        return auth.authorized_operations(ctx, ResourceType.TOPIC, topic)

    cluster_operations = NO_OPERATIONS
    if getattr(request, "include_cluster_authorized_operations", False):
        cluster_operations = 0
        if auth.authorize_cluster(ctx, AclOperation.DESCRIBE):
            cluster_operations = auth.authorized_operations(ctx, ResourceType.CLUSTER, CLUSTER_NAME)
    may_create_all: bool | None = None  # CREATE on the cluster, asked once when needed
    denied = ErrorCode.topic_authorization_failed

    topics = []
    for name, topic_id in wanted:
        info = None
        if name is None and topic_id is not None:
            info = logs.topic_by_id(topic_id)
            if info is None:
                topics.append(_topic_error(mod, None, topic_id, ErrorCode.unknown_topic_id))
                continue
            if not all_topics and not auth.authorize(
                ctx, AclOperation.DESCRIBE, ResourceType.TOPIC, info.name
            ):
                # Topic ids are not secret: the id comes back, the name does not.
                topics.append(_topic_error(mod, None, topic_id, denied))
                continue
        else:
            if not all_topics and not auth.authorize(
                ctx, AclOperation.DESCRIBE, ResourceType.TOPIC, name
            ):
                topics.append(_topic_error(mod, name, ZERO_UUID, denied))
                continue
            if auto_create and auth.enabled and logs.topic(name) is None:
                if may_create_all is None:
                    may_create_all = auth.authorize_cluster(
                        ctx, AclOperation.CREATE, log_denied=False
                    )
                if not may_create_all and not auth.authorize(
                    ctx, AclOperation.CREATE, ResourceType.TOPIC, name
                ):
                    topics.append(_topic_error(mod, name, ZERO_UUID, denied, internal=True))
                    continue
            if name_error(name) is not None:
                topics.append(
                    _topic_error(
                        mod, name, None, ErrorCode.invalid_topic_exception, topic_operations(name)
                    )
                )
                continue
            info = logs.topic(name)
            if info is None and auto_create and not is_internal(name):
                error = (await broker.create_topic(name, -1, -1, {})).error
                if error not in (ErrorCode.none, ErrorCode.topic_already_exists):
                    topics.append(_topic_error(mod, name, None, error, topic_operations(name)))
                    continue
                info = logs.topic(name)
            if info is None:
                error = ErrorCode.unknown_topic_or_partition
                topics.append(_topic_error(mod, name, None, error, topic_operations(name)))
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
                topic_authorized_operations=topic_operations(info.name),
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
    *,
    internal: bool = False,
) -> Any:
    """A topic answered with an error; ``internal``: is_internal tells whether the name is an
    internal topic's (Kafka does so for a topic it may not create)."""
    return make(
        mod.MetadataResponseTopic,
        error_code=error,
        name=name,
        topic_id=topic_id,
        is_internal=internal and name is not None and is_internal(name),
        partitions=(),
        topic_authorized_operations=operations,
    )
