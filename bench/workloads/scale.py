"""Scale: many partitions, many idle connections, a big consumer group (issue 6, item 5).

Each workload runs against kpy and against Apache Kafka; sizes come from Scale (1,000 partitions,
200 connections, 20 members at full size; 50, 20 and 4 with --quick). Every figure is taken
``Scale.repeats`` times (the group's ``Scale.group_runs``, 7) and the median reported; the runs
are in the detail.

- **Many partitions, small batches.** The time to create a topic of ``Scale.partitions``
  partitions (from CreateTopics sent until Metadata shows every partition with a leader, which
  is when a client can use it), then a confluent-kafka producer (its own process) writing
  ``Scale.small_records`` records of 100 bytes round-robin over every partition (explicit
  partition i % P), with the client's default batching (linger.ms 5, acks=all). Spread that
  thin, each partition collects a record or two per linger, so every Produce request carries
  hundreds of partitions of tiny batches: the broker's per-partition path (lookup, append,
  index, response entry) is what costs, not the bytes. The average batch the client built is in
  the detail (librdkafka's statistics). kafka-producer-perf-test would not do this: its sticky
  partitioner fills one partition's batch at a time.
- **Idle connections beside a busy producer.** ``Scale.idle_connections`` sockets each do an
  ApiVersions and a Metadata, as a client starting up does, and then stay idle (Kafka closes a
  connection after connections.max.idle.ms, 10 minutes); then kafka-producer-perf-test writes
  ``Scale.small_records`` records of 100 bytes with acks=1 (the produce workload's "1M x 100 B
  acks=1" row) on a fresh one-partition topic. Reported: its records/s and the broker's peak
  resident memory during the run; the detail has the memory before and after the connections
  were opened, and how many of them still answer afterwards.
- **A consumer group of ``Scale.group_members`` members.** A topic with one partition per
  member is filled with ``Scale.small_records`` records of 100 bytes (round-robin, not timed);
  then that many confluent-kafka consumers (threads of one process, classic group protocol with
  the client's default eager assignors) subscribe at once to a fresh group. Reported: the time
  from subscribe() until every member holds its partition (the group is stable), and the
  records/s from subscribe() until every record has been read. The broker's
  group.initial.rebalance.delay.ms, as it has it (read with DescribeConfigs), is in the detail:
  Kafka's code default is 3000 ms but the server.properties it ships sets 0, which is what the
  Kafka broker here runs with; kpy's default is 0 too.

The confluent-kafka programs run as ``python -m bench.workloads.scale <program> <json>`` so that
the client has a process (and a GIL) of its own; each prints one JSON object.
"""

from __future__ import annotations

import json
import os
import socket
import statistics
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from bench.core import (
    PERF_LINE,
    ROOT,
    Context,
    Measurement,
    Sampler,
    Workload,
    create_topic,
    java_tool,
)

RECORD_SIZE = 100
MB = 1024 * 1024


# --- helpers of the parent (the runner's process) -------------------------------------------


def run_program(name: str, timeout: float = 900.0, **params: Any) -> dict[str, Any]:
    """Run one of this module's client programs in a process of its own; its JSON result."""
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    done = subprocess.run(
        [sys.executable, "-m", "bench.workloads.scale", name, json.dumps(params)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "PYTHONPATH": path},
    )
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"{name} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    result: dict[str, Any] = json.loads(lines[-1])
    return result


def median(values: list[float]) -> float:
    return float(statistics.median(values))


def create_topic_timed(bootstrap: str, topic: str, partitions: int) -> dict[str, float]:
    """Create a topic; seconds until CreateTopics answered and until Metadata shows every
    partition with a leader (polled every 10 ms). The admin client is connected beforehand."""
    from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.list_topics(timeout=30)
    start = time.perf_counter()
    admin.create_topics([NewTopic(topic, partitions, 1)], operation_timeout=120)[topic].result(180)
    acked = time.perf_counter() - start
    deadline = start + 180
    while time.perf_counter() < deadline:
        t = admin.list_topics(topic, timeout=30).topics.get(topic)
        if (
            t is not None
            and t.error is None
            and len(t.partitions) == partitions
            and all(p.leader >= 0 for p in t.partitions.values())
        ):
            return {"acked_s": acked, "ready_s": time.perf_counter() - start}
        time.sleep(0.01)
    raise TimeoutError(f"topic {topic} not ready after 180 s")


def delete_topic(bootstrap: str, topic: str) -> None:
    """Delete a workload's topic so that the next run (and workload) finds the broker as
    before; not timed."""
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.delete_topics([topic], operation_timeout=60)[topic].result(120)


def forget_topic(ctx: Context, topic: str) -> None:
    """Delete a topic at the end of a workload; a failure (the broker died, say) is logged,
    not raised over the error that ended the workload."""
    try:
        delete_topic(ctx.bootstrap, topic)
    except Exception as e:
        ctx.log(f"  could not delete {topic}: {e!r}")


def broker_config(bootstrap: str, name: str) -> str | None:
    """One broker config as the broker reports it (DescribeConfigs), or None."""
    from confluent_kafka.admin import (  # type: ignore[attr-defined]
        AdminClient,
        ConfigResource,
        ResourceType,
    )

    admin = AdminClient({"bootstrap.servers": bootstrap})
    brokers = admin.list_topics(timeout=30).brokers
    resource = ConfigResource(ResourceType.BROKER, str(next(iter(brokers))))
    configs = admin.describe_configs([resource])[resource].result(30)
    entry = configs.get(name)
    return None if entry is None else str(entry.value)


def perf_producer(bootstrap: str, topic: str, records: int, acks: str) -> dict[str, float]:
    """kafka-producer-perf-test, 100-byte records, no throttle; its summary line."""
    out = java_tool(
        "kafka-producer-perf-test",
        ["--topic", topic, "--num-records", str(records), "--record-size", str(RECORD_SIZE),
         "--throughput", "-1", "--producer-props", f"bootstrap.servers={bootstrap}",
         f"acks={acks}"],
    )  # fmt: skip
    summary = out.strip().splitlines()[-1]
    m = PERF_LINE.match(summary)
    if m is None or int(m["n"]) != records:
        raise RuntimeError(f"kafka-producer-perf-test did not send {records} records:\n{out}")
    return {"records_per_s": float(m["rate"]), "avg_ms": float(m["avg"]), "p99_ms": float(m["p99"])}


# --- 1. many partitions, small batches --------------------------------------------------------


def many_partitions(ctx: Context) -> list[Measurement]:
    partitions, records = ctx.scale.partitions, ctx.scale.small_records
    runs: list[dict[str, Any]] = []
    for i in range(ctx.scale.repeats):
        topic = f"scale-partitions-{partitions}-{i}"
        created = create_topic_timed(ctx.bootstrap, topic, partitions)
        ctx.log(f"  {topic}: ready after {created['ready_s']:.2f} s")
        produced = run_program(
            "produce_spread",
            bootstrap=ctx.bootstrap,
            topic=topic,
            records=records,
            size=RECORD_SIZE,
            partitions=partitions,
        )
        ctx.log(f"  {topic}: {produced['records_per_s']:,.0f} records/s")
        runs.append({**created, **produced})
        forget_topic(ctx, topic)
    rows = f"{partitions} partitions, small batches"
    detail: dict[str, Any] = {
        "partitions": partitions,
        "records": records,
        "record_size": RECORD_SIZE,
    }
    return [
        ctx.measurement(
            f"{rows}: create topic",
            "s",
            median([r["ready_s"] for r in runs]),
            "lower",
            **detail,
            runs=runs,
        ),
        ctx.measurement(
            f"{rows}: confluent-kafka produce",
            "msg/s",
            median([r["records_per_s"] for r in runs]),
            **detail,
            producer="confluent-kafka, explicit partition i % P, linger.ms 5, acks=all",
            runs=runs,
        ),
    ]


# --- 2. idle connections beside a busy producer -----------------------------------------------

_API_VERSIONS_V0 = (18, 0)
_METADATA_V4 = (3, 4)


def _request(api: tuple[int, int], correlation_id: int, body: bytes) -> bytes:
    client_id = b"idle"
    header = struct.pack(">hhih", api[0], api[1], correlation_id, len(client_id)) + client_id
    return struct.pack(">i", len(header) + len(body)) + header + body


def _exchange(sock: socket.socket, request: bytes, correlation_id: int) -> None:
    """Send one request and read its whole response; check it answers this request."""
    sock.sendall(request)
    size = struct.unpack(">i", _recv_exact(sock, 4))[0]
    response = _recv_exact(sock, size)
    if struct.unpack_from(">i", response)[0] != correlation_id:
        raise RuntimeError("a response to another request")


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    out = bytearray()
    while len(out) < n:
        chunk = sock.recv(n - len(out))
        if not chunk:
            raise ConnectionError("closed by the broker")
        out += chunk
    return bytes(out)


def open_idle_connections(bootstrap: str, count: int, topic: str) -> list[socket.socket]:
    """``count`` connections that each did ApiVersions v0 and Metadata v4 (for ``topic``, no
    auto-creation), as a client starting up does, then send nothing more."""
    host, port = bootstrap.rsplit(":", 1)
    name = topic.encode()
    # Metadata v4: one topic name, allow_auto_topic_creation false.
    metadata = struct.pack(">ih", 1, len(name)) + name + b"\x00"
    sockets: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = socket.create_connection((host, int(port)), timeout=30)
            sockets.append(sock)
            _exchange(sock, _request(_API_VERSIONS_V0, 1, b""), 1)
            _exchange(sock, _request(_METADATA_V4, 2, metadata), 2)
    except BaseException:
        for sock in sockets:
            sock.close()
        raise
    return sockets


def still_answering(sockets: list[socket.socket]) -> int:
    """How many of the idle connections still answer an ApiVersions."""
    alive = 0
    for sock in sockets:
        try:
            _exchange(sock, _request(_API_VERSIONS_V0, 3, b""), 3)
            alive += 1
        except OSError:
            pass
    return alive


def idle_connections(ctx: Context) -> list[Measurement]:
    count, records = ctx.scale.idle_connections, ctx.scale.small_records
    broker = ctx.broker
    base = "scale-idle"
    create_topic(ctx.bootstrap, base)
    topics = [base]
    rss_before = broker.rss()[0]
    sockets = open_idle_connections(ctx.bootstrap, count, base)
    try:
        time.sleep(1.0)  # let the broker settle what the connections allocated
        rss_idle = broker.rss()[0]
        ctx.log(f"  {count} idle connections: RSS {rss_before / MB:.0f} -> {rss_idle / MB:.0f} MB")
        runs: list[dict[str, Any]] = []
        for i in range(ctx.scale.repeats):
            topic = f"{base}-{i}"
            create_topic(ctx.bootstrap, topic)
            topics.append(topic)
            with Sampler(broker.pid) as sampler:
                result = perf_producer(ctx.bootstrap, topic, records, "1")
            runs.append({**result, "rss_peak_mb": sampler.peak / MB})
            ctx.log(f"  {topic}: {result['records_per_s']:,.0f} records/s")
        alive = still_answering(sockets)
    finally:
        for sock in sockets:
            sock.close()
        for topic in topics:
            forget_topic(ctx, topic)
    rows = f"{count} idle connections + producer"
    detail: dict[str, Any] = {
        "connections": count,
        "connections_answering_after": alive,
        "records": records,
        "record_size": RECORD_SIZE,
        "rss_before_connections_mb": rss_before / MB,
        "rss_with_idle_connections_mb": rss_idle / MB,
        "rss_per_connection_kb": (rss_idle - rss_before) / count / 1024,
        "runs": runs,
    }
    return [
        ctx.measurement(
            f"{rows}: kafka-producer-perf-test 100 B acks=1",
            "msg/s",
            median([r["records_per_s"] for r in runs]),
            **detail,
        ),
        ctx.measurement(
            f"{rows}: broker RSS peak",
            "MB",
            median([r["rss_peak_mb"] for r in runs]),
            "lower",
            **detail,
        ),
    ]


# --- 3. a consumer group of many members ------------------------------------------------------


def consumer_group(ctx: Context) -> list[Measurement]:
    members, records = ctx.scale.group_members, ctx.scale.small_records
    topic = f"scale-group-{members}"
    create_topic(ctx.bootstrap, topic, members)
    try:
        runs, delay = _group_runs(ctx, topic, members, records)
    finally:
        forget_topic(ctx, topic)
    rows = f"consumer group of {members}"
    detail: dict[str, Any] = {
        "members": members,
        "partitions": members,
        "records": records,
        "record_size": RECORD_SIZE,
        "group.initial.rebalance.delay.ms": delay,
        "defaults": "group.initial.rebalance.delay.ms: Kafka's code default 3000, its shipped "
        "server.properties (which the Kafka broker here runs) 0; kpy's default 0",
        "runs": runs,
    }
    return [
        ctx.measurement(
            f"{rows}: subscribe until stable",
            "s",
            median([r["stable_s"] for r in runs]),
            "lower",
            **detail,
        ),
        ctx.measurement(
            f"{rows}: subscribe until all read",
            "msg/s",
            median([r["records_per_s"] for r in runs]),
            **detail,
        ),
    ]


def _group_runs(
    ctx: Context, topic: str, members: int, records: int
) -> tuple[list[dict[str, Any]], str | None]:
    """Fill the topic (not timed), then ``Scale.group_runs`` fresh groups read it all."""
    run_program(
        "produce_spread",
        bootstrap=ctx.bootstrap,
        topic=topic,
        records=records,
        size=RECORD_SIZE,
        partitions=members,
    )
    delay = broker_config(ctx.bootstrap, "group.initial.rebalance.delay.ms")
    runs: list[dict[str, Any]] = []
    for i in range(ctx.scale.group_runs):
        result = run_program(
            "group_consume",
            bootstrap=ctx.bootstrap,
            topic=topic,
            group=f"scale-group-{i}",
            members=members,
            partitions=members,
        )
        if result["consumed"] < records:
            raise RuntimeError(f"the group read {result['consumed']} of {records} records")
        ctx.log(
            f"  group {i}: stable after {result['stable_s']:.2f} s, "
            f"all read after {result['done_s']:.2f} s"
        )
        runs.append({**result, "records_per_s": records / result["done_s"]})
    return runs, delay


WORKLOADS = [
    Workload("scale-partitions", many_partitions),
    Workload("scale-idle-connections", idle_connections),
    Workload("scale-consumer-group", consumer_group),
]


# --- the client programs (run in their own process) -------------------------------------------


def produce_spread(
    bootstrap: str, topic: str, records: int, size: int, partitions: int
) -> dict[str, Any]:
    """Produce ``records`` records round-robin over ``partitions`` partitions; the rate from the
    first produce() to flush() returning, and the batches librdkafka built."""
    from confluent_kafka import KafkaException, Producer

    stats: list[dict[str, Any]] = []
    errors: list[str] = []
    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            # Only failed deliveries call back: no Python call per record.
            "delivery.report.only.error": True,
            "on_delivery": lambda err, _msg: errors.append(str(err)),
            "statistics.interval.ms": 1000,
            "stats_cb": lambda raw: stats.append(json.loads(raw)),
        }
    )
    producer.list_topics(topic, timeout=30)  # connected, metadata known: not timed
    value = b"x" * size
    produce, poll = producer.produce, producer.poll
    start = time.perf_counter()
    for i in range(records):
        while True:
            try:
                produce(topic, value, partition=i % partitions)
                break
            except BufferError:
                poll(0.005)
        if not i & 0x3FF:
            poll(0)
    left = producer.flush(300)
    seconds = time.perf_counter() - start
    if left or errors:
        raise KafkaException(f"{left} records undelivered, errors: {errors[:3]}")
    # One more statistics report, covering the end of the run.
    seen = len(stats)
    deadline = time.monotonic() + 3
    while len(stats) == seen and time.monotonic() < deadline:
        poll(0.1)
    return {
        "records_per_s": records / seconds,
        "seconds": seconds,
        **_batch_stats(stats, topic, records),
    }


def _batch_stats(stats: list[dict[str, Any]], topic: str, records: int) -> dict[str, Any]:
    """Produce requests sent, records per request, and the average batch (records, bytes) of
    librdkafka's last statistics window that saw batches."""
    if not stats:
        return {}
    brokers = stats[-1].get("brokers", {}).values()
    requests = sum(b.get("req", {}).get("Produce", 0) for b in brokers)
    out: dict[str, Any] = {
        "produce_requests": requests,
        "records_per_request": records / requests if requests else None,
    }
    for report in reversed(stats):
        t = report.get("topics", {}).get(topic, {})
        if t.get("batchcnt", {}).get("cnt"):
            out["batch_records_avg"] = t["batchcnt"]["avg"]
            out["batch_bytes_avg"] = t["batchsize"]["avg"]
            break
    return out


class _Group:
    """What the members of the measured group share: their assignments and their progress.
    The run ends once every record has been read and the group has been stable (one may come
    before the other: a small topic may be read before the last member joins)."""

    def __init__(self, members: int, ends: dict[int, int]) -> None:
        self.lock = threading.Lock()
        self.assigned: list[set[int]] = [set() for _ in range(members)]
        self.ends = ends
        self.read_to: dict[int, int] = {}  # partition -> next offset read
        self.finished: set[int] = {p for p, end in ends.items() if end == 0}
        self.start = 0.0
        self.stable_at = 0.0
        self.done_at = 0.0
        self.assignments = 0
        self.done = threading.Event()

    def on_assign(self, member: int, partitions: list[int]) -> None:
        with self.lock:
            self.assignments += 1
            self.assigned[member] = set(partitions)
            if not self.stable_at and self._stable():
                self.stable_at = time.perf_counter()
                self._check_end()

    def on_revoke(self, member: int) -> None:
        with self.lock:
            self.assigned[member] = set()

    def _stable(self) -> bool:
        held = [len(a) for a in self.assigned]
        union = set().union(*self.assigned)
        return all(held) and sum(held) == len(union) == len(self.ends)

    def read(self, partition: int, offset: int) -> None:
        if offset + 1 > self.read_to.get(partition, 0):
            self.read_to[partition] = offset + 1
            if offset + 1 >= self.ends[partition] and partition not in self.finished:
                with self.lock:
                    self.finished.add(partition)
                    if len(self.finished) == len(self.ends) and not self.done_at:
                        self.done_at = time.perf_counter()
                        self._check_end()

    def _check_end(self) -> None:
        if self.stable_at and self.done_at:
            self.done.set()


def group_consume(
    bootstrap: str, topic: str, group: str, members: int, partitions: int, timeout: float = 600
) -> dict[str, Any]:
    """``members`` consumers (threads) subscribe at once to ``group``; the seconds until the
    group is stable and until every record of ``topic`` has been read."""
    from confluent_kafka import Consumer, TopicPartition

    probe = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    ends = {
        p: probe.get_watermark_offsets(TopicPartition(topic, p), timeout=30)[1]
        for p in range(partitions)
    }
    probe.close()
    state = _Group(members, ends)
    consumers = [
        Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": group,
                "auto.offset.reset": "earliest",
                "enable.partition.eof": False,
            }
        )
        for _ in range(members)
    ]
    for c in consumers:
        c.list_topics(topic, timeout=30)  # connected before the clock starts
    barrier = threading.Barrier(members + 1)
    failures: list[str] = []

    def member(index: int, consumer: Any) -> None:
        try:
            barrier.wait()
            consumer.subscribe(
                [topic],
                on_assign=lambda _c, parts: state.on_assign(index, [p.partition for p in parts]),
                on_revoke=lambda _c, _parts: state.on_revoke(index),
            )
            while not state.done.is_set():
                for msg in consumer.consume(1000, 0.1):
                    if msg.error() is None:
                        state.read(msg.partition(), msg.offset())
        except Exception as e:  # reported by the parent
            failures.append(repr(e))
            state.done.set()
        finally:
            consumer.close()

    threads = [
        threading.Thread(target=member, args=(i, c), daemon=True) for i, c in enumerate(consumers)
    ]
    for t in threads:
        t.start()
    state.start = time.perf_counter()
    barrier.wait()
    finished = state.done.wait(timeout)
    state.done.set()
    deadline = time.monotonic() + 60  # for the members to leave the group and close
    for t in threads:
        t.join(max(deadline - time.monotonic(), 0))
    if failures or not finished:
        raise RuntimeError(f"group did not finish in {timeout} s: {failures[:3]}")
    return {
        "stable_s": state.stable_at - state.start,
        "done_s": state.done_at - state.start,
        "consumed": sum(state.read_to.values()),
        "assignments": state.assignments,
    }


PROGRAMS: dict[str, Callable[..., dict[str, Any]]] = {
    "produce_spread": produce_spread,
    "group_consume": group_consume,
}

if __name__ == "__main__":
    print(json.dumps(PROGRAMS[sys.argv[1]](**json.loads(sys.argv[2]))))
