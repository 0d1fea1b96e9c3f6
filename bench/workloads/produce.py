"""Produce throughput (issue 6, item 1): how many records a broker takes in per second.

Two producers, each with its default batching and no compression: the stock
kafka-producer-perf-test (the Java client; idempotent by default since Kafka 3.0) and
confluent-kafka's Producer (librdkafka; bench/clients.py). Each sends Scale.small_records
records of 100 bytes and Scale.large_records of 1 KB, with acks=1 and with acks=all, to a fresh
topic of one partition (the perf tool's default) per run. The figure is the median of
Scale.repeats runs in records per second; MB/s and the per-run values are in the detail.

It also runs against the sink (bench/sink.py), which acknowledges without storing: its column
shows what the client can push on this machine, the ceiling for any broker.

Transactions (issue 9): kafka-producer-perf-test with a transactional id, committing every
TXN_DURATION_MS, 1 KB records (acks=all, as transactions require): the cost of the transaction
coordinator's round trips and markers on top of the plain acks=all row. Not against the sink,
which has no coordinator.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from typing import Any

from bench.clients import run_client
from bench.core import PERF_LINE, Context, Measurement, Workload, create_topic, java_tool

PARTITIONS = 1
ACKS = ("1", "all")


def sizes(ctx: Context) -> list[tuple[str, int, int]]:
    """(label, record size, record count) of the two record sizes the issue asks for."""
    return [("100 B", 100, ctx.scale.small_records), ("1 KB", 1024, ctx.scale.large_records)]


def fresh_topic(ctx: Context, name: str) -> str:
    # The sink answers Metadata for any topic and has no CreateTopics.
    if ctx.broker.name != "sink":
        create_topic(ctx.bootstrap, name, PARTITIONS)
    return name


TXN_DURATION_MS = 100


def perf_test(
    ctx: Context, topic: str, count: int, size: int, acks: str, extra: tuple[str, ...] = ()
) -> dict[str, Any]:
    """One kafka-producer-perf-test run: records/s, MB/s and its latency summary."""
    out = java_tool(
        "kafka-producer-perf-test",
        [
            "--topic",
            topic,
            "--num-records",
            str(count),
            "--record-size",
            str(size),
            "--throughput",
            "-1",
            *extra,
            "--producer-props",
            f"bootstrap.servers={ctx.bootstrap}",
            f"acks={acks}",
        ],
    )
    found = list(PERF_LINE.finditer(out))
    if not found:
        raise RuntimeError(f"no summary line in kafka-producer-perf-test output:\n{out}")
    m = found[-1]  # the final summary; progress lines have no percentiles
    return {
        "rate": float(m["rate"]),
        "mb_per_s": float(m["mb"]),
        "avg_latency_ms": float(m["avg"]),
        "p99_latency_ms": float(m["p99"]),
    }


def confluent(ctx: Context, topic: str, count: int, size: int, acks: str) -> dict[str, Any]:
    """One confluent-kafka producer run in its own process."""
    r = run_client("produce", ctx.bootstrap, topic, count, size, acks)
    rate = r["records"] / r["seconds"]
    return {"rate": rate, "mb_per_s": r["bytes"] / r["seconds"] / 2**20, "seconds": r["seconds"]}


Runner = Callable[[Context, str, int, int, str], dict[str, Any]]
CLIENTS: list[tuple[str, str, Runner]] = [
    ("kafka-producer-perf-test", "perf", perf_test),
    ("confluent-kafka", "ck", confluent),
]


def measure(ctx: Context, client: str, tag: str, run: Runner) -> list[Measurement]:
    rows = []
    for label, size, count in sizes(ctx):
        for acks in ACKS:
            runs = []
            for i in range(ctx.scale.repeats):
                topic = fresh_topic(ctx, f"produce-{tag}-{size}-{acks}-{i}")
                result = run(ctx, topic, count, size, acks)
                ctx.log(f"produce {label} acks={acks} {client}: {result['rate']:,.0f} msg/s")
                runs.append(result)
            rates = [r["rate"] for r in runs]
            rows.append(
                ctx.measurement(
                    f"produce {label} acks={acks} ({client})",
                    "msg/s",
                    statistics.median(rates),
                    records=count,
                    record_size=size,
                    acks=acks,
                    partitions=PARTITIONS,
                    mb_per_s=statistics.median(r["mb_per_s"] for r in runs),
                    runs=runs,
                )
            )
    return rows


def run_perf_test(ctx: Context) -> list[Measurement]:
    return measure(ctx, *CLIENTS[0])


def run_confluent(ctx: Context) -> list[Measurement]:
    return measure(ctx, *CLIENTS[1])


def run_transactions(ctx: Context) -> list[Measurement]:
    size, count = 1024, ctx.scale.large_records
    runs = []
    for i in range(ctx.scale.repeats):
        topic = fresh_topic(ctx, f"produce-txn-{i}")
        extra = ("--transactional-id", f"bench-{topic}", "--transaction-duration-ms")
        result = perf_test(ctx, topic, count, size, "all", (*extra, str(TXN_DURATION_MS)))
        ctx.log(f"produce 1 KB transactional perf-test: {result['rate']:,.0f} msg/s")
        runs.append(result)
    return [
        ctx.measurement(
            f"produce 1 KB transactions of {TXN_DURATION_MS} ms (kafka-producer-perf-test)",
            "msg/s",
            statistics.median(r["rate"] for r in runs),
            records=count,
            record_size=size,
            acks="all",
            partitions=PARTITIONS,
            transaction_duration_ms=TXN_DURATION_MS,
            mb_per_s=statistics.median(r["mb_per_s"] for r in runs),
            runs=runs,
        )
    ]


WORKLOADS = [
    Workload("produce-perf-test", run_perf_test, ("kpy", "kafka", "sink")),
    Workload("produce-confluent", run_confluent, ("kpy", "kafka", "sink")),
    Workload("produce-transactions", run_transactions, ("kpy", "kafka")),
]
