"""DescribeGroups (key 15), v0-v6.

As Kafka's GroupMetadataManager.describeGroups: a Stable group shows its protocol and each
member's metadata and assignment; a group in any other state shows members without them. A group
that exists only through committed offsets (a simple consumer's commits) is "Empty" with protocol
type "". A group kpy does not know, or a KIP-848 consumer group (not a classic group), answers
state "Dead": from v6 (KIP-1043) with GROUP_ID_NOT_FOUND and a message saying which, before v6
with no error, as Kafka's KafkaApis downgrades it for older clients.

Authorization (kpy.acl): DESCRIBE on each group, else GROUP_AUTHORIZATION_FAILED for it.
Authorized operations (v3+), when asked, are what the authorizer grants on the group (without
one, every group operation, as Kafka).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from kio.schema.errors import ErrorCode

from kpy import authorized
from kpy.acl import AclOperation, ResourceType
from kpy.coordinator.group import DEAD, EMPTY, STABLE
from kpy.handlers.registry import error_response, handles
from kpy.protocol.messages import make, response_module

if TYPE_CHECKING:
    from kpy.broker import RequestContext

KEY = 15
# The first version that reports an unknown group as GROUP_ID_NOT_FOUND.
NOT_FOUND_VERSION = 6


@handles(KEY)
async def handle(ctx: RequestContext, request: Any) -> Any:
    mod = response_module(KEY, ctx.version)
    broker = ctx.broker
    auth = broker.authorizer
    with_ops = getattr(request, "include_authorized_operations", False)
    described = []
    for group_id in request.groups:
        if not auth.authorize(ctx, AclOperation.DESCRIBE, ResourceType.GROUP, group_id):
            described.append(
                _group(mod, group_id, ErrorCode.group_authorization_failed, "", "", "", ())
            )
            continue
        ops = auth.authorized_operations(ctx, ResourceType.GROUP, group_id) if with_ops else None
        group = broker.groups.groups.get(group_id)
        if group is None:
            if group_id in broker.consumer_groups.groups:
                message = f"Group {group_id} is not a classic group."
                described.append(_not_found(mod, ctx.version, group_id, message, ops))
            elif broker.offsets.has_offsets(group_id):
                described.append(_group(mod, group_id, ErrorCode.none, EMPTY, "", "", (), ops))
            else:
                message = f"Group {group_id} not found."
                described.append(_not_found(mod, ctx.version, group_id, message, ops))
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


def _not_found(mod: Any, version: int, group_id: str, message: str, ops: int | None) -> Any:
    """A group that is not there for DescribeGroups: Dead, and from v6 GROUP_ID_NOT_FOUND.
    Before v6 it is no error, so it has authorized operations (KafkaApis fills them in for the
    groups the coordinator answered without an error)."""
    if version < NOT_FOUND_VERSION:
        return _group(mod, group_id, ErrorCode.none, DEAD, "", "", (), ops)
    return _group(mod, group_id, ErrorCode.group_id_not_found, DEAD, "", "", (), message=message)


def _group(
    mod: Any,
    group_id: str,
    error: ErrorCode,
    state: str,
    protocol_type: str,
    protocol: str | None,
    members: tuple[Any, ...],
    ops: int | None = None,
    message: str | None = None,
) -> Any:
    return make(
        mod.DescribedGroup,
        error_code=error,
        error_message=message,
        group_id=group_id,
        group_state=state,
        protocol_type=protocol_type,
        protocol_data=protocol or "",
        members=members,
        authorized_operations=authorized.NOT_REQUESTED if ops is None else ops,
    )
