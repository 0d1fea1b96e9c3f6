"""The confluent-kafka side of the benchmark: small client programs run in their own process.

``python -m bench.clients produce|consume|pingpong ...`` does one timed run and prints one JSON
object on stdout. They run as subprocesses (``run_client``) so that the Python client does not
share a GIL with the runner's threads (the memory sampler) and so that each run starts with a
fresh librdkafka instance, as a user's program would.

- produce: a tight ``produce()`` loop with the client's default batching (linger.ms 5, batch
  size 1 MB); on BufferError (the local queue is full) it serves delivery reports with poll()
  and tries again; ``flush()`` at the end. The rate is records over the wall time from the first
  produce() to flush() returning. The connection and the topic's metadata are fetched before the
  clock starts.
- consume: assigns partition 0 from the beginning (no group join, so no rebalance in the
  timing) and reads until it has the records asked for; the clock starts at assign().
- pingpong: produce one record (acks as asked, linger.ms 0), wait until the consumer (assigned
  to the same partition) returns it, repeat; the latency is from produce() to poll() returning
  the record, the consumer's fetch waiting at the broker for data meanwhile.
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import time
from typing import Any

from bench.core import ROOT

PERCENTILES = {"p50": 0.5, "p99": 0.99, "p99.9": 0.999}


def payload(size: int) -> bytes:
    """Random upper-case letters, as kafka-producer-perf-test's records (incompressible enough
    that no codec would matter; none is used)."""
    rng = random.Random(0)
    return bytes(rng.randrange(65, 91) for _ in range(size))


def percentile(sorted_values: list[float], q: float) -> float:
    """The value at index floor(n * q) of the sorted values, the rank EndToEndLatency uses."""
    return sorted_values[min(len(sorted_values) - 1, int(len(sorted_values) * q))]


def produce(bootstrap: str, topic: str, count: int, size: int, acks: str) -> dict[str, Any]:
    from confluent_kafka import KafkaException, Producer

    failures: list[str] = []

    def delivered(err: Any, _msg: Any) -> None:
        if err is not None:
            failures.append(str(err))

    producer = Producer({"bootstrap.servers": bootstrap, "acks": acks})
    producer.list_topics(topic, timeout=30)
    value = payload(size)
    send = producer.produce
    start = time.perf_counter()
    for _ in range(count):
        try:
            send(topic, value, on_delivery=delivered)
        except BufferError:
            producer.poll(0.005)
            while True:
                try:
                    send(topic, value, on_delivery=delivered)
                    break
                except BufferError:
                    producer.poll(0.005)
    left = producer.flush(300)
    seconds = time.perf_counter() - start
    if left or failures:
        raise KafkaException(f"{left} records undelivered, {len(failures)} failed: {failures[:3]}")
    return {"records": count, "seconds": seconds, "bytes": count * size}


def consume(bootstrap: str, topic: str, count: int) -> dict[str, Any]:
    from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, TopicPartition

    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"bench-consume-{time.time_ns()}",
            "enable.auto.commit": False,
            "enable.partition.eof": False,
        }
    )
    records = 0
    size = 0
    try:
        start = time.perf_counter()
        consumer.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
        deadline = time.monotonic() + 300
        while records < count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"read {records} of {count} records in 300 s")
            # consume() waits until it has as many records as asked or the timeout passes:
            # never ask for more than are left, or the last call would wait out its timeout.
            for msg in consumer.consume(min(10_000, count - records), 1.0):
                if msg.error() is not None:
                    raise KafkaException(msg.error())
                records += 1
                size += len(msg.value() or b"") + len(msg.key() or b"")
        seconds = time.perf_counter() - start
    finally:
        consumer.close()
    return {"records": records, "seconds": seconds, "bytes": size}


def pingpong(
    bootstrap: str, topic: str, count: int, size: int, acks: str, warmup: int
) -> dict[str, Any]:
    from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, Producer, TopicPartition

    producer = Producer({"bootstrap.servers": bootstrap, "acks": acks, "linger.ms": 0})
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"bench-pingpong-{time.time_ns()}",
            "enable.auto.commit": False,
            "enable.partition.eof": False,
        }
    )
    # A fresh topic read from its beginning: the first record cannot be missed, whenever the
    # consumer's position is resolved. The warm-up records are not counted.
    consumer.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
    filler = payload(size)
    latencies: list[float] = []
    try:
        for i in range(warmup + count):
            value = (b"%010d" % i + filler)[:size] if size >= 10 else filler
            start = time.perf_counter()
            producer.produce(topic, value)
            while True:
                msg = consumer.poll(60)
                if msg is None:
                    raise TimeoutError(f"record {i} not consumed in 60 s")
                if msg.error() is not None:
                    raise KafkaException(msg.error())
                if msg.value() == value:
                    break
            elapsed = (time.perf_counter() - start) * 1000
            producer.poll(0)
            if i >= warmup:
                latencies.append(elapsed)
        if producer.flush(30):
            raise KafkaException("ping-pong records left undelivered")
    finally:
        consumer.close()
    latencies.sort()
    result: dict[str, Any] = {
        "records": len(latencies),
        "warmup": warmup,
        "avg": sum(latencies) / len(latencies),
        "max": latencies[-1],
    }
    result.update({name: percentile(latencies, q) for name, q in PERCENTILES.items()})
    return result


def run_client(command: str, *args: object, timeout: float = 900.0) -> dict[str, Any]:
    """Run one client program in a subprocess and return what it printed."""
    cmd = [sys.executable, "-m", "bench.clients", command, *map(str, args)]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise RuntimeError(f"bench.clients {command} failed ({done.returncode}):\n{done.stderr}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def embedded(starts: int) -> dict[str, Any]:
    """kpy.Broker in this process: the import, then ``starts`` start -> ready -> stop cycles.
    Ready: ApiVersions and Metadata answered (kpy.client.probe, as ``kpy wait``)."""
    began = time.perf_counter()
    import kpy
    from kpy import client

    kpy.Broker  # noqa: B018  # loads kpy.embedded, as the first use does
    imported = time.perf_counter() - began
    ready: list[float] = []
    for _ in range(starts):
        start = time.perf_counter()
        broker = kpy.Broker().start()
        try:
            client.probe(broker.bootstrap_servers)
            ready.append(time.perf_counter() - start)
        finally:
            broker.stop()
    return {"import_s": imported, "ready_s": ready}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.clients")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("produce")
    p.add_argument("bootstrap")
    p.add_argument("topic")
    p.add_argument("count", type=int)
    p.add_argument("size", type=int)
    p.add_argument("acks")
    c = sub.add_parser("consume")
    c.add_argument("bootstrap")
    c.add_argument("topic")
    c.add_argument("count", type=int)
    g = sub.add_parser("pingpong")
    g.add_argument("bootstrap")
    g.add_argument("topic")
    g.add_argument("count", type=int)
    g.add_argument("size", type=int)
    g.add_argument("acks")
    g.add_argument("warmup", type=int)
    e = sub.add_parser("embedded")
    e.add_argument("starts", type=int)
    a = parser.parse_args(argv)
    if a.command == "embedded":
        result = embedded(a.starts)
    elif a.command == "produce":
        result = produce(a.bootstrap, a.topic, a.count, a.size, a.acks)
    elif a.command == "consume":
        result = consume(a.bootstrap, a.topic, a.count)
    else:
        result = pingpong(a.bootstrap, a.topic, a.count, a.size, a.acks, a.warmup)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
