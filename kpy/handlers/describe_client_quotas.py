"""DescribeClientQuotas (key 48), v0-v1: the quotas of the entities a filter matches
(kafka-configs --describe --entity-type users|clients|ips), as Kafka's ClientQuotasImage.describe;
a filter Kafka refuses answers its error (INVALID_REQUEST, or UNSUPPORTED_VERSION for an unknown
entity type) with the message.
Authorization: DESCRIBE_CONFIGS on the cluster, else CLUSTER_AUTHORIZATION_FAILED, as Kafka's
KafkaApis/ControllerApis.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from kio.schema.errors import ErrorCode

from kpy.acl import AclOperation
from kpy.handlers.registry import error_response, handles
from kpy.protocol.messages import make, response_module
from kpy.quotas import QuotaError, UnsupportedEntityType

if TYPE_CHECKING:
    from kpy.broker import RequestContext

KEY = 48


@handles(KEY)
async def handle(ctx: RequestContext, request: Any) -> Any:
    if not ctx.broker.authorizer.authorize_cluster(ctx, AclOperation.DESCRIBE_CONFIGS):
        return _error_response(ctx, request, ErrorCode.cluster_authorization_failed)
    mod = response_module(KEY, ctx.version)
    components = [(c.entity_type, c.match_type, c.match) for c in request.components]
    try:
        found = ctx.broker.quotas.describe(components, request.strict)
    except UnsupportedEntityType as e:
        return _answer(mod, ErrorCode.unsupported_version, str(e), None)
    except QuotaError as e:
        return _answer(mod, ErrorCode.invalid_request, str(e), None)
    entries = tuple(
        make(
            mod.EntryData,
            entity=tuple(make(mod.EntityData, entity_type=t, entity_name=n) for t, n in entity),
            values=tuple(make(mod.ValueData, key=k, value=v) for k, v in values.items()),
        )
        for entity, values in found
    )
    return _answer(mod, ErrorCode.none, None, entries)


def _answer(
    mod: Any, error: ErrorCode, message: str | None, entries: tuple[Any, ...] | None
) -> Any:
    return make(
        mod.DescribeClientQuotasResponse,
        throttle_time=0,
        error_code=error,
        error_message=message,
        entries=entries,
    )


@error_response(KEY)
def _error_response(ctx: RequestContext, request: Any, error: ErrorCode) -> Any:
    return _answer(response_module(KEY, ctx.version), error, None, None)
