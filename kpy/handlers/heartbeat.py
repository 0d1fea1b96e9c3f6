"""Heartbeat (key 12), v0-v4: keeps a member's session; REBALANCE_IN_PROGRESS tells it to rejoin.
READ on the group is needed (kpy.acl): GROUP_AUTHORIZATION_FAILED."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from kio.schema.errors import ErrorCode

from kpy.acl import AclOperation, ResourceType
from kpy.handlers.registry import error_response, handles
from kpy.protocol.messages import make, response_module

if TYPE_CHECKING:
    from kpy.broker import RequestContext

KEY = 12


@handles(KEY)
async def handle(ctx: RequestContext, request: Any) -> Any:
    if not ctx.broker.authorizer.authorize(
        ctx, AclOperation.READ, ResourceType.GROUP, request.group_id
    ):
        return _error_response(ctx, request, ErrorCode.group_authorization_failed)
    error = ctx.broker.groups.heartbeat(
        group_id=request.group_id,
        generation_id=request.generation_id,
        member_id=request.member_id,
        group_instance_id=getattr(request, "group_instance_id", None),
    )
    return _error_response(ctx, request, error)


@error_response(KEY)
def _error_response(ctx: RequestContext, request: Any, error: ErrorCode) -> Any:
    return make(
        response_module(KEY, ctx.version).HeartbeatResponse, throttle_time=0, error_code=error
    )
