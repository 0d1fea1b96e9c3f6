"""DescribeUserScramCredentials (key 50), v0: which SCRAM mechanisms (and iterations) each user
has credentials for, never the credentials themselves.

As Kafka's ScramImage.describe: no users (null or empty) means every user with a credential; a
user named twice gets DUPLICATE_RESOURCE, one without credentials RESOURCE_NOT_FOUND.

Authorization: DESCRIBE on the cluster, else CLUSTER_AUTHORIZATION_FAILED, as Kafka's
KafkaApis/ControllerApis.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from kio.schema.errors import ErrorCode

from kpy.acl import DENIED_MESSAGES, AclOperation
from kpy.handlers.registry import error_response, handles
from kpy.protocol.messages import make, response_module
from kpy.scram import MECHANISM_CODES

if TYPE_CHECKING:
    from kpy.broker import RequestContext

KEY = 50


@handles(KEY)
async def handle(ctx: RequestContext, request: Any) -> Any:
    if not ctx.broker.authorizer.authorize_cluster(ctx, AclOperation.DESCRIBE):
        return _error_response(ctx, request, ErrorCode.cluster_authorization_failed)
    store = ctx.broker.scram
    mod = response_module(KEY, ctx.version)
    duplicate: dict[str, bool] = {}
    if not request.users:
        duplicate = dict.fromkeys(store.users(), False)
    else:
        for user in request.users:
            duplicate[user.name] = user.name in duplicate
    results = []
    for user, twice in duplicate.items():
        if twice:
            results.append(
                make(
                    mod.DescribeUserScramCredentialsResult,
                    user=user,
                    error_code=ErrorCode.duplicate_resource,
                    error_message="Cannot describe SCRAM credentials for the same user twice "
                    f"in a single request: {user}",
                    credential_infos=(),
                )
            )
            continue
        infos = tuple(
            make(mod.CredentialInfo, mechanism=MECHANISM_CODES[mechanism], iterations=c.iterations)
            for mechanism, c in sorted(store.mechanisms(user).items())
        )
        results.append(
            make(
                mod.DescribeUserScramCredentialsResult,
                user=user,
                error_code=ErrorCode.none if infos else ErrorCode.resource_not_found,
                error_message=None
                if infos
                else f"Attempt to describe a user credential that does not exist: {user}",
                credential_infos=infos,
            )
        )
    return make(
        mod.DescribeUserScramCredentialsResponse,
        throttle_time=0,
        error_code=ErrorCode.none,
        error_message=None,
        results=tuple(results),
    )


@error_response(KEY)
def _error_response(ctx: RequestContext, request: Any, error: ErrorCode) -> Any:
    """Kafka's DescribeUserScramCredentialsRequest.getErrorResponse: the error at the top and
    once per user asked about (with no user name)."""
    mod = response_module(KEY, ctx.version)
    message = DENIED_MESSAGES.get(error)
    result = make(
        mod.DescribeUserScramCredentialsResult,
        user="",
        error_code=error,
        error_message=message,
        credential_infos=(),
    )
    return make(
        mod.DescribeUserScramCredentialsResponse,
        throttle_time=0,
        error_code=error,
        error_message=message,
        results=tuple(result for _ in request.users or ()),
    )
