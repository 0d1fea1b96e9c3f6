"""JoinGroup (key 11), v0-v9. The work is GroupCoordinator.join_group's; the request waits there
until the rebalance it joins completes. v0 has no rebalance timeout (the session timeout serves);
v4+ members without an id first get MEMBER_ID_REQUIRED (KIP-394); from v9 a static leader
returning to a Stable group is told it leads but must skip the assignment (KIP-814), before v9
it is answered as a follower. READ on the group is needed (kpy.acl): GROUP_AUTHORIZATION_FAILED,
in Kafka's error response (no member id, generation -1)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from kio.schema.errors import ErrorCode

from kpy.acl import AclOperation, ResourceType
from kpy.coordinator.group import JoinResult
from kpy.handlers.registry import error_response, handles
from kpy.protocol.messages import make, response_module

if TYPE_CHECKING:
    from kpy.broker import RequestContext

KEY = 11


@handles(KEY)
async def handle(ctx: RequestContext, request: Any) -> Any:
    if not ctx.broker.authorizer.authorize(
        ctx, AclOperation.READ, ResourceType.GROUP, request.group_id
    ):
        return _error_response(ctx, request, ErrorCode.group_authorization_failed)
    session_ms = int(request.session_timeout.total_seconds() * 1000)
    rebalance = getattr(request, "rebalance_timeout", None)
    result = await ctx.broker.groups.join_group(
        group_id=request.group_id,
        member_id=request.member_id,
        group_instance_id=getattr(request, "group_instance_id", None),
        client_id=ctx.header.client_id or "",
        client_host="/" + ctx.peer.rsplit(":", 1)[0],
        session_timeout_ms=session_ms,
        rebalance_timeout_ms=session_ms
        if rebalance is None
        else int(rebalance.total_seconds() * 1000),
        protocol_type=request.protocol_type,
        protocols=[(p.name, p.metadata) for p in request.protocols],
        require_known_member_id=ctx.version >= 4,
        supports_skip_assignment=ctx.version >= 9,
    )
    return _response(ctx, result)


@error_response(KEY)
def _error_response(ctx: RequestContext, request: Any, error: ErrorCode) -> Any:
    # JoinGroupRequest.getErrorResponse: the member id is UNKNOWN_MEMBER_ID ("").
    return _response(ctx, JoinResult(error))


def _response(ctx: RequestContext, result: JoinResult) -> Any:
    mod = response_module(KEY, ctx.version)
    members = tuple(
        make(mod.JoinGroupResponseMember, member_id=m, group_instance_id=i, metadata=meta)
        for m, i, meta in result.members
    )
    return make(
        mod.JoinGroupResponse,
        throttle_time=0,
        error_code=result.error,
        generation_id=result.generation_id,
        protocol_type=result.protocol_type,
        # Before v7 the protocol name is not nullable: an empty string stands for none.
        protocol_name=result.protocol_name if ctx.version >= 7 else result.protocol_name or "",
        leader=result.leader,
        skip_assignment=result.skip_assignment,
        member_id=result.member_id,
        members=members,
    )
