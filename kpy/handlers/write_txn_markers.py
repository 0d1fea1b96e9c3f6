"""WriteTxnMarkers (key 27), v1: transaction markers written to partitions on request.

Kafka's coordinators send it to partition leaders; with one broker kpy's coordinator writes its
markers itself (Broker.write_txn_markers), so this request comes from the admin client:
``kafka-transactions abort`` ends a hanging transaction by writing an abort marker with the
producer id, epoch and coordinator epoch that DescribeProducers showed. As Kafka's handler:
UNKNOWN_TOPIC_OR_PARTITION for a partition that does not exist, INVALID_PRODUCER_EPOCH for an
epoch older than the producer's, TRANSACTION_COORDINATOR_FENCED for a coordinator epoch older
than the last marker's, KAFKA_STORAGE_ERROR for a failed write; a marker to a partition of
``__consumer_offsets`` also ends the producer's transactional offset commits there.
It needs ALTER or CLUSTER_ACTION on the cluster (kpy.acl), else CLUSTER_AUTHORIZATION_FAILED on
every partition. v0 was removed in Kafka 4.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from kio.schema.errors import ErrorCode

from kpy.acl import AclOperation
from kpy.coordinator.offsets import OFFSETS_TOPIC
from kpy.handlers.registry import error_response, handles
from kpy.protocol.messages import make, response_module
from kpy.storage import errors as se

if TYPE_CHECKING:
    from kpy.broker import RequestContext

KEY = 27


@handles(KEY)
async def handle(ctx: RequestContext, request: Any) -> Any:
    broker = ctx.broker
    auth = broker.authorizer
    if not auth.authorize_cluster(
        ctx, AclOperation.ALTER, log_denied=False
    ) and not auth.authorize_cluster(ctx, AclOperation.CLUSTER_ACTION):
        return _error_response(ctx, request, ErrorCode.cluster_authorization_failed)
    now_ms = int(time.time() * 1000)

    def write(marker: Any, topic: str, partition: int) -> ErrorCode:
        partition_log = broker.logs.get_log(topic, partition)
        if partition_log is None:
            return ErrorCode.unknown_topic_or_partition
        commit = marker.transaction_result
        try:
            partition_log.append_marker(
                marker.producer_id,
                marker.producer_epoch,
                commit=commit,
                coordinator_epoch=marker.coordinator_epoch,
                now_ms=now_ms,
                leader_epoch=broker.leader_epoch,
            )
        except se.InvalidProducerEpoch:
            return ErrorCode.invalid_producer_epoch
        except se.TransactionCoordinatorFenced:
            return ErrorCode.transaction_coordinator_fenced
        except (se.StorageError, OSError):
            return ErrorCode.kafka_storage_error
        if topic == OFFSETS_TOPIC:
            broker.offsets.complete_transaction(partition, marker.producer_id, commit)
        broker.waiters.notify(topic, partition)
        return ErrorCode.none

    return _respond(ctx, request, write)


@error_response(KEY)
def _error_response(ctx: RequestContext, request: Any, error: ErrorCode) -> Any:
    return _respond(ctx, request, lambda marker, topic, partition: error)


def _respond(ctx: RequestContext, request: Any, write: Any) -> Any:
    mod = response_module(KEY, ctx.version)
    markers = tuple(
        make(
            mod.WritableTxnMarkerResult,
            producer_id=marker.producer_id,
            topics=tuple(
                make(
                    mod.WritableTxnMarkerTopicResult,
                    name=topic.name,
                    partitions=tuple(
                        make(
                            mod.WritableTxnMarkerPartitionResult,
                            partition_index=p,
                            error_code=write(marker, topic.name, p),
                        )
                        for p in topic.partition_indexes
                    ),
                )
                for topic in marker.topics
            ),
        )
        for marker in request.markers
    )
    return make(mod.WriteTxnMarkersResponse, markers=markers)
