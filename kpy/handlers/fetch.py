"""Fetch (key 1), v0-v16.

Stored batches go back as they are: the bytes from the batch that holds the fetch offset onward,
whole batches only, at least one batch for the first partition that has data even past the byte
limits (KIP-74), then per-partition and total max_bytes. An empty partition carries zero bytes of
records, never null. Long poll: when fewer than min_bytes are ready the request waits, woken by
appends to its partitions, until max_wait.

The total is capped by the broker's fetch.max.bytes, as in Kafka, and by what is left of
kpy.queued.max.response.bytes (kpy.memory_pool): Kafka sends records from its files and holds
none in memory for a client that does not read them, kpy reads them into memory, so while slow
readers hold unsent responses a fetch returns less, one batch at the least.

Authorization (kpy.acl), as KafkaApis: a consumer needs READ on each topic, a follower (a
replica id of 0 or more, v0-v14; v15's replica state is not read) CLUSTER_ACTION on the
cluster; otherwise the partitions answer TOPIC_AUTHORIZATION_FAILED, checked after unknown
topic ids and before whether partitions exist.

Fetch sessions (KIP-227) are declined: every response has session id 0, which tells clients to
send full requests; an incremental request (session epoch above 0) gets
FETCH_SESSION_ID_NOT_FOUND, as Kafka answers for a session it does not have. v13+ names topics
by id.

Transactions (v4+): every answer carries the partition's last stable offset (the first offset
of its oldest open transaction, else the high watermark). A read_committed fetch reads only
below it and gets the aborted transactions its records overlap (producer id and first offset,
from the log's transaction index: Log.aborted_transactions), which the consumer uses to skip
their records; a read_uncommitted fetch reads to the high watermark, aborted list null.

Leader epochs (leader_epoch.py), as Kafka's Partition.fetchRecords/readRecords: a
current_leader_epoch (a negative one means none) other than the leader's is
UNKNOWN_LEADER_EPOCH, as the leader's epoch 0 is never newer than a client's; v16's
current_leader, sent with FENCED_LEADER_EPOCH or NOT_LEADER_OR_FOLLOWER, therefore never
appears. A last_fetched_epoch (v12+) is checked against the epoch cache first: unknown to the
leader is OFFSET_OUT_OF_RANGE, and a fetch offset past the end of that epoch gets no records but
a diverging epoch (the epoch and its end offset) for the fetcher to truncate to. A partition
with an error or a diverging epoch answers the request at once.

v0-v3 read message formats v0/v1: kpy.down_conversion converts the stored batches.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

import anyio
from kio.schema.errors import ErrorCode

from kpy import down_conversion
from kpy.acl import AclOperation, ResourceType
from kpy.handlers.registry import error_response, handles
from kpy.leader_epoch import UNDEFINED_EPOCH, UNDEFINED_EPOCH_OFFSET, check_current, end_offset_for
from kpy.protocol import records as rb
from kpy.protocol.hot_responses import FetchPartition, encode_fetch
from kpy.protocol.messages import EncodedBody
from kpy.storage import errors as se
from kpy.storage.log import Log

if TYPE_CHECKING:
    from kpy.broker import RequestContext

KEY = 1
READ_COMMITTED = 1
# Reads above this size go to a worker thread so the event loop never waits on the disk.
INLINE_READ_LIMIT = 1 << 20
# A partition's records as read: a view where the read was cut short of a batch (not copied).
Records = bytes | memoryview


@handles(KEY)
async def handle(ctx: RequestContext, request: Any) -> EncodedBody:
    broker = ctx.broker
    if getattr(request, "session_epoch", -1) > 0:
        # An incremental fetch names a session; kpy never creates one (FetchSession.newContext).
        return encode_fetch(ctx.version, ErrorCode.fetch_session_id_not_found.value, ())
    by_id = ctx.version >= 13
    # Resolve topics once: (response key, topic name or None, partitions)
    wanted: list[tuple[Any, str | None, Any]] = []
    for topic in request.topics:
        if by_id:
            info = broker.logs.topic_by_id(topic.topic_id)
            wanted.append((topic.topic_id, info.name if info else None, topic.partitions))
        else:
            wanted.append((topic.topic, topic.topic, topic.partitions))
    denied = _denied_topics(ctx, request, wanted)
    keys = [
        (name, p.partition)
        for _, name, parts in wanted
        if name and name not in denied
        for p in parts
        if broker.logs.get_log(name, p.partition) is not None
    ]

    # The broker's fetch.max.bytes caps the request's (v3+; older versions have no limit of
    # their own), and so does what is left of the memory for responses (memory_pool.py); the
    # fetch reads at least one batch whatever the cap. min_bytes is cut to the cap, as Kafka
    # cuts it to its quota-capped maximum.
    fetch_max = min(getattr(request, "max_bytes", 0x7FFFFFFF), broker.fetch_max_bytes)
    memory = broker.response_memory
    held = 0
    # Kafka's DelayedFetch: answer at once when min_bytes are there, when any partition has an
    # error, or when nothing can be waited on; otherwise wait for appends until max_wait.
    deadline = anyio.current_time() + request.max_wait_ms / 1000
    try:
        while True:
            event = anyio.Event()
            broker.waiters.register(keys, event)
            try:
                memory.release(held)
                held = 0
                max_bytes = min(fetch_max, memory.available())
                total, answer_now, responses = await _read_all(
                    ctx, request, wanted, max_bytes, denied
                )
                memory.hold(total)
                held = total
                min_bytes = min(request.min_bytes, max(max_bytes, 1))
                remaining = deadline - anyio.current_time()
                if total >= min_bytes or answer_now or not keys or remaining <= 0:
                    break
                with anyio.move_on_after(remaining):
                    await event.wait()
            finally:
                broker.waiters.unregister(keys, event)
    finally:
        memory.release(held)  # the connection counts what it cannot send at once
    return encode_fetch(ctx.version, ErrorCode.none.value, responses)


@error_response(KEY)
def _error_response(ctx: RequestContext, request: Any, error: ErrorCode) -> EncodedBody:
    read_committed = getattr(request, "isolation_level", 0) == READ_COMMITTED
    by_id = ctx.version >= 13
    responses = []
    for topic in request.topics:
        aborted = () if read_committed else None
        partitions = [
            _partition(p.partition, error, -1, -1, -1, aborted, b"") for p in topic.partitions
        ]
        responses.append((topic.topic_id if by_id else topic.topic, partitions))
    return encode_fetch(ctx.version, error.value, responses)


Topics = list[tuple[Any, list[FetchPartition]]]  # (name, or topic id from v13, partitions)


def _denied_topics(
    ctx: RequestContext, request: Any, wanted: list[tuple[Any, str | None, Any]]
) -> frozenset[str]:
    """The topics the fetch may not read: all of them for a follower without CLUSTER_ACTION,
    those without READ for a consumer (KafkaApis.handleFetchRequest)."""
    auth = ctx.broker.authorizer
    if not auth.enabled:
        return frozenset()
    names = {name for _, name, _ in wanted if name is not None}
    if getattr(request, "replica_id", -1) >= 0:  # a follower
        if auth.authorize_cluster(ctx, AclOperation.CLUSTER_ACTION):
            return frozenset()
        return frozenset(names)
    return frozenset(names - auth.allowed(ctx, AclOperation.READ, ResourceType.TOPIC, names))


async def _read_all(
    ctx: RequestContext,
    request: Any,
    wanted: list[tuple[Any, str | None, Any]],
    max_bytes: int,
    denied: frozenset[str] = frozenset(),
) -> tuple[int, bool, Topics]:
    """(bytes read, whether to answer at once (an error or a diverging epoch), the topics)."""
    broker = ctx.broker
    by_id = ctx.version >= 13
    remaining = max_bytes
    min_one = True
    total = 0
    answer_now = False
    read_committed = getattr(request, "isolation_level", 0) == READ_COMMITTED  # v4+
    responses: Topics = []
    for key, name, partitions in wanted:
        out: list[FetchPartition] = []
        for p in partitions:
            log = broker.logs.get_log(name, p.partition) if name else None
            error = ErrorCode.none
            diverging: tuple[int, int] | None = None
            data: Records = b""
            if name in denied:
                error, log = ErrorCode.topic_authorization_failed, None
            elif log is None:
                error = (
                    ErrorCode.unknown_topic_id
                    if by_id and name is None
                    else ErrorCode.unknown_topic_or_partition
                )
            else:
                error, diverging = _check_epochs(p, log)
                if error is ErrorCode.none and down_conversion.refuses_compression(
                    log, ctx.version
                ):
                    error = ErrorCode.unsupported_compression_type
                if error is ErrorCode.none and diverging is None:
                    limit = min(p.partition_max_bytes, remaining)
                    upper = log.last_stable_offset if read_committed else None
                    error, data = await _read_partition(log, p.fetch_offset, limit, min_one, upper)
                    if data and down_conversion.needs_conversion(ctx.version):
                        error, data = await down_conversion.down_convert(
                            bytes(data), ctx.version, p.fetch_offset, limit
                        )
            if error is not ErrorCode.none or log is None:
                answer_now = True
                out.append(
                    _partition(p.partition, error, -1, -1, -1, () if read_committed else None, b"")
                )
                continue
            if diverging is not None:
                answer_now = True
            if data:
                min_one = False
                remaining = max(0, remaining - len(data))  # as Kafka's ReplicaManager
                total += len(data)
            aborted: list[tuple[int, int]] | None = None
            if read_committed:
                aborted = _aborted(log, p.fetch_offset, data) if data else []
            out.append(
                _partition(
                    p.partition,
                    error,
                    log.log_end_offset,
                    log.last_stable_offset,
                    log.log_start_offset,
                    aborted,
                    data,
                    diverging=diverging,
                )
            )
        responses.append((key, out))
    return total, answer_now, responses


def _check_epochs(p: Any, log: Log) -> tuple[ErrorCode, tuple[int, int] | None]:
    """The error from the fetcher's epochs, or the diverging (epoch, end offset) to report."""
    # A negative epoch in a fetch means "none" (FetchRequest.optionalEpoch).
    current_epoch = getattr(p, "current_leader_epoch", -1)  # v9+
    current = current_epoch if current_epoch >= 0 else None
    error = check_current(current)
    last_fetched = getattr(p, "last_fetched_epoch", -1)
    if error is not ErrorCode.none or last_fetched < 0:
        return error, None
    epoch, end = end_offset_for(last_fetched, log.log_start_offset, log.log_end_offset)
    if epoch == UNDEFINED_EPOCH or end == UNDEFINED_EPOCH_OFFSET:
        return ErrorCode.offset_out_of_range, None
    if p.fetch_offset < log.log_start_offset:
        return ErrorCode.offset_out_of_range, None
    if epoch < last_fetched or end < p.fetch_offset:
        return ErrorCode.none, (epoch, end)
    return ErrorCode.none, None


def _aborted(log: Log, offset: int, data: Records) -> list[tuple[int, int]]:
    """The aborted transactions overlapping the batches read (from ``offset`` to the end of
    the last one), as (producer id, first offset)."""
    found = log.aborted_transactions(offset, log.last_stable_offset)
    if not found:  # the common case: no header to walk
        return []
    end = offset
    for _, header in rb.iter_headers(data):
        end = header.next_offset
    return [(t.producer_id, t.first_offset) for t in found if t.first_offset < end]


async def _read_partition(
    log: Log, offset: int, limit: int, min_one: bool, upper: int | None = None
) -> tuple[ErrorCode, Records]:
    """``upper``: read only batches below it (read_committed: the last stable offset)."""
    if not log.log_start_offset <= offset <= log.log_end_offset:
        return ErrorCode.offset_out_of_range, b""
    if offset == log.log_end_offset:
        return ErrorCode.none, b""
    if limit < 0:
        # A negative max_bytes or partition_max_bytes: Kafka's LogSegment.read refuses it
        # (IllegalArgumentException), which ReplicaManager answers for the partition alone.
        return ErrorCode.unknown_server_error, b""
    if limit == 0 and not min_one:
        return ErrorCode.none, b""
    if upper is not None and offset >= upper:
        return ErrorCode.none, b""
    try:
        return ErrorCode.none, await _read(log, offset, limit, min_one, upper)
    except se.OffsetOutOfRange:
        return ErrorCode.offset_out_of_range, b""
    except se.LogClosed:  # the topic was deleted while this fetch read
        return ErrorCode.unknown_topic_or_partition, b""
    except (OSError, se.StorageError):
        return ErrorCode.kafka_storage_error, b""


async def _read(log: Log, offset: int, limit: int, min_one: bool, upper: int | None) -> Records:
    read = functools.partial(log.read_buffers, offset, limit, min_one=min_one, max_offset=upper)
    parts = await anyio.to_thread.run_sync(read) if limit > INLINE_READ_LIMIT else read()
    # One segment's bytes go out as they were read; several (rare) are joined.
    return parts[0] if len(parts) == 1 else b"".join(parts)


def _partition(
    index: int,
    error: ErrorCode,
    hw: int,
    lso: int,
    log_start: int,
    aborted: list[tuple[int, int]] | tuple[()] | None,
    records: Records,
    *,
    diverging: tuple[int, int] | None = None,
) -> FetchPartition:
    return FetchPartition(index, error.value, hw, lso, log_start, records, aborted, diverging)
