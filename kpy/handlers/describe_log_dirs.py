"""DescribeLogDirs (key 35), v1-v4: the log directory and the partitions it holds.

As Kafka's ReplicaManager.describeLogDirs: one result per log directory (kpy has one, the data
directory, reported by its absolute path), listing the requested partitions found in it (a null
topic list means every partition; partitions not hosted are left out, and a topic none of whose
partitions is left is not listed). Each partition: its size in bytes (the segment files), offset
lag 0 (the leader's high watermark is its log end offset) and is_future false (kpy never moves
a replica between directories). v4 adds the file system's total and usable bytes (statvfs, as
Java's FileStore reports them; with kpy.storage.in.memory, the machine's memory and what of it
is available: FileSystem.disk_space). A directory holding a log that went offline after a failed
write is KAFKA_STORAGE_ERROR, as Kafka takes the whole directory offline; failing to read the
file system's sizes is UNKNOWN_SERVER_ERROR, as any other failure in Kafka. DESCRIBE on the cluster
is needed (kpy.acl): CLUSTER_AUTHORIZATION_FAILED at the top, no results.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
from kio.schema.errors import ErrorCode

from kpy.acl import AclOperation
from kpy.handlers.registry import error_response, handles
from kpy.protocol.messages import make, response_module

if TYPE_CHECKING:
    from kpy.broker import RequestContext
    from kpy.storage.log import Log

KEY = 35


@handles(KEY)
async def handle(ctx: RequestContext, request: Any) -> Any:
    if not ctx.broker.authorizer.authorize_cluster(ctx, AclOperation.DESCRIBE):
        return _error_response(ctx, request, ErrorCode.cluster_authorization_failed)
    broker = ctx.broker
    mod = response_module(KEY, ctx.version)
    logs = broker.logs.logs()
    if request.topics is None:
        wanted = set(logs)
    else:
        wanted = {(t.topic, p) for t in request.topics for p in t.partitions}
    directory = str(Path(broker.logs.data_dir).absolute())
    if any(lg.offline for lg in logs.values()):
        result = _failed(mod, directory, ErrorCode.kafka_storage_error)
    else:
        try:
            total, usable = await anyio.to_thread.run_sync(broker.fs.disk_space, directory)
        except OSError:
            result = _failed(mod, directory, ErrorCode.unknown_server_error)
        else:
            hosted = {tp: lg for tp, lg in logs.items() if tp in wanted}
            result = make(
                mod.DescribeLogDirsResult,
                error_code=ErrorCode.none,
                log_dir=directory,
                topics=_topics(mod, hosted),
                total_bytes=total,
                usable_bytes=usable,
            )
    return make(
        mod.DescribeLogDirsResponse, throttle_time=0, error_code=ErrorCode.none, results=(result,)
    )


@error_response(KEY)
def _error_response(ctx: RequestContext, request: Any, error: ErrorCode) -> Any:
    mod = response_module(KEY, ctx.version)
    return make(mod.DescribeLogDirsResponse, throttle_time=0, error_code=error, results=())


def _topics(mod: Any, hosted: dict[tuple[str, int], Log]) -> tuple[Any, ...]:
    by_topic: dict[str, list[Any]] = {}
    for (topic, partition), lg in sorted(hosted.items()):
        by_topic.setdefault(topic, []).append(
            make(
                mod.DescribeLogDirsPartition,
                partition_index=partition,
                partition_size=lg.size,
                offset_lag=0,
                is_future_key=False,
            )
        )
    return tuple(
        make(mod.DescribeLogDirsTopic, name=topic, partitions=tuple(parts))
        for topic, parts in by_topic.items()
    )


def _failed(mod: Any, directory: str, error: ErrorCode) -> Any:
    return make(mod.DescribeLogDirsResult, error_code=error, log_dir=directory, topics=())
