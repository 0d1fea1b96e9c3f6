"""DeleteTopics (key 20), v1-v6 (v6 names topics by name or by id).

The topic disappears from metadata at once and its partition directories are renamed and
removed. Waiting fetches for it end at their deadline with UNKNOWN_TOPIC_OR_PARTITION. Request
checks as Kafka's controller makes them: delete.topic.enable, duplicate names or ids, a topic
given by both name and id or by neither.

Authorization (kpy.acl), as Kafka's controller (ControllerApis.deleteTopics): DELETE on the
cluster allows every topic; otherwise a topic needs DELETE on itself, else
TOPIC_AUTHORIZATION_FAILED. A topic named without DESCRIBE is refused before whether it exists
is looked at; a topic given by id comes back without its name unless the client may DESCRIBE
it.
"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, Any

from kio.schema.errors import ErrorCode

from kpy.acl import DENIED_MESSAGES, AclOperation, ResourceType
from kpy.handlers.registry import error_response, handles
from kpy.protocol.messages import make, response_module

if TYPE_CHECKING:
    from kpy.broker import RequestContext

KEY = 20


@handles(KEY)
async def handle(ctx: RequestContext, request: Any) -> Any:
    broker = ctx.broker
    mod = response_module(KEY, ctx.version)
    if ctx.version >= 6:
        wanted = [(t.name, t.topic_id) for t in request.topics]
    else:
        wanted = [(name, None) for name in request.topic_names]
    if not broker.config.get_bool("delete.topic.enable"):
        error = ErrorCode.topic_deletion_disabled if ctx.version >= 3 else ErrorCode.invalid_request
        results = [_result(mod, name, topic_id, error) for name, topic_id in wanted]
        return make(mod.DeleteTopicsResponse, throttle_time=0, responses=tuple(results))
    names = Counter(n for n, _ in wanted if n is not None)
    ids = Counter(i for _, i in wanted if i is not None)
    auth = broker.authorizer
    everything = auth.authorize_cluster(ctx, AclOperation.DELETE, log_denied=False)

    def may(operation: AclOperation, topic: str) -> bool:
        return everything or auth.authorize(ctx, operation, ResourceType.TOPIC, topic)

    denied = ErrorCode.topic_authorization_failed
    results = []
    for name, topic_id in wanted:
        if name is not None and topic_id is not None:
            message = "You may not specify both topic name and topic id."
            results.append(_result(mod, name, topic_id, ErrorCode.invalid_request, message))
            continue
        if name is None and topic_id is None:
            message = "Neither topic name nor id were specified."
            results.append(_result(mod, name, topic_id, ErrorCode.invalid_request, message))
            continue
        if (name is not None and names[name] > 1) or (topic_id is not None and ids[topic_id] > 1):
            message = "Duplicate topic name." if name is not None else "Duplicate topic id."
            results.append(_result(mod, name, topic_id, ErrorCode.invalid_request, message))
            continue
        if name is None:
            info = broker.logs.topic_by_id(topic_id)
            if info is None:
                results.append(_result(mod, None, topic_id, ErrorCode.unknown_topic_id))
                continue
            if not may(AclOperation.DELETE, info.name):
                shown = info.name if may(AclOperation.DESCRIBE, info.name) else None
                results.append(_result(mod, shown, topic_id, denied, DENIED_MESSAGES[denied]))
                continue
            name = info.name
        elif not may(AclOperation.DESCRIBE, name) or (
            broker.logs.topic(name) is not None and not may(AclOperation.DELETE, name)
        ):
            results.append(_result(mod, name, topic_id, denied, DENIED_MESSAGES[denied]))
            continue
        info = broker.logs.topic(name)
        if info is None or not await broker.delete_topic(name):
            results.append(_result(mod, name, topic_id, ErrorCode.unknown_topic_or_partition))
            continue
        results.append(_result(mod, info.name, info.topic_id, ErrorCode.none))
    return make(mod.DeleteTopicsResponse, throttle_time=0, responses=tuple(results))


@error_response(KEY)
def _error_response(ctx: RequestContext, request: Any, error: ErrorCode) -> Any:
    mod = response_module(KEY, ctx.version)
    if ctx.version >= 6:
        wanted = [(t.name, t.topic_id) for t in request.topics]
    else:
        wanted = [(name, None) for name in request.topic_names]
    results = tuple(_result(mod, name, topic_id, error) for name, topic_id in wanted)
    return make(mod.DeleteTopicsResponse, throttle_time=0, responses=results)


def _result(
    mod: Any, name: str | None, topic_id: Any, error: ErrorCode, message: str | None = None
) -> Any:
    return make(
        mod.DeletableTopicResult,
        name=name,
        topic_id=topic_id,
        error_code=error,
        error_message=message,
    )
