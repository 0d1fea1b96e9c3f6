"""FindCoordinator (key 10), v0-v6.

kpy is the coordinator of every group and every transactional id: the answer is always this
broker, at the address of the listener the request came in on. The first lookup of a group
creates ``__consumer_offsets`` (Broker.ensure_offsets_topic), and of a transactional id
``__transaction_state``, as Kafka's does; if that fails the answer is COORDINATOR_NOT_AVAILABLE.
v4+ asks for several keys at once. An empty key or an unknown key type is INVALID_REQUEST.

Authorization (kpy.acl), first, as KafkaApis.getCoordinator: DESCRIBE on the group
(GROUP_AUTHORIZATION_FAILED) or on the transactional id (TRANSACTIONAL_ID_AUTHORIZATION_FAILED);
before v4 an error carries its default message, as Kafka's error response does. The internal
topic is made only for a key the client may look up.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from kio.schema.errors import ErrorCode

from kpy.acl import DENIED_MESSAGES, AclOperation, ResourceType
from kpy.handlers.registry import error_response, handles
from kpy.protocol.messages import make, response_module

if TYPE_CHECKING:
    from kpy.broker import RequestContext

KEY = 10
GROUP, TRANSACTION = 0, 1
DENIED = {
    GROUP: (ResourceType.GROUP, ErrorCode.group_authorization_failed),
    TRANSACTION: (ResourceType.TRANSACTIONAL_ID, ErrorCode.transactional_id_authorization_failed),
}


@handles(KEY)
async def handle(ctx: RequestContext, request: Any) -> Any:
    key_type = getattr(request, "key_type", GROUP)
    keys = request.coordinator_keys if ctx.version >= 4 else (request.key,)
    auth = ctx.broker.authorizer
    denied: dict[str, ErrorCode] = {}
    if auth.enabled and key_type in DENIED:
        resource_type, error = DENIED[key_type]
        allowed = auth.allowed(ctx, AclOperation.DESCRIBE, resource_type, keys)
        denied = {key: error for key in keys if key not in allowed}
    # A group's coordinator needs __consumer_offsets, a transactional id's
    # __transaction_state: made now if it is not there yet.
    ready = True
    wanted = any(key and key not in denied for key in keys)
    if wanted and key_type == GROUP:
        ready = await ctx.broker.ensure_offsets_topic()
    elif wanted and key_type == TRANSACTION:
        ready = await ctx.broker.ensure_transaction_topic()

    def answer(key: str) -> ErrorCode:
        if key in denied:
            return denied[key]
        if key_type not in (GROUP, TRANSACTION) or not key:
            return ErrorCode.invalid_request
        return ErrorCode.none if ready else ErrorCode.coordinator_not_available

    return _respond(ctx, request, answer)


@error_response(KEY)
def _error_response(ctx: RequestContext, request: Any, error: ErrorCode) -> Any:
    return _respond(ctx, request, lambda key: error)


def _respond(ctx: RequestContext, request: Any, answer: Any) -> Any:
    mod = response_module(KEY, ctx.version)
    lst = ctx.broker.advertised_listener(ctx)
    node = ctx.broker.node_id
    if ctx.version >= 4:
        coordinators = []
        for key in request.coordinator_keys:
            error = answer(key)
            ok = error is ErrorCode.none
            coordinators.append(
                make(
                    mod.Coordinator,
                    key=key,
                    node_id=node if ok else -1,
                    host=lst.host if ok else "",
                    port=lst.port if ok else -1,
                    error_code=error,
                    error_message=None,
                )
            )
        return make(mod.FindCoordinatorResponse, throttle_time=0, coordinators=tuple(coordinators))
    error = answer(request.key)
    ok = error is ErrorCode.none
    return make(
        mod.FindCoordinatorResponse,
        throttle_time=0,
        error_code=error,
        error_message=DENIED_MESSAGES.get(error),
        node_id=node if ok else -1,
        host=lst.host if ok else "",
        port=lst.port if ok else -1,
    )
