"""DescribeAcls (key 29), v0-v3: the ACLs a filter matches (kpy.acl).

As Kafka's AclApis.handleDescribeAcls: CLUSTER DESCRIBE is needed (CLUSTER_AUTHORIZATION_FAILED);
without an authorizer the answer is SECURITY_DISABLED, "No Authorizer is configured on the
broker". A filter with an UNKNOWN (0) resource type, pattern type, operation or permission type
does not parse in Kafka, which closes the connection; so does kpy. The ACLs come grouped by
resource pattern, in kpy.acl's order (Kafka's order is a hash map's). v0 (which Kafka 4 no longer
serves; kpy serves it as Kafka 3.9 did) has no pattern type: its filters and ACLs are LITERAL.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from kio.schema.errors import ErrorCode

from kpy.acl import (
    AclBinding,
    AclBindingFilter,
    AclOperation,
    AclPermissionType,
    PatternType,
    ResourceType,
    from_code,
)
from kpy.handlers.registry import CloseConnection, error_response, handles
from kpy.protocol.messages import make, response_module

if TYPE_CHECKING:
    from kpy.broker import RequestContext

KEY = 29
NO_AUTHORIZER_MESSAGE = "No Authorizer is configured on the broker"


@handles(KEY)
async def handle(ctx: RequestContext, request: Any) -> Any:
    acl_filter = request_filter(request)
    auth = ctx.broker.authorizer
    if not auth.authorize_cluster(ctx, AclOperation.DESCRIBE):
        return _error_response(ctx, request, ErrorCode.cluster_authorization_failed)
    if not auth.enabled:
        return _respond(ctx, ErrorCode.security_disabled, NO_AUTHORIZER_MESSAGE, [])
    # Kafka leaves the message at the schema's default, "", when there is no error.
    return _respond(ctx, ErrorCode.none, "", auth.acls(acl_filter))


@error_response(KEY)
def _error_response(ctx: RequestContext, request: Any, error: ErrorCode) -> Any:
    return _respond(ctx, error, None, [])


def request_filter(request: Any) -> AclBindingFilter:
    """The filter a DescribeAcls request or a DeleteAcls filter carries; CloseConnection for an
    UNKNOWN (0) code, which Kafka's request parsing refuses (DescribeAclsRequest and
    DeleteAclsRequest.normalizeAndValidate). A code Kafka does not know besides 0 becomes
    UNKNOWN and matches nothing, as there."""
    codes = (
        request.resource_type_filter,
        getattr(request, "pattern_type_filter", PatternType.LITERAL),  # v0: LITERAL
        request.operation,
        request.permission_type,
    )
    if 0 in codes:
        raise CloseConnection(f"ACL filter with UNKNOWN elements: {request}")
    resource_type, pattern_type, operation, permission = codes
    return AclBindingFilter(
        from_code(ResourceType, resource_type),
        request.resource_name_filter,
        from_code(PatternType, pattern_type),
        request.principal_filter,
        request.host_filter,
        from_code(AclOperation, operation),
        from_code(AclPermissionType, permission),
    )


def _respond(
    ctx: RequestContext, error: ErrorCode, message: str | None, acls: list[AclBinding]
) -> Any:
    """DescribeAclsResponse.aclsResources: one entry per resource pattern with its ACLs."""
    mod = response_module(KEY, ctx.version)
    by_pattern: dict[tuple[ResourceType, str, PatternType], list[AclBinding]] = {}
    for acl in acls:
        by_pattern.setdefault((acl.resource_type, acl.name, acl.pattern_type), []).append(acl)
    resources = tuple(
        make(
            mod.DescribeAclsResource,
            resource_type=resource_type,
            resource_name=name,
            pattern_type=pattern_type,
            acls=tuple(
                make(
                    mod.AclDescription,
                    principal=a.principal,
                    host=a.host,
                    operation=a.operation,
                    permission_type=a.permission,
                )
                for a in entries
            ),
        )
        for (resource_type, name, pattern_type), entries in by_pattern.items()
    )
    return make(
        mod.DescribeAclsResponse,
        throttle_time=0,
        error_code=error,
        error_message=message,
        resources=resources,
    )
