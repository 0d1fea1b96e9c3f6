"""AlterConfigs (key 33), v0-v2: replace all the dynamic settings of a topic or of the broker
(its id, or "" for the cluster default); settings left out return to their defaults.

Older kafka-configs and some clients send this. Checks and errors are Kafka's; see
kpy.config_admin, also for authorization (ALTER_CONFIGS). Broker loggers are not a resource this
API takes (INVALID_REQUEST).
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

KEY = 33


@handles(KEY)
async def handle(ctx: RequestContext, request: Any) -> Any:
    resources = [
        (
            int(r.resource_type),
            r.resource_name,
            [(c.name, c.value, config_admin.SET) for c in r.configs],
        )
        for r in request.resources
    ]
    errors = config_admin.preprocess(resources)
    results = []
    for i, (kind, name, items) in enumerate(resources):
        error = errors.get(i)
        if error is None:
            compute = config_admin.replace({key: value or "" for key, value, _ in items})
            refused = config_admin.denied(ctx, AclOperation.ALTER_CONFIGS, kind, name)
            try:
                if kind == configs.TOPIC:
                    if refused is not None:
                        raise refused
                    await config_admin.alter_topic(ctx.broker, name, compute, request.validate_only)
                elif kind == configs.BROKER:
                    await config_admin.alter_broker(
                        ctx.broker, name, compute, request.validate_only, refused
                    )
                elif refused is not None:
                    raise refused
                else:
                    raise AdminError(ErrorCode.invalid_request, f"Unknown resource type {kind}")
            except AdminError as e:
                error = e
        results.append(config_admin.outcome(kind, name, error))
    return config_admin.response(ctx, KEY, results)


@error_response(KEY)
def _error_response(ctx: RequestContext, request: Any, error: ErrorCode) -> Any:
    return config_admin.response(ctx, KEY, config_admin.error_results(request, error))
