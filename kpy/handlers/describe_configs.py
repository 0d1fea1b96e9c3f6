"""DescribeConfigs (key 32), v1-v4: topic, broker and broker-logger configs.

Results are built as Kafka's ConfigHelper builds them (see kpy.configs): every config of the
resource, or only ``configuration_keys`` when given; synonyms only when asked for; config types
and documentation from v3. Errors per resource as Kafka gives them: UNKNOWN_TOPIC_OR_PARTITION,
INVALID_TOPIC_EXCEPTION, INVALID_REQUEST for another broker's id or an unknown resource type.
Before those, DESCRIBE_CONFIGS (kpy.acl) on the cluster for broker, broker-logger and client
metrics resources, on the topic or the group: CLUSTER_, TOPIC_ or GROUP_AUTHORIZATION_FAILED,
with its default message and no configs, as Kafka's ConfigHelper answers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from kio.schema.errors import ErrorCode

from kpy import config_admin, configs, loggers
from kpy.acl import AclOperation
from kpy.handlers.registry import error_response, handles
from kpy.protocol.messages import make, response_module
from kpy.storage.config import ConfigType
from kpy.topics import name_error

if TYPE_CHECKING:
    from kpy.broker import RequestContext

KEY = 32
CLIENT_METRICS = 16
GROUP = 32


class ResourceError(Exception):
    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code


@handles(KEY)
async def handle(ctx: RequestContext, request: Any) -> Any:
    mod = response_module(KEY, ctx.version)
    synonyms = bool(getattr(request, "include_synonyms", False))
    docs = bool(getattr(request, "include_documentation", False))
    results = []
    for resource in request.resources:
        kind, name = int(resource.resource_type), resource.resource_name
        refused = config_admin.denied(ctx, AclOperation.DESCRIBE_CONFIGS, kind, name)
        if refused is not None:
            results.append(_result(mod, resource, refused.code, refused.message, []))
            continue
        try:
            entries = _entries(ctx, kind, name)
        except ResourceError as e:
            results.append(_result(mod, resource, e.code, str(e), []))
            continue
        keys = resource.configuration_keys
        if keys:
            entries = [e for e in entries if e.name in keys]
        configs_out = [_config(mod, e, synonyms, docs) for e in entries]
        results.append(_result(mod, resource, ErrorCode.none, None, configs_out))
    return make(mod.DescribeConfigsResponse, throttle_time=0, results=tuple(results))


def _entries(ctx: RequestContext, kind: int, name: str) -> list[configs.Entry]:
    broker = ctx.broker
    if kind == configs.TOPIC:
        problem = name_error(name)
        if problem is not None:
            raise ResourceError(ErrorCode.invalid_topic_exception, problem)
        info = broker.logs.topic(name)
        if info is None:
            raise ResourceError(
                ErrorCode.unknown_topic_or_partition, _message(ErrorCode.unknown_topic_or_partition)
            )
        effective = broker.logs.topic_config(name).to_properties()
        return configs.describe_topic(broker.config, info.configs, effective)
    if kind == configs.BROKER:
        if not name:
            return configs.describe_broker(broker.config, per_broker=False)
        _check_node(
            ctx,
            name,
            "Broker id must be an integer, but it is: ",
            f"Unexpected broker id, expected {broker.node_id} or empty string, but received {name}",
        )
        return configs.describe_broker(broker.config, per_broker=True)
    if kind == configs.BROKER_LOGGER:
        if not name:
            raise ResourceError(ErrorCode.invalid_request, "Broker id must not be empty")
        _check_node(
            ctx,
            name,
            "Broker id must be an integer, but it is: ",
            f"Unexpected broker id, expected {broker.node_id} but received {name}",
        )
        return [
            configs.Entry(
                logger,
                level,
                configs.ConfigSource.DYNAMIC_BROKER_LOGGER_CONFIG,
                False,
                False,
                (),
                ConfigType.UNKNOWN,
                None,
            )
            for logger, level in loggers.loggers().items()
        ]
    if kind == CLIENT_METRICS:
        if not name:
            raise ResourceError(
                ErrorCode.invalid_request, "Client metrics subscription name must not be empty"
            )
        return []  # kpy keeps no client metrics subscriptions
    raise ResourceError(ErrorCode.invalid_request, f"Unsupported resource type: {kind}")


def _check_node(ctx: RequestContext, name: str, not_int: str, other: str) -> None:
    try:
        node = int(name)
    except ValueError:
        raise ResourceError(ErrorCode.invalid_request, not_int + name) from None
    if node != ctx.broker.node_id:
        raise ResourceError(ErrorCode.invalid_request, other)


def _message(code: ErrorCode) -> str:
    return {
        ErrorCode.unknown_topic_or_partition: "This server does not host this topic-partition.",
    }[code]


def _config(mod: Any, entry: configs.Entry, synonyms: bool, docs: bool) -> Any:
    return make(
        mod.DescribeConfigsResourceResult,
        name=entry.name,
        value=entry.value,
        read_only=entry.read_only,
        config_source=int(entry.source),
        is_sensitive=entry.sensitive,
        synonyms=tuple(
            make(mod.DescribeConfigsSynonym, name=s.name, value=s.value, source=int(s.source))
            for s in entry.synonyms
        )
        if synonyms
        else (),
        config_type=int(entry.type),
        documentation=entry.doc if docs else None,
    )


def _result(
    mod: Any, resource: Any, code: ErrorCode, message: str | None, entries: list[Any]
) -> Any:
    return make(
        mod.DescribeConfigsResult,
        error_code=code,
        error_message=message,
        resource_type=resource.resource_type,
        resource_name=resource.resource_name,
        configs=tuple(entries),
    )


@error_response(KEY)
def _error_response(ctx: RequestContext, request: Any, error: ErrorCode) -> Any:
    mod = response_module(KEY, ctx.version)
    return make(
        mod.DescribeConfigsResponse,
        throttle_time=0,
        results=tuple(_result(mod, r, error, None, []) for r in request.resources),
    )
