"""ListOffsets (key 2), v0-v10.

Timestamps: -2 earliest (the log start offset), -1 latest (the high watermark; the last stable
offset for read_committed, v2+, below which no transaction is open), -3 the record with the
largest timestamp (v7+), -4 earliest local (v8+; no tiered storage, so the log start), -5 latest
tiered (v9+; nothing is tiered, so Kafka's answer for an empty remote log: offset -1), and any
other value the first record whose timestamp is at or after it, through the time index. Lookups
by timestamp (-3 too) consider only records at or after the log start offset (DeleteRecords
moves it). With no such record the answer is offset -1 and timestamp -1, as Kafka gives it;
read_committed answers the same for a record found at or above the last stable offset
(Kafka's lastFetchableOffset).

Leader epochs (leader_epoch.py): current_leader_epoch -1 means none; any other value than the
leader's epoch is FENCED_LEADER_EPOCH (older) or UNKNOWN_LEADER_EPOCH (newer). A found offset
comes with the leader epoch, which is the epoch of every stored batch.

v0 answers with a list of up to max_num_offsets offsets, newest first, as Kafka's
legacyFetchOffsetsBefore: the base offset of each segment (at least the log start) paired with
the segment file's modification time, plus the log end offset (paired with now) when the last
segment holds data; -1 starts from the newest, -2 from the oldest, any other timestamp from the
newest whose time is at or before it. Other negative timestamps are UNSUPPORTED_VERSION.

Authorization (kpy.acl): DESCRIBE on each topic, else TOPIC_AUTHORIZATION_FAILED on its
partitions before anything else is looked at (KafkaApis.handleListOffsetRequest).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from kio.schema.errors import ErrorCode

from kpy.acl import AclOperation, ResourceType
from kpy.handlers.registry import error_response, handles
from kpy.leader_epoch import check_current
from kpy.protocol.messages import make, response_module
from kpy.storage.log import Log

if TYPE_CHECKING:
    from kpy.broker import RequestContext

KEY = 2
UNKNOWN_EPOCH = -1
LATEST, EARLIEST, MAX_TIMESTAMP, EARLIEST_LOCAL, LATEST_TIERED = -1, -2, -3, -4, -5
# The first version that may ask for each special timestamp; others are UNSUPPORTED_VERSION.
READ_COMMITTED = 1
MIN_VERSION = {LATEST: 0, EARLIEST: 0, MAX_TIMESTAMP: 7, EARLIEST_LOCAL: 8, LATEST_TIERED: 9}


@handles(KEY)
async def handle(ctx: RequestContext, request: Any) -> Any:
    auth = ctx.broker.authorizer
    names = {t.name for t in request.topics}
    denied = names - auth.allowed(ctx, AclOperation.DESCRIBE, ResourceType.TOPIC, names)
    unauthorized = ErrorCode.topic_authorization_failed
    if ctx.version == 0:
        return _respond_v0(
            ctx,
            request,
            lambda topic, p: (unauthorized, ()) if topic in denied else _lookup_v0(ctx, topic, p),
        )
    seen = Counter((t.name, p.partition_index) for t in request.topics for p in t.partitions)
    read_committed = getattr(request, "isolation_level", 0) == READ_COMMITTED  # v2+

    def lookup(topic: str, p: Any) -> tuple[ErrorCode, int, int]:
        if topic in denied:
            return unauthorized, -1, -1
        if seen[(topic, p.partition_index)] > 1:
            return ErrorCode.invalid_request, -1, -1
        return _lookup(ctx, topic, p, read_committed)

    return _respond(ctx, request, lookup)


@error_response(KEY)
def _error_response(ctx: RequestContext, request: Any, error: ErrorCode) -> Any:
    if ctx.version == 0:
        return _respond_v0(ctx, request, lambda topic, p: (error, ()))
    return _respond(ctx, request, lambda topic, p: (error, -1, -1))


def _respond_v0(
    ctx: RequestContext,
    request: Any,
    lookup: Callable[[str, Any], tuple[ErrorCode, tuple[int, ...]]],
) -> Any:
    mod = response_module(KEY, 0)
    topics = []
    for topic in request.topics:
        partitions = []
        for p in topic.partitions:
            error, offsets = lookup(topic.name, p)
            partitions.append(
                make(
                    mod.ListOffsetsPartitionResponse,
                    partition_index=p.partition_index,
                    error_code=error,
                    old_style_offsets=offsets,
                )
            )
        topics.append(
            make(mod.ListOffsetsTopicResponse, name=topic.name, partitions=tuple(partitions))
        )
    return make(mod.ListOffsetsResponse, topics=tuple(topics))


def _lookup_v0(ctx: RequestContext, topic: str, p: Any) -> tuple[ErrorCode, tuple[int, ...]]:
    log = ctx.broker.logs.get_log(topic, p.partition_index)
    if log is None:
        return ErrorCode.unknown_topic_or_partition, ()
    if p.timestamp < EARLIEST:
        return ErrorCode.unsupported_version, ()
    try:
        return ErrorCode.none, offsets_before(log, p.timestamp, p.max_num_offsets)
    except OSError:
        return ErrorCode.kafka_storage_error, ()


def offsets_before(log: Log, timestamp: int, max_num_offsets: int) -> tuple[int, ...]:
    """Kafka's UnifiedLog.legacyFetchOffsetsBefore (one replica: the high watermark is the log
    end, so the consumer's cap changes nothing)."""
    segments = log.segments
    pairs = [
        (max(s.base_offset, log.log_start_offset), s.fs.mtime_ns(s.log_path) // 1_000_000)
        for s in segments
    ]
    if segments[-1].size > 0:
        pairs.append((log.log_end_offset, int(time.time() * 1000)))
    if timestamp == LATEST:
        start = len(pairs) - 1
    elif timestamp == EARLIEST:
        start = 0
    else:
        start = len(pairs) - 1
        while start >= 0 and pairs[start][1] > timestamp:
            start -= 1
    count = max(0, min(max_num_offsets, start + 1))
    return tuple(sorted((pairs[start - j][0] for j in range(count)), reverse=True))


def _respond(
    ctx: RequestContext, request: Any, lookup: Callable[[str, Any], tuple[ErrorCode, int, int]]
) -> Any:
    broker = ctx.broker
    mod = response_module(KEY, ctx.version)
    topics = []
    for topic in request.topics:
        partitions = []
        for p in topic.partitions:
            error, offset, timestamp = lookup(topic.name, p)
            partitions.append(
                make(
                    mod.ListOffsetsPartitionResponse,
                    partition_index=p.partition_index,
                    error_code=error,
                    timestamp=timestamp,
                    offset=offset,
                    leader_epoch=broker.leader_epoch if offset >= 0 else -1,
                    old_style_offsets=(offset,) if offset >= 0 else (),
                )
            )
        topics.append(
            make(mod.ListOffsetsTopicResponse, name=topic.name, partitions=tuple(partitions))
        )
    return make(mod.ListOffsetsResponse, throttle_time=0, topics=tuple(topics))


def _lookup(
    ctx: RequestContext, topic: str, p: Any, read_committed: bool
) -> tuple[ErrorCode, int, int]:
    broker = ctx.broker
    log = broker.logs.get_log(topic, p.partition_index)
    if log is None:
        return ErrorCode.unknown_topic_or_partition, -1, -1
    # Only -1 means "no view of the epoch" here (ListOffsetsResponse.UNKNOWN_EPOCH); any other
    # value, negative ones included, is checked against the leader's.
    epoch = getattr(p, "current_leader_epoch", UNKNOWN_EPOCH)
    error = check_current(None if epoch == UNKNOWN_EPOCH else epoch)
    if error is not ErrorCode.none:
        return error, -1, -1
    ts = p.timestamp
    if ts < 0 and ctx.version < MIN_VERSION.get(ts, 1 << 15):
        return ErrorCode.unsupported_version, -1, -1
    fetchable = log.last_stable_offset if read_committed else log.log_end_offset
    if ts == LATEST:
        return ErrorCode.none, fetchable, -1
    if ts in (EARLIEST, EARLIEST_LOCAL):
        return ErrorCode.none, log.log_start_offset, -1
    if ts == LATEST_TIERED:
        return ErrorCode.none, -1, -1
    found = log.max_timestamp() if ts == MAX_TIMESTAMP else log.offset_for_timestamp(ts)
    if found is None:
        return ErrorCode.none, -1, -1
    offset, timestamp = found
    if offset >= fetchable:
        return ErrorCode.none, -1, -1
    return ErrorCode.none, offset, timestamp
