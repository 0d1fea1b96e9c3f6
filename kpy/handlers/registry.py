"""The registry of request handlers: API key -> the versions kpy serves and the handler.

``APIS`` below is the one list of what kpy serves: ApiVersions answers from it and the broker
checks each request's version against it, so what kpy advertises cannot drift from what it
dispatches. Each API's handler lives in the module named beside it and is imported on the first
request of that API, not at start-up (a broker's start-up time is one of the figures it is judged
by, and most clients use a handful of the 40 APIs). A module registers its handler with
``@handles(KEY)`` and, where Kafka answers a failed request with an error response rather than by
closing the connection, its responder with ``@error_response(KEY)``.
"""

from __future__ import annotations

import importlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from kio.schema.errors import ErrorCode

if TYPE_CHECKING:
    from kpy.broker import RequestContext

Handler = Callable[["RequestContext", Any], Awaitable[Any]]
# Builds the response that carries one error everywhere the request asked about something
# (Kafka's AbstractRequest.getErrorResponse), or None where Kafka answers by closing.
ErrorResponder = Callable[["RequestContext", Any, ErrorCode], Any]

# (API key, Kafka's name, lowest and highest version served, handler module in kpy.handlers)
APIS: tuple[tuple[int, str, int, int, str], ...] = (
    (0, "Produce", 0, 11, "produce"),
    (1, "Fetch", 0, 16, "fetch"),
    (2, "ListOffsets", 0, 10, "list_offsets"),
    (3, "Metadata", 0, 13, "metadata"),
    (8, "OffsetCommit", 0, 9, "offset_commit"),
    (9, "OffsetFetch", 0, 9, "offset_fetch"),
    (10, "FindCoordinator", 0, 6, "find_coordinator"),
    (11, "JoinGroup", 0, 9, "join_group"),
    (12, "Heartbeat", 0, 4, "heartbeat"),
    (13, "LeaveGroup", 0, 5, "leave_group"),
    (14, "SyncGroup", 0, 5, "sync_group"),
    (15, "DescribeGroups", 0, 6, "describe_groups"),
    (16, "ListGroups", 0, 5, "list_groups"),
    (17, "SaslHandshake", 0, 1, "sasl_handshake"),
    (18, "ApiVersions", 0, 4, "api_versions"),
    (19, "CreateTopics", 2, 7, "create_topics"),
    (20, "DeleteTopics", 1, 6, "delete_topics"),
    (21, "DeleteRecords", 0, 2, "delete_records"),
    (22, "InitProducerId", 0, 5, "init_producer_id"),
    (23, "OffsetForLeaderEpoch", 2, 4, "offset_for_leader_epoch"),
    (24, "AddPartitionsToTxn", 0, 5, "add_partitions_to_txn"),
    (25, "AddOffsetsToTxn", 0, 4, "add_offsets_to_txn"),
    (26, "EndTxn", 0, 4, "end_txn"),
    (27, "WriteTxnMarkers", 1, 1, "write_txn_markers"),
    (28, "TxnOffsetCommit", 0, 4, "txn_offset_commit"),
    (29, "DescribeAcls", 0, 3, "describe_acls"),
    (30, "CreateAcls", 0, 3, "create_acls"),
    (31, "DeleteAcls", 0, 3, "delete_acls"),
    (32, "DescribeConfigs", 1, 4, "describe_configs"),
    (33, "AlterConfigs", 0, 2, "alter_configs"),
    (35, "DescribeLogDirs", 1, 4, "describe_log_dirs"),
    (36, "SaslAuthenticate", 0, 2, "sasl_authenticate"),
    (37, "CreatePartitions", 0, 3, "create_partitions"),
    (42, "DeleteGroups", 0, 2, "delete_groups"),
    (43, "ElectLeaders", 0, 2, "elect_leaders"),
    (44, "IncrementalAlterConfigs", 0, 1, "incremental_alter_configs"),
    (46, "ListPartitionReassignments", 0, 0, "list_partition_reassignments"),
    (47, "OffsetDelete", 0, 0, "offset_delete"),
    (48, "DescribeClientQuotas", 0, 1, "describe_client_quotas"),
    (49, "AlterClientQuotas", 0, 1, "alter_client_quotas"),
    (50, "DescribeUserScramCredentials", 0, 0, "describe_user_scram_credentials"),
    (51, "AlterUserScramCredentials", 0, 0, "alter_user_scram_credentials"),
    (60, "DescribeCluster", 0, 2, "describe_cluster"),
    (61, "DescribeProducers", 0, 0, "describe_producers"),
    (65, "DescribeTransactions", 0, 0, "describe_transactions"),
    (66, "ListTransactions", 0, 1, "list_transactions"),
    (68, "ConsumerGroupHeartbeat", 0, 1, "consumer_group_heartbeat"),
    (69, "ConsumerGroupDescribe", 0, 1, "consumer_group_describe"),
    (75, "DescribeTopicPartitions", 0, 0, "describe_topic_partitions"),
)


@dataclass(frozen=True)
class Registration:
    api_key: int
    name: str
    min_version: int
    max_version: int
    module: str  # in kpy.handlers
    handler: Handler | None = None  # None until the module is imported (``loaded``)
    error_response: ErrorResponder | None = None


class CloseConnection(Exception):
    """A handler's answer that Kafka gives by closing the connection (acks=0 produce errors)."""


REGISTRY: dict[int, Registration] = {
    key: Registration(key, name, lo, hi, module) for key, name, lo, hi, module in APIS
}


def loaded(reg: Registration) -> tuple[Handler, ErrorResponder | None]:
    """The handler and error responder of ``reg``'s API, importing its module on first use."""
    if reg.handler is None:
        importlib.import_module(f"kpy.handlers.{reg.module}")
        reg = REGISTRY[reg.api_key]
        if reg.handler is None:
            raise RuntimeError(f"kpy.handlers.{reg.module} registers no handler for {reg.name}")
    return reg.handler, reg.error_response


def handles(api_key: int) -> Callable[[Handler], Handler]:
    def register(fn: Handler) -> Handler:
        reg = REGISTRY.get(api_key)
        if reg is None:
            raise RuntimeError(f"API key {api_key} is not in registry.APIS")
        if reg.handler is not None:
            raise RuntimeError(f"API key {api_key} registered twice")
        REGISTRY[api_key] = replace(reg, handler=fn)
        return fn

    return register


def error_response(api_key: int) -> Callable[[ErrorResponder], ErrorResponder]:
    """Register how an API answers when its handler fails unexpectedly."""

    def register(fn: ErrorResponder) -> ErrorResponder:
        REGISTRY[api_key] = replace(REGISTRY[api_key], error_response=fn)
        return fn

    return register
