"""Changing configs: what AlterConfigs (replace a resource's settings) and IncrementalAlterConfigs
(set, delete, append to or subtract from single settings) share.

The checks and their order follow Kafka: the broker's preprocessing (each resource once, each key
once, no null values: INVALID_REQUEST), then the controller's (incremental operations, the
validation of the resulting settings: INVALID_CONFIG for topics, INVALID_REQUEST for brokers as
KAFKA-13609 keeps it, then the topic's existence: UNKNOWN_TOPIC_OR_PARTITION). A change that
passes takes effect at once: topic overrides on the topic's logs, broker settings on every log
that does not override them.

Authorization (kpy.acl), where Kafka's controller checks it, after the broker's preprocessing:
ALTER_CONFIGS on the cluster for the broker and client metrics (CLUSTER_AUTHORIZATION_FAILED), on
the topic (TOPIC_AUTHORIZATION_FAILED), on the group (GROUP_AUTHORIZATION_FAILED), each with its
default message (but a broker logger's, none); the broker's own checks of a broker change (its id,
read-only settings) come first, as Kafka's broker makes them before it forwards; for broker loggers
the cluster is asked before anything else, as Kafka's RuntimeLoggerManager does.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

import anyio
from kio.schema.errors import ErrorCode

from kpy import configs, loggers
from kpy.acl import CLUSTER_NAME, DENIED_MESSAGES, AclOperation, ResourceType
from kpy.config import BrokerConfig
from kpy.protocol.messages import make, response_module
from kpy.storage.config import TOPIC_CONFIGS, ConfigType, LogConfig
from kpy.storage.errors import InvalidConfig
from kpy.topics import name_error

if TYPE_CHECKING:
    from kpy.broker import Broker, RequestContext

SET, DELETE, APPEND, SUBTRACT = 0, 1, 2, 3
CLIENT_METRICS, GROUP = 16, 32  # ConfigResource types besides TOPIC, BROKER and BROKER_LOGGER
OP_NAMES = {SET: "SET", DELETE: "DELETE", APPEND: "APPEND", SUBTRACT: "SUBTRACT"}

# A resource's new settings from its current ones; raises AdminError.
Compute = Callable[[Mapping[str, str]], dict[str, str]]
Op = tuple[str, int, str | None]  # name, operation, value


class AdminError(Exception):
    def __init__(self, code: ErrorCode, message: str | None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def preprocess(
    resources: list[tuple[int, str, list[tuple[str, str | None, int]]]],
) -> dict[int, AdminError]:
    """Kafka's ConfigAdminManager.preprocess: index of a resource -> its error. Each resource is
    (type, name, [(key, value, operation)]); legacy AlterConfigs passes operation SET."""
    errors: dict[int, AdminError] = {}
    seen: dict[tuple[int, str], int] = {}
    for i, (kind, name, _) in enumerate(resources):
        if (kind, name) in seen:
            for j in (seen[(kind, name)], i):
                errors[j] = AdminError(
                    ErrorCode.invalid_request, "Each resource must appear at most once."
                )
        seen[(kind, name)] = i
    for i, (_, _, items) in enumerate(resources):
        if i in errors:
            continue
        keys = [key for key, _, _ in items]
        if len(set(keys)) != len(keys):
            errors[i] = AdminError(ErrorCode.invalid_request, "Error due to duplicate config keys")
            continue
        nulls = [key for key, value, op in items if value is None and op != DELETE]
        if nulls:
            errors[i] = AdminError(
                ErrorCode.invalid_request, "Null value not supported for : " + ", ".join(nulls)
            )
    return errors


# Config resource type -> the ACL resource its authorization asks about (name None: the
# cluster's) and the error a refusal answers (Kafka's ConfigHelper and ControllerApis).
_ACL_RESOURCES = {
    configs.TOPIC: (ResourceType.TOPIC, ErrorCode.topic_authorization_failed),
    GROUP: (ResourceType.GROUP, ErrorCode.group_authorization_failed),
    configs.BROKER: (ResourceType.CLUSTER, ErrorCode.cluster_authorization_failed),
    configs.BROKER_LOGGER: (ResourceType.CLUSTER, ErrorCode.cluster_authorization_failed),
    CLIENT_METRICS: (ResourceType.CLUSTER, ErrorCode.cluster_authorization_failed),
}


def denied(ctx: RequestContext, operation: AclOperation, kind: int, name: str) -> AdminError | None:
    """The error when the client may not DESCRIBE_CONFIGS or ALTER_CONFIGS a config resource;
    None when it may (or the type is one Kafka refuses anyway)."""
    found = _ACL_RESOURCES.get(kind)
    if found is None:
        return None
    resource_type, error = found
    resource = CLUSTER_NAME if resource_type is ResourceType.CLUSTER else name
    if ctx.broker.authorizer.authorize(ctx, operation, resource_type, resource):
        return None
    # Kafka's broker refuses a broker logger change with an exception whose message is the
    # default one, which ApiError leaves out; its controller, the others, with the message.
    if kind == configs.BROKER_LOGGER and operation is AclOperation.ALTER_CONFIGS:
        return AdminError(error, None)
    return AdminError(error, DENIED_MESSAGES[error])


def incremental(ops: list[Op], kind: int) -> Compute:
    """Apply IncrementalAlterConfigs operations to a resource's settings."""

    def compute(current: Mapping[str, str]) -> dict[str, str]:
        out = dict(current)
        for name, op, value in ops:
            if op == SET:
                out[name] = value or ""
            elif op == DELETE:
                out.pop(name, None)
            elif op in (APPEND, SUBTRACT):
                definition = (
                    TOPIC_CONFIGS.get(name)
                    if kind == configs.TOPIC
                    else configs.BROKER_CONFIGS.get(name)
                )
                if definition is None or definition.type is not ConfigType.LIST:
                    if kind == configs.TOPIC:
                        raise AdminError(
                            ErrorCode.invalid_config,
                            f"Can't {OP_NAMES[op]} to key {name} because its type is not LIST.",
                        )
                    if definition is None:
                        raise AdminError(ErrorCode.invalid_config, f"Unknown config name: {name}")
                    verb = "append" if op == APPEND else "subtract"
                    raise AdminError(
                        ErrorCode.invalid_config,
                        f"Config value {verb} is not allowed for config key: {name}",
                    )
                old = out.get(name, definition.default or "")
                parts = [p for p in old.split(",") if p]
                for item in (value or "").split(","):
                    if op == APPEND and item not in parts:
                        parts.append(item)
                    elif op == SUBTRACT and item in parts:
                        parts.remove(item)
                out[name] = ",".join(parts)
            else:
                raise AdminError(ErrorCode.invalid_request, f"Unknown operations type {op}")
        return out

    return compute


def replace(items: Mapping[str, str]) -> Compute:
    """AlterConfigs: the resource's settings become exactly ``items``."""
    return lambda current: dict(items)


async def alter_topic(broker: Broker, name: str, compute: Compute, validate_only: bool) -> None:
    if not name:
        raise AdminError(ErrorCode.invalid_request, "Default topic resources are not allowed.")
    problem = name_error(name)
    if problem is not None:
        raise AdminError(ErrorCode.invalid_topic_exception, problem)
    async with broker.admin_lock:
        info = broker.logs.topic(name)
        new = compute(info.configs if info is not None else {})
        try:
            LogConfig.from_properties(new, base=broker.logs.default_config)
        except InvalidConfig as e:
            raise AdminError(ErrorCode.invalid_config, str(e)) from None
        if info is None:
            raise AdminError(
                ErrorCode.unknown_topic_or_partition, f"The topic '{name}' does not exist."
            )
        if not validate_only:
            await anyio.to_thread.run_sync(lambda: broker.logs.set_topic_configs(name, new))


async def alter_broker(
    broker: Broker,
    name: str,
    compute: Compute,
    validate_only: bool,
    refused: AdminError | None = None,
) -> None:
    """``refused``: the authorization error, raised once the broker's own checks pass."""
    per_broker = name != ""
    if per_broker:
        check_node_id(broker, name)
    config = broker.config
    async with broker.admin_lock:
        new = compute(config.dynamic if per_broker else config.dynamic_default)
        try:
            configs.validate_broker_change(new, per_broker)
        except ValueError as e:
            raise AdminError(ErrorCode.invalid_request, str(e)) from None
        if refused is not None:
            raise refused
        candidate = BrokerConfig(
            static=config.static,
            dynamic=new if per_broker else config.dynamic,
            dynamic_default=config.dynamic_default if per_broker else new,
        )
        candidate.merge()
        try:
            candidate.validate_socket_server()
            defaults = candidate.topic_defaults()
            broker.logs.check_default_config(defaults)
        except (ValueError, InvalidConfig) as e:
            raise AdminError(ErrorCode.invalid_request, str(e)) from None
        if validate_only:
            return
        config.dynamic, config.dynamic_default = candidate.dynamic, candidate.dynamic_default
        config.merge()
        broker.logs.set_default_config(defaults)
        await anyio.to_thread.run_sync(
            lambda: configs.save_dynamic(config, config.data_dir, broker.fs)
        )


def alter_loggers(broker: Broker, name: str, ops: list[Op], validate_only: bool) -> None:
    """Kafka's RuntimeLoggerManager: SET and DELETE of logger levels."""
    check_node_id(broker, name, node_word=True)
    for logger, op, level in ops:
        if op == SET:
            if not loggers.exists(logger):
                raise AdminError(ErrorCode.invalid_config, f"Logger {logger} does not exist!")
            if level not in loggers.LEVELS:
                raise AdminError(
                    ErrorCode.invalid_config,
                    f"Cannot set the log level of {logger} to {level} as it is not a "
                    f"supported log level. Valid log levels are {loggers.VALID_LEVELS}",
                )
        elif op == DELETE:
            if not loggers.exists(logger):
                raise AdminError(ErrorCode.invalid_config, f"Logger {logger} does not exist!")
            if logger == loggers.ROOT:
                raise AdminError(
                    ErrorCode.invalid_request,
                    f"Removing the log level of the {loggers.ROOT} logger is not allowed",
                )
        elif op in (APPEND, SUBTRACT):
            raise AdminError(
                ErrorCode.invalid_request,
                f"{OP_NAMES[op]} operation is not allowed for the BROKER_LOGGER resource",
            )
        else:
            raise AdminError(
                ErrorCode.invalid_request,
                f"Unknown operation type {op} is not allowed for the BROKER_LOGGER resource",
            )
    if validate_only:
        return
    for logger, op, level in ops:
        if op == SET:
            loggers.set_level(logger, level or "")
        else:
            loggers.unset_level(logger)


def check_node_id(broker: Broker, name: str, *, node_word: bool = False) -> None:
    try:
        node = int(name)
    except ValueError:
        raise AdminError(
            ErrorCode.invalid_request, f"Node id must be an integer, but it is: {name}"
        ) from None
    if node != broker.node_id:
        raise AdminError(
            ErrorCode.invalid_request,
            f"Unexpected node id. Expected {broker.node_id}, but received {name}"
            if node_word
            else f"Unexpected broker id, expected {broker.node_id}, but received {name}",
        )


def response(
    ctx: RequestContext,
    api_key: int,
    results: Iterable[tuple[Any, str, ErrorCode, str | None]],
) -> Any:
    """The AlterConfigs or IncrementalAlterConfigs response: one (type, name, error, message)
    per resource, in request order."""
    mod = response_module(api_key, ctx.version)
    top = mod.AlterConfigsResponse if api_key == 33 else mod.IncrementalAlterConfigsResponse
    return make(
        top,
        throttle_time=0,
        responses=tuple(
            make(mod.AlterConfigsResourceResponse, error_code=code, error_message=message,
                 resource_type=kind, resource_name=name)
            for kind, name, code, message in results
        ),
    )  # fmt: skip


def outcome(
    kind: int, name: str, error: AdminError | None
) -> tuple[int, str, ErrorCode, str | None]:
    if error is None:
        return kind, name, ErrorCode.none, None
    return kind, name, error.code, error.message


def error_results(request: Any, error: ErrorCode) -> list[tuple[Any, str, ErrorCode, None]]:
    """Every resource of ``request`` failed with ``error`` (the handler's error response)."""
    return [(r.resource_type, r.resource_name, error, None) for r in request.resources]
