"""CreateAcls (key 30), v0-v3: add ACLs (kpy.acl), durable before the answer.

As Kafka's AclApis.handleCreateAcls and the controller's AclControlManager: CLUSTER ALTER is
needed (CLUSTER_AUTHORIZATION_FAILED on every creation); without an authorizer every creation
answers SECURITY_DISABLED, "No Authorizer is configured.". A creation with an UNKNOWN (0) code
does not parse in Kafka, which closes the connection; so does kpy. One naming ANY (a filter's
value) as its resource type, operation or permission, or ANY or MATCH as its pattern type,
fails Kafka's whole request with UNKNOWN_SERVER_ERROR. Each other creation is checked on its own
(INVALID_REQUEST: a CLUSTER not named kafka-cluster, an empty name, a code Kafka does not know,
a principal without "type:"), and an ACL that exists already is no error. v0 (which Kafka 4 no
longer serves; kpy serves it as Kafka 3.9 did) creates LITERAL ACLs only.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from kio.schema.errors import ErrorCode

from kpy.acl import (
    AclBinding,
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

KEY = 30
NO_AUTHORIZER_MESSAGE = "No Authorizer is configured."


@handles(KEY)
async def handle(ctx: RequestContext, request: Any) -> Any:
    bindings = [_binding(c) for c in request.creations]
    auth = ctx.broker.authorizer
    if not auth.authorize_cluster(ctx, AclOperation.ALTER):
        return _error_response(ctx, request, ErrorCode.cluster_authorization_failed)
    if not auth.enabled:
        return _respond(ctx, [(ErrorCode.security_disabled, NO_AUTHORIZER_MESSAGE)] * len(bindings))
    if any(_not_a_binding(b) for b in bindings):
        # Kafka's AclBinding refuses these values with IllegalArgumentException, which fails
        # the whole request (its message is not sent).
        return _error_response(ctx, request, ErrorCode.unknown_server_error)
    return _respond(ctx, await auth.create_acls(bindings))


@error_response(KEY)
def _error_response(ctx: RequestContext, request: Any, error: ErrorCode) -> Any:
    return _respond(ctx, [(error, None)] * len(request.creations))


def _binding(creation: Any) -> AclBinding:
    codes = (
        creation.resource_type,
        getattr(creation, "resource_pattern_type", PatternType.LITERAL),  # v0: LITERAL
        creation.operation,
        creation.permission_type,
    )
    if 0 in codes:  # CreateAclsRequest.validate
        raise CloseConnection(f"ACL creation with UNKNOWN elements: {creation}")
    resource_type, pattern_type, operation, permission = codes
    return AclBinding(
        from_code(ResourceType, resource_type),
        creation.resource_name,
        from_code(PatternType, pattern_type),
        creation.principal,
        creation.host,
        from_code(AclOperation, operation),
        from_code(AclPermissionType, permission),
    )


def _not_a_binding(acl: AclBinding) -> bool:
    return (
        acl.resource_type is ResourceType.ANY
        or acl.pattern_type in (PatternType.ANY, PatternType.MATCH)
        or acl.operation is AclOperation.ANY
        or acl.permission is AclPermissionType.ANY
    )


def _respond(ctx: RequestContext, results: list[tuple[ErrorCode, str | None]]) -> Any:
    """A creation that succeeded carries the message "" (the schema's default, which Kafka
    leaves), a failed one its message or null."""
    mod = response_module(KEY, ctx.version)
    return make(
        mod.CreateAclsResponse,
        throttle_time=0,
        results=tuple(
            make(
                mod.AclCreationResult,
                error_code=e,
                error_message="" if e is ErrorCode.none else m,
            )
            for e, m in results
        ),
    )
