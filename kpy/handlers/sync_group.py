"""SyncGroup (key 14), v0-v5. The leader's assignments complete the rebalance; the others wait
in GroupCoordinator.sync_group until it does. As KafkaApis: from v5 the protocol type and name
must be there (INCONSISTENT_GROUP_PROTOCOL); then READ on the group is needed (kpy.acl:
GROUP_AUTHORIZATION_FAILED)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from kio.schema.errors import ErrorCode

from kpy.acl import AclOperation, ResourceType
from kpy.coordinator.group import SyncResult
from kpy.handlers.registry import error_response, handles
from kpy.protocol.messages import make, response_module

if TYPE_CHECKING:
    from kpy.broker import RequestContext

KEY = 14


@handles(KEY)
async def handle(ctx: RequestContext, request: Any) -> Any:
    if ctx.version >= 5 and (request.protocol_type is None or request.protocol_name is None):
        return _error_response(ctx, request, ErrorCode.inconsistent_group_protocol)
    if not ctx.broker.authorizer.authorize(
        ctx, AclOperation.READ, ResourceType.GROUP, request.group_id
    ):
        return _error_response(ctx, request, ErrorCode.group_authorization_failed)
    result = await ctx.broker.groups.sync_group(
        group_id=request.group_id,
        generation_id=request.generation_id,
        member_id=request.member_id,
        group_instance_id=getattr(request, "group_instance_id", None),
        protocol_type=getattr(request, "protocol_type", None),
        protocol_name=getattr(request, "protocol_name", None),
        assignments={a.member_id: a.assignment for a in request.assignments},
    )
    return _response(ctx, result)


@error_response(KEY)
def _error_response(ctx: RequestContext, request: Any, error: ErrorCode) -> Any:
    return _response(ctx, SyncResult(error))


def _response(ctx: RequestContext, result: SyncResult) -> Any:
    mod = response_module(KEY, ctx.version)
    return make(
        mod.SyncGroupResponse,
        throttle_time=0,
        error_code=result.error,
        protocol_type=result.protocol_type,
        protocol_name=result.protocol_name,
        assignment=result.assignment,
    )
