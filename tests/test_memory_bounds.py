"""Memory bounds against a real kpy over real sockets: requests read ahead of a waiting one,
large requests and queued.max.request.bytes, responses a client does not read
(kpy.queued.max.response.bytes), fetch.max.bytes, and slow readers closed as idle.

kpy's memory is read from /proc/<pid>/status (VmRSS). Where a test waits for something that must
not happen it gives it a second: it checks that kpy holds back, not how fast it is.
"""

from __future__ import annotations

import struct
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
from kio.schema.errors import ErrorCode
from kio.schema.produce.v9 import request as pr
from kio.static.primitive import i16, i32
from kpy_process import KpyProcess
from rawclient import RawClient
from requests_v import fetch, metadata, produce, produce_result
from test_connection_limits import api_versions, no_answer, rss_kib, uvarint

from kpy.memory_pool import ALLOWANCE
from kpy.protocol import records as rb

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import load

Factory = Callable[..., KpyProcess]


@pytest.fixture
def stack() -> Iterator[ExitStack]:
    with ExitStack() as s:
        yield s


def batches(response: Any) -> int:
    records = response.responses[0].partitions[0].records or b""
    return sum(1 for _ in rb.iter_headers(records))


def fill(bootstrap: str, topic: str, count: int, size: int) -> None:
    with RawClient(bootstrap) as c:
        metadata(c, topic)
        for i in range(count):
            batch = rb.build_batch([(None, bytes([i % 256]) * size)])
            assert produce_result(produce(c, topic, batch))[0] == ErrorCode.none


def test_requests_pipelined_behind_a_long_poll_are_read_a_little_at_a_time(
    kpy: KpyProcess,
) -> None:
    """A client pipelines 20 MiB of requests behind a Fetch that waits: kpy reads about a MiB
    of them (then stops reading the socket, as Kafka mutes a channel), and answers them all,
    in order, once the Fetch has been answered."""
    assert kpy.proc is not None
    with RawClient(kpy.bootstrap) as c:
        metadata(c, "quiet")
        before = rss_kib(kpy.proc.pid)
        fetch(c, [("quiet", 0, 0, 1 << 20)], max_wait_ms=3000, min_bytes=1, send_only=True)
        first = c.correlation_id
        name = b"a" * 1000
        body = uvarint(len(name) + 1) + name + b"\x021\x00"
        frames = [c.frame(18, 3, body) for _ in range(20_000)]
        sender = threading.Thread(target=c.send_bytes, args=(b"".join(frames),), daemon=True)
        sender.start()
        time.sleep(1.5)  # the Fetch still waits
        grown_mib = (rss_kib(kpy.proc.pid) - before) / 1024
        assert grown_mib < 16, f"kpy grew by {grown_mib:.0f} MiB holding pipelined requests"
        for expected in range(first, first + 1 + len(frames)):
            (corr,) = struct.unpack(">i", c.recv_frame()[:4])
            assert corr == expected
        sender.join(10)
        assert not sender.is_alive()


@pytest.mark.parametrize("delta", [-1, 0, 1])
def test_requests_about_the_size_of_the_allowance_are_read(kpy: KpyProcess, delta: int) -> None:
    """A request of just under, just at and just over what a connection may hold without a
    reservation is read whole and answered (MESSAGE_TOO_LARGE: its batch is over
    message.max.bytes), also when all of it but its last bytes has been read (kpy then holds
    more than the allowance, all of it the request it must finish reading)."""
    size = ALLOWANCE + delta
    with RawClient(kpy.bootstrap) as c:
        metadata(c, load.BIG)
        prefix = load.produce_prefix(load.BIG, 0, 1)
        records = size - (len(prefix) - 4)
        frame = load.produce_prefix(load.BIG, records, 1) + load.batch_header(records)
        whole = frame + bytes(records - 61)
        assert struct.unpack(">i", whole[:4])[0] == size
        c.send_bytes(whole[:-2])
        time.sleep(0.3)  # kpy reads it all before the last two bytes come
        c.send_bytes(whole[-2:])
        response = c.recv_frame()
        assert load.produce_error(response) == ErrorCode.message_too_large


def produce_request(size: int) -> pr.ProduceRequest:
    """A Produce request carrying one batch of about ``size`` bytes."""
    import datetime

    batch = rb.build_batch([(None, b"x" * size)])
    return pr.ProduceRequest(
        transactional_id=None,
        acks=i16(-1),
        timeout=datetime.timedelta(seconds=5),
        topic_data=(
            pr.TopicProduceData(
                name="large",
                partition_data=(pr.PartitionProduceData(index=i32(0), records=batch),),
            ),
        ),
    )


def test_a_large_request_waits_for_room_in_queued_max_request_bytes(
    kpy_factory: Factory, stack: ExitStack
) -> None:
    """A request larger than the per-connection allowance is read only once its size is
    reserved from the pool: while a stalled client holds the pool, a 3 MiB request waits,
    ordinary requests do not; when the stalled client goes, the large request is answered."""
    broker = kpy_factory(
        {"socket.request.max.bytes": str(4 << 20), "queued.max.request.bytes": str(4 << 20)}
    )
    small = stack.enter_context(RawClient(broker.bootstrap))
    metadata(small, "large")
    stalled = stack.enter_context(RawClient(broker.bootstrap))
    stalled.send_bytes(struct.pack(">i", 3 << 20) + b"\x00" * (100 << 10))
    assert api_versions(small) == ErrorCode.none  # the stalled bytes have been read by now
    large = stack.enter_context(RawClient(broker.bootstrap))
    request = produce_request(3 << 20)
    sender = threading.Thread(target=large.send, args=(request,), daemon=True)
    sender.start()
    assert no_answer(large)
    assert api_versions(small) == ErrorCode.none
    stalled.close()
    response = large.response(request)
    # The batch is over message.max.bytes: Kafka's answer once the request is read.
    assert produce_result(response)[0] == ErrorCode.message_too_large
    sender.join(10)


def test_slow_readers_leave_a_fetch_one_batch(kpy_factory: Factory, stack: ExitStack) -> None:
    """A client that never reads holds its Fetch response in kpy's memory; once such
    responses fill kpy.queued.max.response.bytes, other fetches return one batch each (and
    make progress), and once the slow reader goes they return in full again."""
    broker = kpy_factory({"kpy.queued.max.response.bytes": str(4 << 20)})
    fill(broker.bootstrap, "big", 16, 500_000)
    slow = stack.enter_context(RawClient(broker.bootstrap, recv_buffer=4096))
    fetch(slow, [("big", 0, 0, 50 << 20)], send_only=True)
    good = stack.enter_context(RawClient(broker.bootstrap))
    deadline = time.monotonic() + 10
    count = batches(fetch(good, [("big", 0, 0, 50 << 20)]))
    while count != 1 and time.monotonic() < deadline:
        time.sleep(0.05)
        count = batches(fetch(good, [("big", 0, 0, 50 << 20)]))
    assert count == 1
    second = batches(fetch(good, [("big", 0, 1, 50 << 20)]))  # the next batch: progress
    assert second == 1
    slow.close()
    deadline = time.monotonic() + 10
    while count == 1 and time.monotonic() < deadline:
        time.sleep(0.05)
        count = batches(fetch(good, [("big", 0, 0, 50 << 20)]))
    assert count == 8  # as many as fit in kpy.queued.max.response.bytes


def test_fetch_max_bytes_caps_a_fetch(kpy_factory: Factory) -> None:
    broker = kpy_factory({"fetch.max.bytes": "1024"})
    fill(broker.bootstrap, "capped", 3, 600)
    with RawClient(broker.bootstrap) as c:
        assert batches(fetch(c, [("capped", 0, 0, 50 << 20)])) == 1
    fill(broker.bootstrap, "first-is-larger", 2, 5000)
    with RawClient(broker.bootstrap) as c:  # at least one batch, as for the client's own limit
        assert batches(fetch(c, [("first-is-larger", 0, 0, 50 << 20)])) == 1


def test_a_slow_reader_is_closed_as_idle_and_its_response_dropped(
    kpy_factory: Factory, stack: ExitStack
) -> None:
    broker = kpy_factory(
        {"connections.max.idle.ms": "1000", "kpy.queued.max.response.bytes": str(4 << 20)}
    )
    fill(broker.bootstrap, "big", 16, 500_000)
    slow = stack.enter_context(RawClient(broker.bootstrap, recv_buffer=4096))
    fetch(slow, [("big", 0, 0, 50 << 20)], send_only=True)
    time.sleep(3)  # no write progress: idle past connections.max.idle.ms
    with pytest.raises(ConnectionError):
        slow.recv_frame()  # part of the response, then the end of the stream
    with RawClient(broker.bootstrap) as good:  # the memory it held is free again
        assert batches(fetch(good, [("big", 0, 0, 50 << 20)])) == 8
