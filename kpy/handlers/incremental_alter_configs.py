"""IncrementalAlterConfigs (key 44), v0-v1: set, delete, append to or subtract from single
settings of topics, the broker (its id, or "" for the cluster default) and broker loggers.

kafka-configs --alter sends this. Checks and errors are Kafka's, in Kafka's order; see
kpy.config_admin, also for authorization (ALTER_CONFIGS).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from kio.schema.errors import ErrorCode

from kpy import config_admin, configs
from kpy.acl import AclOperation
from kpy.config_admin import AdminError
from kpy.handlers.registry import error_response, handles

if TYPE_CHECKING:
    from kpy.broker import RequestContext

KEY = 44


@handles(KEY)
async def handle(ctx: RequestContext, request: Any) -> Any:
    resources = [
        (
            int(r.resource_type),
            r.resource_name,
            [(c.name, c.value, int(c.config_operation)) for c in r.configs],
        )
        for r in request.resources
    ]
    errors = config_admin.preprocess(resources)
    results = []
    for i, (kind, name, items) in enumerate(resources):
        error = errors.get(i)
        if error is None:
            ops = [(key, op, value) for key, value, op in items]
            try:
                await _alter(ctx, kind, name, ops, bool(request.validate_only))
            except AdminError as e:
                error = e
        results.append(config_admin.outcome(kind, name, error))
    return config_admin.response(ctx, KEY, results)


async def _alter(
    ctx: RequestContext, kind: int, name: str, ops: list[config_admin.Op], validate_only: bool
) -> None:
    broker = ctx.broker
    refused = config_admin.denied(ctx, AclOperation.ALTER_CONFIGS, kind, name)
    if kind == configs.BROKER:
        compute = config_admin.incremental(ops, kind)
        await config_admin.alter_broker(broker, name, compute, validate_only, refused)
    elif refused is not None:
        raise refused
    elif kind == configs.TOPIC:
        compute = config_admin.incremental(ops, kind)
        await config_admin.alter_topic(broker, name, compute, validate_only)
    elif kind == configs.BROKER_LOGGER:
        config_admin.alter_loggers(broker, name, ops, validate_only)
    else:
        raise AdminError(ErrorCode.invalid_request, f"Unknown resource type {kind}")


@error_response(KEY)
def _error_response(ctx: RequestContext, request: Any, error: ErrorCode) -> Any:
    return config_admin.response(ctx, KEY, config_admin.error_results(request, error))
