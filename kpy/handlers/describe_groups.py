"""DescribeGroups (key 15), v0-v5.

As Kafka's GroupMetadataManager.describeGroups: a Stable group shows its protocol and each
member's metadata and assignment; a group in any other state shows members without them; a
group kpy does not know answers state "Dead" with no error. A group that exists only through
committed offsets (a simple consumer's commits) is "Empty" with protocol type "".
Authorized operations are not computed (no ACLs yet).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from kio.schema.errors import ErrorCode

from kpy import authorized
from kpy.coordinator.group import DEAD, EMPTY, STABLE
from kpy.handlers.registry import error_response, handles
from kpy.protocol.messages import make, response_module

if TYPE_CHECKING:
    from kpy.broker import RequestContext

KEY = 15


@handles(KEY, "DescribeGroups", 0, 5)
async def handle(ctx: RequestContext, request: Any) -> Any:
    mod = response_module(KEY, ctx.version)
    broker = ctx.broker
    # Without an authorizer Kafka grants, and reports when asked, every group operation.
    ops = authorized.GROUP if getattr(request, "include_authorized_operations", False) else None
    described = []
    for group_id in request.groups:
        group = broker.groups.groups.get(group_id)
        if group is None:
            state = EMPTY if broker.offsets.has_offsets(group_id) else DEAD
            if group_id in broker.consumer_groups.groups:
                state = DEAD
            described.append(_group(mod, group_id, ErrorCode.none, state, "", "", (), ops))
            continue
        protocol = group.protocol_name if group.state == STABLE else None
        members = tuple(
            make(
                mod.DescribedGroupMember,
                member_id=m.member_id,
                group_instance_id=m.group_instance_id,
                client_id=m.client_id,
                client_host=m.client_host,
                member_metadata=m.metadata(protocol) if protocol else b"",
                member_assignment=m.assignment if protocol else b"",
            )
            for m in group.members.values()
        )
        described.append(
            _group(
                mod,
                group_id,
                ErrorCode.none,
                group.state,
                group.protocol_type or "",
                protocol,
                members,
                ops,
            )
        )
    return make(mod.DescribeGroupsResponse, throttle_time=0, groups=tuple(described))


@error_response(KEY)
def _error_response(ctx: RequestContext, request: Any, error: ErrorCode) -> Any:
    mod = response_module(KEY, ctx.version)
    groups = tuple(_group(mod, g, error, "", "", "", ()) for g in request.groups)
    return make(mod.DescribeGroupsResponse, throttle_time=0, groups=groups)


def _group(
    mod: Any,
    group_id: str,
    error: ErrorCode,
    state: str,
    protocol_type: str,
    protocol: str | None,
    members: tuple[Any, ...],
    ops: int | None = None,
) -> Any:
    return make(
        mod.DescribedGroup,
        error_code=error,
        group_id=group_id,
        group_state=state,
        protocol_type=protocol_type,
        protocol_data=protocol or "",
        members=members,
        authorized_operations=authorized.NOT_REQUESTED if ops is None else ops,
    )
