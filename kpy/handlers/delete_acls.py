"""DeleteAcls (key 31), v0-v3: remove the ACLs filters match (kpy.acl), durable before the
answer.

As Kafka's AclApis.handleDeleteAcls and the controller's AclControlManager: CLUSTER ALTER is
needed (CLUSTER_AUTHORIZATION_FAILED on every filter); without an authorizer every filter
answers SECURITY_DISABLED, "No Authorizer is configured.". A filter with an UNKNOWN (0) code
does not parse in Kafka, which closes the connection; so does kpy. A filter with a code Kafka
does not know besides 0 is INVALID_REQUEST ("Unknown patternFilter." or "Unknown
entryFilter."). Each filter's answer lists the ACLs it matched, all of which are gone; an ACL
two filters match is listed under both. v0 (which Kafka 4 no longer serves; kpy serves it as
Kafka 3.9 did) matches LITERAL ACLs only.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from kio.schema.errors import ErrorCode

from kpy.acl import AclBinding, AclOperation
from kpy.handlers.describe_acls import request_filter
from kpy.handlers.registry import error_response, handles
from kpy.protocol.messages import make, response_module

if TYPE_CHECKING:
    from kpy.broker import RequestContext

KEY = 31
NO_AUTHORIZER_MESSAGE = "No Authorizer is configured."
Result = tuple[ErrorCode, str | None, list[AclBinding]]


@handles(KEY)
async def handle(ctx: RequestContext, request: Any) -> Any:
    filters = [request_filter(f) for f in request.filters]
    auth = ctx.broker.authorizer
    if not auth.authorize_cluster(ctx, AclOperation.ALTER):
        return _error_response(ctx, request, ErrorCode.cluster_authorization_failed)
    if not auth.enabled:
        disabled: Result = (ErrorCode.security_disabled, NO_AUTHORIZER_MESSAGE, [])
        return _respond(ctx, [disabled] * len(filters))
    return _respond(ctx, await auth.delete_acls(filters))


@error_response(KEY)
def _error_response(ctx: RequestContext, request: Any, error: ErrorCode) -> Any:
    return _respond(ctx, [(error, None, [])] * len(request.filters))


def _respond(ctx: RequestContext, results: list[Result]) -> Any:
    mod = response_module(KEY, ctx.version)
    return make(
        mod.DeleteAclsResponse,
        throttle_time=0,
        filter_results=tuple(
            make(
                mod.DeleteAclsFilterResult,
                error_code=error,
                error_message=message,
                matching_acls=tuple(
                    make(
                        mod.DeleteAclsMatchingAcl,
                        error_code=ErrorCode.none,
                        error_message=None,
                        resource_type=a.resource_type,
                        resource_name=a.name,
                        pattern_type=a.pattern_type,
                        principal=a.principal,
                        host=a.host,
                        operation=a.operation,
                        permission_type=a.permission,
                    )
                    for a in acls
                ),
            )
            for error, message, acls in results
        ),
    )
