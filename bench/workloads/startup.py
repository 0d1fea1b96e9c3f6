"""Start-up and memory (issue 6, item 4): how soon a fresh broker takes a record, and its RSS.

This workload starts its own brokers (``starts_broker``): Scale.repeats fresh starts, each on a
new data directory, of the broker class the runner names.

- start-up: from the broker's process start to the first acknowledged produce. As soon as the
  port accepts connections a confluent-kafka producer sends one record to a topic that does not
  exist yet (both brokers create it on first use, auto.create.topics.enable) and sends it again
  until the delivery report says it is stored. Its reconnect and retry back-offs are cut to
  10-100 ms so the client's waits add little to either broker's figure. For Kafka the clock
  starts when compat-tests/kafka-broker execs the server JVM: the one-off ``kafka-storage
  format`` of a new install runs before that and is reported apart, in the detail.
- resident memory idle: VmRSS 2 s after that first acknowledgement, with that one topic.
- resident memory peak under load: the most VmRSS seen (sampled every 50 ms) while
  kafka-producer-perf-test sends Scale.small_records records of 100 bytes, acks=1, after the
  idle sample of the last start.

- start-up to ready, embedded: what a test run pays per broker. kpy: ``kpy.Broker().start()``
  in a Python process that has imported kpy (the import is timed apart, in the detail), until
  ApiVersions and Metadata are answered (kpy.client.probe, as ``kpy wait``); EMBEDDED_STARTS
  starts per Scale.repeats, each on a fresh temporary directory (the first, which loads the
  broker's modules, is in the detail with the others). Kafka has no in-process form: its server
  process start to the same answers, over Scale.repeats fresh starts.

Each figure is the median over the starts (the peak is taken once); lower is better.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

from bench.clients import run_client
from bench.core import Broker, Context, Measurement, Sampler, Workload, wait_port
from bench.workloads.produce import perf_test
from kpy import client

TOPIC = "startup"
EMBEDDED_STARTS = 7
IDLE_AFTER_S = 2.0
# compat-tests/kafka-broker prints this line just before it execs Kafka (after the format).
SERVER_EXEC_LINE = {"kafka": b"kafka-broker: Kafka "}
MIB = 2**20


def server_started_at(broker: Broker, timeout: float = 120.0) -> float:
    """perf_counter() time at which the broker's server process began."""
    marker = SERVER_EXEC_LINE.get(broker.name)
    if marker is None:
        return broker.started_at
    deadline = time.monotonic() + timeout
    while marker not in broker.log_path.read_bytes():
        if broker.proc is None or broker.proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"{broker.name} did not reach its server start")
        time.sleep(0.002)
    return time.perf_counter()


def recorder(outcome: list[tuple[object, float]]) -> Callable[[object, object], None]:
    """A delivery callback that notes the error (None: stored) and when it came."""

    def delivered(err: object, _msg: object) -> None:
        outcome.append((err, time.perf_counter()))

    return delivered


def first_ack(bootstrap: str, timeout: float = 120.0) -> tuple[float, int]:
    """Produce one record until it is acknowledged; (perf_counter at the ack, attempts)."""
    from confluent_kafka import Producer

    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "linger.ms": 0,
            "reconnect.backoff.ms": 10,
            "reconnect.backoff.max.ms": 100,
            "retry.backoff.ms": 10,
            "retry.backoff.max.ms": 100,
            "message.timeout.ms": 10_000,
        }
    )
    deadline = time.monotonic() + timeout
    attempts = 0
    while time.monotonic() < deadline:
        attempts += 1
        outcome: list[tuple[object, float]] = []
        producer.produce(TOPIC, b"ready", on_delivery=recorder(outcome))
        while not outcome:
            producer.poll(0.1)
        err, at = outcome[0]
        if err is None:
            producer.flush(10)
            return at, attempts
        time.sleep(0.01)
    raise TimeoutError(f"no produce acknowledged in {timeout} s")


def one_start(ctx: Context, run: int, load: bool) -> dict[str, Any]:
    broker = type(ctx.broker)(ctx.scratch / f"startup-{run}")
    try:
        broker.launch()
        assert broker.proc is not None
        began = server_started_at(broker)
        wait_port(broker.port, 120.0, broker.proc)
        listening = time.perf_counter()
        acked, attempts = first_ack(broker.bootstrap)
        result: dict[str, Any] = {
            "startup_s": acked - began,
            "port_open_s": listening - began,
            "before_server_s": began - broker.started_at,
            "produce_attempts": attempts,
        }
        time.sleep(IDLE_AFTER_S)
        result["idle_rss_mib"] = broker.rss()[0] / MIB
        if load:
            loaded = Context(broker, ctx.scale, ctx.scratch, ctx.log)
            with Sampler(broker.pid) as sampler:
                perf_test(loaded, TOPIC, ctx.scale.small_records, 100, "1")
            result["peak_rss_mib"] = sampler.peak / MIB
        return result
    except Exception as e:
        log = broker.log_path
        tail = log.read_bytes()[-2000:].decode(errors="replace") if log.exists() else ""
        raise RuntimeError(f"{broker.name} start {run}: {e!r}; its log ends:\n{tail}") from e
    finally:
        broker.stop()


def run(ctx: Context) -> list[Measurement]:
    runs = []
    for i in range(ctx.scale.repeats):
        result = one_start(ctx, i, load=i == ctx.scale.repeats - 1)
        ctx.log(
            f"startup: first ack after {result['startup_s']:.3f} s, "
            f"idle RSS {result['idle_rss_mib']:.0f} MiB"
        )
        runs.append(result)
    detail: dict[str, Any] = {"runs": runs, "topic_partitions": 1}
    peak = runs[-1]["peak_rss_mib"]
    return [
        ctx.measurement(
            "start-up to first acknowledged produce",
            "s",
            statistics.median(r["startup_s"] for r in runs),
            "lower",
            **detail,
        ),
        ctx.measurement(
            "resident memory idle, one topic",
            "MiB",
            statistics.median(r["idle_rss_mib"] for r in runs),
            "lower",
            **detail,
        ),
        ctx.measurement(
            "resident memory peak under produce load",
            "MiB",
            peak,
            "lower",
            records=ctx.scale.small_records,
            record_size=100,
            acks="1",
        ),
    ]


def ready_after_start(ctx: Context) -> list[Measurement]:
    detail: dict[str, Any]
    if ctx.broker.name == "kpy":
        result = run_client("embedded", EMBEDDED_STARTS * ctx.scale.repeats)
        ready = result["ready_s"]
        detail = {"import_s": result["import_s"], "ready_s": ready, "mode": "thread"}
        ctx.log(f"startup: kpy.Broker ready after {statistics.median(ready) * 1000:.1f} ms")
    else:
        ready = []
        for i in range(ctx.scale.repeats):
            broker = type(ctx.broker)(ctx.scratch / f"ready-{i}")
            try:
                broker.launch()
                began = server_started_at(broker)
                client.wait([broker.bootstrap], timeout=120.0, interval=0.005)
                ready.append(time.perf_counter() - began)
            finally:
                broker.stop()
            ctx.log(f"startup: {broker.name} ready after {ready[-1]:.3f} s")
        detail = {"ready_s": ready}
    return [
        ctx.measurement(
            "start-up to ready (ApiVersions + Metadata): embedded kpy.Broker / server process",
            "s",
            statistics.median(ready),
            "lower",
            **detail,
        )
    ]


WORKLOADS = [
    Workload("startup", run, ("kpy", "kafka"), starts_broker=True),
    Workload("embedded", ready_after_start, ("kpy", "kafka"), starts_broker=True),
]
