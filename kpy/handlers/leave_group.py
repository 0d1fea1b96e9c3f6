"""LeaveGroup (key 13), v0-v5. v0-v2 name one member; v3+ a batch of members, each answered
(FENCED_INSTANCE_ID for a static member named with another member id, UNKNOWN_MEMBER_ID for one
the group does not know). READ on the group is needed (kpy.acl): GROUP_AUTHORIZATION_FAILED."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from kio.schema.errors import ErrorCode

from kpy.acl import AclOperation, ResourceType
from kpy.handlers.registry import error_response, handles
from kpy.protocol.messages import make, response_module

if TYPE_CHECKING:
    from kpy.broker import RequestContext

KEY = 13


@handles(KEY)
async def handle(ctx: RequestContext, request: Any) -> Any:
    if not ctx.broker.authorizer.authorize(
        ctx, AclOperation.READ, ResourceType.GROUP, request.group_id
    ):
        return _error_response(ctx, request, ErrorCode.group_authorization_failed)
    if ctx.version >= 3:
        wanted = [(m.member_id, m.group_instance_id) for m in request.members]
    else:
        wanted = [(request.member_id, None)]
    error, results = ctx.broker.groups.leave_group(request.group_id, wanted)
    if ctx.version < 3 and error is ErrorCode.none and results:
        error = results[0][2]
    return _response(ctx, error, results)


@error_response(KEY)
def _error_response(ctx: RequestContext, request: Any, error: ErrorCode) -> Any:
    return _response(ctx, error, [])


def _response(
    ctx: RequestContext, error: ErrorCode, results: list[tuple[str, str | None, ErrorCode]]
) -> Any:
    mod = response_module(KEY, ctx.version)
    members = (
        tuple(
            make(mod.MemberResponse, member_id=m, group_instance_id=i, error_code=e)
            for m, i, e in results
        )
        if ctx.version >= 3
        else ()
    )
    return make(mod.LeaveGroupResponse, throttle_time=0, error_code=error, members=members)
