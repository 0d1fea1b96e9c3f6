"""ListGroups (key 16), v0-v5.

Every group the coordinator knows, plus the groups that exist only through committed offsets
(state Empty, protocol type ""), as Kafka lists them. v4+ filters by state (case-insensitive,
as Kafka compares them), v5+ by type: every kpy group is "classic" for now.

Authorization (kpy.acl), as KafkaApis: with DESCRIBE on the cluster every group is listed;
otherwise only the groups the client may DESCRIBE.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from kio.schema.errors import ErrorCode

from kpy.acl import AclOperation, ResourceType
from kpy.coordinator.group import DEAD, EMPTY
from kpy.handlers.registry import error_response, handles
from kpy.protocol.messages import make, response_module

if TYPE_CHECKING:
    from kpy.broker import RequestContext

KEY = 16
CLASSIC = "classic"
CONSUMER = "consumer"


@handles(KEY)
async def handle(ctx: RequestContext, request: Any) -> Any:
    mod = response_module(KEY, ctx.version)
    broker = ctx.broker
    found: dict[str, tuple[str, str, str]] = {
        group_id: (EMPTY, "", CLASSIC) for group_id in broker.offsets.groups()
    }
    for group in broker.groups.groups.values():
        if group.state != DEAD:
            found[group.group_id] = (group.state, group.protocol_type or "", CLASSIC)
    for cgroup in broker.consumer_groups.groups.values():
        found[cgroup.group_id] = (cgroup.state, "consumer", CONSUMER)
    auth = broker.authorizer
    if auth.enabled and not auth.authorize_cluster(ctx, AclOperation.DESCRIBE, log_denied=False):
        visible = auth.allowed(
            ctx, AclOperation.DESCRIBE, ResourceType.GROUP, found, log_denied=False
        )
        found = {g: listed for g, listed in found.items() if g in visible}
    states = {s.lower() for s in getattr(request, "states_filter", ())}
    types = {t.lower() for t in getattr(request, "types_filter", ())}
    listed = tuple(
        make(
            mod.ListedGroup,
            group_id=group_id,
            protocol_type=protocol_type,
            group_state=state,
            group_type=group_type,
        )
        for group_id, (state, protocol_type, group_type) in sorted(found.items())
        if (not states or state.lower() in states) and (not types or group_type in types)
    )
    return make(mod.ListGroupsResponse, throttle_time=0, error_code=ErrorCode.none, groups=listed)


@error_response(KEY)
def _error_response(ctx: RequestContext, request: Any, error: ErrorCode) -> Any:
    mod = response_module(KEY, ctx.version)
    return make(mod.ListGroupsResponse, throttle_time=0, error_code=error, groups=())
