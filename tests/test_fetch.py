"""Fetch and ListOffsets semantics over raw requests: whole batches, KIP-74 limits, empty records
as zero bytes, out-of-range offsets, the long poll woken by an append, LogAppendTime, acks=0."""

from __future__ import annotations

import datetime
import select
import struct

from kio.schema.errors import ErrorCode
from kio.schema.produce.v9 import request as pr
from kpy_process import KpyProcess
from rawclient import RawClient
from requests_v import create_topic, fetch, list_offsets, metadata, produce, produce_result

from kpy.protocol import records as rb


def batch(n: int, size: int = 10, ts: int = 1_000) -> bytes:
    return rb.build_batch([(b"k", b"x" * size) for _ in range(n)], timestamp=ts)


def offsets(records: bytes) -> list[int]:
    out = []
    for pos, _ in rb.iter_headers(records):
        end = pos + rb.batch_size_at(records, pos)
        out += [r.offset for r in rb.decode_records(records[pos:end])]
    return out


def readable(client: RawClient, timeout_s: float) -> bool:
    poller = select.poll()
    poller.register(client.sock, select.POLLIN)
    return bool(poller.poll(timeout_s * 1000))


def test_fetch_returns_the_whole_batch_holding_the_offset(kpy: KpyProcess) -> None:
    with RawClient(kpy.bootstrap) as c:
        metadata(c, "t")
        produce(c, "t", batch(5))
        produce(c, "t", batch(5))
        part = fetch(c, [("t", 0, 2, 1 << 20)]).responses[0].partitions[0]
        assert part.error_code == ErrorCode.none
        assert offsets(part.records) == list(range(10))
        assert (part.high_watermark, part.log_start_offset) == (10, 0)


def test_limits_keep_whole_batches_and_give_at_least_one(kpy: KpyProcess) -> None:
    with RawClient(kpy.bootstrap) as c:
        create_topic(c, "lim", 2)
        for _ in range(3):
            produce(c, "lim", batch(1, 1000), partition=0)
        produce(c, "lim", batch(1, 1000), partition=1)
        one = len(batch(1, 1000))
        # Smaller than one batch: still one whole batch (KIP-74).
        part = fetch(c, [("lim", 0, 0, 10)]).responses[0].partitions[0]
        assert len(part.records) == one
        # Room for two and a half: two whole batches.
        part = fetch(c, [("lim", 0, 0, one * 5 // 2)]).responses[0].partitions[0]
        assert len(part.records) == 2 * one
        # The request's max_bytes is spent on the first partition; the next gets nothing, as
        # zero bytes rather than null.
        resp = fetch(c, [("lim", 0, 0, 1 << 20), ("lim", 1, 0, 1 << 20)], max_bytes=one + 10)
        p0, p1 = resp.responses[0].partitions
        assert len(p0.records) == one
        assert p1.records == b"" and p1.error_code == ErrorCode.none and p1.high_watermark == 1


def test_empty_partition_and_out_of_range(kpy: KpyProcess) -> None:
    with RawClient(kpy.bootstrap) as c:
        metadata(c, "e")
        part = fetch(c, [("e", 0, 0, 1 << 20)]).responses[0].partitions[0]
        assert part.error_code == ErrorCode.none and part.records == b""
        produce(c, "e", batch(3))
        part = fetch(c, [("e", 0, 4, 1 << 20)]).responses[0].partitions[0]
        assert part.error_code == ErrorCode.offset_out_of_range
        # As Kafka's createLogReadResult(e): no offsets with an error.
        assert part.high_watermark == -1 and part.records == b""
        part = fetch(c, [("nope", 0, 0, 1 << 20)]).responses[0].partitions[0]
        assert part.error_code == ErrorCode.unknown_topic_or_partition


def test_long_poll_waits_for_min_bytes_and_wakes_on_append(kpy: KpyProcess) -> None:
    with RawClient(kpy.bootstrap) as waiter, RawClient(kpy.bootstrap) as writer:
        metadata(writer, "poll")
        produce(writer, "poll", batch(2))
        fetch(waiter, [("poll", 0, 2, 1 << 20)], max_wait_ms=60_000, min_bytes=1, send_only=True)
        # Nothing to return yet: the broker holds the request.
        assert not readable(waiter, 0.5)
        assert produce_result(produce(writer, "poll", batch(3)))[1] == 2
        # The append wakes it long before its 60 s max wait (the socket timeout is 20 s).
        waiter.sock.settimeout(20)
        data = waiter.recv_frame()
        assert struct.unpack_from(">i", data)[0] == waiter.correlation_id
        assert not readable(waiter, 0)
        part = fetch(waiter, [("poll", 0, 2, 1 << 20)]).responses[0].partitions[0]
        assert offsets(part.records) == [2, 3, 4]


def test_list_offsets_earliest_latest_and_max_timestamp(kpy: KpyProcess) -> None:
    with RawClient(kpy.bootstrap) as c:
        metadata(c, "lo")
        assert list_offsets(c, "lo", 0, -1).offset == 0
        assert list_offsets(c, "lo", 0, -3).offset == -1
        produce(c, "lo", batch(2, ts=5_000))
        produce(c, "lo", batch(2, ts=9_000))
        produce(c, "lo", batch(2, ts=7_000))
        assert (list_offsets(c, "lo", 0, -2).offset, list_offsets(c, "lo", 0, -1).offset) == (0, 6)
        latest = list_offsets(c, "lo", 0, -3)
        assert (latest.offset, latest.timestamp) == (2, 9_000)
        assert (
            list_offsets(c, "lo", 0, 6_000).offset,
            list_offsets(c, "lo", 0, 6_000).timestamp,
        ) == (2, 9_000)
        assert list_offsets(c, "lo", 0, 9_001).offset == -1
        assert list_offsets(c, "nope", 0, -1).error_code == ErrorCode.unknown_topic_or_partition


def test_log_append_time_topic(kpy: KpyProcess) -> None:
    with RawClient(kpy.bootstrap) as c:
        result = create_topic(c, "lat", 1, message_timestamp_type="LogAppendTime")
        assert result.error_code == ErrorCode.none
        resp = produce(c, "lat", batch(3, ts=1_000))
        part = resp.responses[0].partition_responses[0]
        assert part.error_code == ErrorCode.none and part.log_append_time is not None
        appended = int(part.log_append_time.timestamp() * 1000)
        assert appended > 1_000_000
        records = fetch(c, [("lat", 0, 0, 1 << 20)]).responses[0].partitions[0].records
        header = rb.read_header(records)
        assert header.is_log_append_time and header.max_timestamp == appended
        assert rb.validate_batches(records)
        found = list_offsets(c, "lat", 0, appended)
        assert (found.offset, found.timestamp) == (0, appended)


def test_acks_zero_gets_no_response(kpy: KpyProcess) -> None:
    with RawClient(kpy.bootstrap) as c:
        metadata(c, "a0")
        c.send(
            pr.ProduceRequest(
                transactional_id=None,
                acks=0,
                timeout=datetime.timedelta(seconds=1),
                topic_data=(
                    pr.TopicProduceData(
                        name="a0",
                        partition_data=(pr.PartitionProduceData(index=0, records=batch(4)),),
                    ),
                ),
            )
        )
        # The next response on the connection answers the next request.
        error, base = produce_result(produce(c, "a0", batch(1)))
        assert (error, base) == (ErrorCode.none, 4)
