"""CPU per request of Broker.dispatch, in-process (no network): Produce and Fetch.

    python scripts/bench_dispatch.py [--size 100] [--requests 5000] [--no-fetch]

Produces --requests Produce v9 requests, each one uncompressed ~16 KB batch of --size byte
records (acks=1), straight into Broker.dispatch on an event loop, then reads the log back with
Fetch v12 requests of 1 MB. Prints wall and CPU time per request: what the handlers, the codec
and the log cost without the sockets. Numbers vary with the machine's load; compare runs back
to back (PYTHONPATH=<another tree> runs another version of kpy).
"""

from __future__ import annotations

import argparse
import datetime
import io
import os
import struct
import tempfile
import time
from typing import Any

import anyio
from kio.schema.fetch.v12 import request as fr
from kio.schema.produce.v9 import request as pr
from kio.serial import entity_writer
from kio.static.primitive import i8, i16, i32, i64

from kpy.broker import Broker
from kpy.config import BrokerConfig
from kpy.protocol import records as rb


def _frame(api_key: int, version: int, request: Any) -> bytes:
    body = io.BytesIO()
    entity_writer(type(request))(body, request)
    return struct.pack(">hhih", api_key, version, 1, 3) + b"raw\x00" + body.getvalue()


def _produce(batch: bytes) -> bytes:
    part = pr.PartitionProduceData(index=i32(0), records=batch)
    request = pr.ProduceRequest(
        transactional_id=None,
        acks=i16(1),
        timeout=datetime.timedelta(seconds=30),
        topic_data=(pr.TopicProduceData(name="load", partition_data=(part,)),),
    )
    return _frame(0, 9, request)


def _fetch(offset: int) -> bytes:
    part = fr.FetchPartition(
        partition=i32(0),
        current_leader_epoch=i32(-1),
        fetch_offset=i64(offset),
        last_fetched_epoch=i32(-1),
        log_start_offset=i64(-1),
        partition_max_bytes=i32(1 << 20),
    )
    request = fr.FetchRequest(
        replica_id=i32(-1),
        max_wait=datetime.timedelta(0),
        min_bytes=i32(1),
        max_bytes=i32(50 << 20),
        isolation_level=i8(0),
        session_id=i32(0),
        session_epoch=i32(-1),
        topics=(fr.FetchTopic(topic="load", partitions=(part,)),),
        forgotten_topics_data=(),
        rack_id="",
    )
    return _frame(1, 12, request)


async def run(size: int, requests: int, fetch: bool) -> None:
    per_batch = max(1, 16000 // (size + 10))
    now = int(time.time() * 1000)
    batch = rb.build_batch([(None, os.urandom(size))] * per_batch, timestamp=now)
    frame = _produce(batch)
    with tempfile.TemporaryDirectory() as data:
        broker = Broker(BrokerConfig.load(None, {"log.dirs": data}))
        try:
            await broker.create_topic("load", 1, 1, {})
            for _ in range(100):  # warm up: imports, caches
                await broker.dispatch(frame, "bench")
            wall, cpu = time.perf_counter(), time.process_time()
            for _ in range(requests):
                await broker.dispatch(frame, "bench")
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            print(
                f"produce: {wall / requests * 1e6:.1f} us wall, {cpu / requests * 1e6:.1f} us CPU "
                f"per request ({per_batch} x {size} B, {len(batch)} B batch)"
            )
            if not fetch:
                return
            total = (requests + 100) * per_batch
            step = (1 << 20) // len(batch) * per_batch
            count = received = 0
            wall, cpu = time.perf_counter(), time.process_time()
            for offset in range(0, total, step):
                response = await broker.dispatch(_fetch(offset), "bench")
                assert response is not None
                count += 1
                received += len(response)
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            print(
                f"fetch:   {wall / count * 1e3:.2f} ms wall, {cpu / count * 1e3:.2f} ms CPU per "
                f"request of {received / count / 1e6:.2f} MB ({received / cpu / 1e6:.0f} MB/s CPU)"
            )
        finally:
            broker.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", type=int, default=100)
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--no-fetch", action="store_true")
    args = parser.parse_args()
    options = {"use_uvloop": True}
    anyio.run(run, args.size, args.requests, not args.no_fetch, backend_options=options)


if __name__ == "__main__":
    main()
