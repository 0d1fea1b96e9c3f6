"""AlterUserScramCredentials (key 51), v0: add, replace and delete users' SCRAM credentials
(kafka-configs --entity-type users --alter --add-config / --delete-config 'SCRAM-SHA-256').

As Kafka's ScramControlManager.alterCredentials: a user altered twice in one request gets
DUPLICATE_RESOURCE, an empty name or too few (< 4096) or too many (> 16384) iterations
UNACCEPTABLE_CREDENTIAL, a mechanism code other than 1 and 2 UNSUPPORTED_SASL_MECHANISM, the
deletion of a credential that does not exist RESOURCE_NOT_FOUND. The client sends a salt and
the salted password; the stored and server keys are derived from them here (kpy.scram).

Authorization: ALTER on the cluster, else CLUSTER_AUTHORIZATION_FAILED, as Kafka's
KafkaApis/ControllerApis.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from kio.schema.errors import ErrorCode

from kpy.acl import DENIED_MESSAGES, AclOperation
from kpy.handlers.registry import error_response, handles
from kpy.protocol.messages import make, response_module
from kpy.scram import (
    MAX_ITERATIONS,
    MECHANISMS,
    MIN_ITERATIONS,
    Credential,
    credential_from_salted_password,
)

if TYPE_CHECKING:
    from kpy.broker import RequestContext

KEY = 51
_TWICE = "A user credential cannot be altered twice in the same request"


def _name_and_mechanism_error(name: str, mechanism: int) -> tuple[ErrorCode, str] | None:
    if not name:
        return ErrorCode.unacceptable_credential, "Username must not be empty"
    if mechanism not in MECHANISMS:
        return ErrorCode.unsupported_sasl_mechanism, "Unknown SCRAM mechanism"
    return None


@handles(KEY)
async def handle(ctx: RequestContext, request: Any) -> Any:
    if not ctx.broker.authorizer.authorize_cluster(ctx, AclOperation.ALTER):
        return _error_response(ctx, request, ErrorCode.cluster_authorization_failed)
    store = ctx.broker.scram
    errors: dict[str, tuple[ErrorCode, str]] = {}
    deletions: dict[str, str] = {}  # user -> mechanism
    upserts: dict[str, tuple[str, Credential]] = {}
    for deletion in request.deletions:
        name = deletion.name
        if name in errors:
            continue
        if deletions.pop(name, None) is not None:
            errors[name] = (ErrorCode.duplicate_resource, _TWICE)
            continue
        error = _name_and_mechanism_error(name, deletion.mechanism)
        if error is None and store.get(name, MECHANISMS[deletion.mechanism]) is None:
            error = (
                ErrorCode.resource_not_found,
                "Attempt to delete a user credential that does not exist",
            )
        if error is not None:
            errors[name] = error
        else:
            deletions[name] = MECHANISMS[deletion.mechanism]
    for upsert in request.upsertions:
        name = upsert.name
        if name in errors:
            continue
        if deletions.pop(name, None) is not None or upserts.pop(name, None) is not None:
            errors[name] = (ErrorCode.duplicate_resource, _TWICE)
            continue
        error = _name_and_mechanism_error(name, upsert.mechanism)
        if error is None and upsert.iterations < MIN_ITERATIONS:
            error = (ErrorCode.unacceptable_credential, "Too few iterations")
        elif error is None and upsert.iterations > MAX_ITERATIONS:
            error = (ErrorCode.unacceptable_credential, "Too many iterations")
        if error is not None:
            errors[name] = error
            continue
        mechanism = MECHANISMS[upsert.mechanism]
        credential = credential_from_salted_password(
            mechanism, bytes(upsert.salt), bytes(upsert.salted_password), upsert.iterations
        )
        upserts[name] = (mechanism, credential)
    if deletions or upserts:
        store.apply(list(deletions.items()), [(name, m, c) for name, (m, c) in upserts.items()])
    mod = response_module(KEY, ctx.version)
    results = [
        make(
            mod.AlterUserScramCredentialsResult,
            user=name,
            error_code=ErrorCode.none,
            error_message=None,
        )
        for name in [*deletions, *upserts]
    ]
    results.extend(
        make(mod.AlterUserScramCredentialsResult, user=name, error_code=code, error_message=msg)
        for name, (code, msg) in errors.items()
    )
    return make(mod.AlterUserScramCredentialsResponse, throttle_time=0, results=tuple(results))


@error_response(KEY)
def _error_response(ctx: RequestContext, request: Any, error: ErrorCode) -> Any:
    """Kafka's AlterUserScramCredentialsRequest.getErrorResponse: the error for each user
    named, in name order."""
    mod = response_module(KEY, ctx.version)
    names = sorted({d.name for d in request.deletions} | {u.name for u in request.upsertions})
    message = DENIED_MESSAGES.get(error)
    return make(
        mod.AlterUserScramCredentialsResponse,
        throttle_time=0,
        results=tuple(
            make(
                mod.AlterUserScramCredentialsResult,
                user=n,
                error_code=error,
                error_message=message,
            )
            for n in names
        ),
    )
