"""AlterClientQuotas (key 49), v0-v1: set and remove quotas of users, client ids and IPs
(kafka-configs --alter --add-config/--delete-config producer_byte_rate=...), with the checks
and messages of Kafka's ClientQuotaControlManager; validate_only checks without changing.
Authorization: ALTER_CONFIGS on the cluster, else CLUSTER_AUTHORIZATION_FAILED, as Kafka's
KafkaApis/ControllerApis.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from kio.schema.errors import ErrorCode

from kpy.acl import AclOperation
from kpy.handlers.registry import error_response, handles
from kpy.protocol.messages import make, response_module
from kpy.quotas import Entity, entity_error, normalized, value_error

if TYPE_CHECKING:
    from kpy.broker import RequestContext

KEY = 49


@handles(KEY)
async def handle(ctx: RequestContext, request: Any) -> Any:
    if not ctx.broker.authorizer.authorize_cluster(ctx, AclOperation.ALTER_CONFIGS):
        return _error_response(ctx, request, ErrorCode.cluster_authorization_failed)
    results: dict[Entity, tuple[ErrorCode, str | None]] = {}
    changes: list[tuple[Entity, dict[str, float | None]]] = []
    for entry in request.entries:
        entity: Entity = tuple((e.entity_type, e.entity_name) for e in entry.entity)
        key = normalized(entity)
        ops: dict[str, float | None] = {}
        duplicate_key = False
        for op in entry.ops:
            duplicate_key = duplicate_key or op.key in ops
            ops.setdefault(op.key, None if op.remove else op.value)
        # As Kafka's alterClientQuotas: an entity seen before (or one naming a key twice, whose
        # error that check then overwrites) is answered "Ignoring duplicate entity"; what an
        # earlier entry of the entity changed stands.
        if key in results or duplicate_key:
            results[key] = (ErrorCode.invalid_request, "Ignoring duplicate entity")
            continue
        error = entity_error(entity)
        if error is None:
            for op_key, value in ops.items():
                if value is not None:
                    error = value_error(entity, op_key, value)
                    if error is not None:
                        break
        if error is not None:
            results[key] = (ErrorCode.invalid_request, error)
            continue
        results[key] = (ErrorCode.none, None)
        changes.append((entity, ops))
    if changes and not request.validate_only:
        ctx.broker.quotas.alter(changes)
    return _response(ctx, [(key, code, message) for key, (code, message) in results.items()])


def _response(ctx: RequestContext, entries: list[tuple[Entity, ErrorCode, str | None]]) -> Any:
    mod = response_module(KEY, ctx.version)
    return make(
        mod.AlterClientQuotasResponse,
        throttle_time=0,
        entries=tuple(
            make(
                mod.EntryData,
                error_code=code,
                error_message=message,
                entity=tuple(make(mod.EntityData, entity_type=t, entity_name=n) for t, n in entity),
            )
            for entity, code, message in entries
        ),
    )


@error_response(KEY)
def _error_response(ctx: RequestContext, request: Any, error: ErrorCode) -> Any:
    return _response(
        ctx,
        [
            (tuple((e.entity_type, e.entity_name) for e in entry.entity), error, None)
            for entry in request.entries
        ],
    )
