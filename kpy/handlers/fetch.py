"""Fetch (key 1), v4-v16.

Stored batches go back as they are: the bytes from the batch that holds the fetch offset onward,
whole batches only, at least one batch for the first partition that has data even past the byte
limits (KIP-74), then per-partition and total max_bytes. An empty partition carries zero bytes of
records, never null. Long poll: when fewer than min_bytes are ready the request waits, woken by
appends to its partitions, until max_wait.

Fetch sessions (KIP-227) are declined: every response has session id 0, which tells clients to
send full requests; a request naming a session id gets FETCH_SESSION_ID_NOT_FOUND. Without
transactions the last stable offset is the high watermark. v13+ names topics by id.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

import anyio
from kio.schema.errors import ErrorCode

from kpy.handlers.registry import handles
from kpy.protocol.messages import make, response_module

if TYPE_CHECKING:
    from kpy.broker import RequestContext

KEY = 1
READ_COMMITTED = 1
# Reads above this size go to a worker thread so the event loop never waits on the disk.
INLINE_READ_LIMIT = 1 << 20


@handles(KEY, "Fetch", 4, 16)
async def handle(ctx: RequestContext, request: Any) -> Any:
    broker = ctx.broker
    mod = response_module(KEY, ctx.version)
    if request.session_id != 0:
        return make(
            mod.FetchResponse,
            throttle_time=0,
            error_code=ErrorCode.fetch_session_id_not_found,
            session_id=0,
            responses=(),
        )
    by_id = ctx.version >= 13
    # Resolve topics once: (response key, topic name or None, partitions)
    wanted: list[tuple[Any, str | None, Any]] = []
    for topic in request.topics:
        if by_id:
            info = broker.logs.topic_by_id(topic.topic_id)
            wanted.append((topic.topic_id, info.name if info else None, topic.partitions))
        else:
            wanted.append((topic.topic, topic.topic, topic.partitions))
    keys = [(name, p.partition) for _, name, parts in wanted if name for p in parts]

    max_wait_ms = int(request.max_wait.total_seconds() * 1000)
    deadline = anyio.current_time() + max_wait_ms / 1000
    while True:
        event = anyio.Event()
        broker.waiters.register(keys, event)
        try:
            total, responses = await _read_all(ctx, mod, request, wanted, by_id)
            if total >= request.min_bytes:
                break
            remaining = deadline - anyio.current_time()
            if remaining <= 0 or not keys:
                break
            with anyio.move_on_after(remaining):
                await event.wait()
            if anyio.current_time() >= deadline and not event.is_set():
                total, responses = await _read_all(ctx, mod, request, wanted, by_id)
                break
        finally:
            broker.waiters.unregister(keys, event)
    return make(
        mod.FetchResponse,
        throttle_time=0,
        error_code=ErrorCode.none,
        session_id=0,
        responses=tuple(responses),
    )


async def _read_all(
    ctx: RequestContext,
    mod: Any,
    request: Any,
    wanted: list[tuple[Any, str | None, Any]],
    by_id: bool,
) -> tuple[int, list[Any]]:
    broker = ctx.broker
    remaining = request.max_bytes
    min_one = True
    total = 0
    read_committed = request.isolation_level == READ_COMMITTED
    responses = []
    for key, name, partitions in wanted:
        out = []
        for p in partitions:
            log = broker.logs.get_log(name, p.partition) if name else None
            if log is None:
                error = (
                    ErrorCode.unknown_topic_id if by_id else ErrorCode.unknown_topic_or_partition
                )
                out.append(_partition(mod, p.partition, error, -1, -1, -1, read_committed, b""))
                continue
            hw = log.log_end_offset
            start = log.log_start_offset
            epoch = p.current_leader_epoch if ctx.version >= 9 else -1
            if epoch >= 0 and epoch != broker.leader_epoch:
                error = (
                    ErrorCode.fenced_leader_epoch
                    if epoch < broker.leader_epoch
                    else ErrorCode.unknown_leader_epoch
                )
                out.append(_partition(mod, p.partition, error, hw, hw, start, read_committed, b""))
                continue
            if p.fetch_offset < start or p.fetch_offset > hw:
                out.append(
                    _partition(
                        mod,
                        p.partition,
                        ErrorCode.offset_out_of_range,
                        hw,
                        hw,
                        start,
                        read_committed,
                        b"",
                    )
                )
                continue
            data = b""
            limit = min(p.partition_max_bytes, remaining)
            if p.fetch_offset < hw and (limit > 0 or min_one):
                if limit > INLINE_READ_LIMIT:
                    read = functools.partial(log.read, p.fetch_offset, limit, min_one=min_one)
                    data = await anyio.to_thread.run_sync(read)
                else:
                    data = log.read(p.fetch_offset, limit, min_one=min_one)
            if data:
                min_one = False
                remaining -= len(data)
                total += len(data)
            out.append(
                _partition(mod, p.partition, ErrorCode.none, hw, hw, start, read_committed, data)
            )
        if by_id:
            responses.append(make(mod.FetchableTopicResponse, topic_id=key, partitions=tuple(out)))
        else:
            responses.append(make(mod.FetchableTopicResponse, topic=key, partitions=tuple(out)))
    return total, responses


def _partition(
    mod: Any,
    index: int,
    error: ErrorCode,
    hw: int,
    lso: int,
    log_start: int,
    read_committed: bool,
    records: bytes,
) -> Any:
    return make(
        mod.PartitionData,
        partition_index=index,
        error_code=error,
        high_watermark=hw,
        last_stable_offset=lso,
        log_start_offset=log_start,
        aborted_transactions=() if read_committed else None,
        preferred_read_replica=-1,
        records=records,
    )
