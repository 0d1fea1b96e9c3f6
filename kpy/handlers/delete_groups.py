"""DeleteGroups (key 42), v0-v2.

A group can be deleted when it has no members (Empty, or known only through its committed
offsets); its offsets are deleted with it (tombstones in __consumer_offsets). A group with
members is NON_EMPTY_GROUP, one kpy does not know GROUP_ID_NOT_FOUND, an empty id
INVALID_GROUP_ID, as Kafka answers. Each group needs DELETE (kpy.acl), else
GROUP_AUTHORIZATION_FAILED, before anything else is looked at.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from kio.schema.errors import ErrorCode

from kpy.acl import AclOperation, ResourceType
from kpy.handlers.registry import error_response, handles
from kpy.protocol.messages import make, response_module

if TYPE_CHECKING:
    from kpy.broker import RequestContext

KEY = 42


@handles(KEY)
async def handle(ctx: RequestContext, request: Any) -> Any:
    broker = ctx.broker
    results = []
    auth = broker.authorizer
    for group_id in request.groups_names:
        if not auth.authorize(ctx, AclOperation.DELETE, ResourceType.GROUP, group_id):
            results.append((group_id, ErrorCode.group_authorization_failed))
            continue
        if not group_id:
            results.append((group_id, ErrorCode.invalid_group_id))
            continue
        known = group_id in broker.groups.groups
        consumer = group_id in broker.consumer_groups.groups
        if not known and not consumer and not broker.offsets.has_offsets(group_id):
            results.append((group_id, ErrorCode.group_id_not_found))
            continue
        if consumer:
            error = broker.consumer_groups.delete_group(group_id)
            if error is not ErrorCode.none:
                results.append((group_id, error))
                continue
        if known:
            error = broker.groups.delete_group(group_id)
            if error is not ErrorCode.none:
                results.append((group_id, error))
                continue
        try:
            broker.offsets.delete_group(group_id)
        except Exception:
            results.append((group_id, ErrorCode.kafka_storage_error))
            continue
        results.append((group_id, ErrorCode.none))
    return _response(ctx, results)


@error_response(KEY)
def _error_response(ctx: RequestContext, request: Any, error: ErrorCode) -> Any:
    return _response(ctx, [(g, error) for g in request.groups_names])


def _response(ctx: RequestContext, results: list[tuple[str, ErrorCode]]) -> Any:
    mod = response_module(KEY, ctx.version)
    return make(
        mod.DeleteGroupsResponse,
        throttle_time=0,
        results=tuple(make(mod.DeletableGroupResult, group_id=g, error_code=e) for g, e in results),
    )
