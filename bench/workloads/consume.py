"""Consume throughput (issue 6, item 2): how fast a broker serves a topic read from its start.

Two topics are filled first, outside the timed part, by kafka-producer-perf-test (acks=1, one
partition): Scale.small_records records of 100 bytes and Scale.large_records of 1 KB. Each is
then read from the beginning by two consumers, Scale.repeats times each:

- kafka-consumer-perf-test (the Java consumer, in a new group each run). Its figures are the
  "fetch" ones it prints, which leave out the time it spent joining the group, so that a
  rebalance delay does not count as reading; the totals are kept in the detail.
- confluent-kafka's Consumer (bench/clients.py), assigned the partition from the beginning
  without a group, timed from assign() until the last record.

Rows in records/s and in MB/s (MiB of keys and values, as the perf tool counts), the median of
the runs.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from typing import Any

from bench.clients import run_client
from bench.core import Context, Measurement, Workload, create_topic, java_tool
from bench.workloads.produce import perf_test, sizes

PARTITIONS = 1


def fill(ctx: Context, topic: str, count: int, size: int) -> None:
    create_topic(ctx.bootstrap, topic, PARTITIONS)
    perf_test(ctx, topic, count, size, "1")


def perf_consumer(ctx: Context, topic: str, count: int, run: int) -> dict[str, Any]:
    """One kafka-consumer-perf-test run over the whole topic."""
    out = java_tool(
        "kafka-consumer-perf-test",
        [
            "--bootstrap-server",
            ctx.bootstrap,
            "--topic",
            topic,
            "--messages",
            str(count),
            "--group",
            f"bench-perf-consumer-{topic}-{run}",
            "--timeout",
            "60000",
            "--hide-header",
        ],
    )
    # start, end, MB, MB/s, records, records/s, rebalance ms, fetch ms, fetch MB/s, fetch rec/s
    lines = [line.split(", ") for line in out.splitlines()]
    fields = [f for f in lines if len(f) == 10]
    if not fields or "WARNING" in out:
        raise RuntimeError(f"kafka-consumer-perf-test did not read the topic:\n{out}")
    f = fields[-1]
    if int(f[4]) < count:
        raise RuntimeError(f"kafka-consumer-perf-test read {f[4]} of {count} records")
    return {
        "rate": float(f[9]),
        "mb_per_s": float(f[8]),
        "total_rate": float(f[5]),
        "total_mb_per_s": float(f[3]),
        "rebalance_ms": int(f[6]),
        "fetch_ms": int(f[7]),
    }


def confluent_consumer(ctx: Context, topic: str, count: int, run: int) -> dict[str, Any]:
    r = run_client("consume", ctx.bootstrap, topic, count)
    if r["records"] < count:
        raise RuntimeError(f"confluent-kafka read {r['records']} of {count} records")
    return {
        "rate": r["records"] / r["seconds"],
        "mb_per_s": r["bytes"] / r["seconds"] / 2**20,
        "seconds": r["seconds"],
    }


Reader = Callable[[Context, str, int, int], dict[str, Any]]
CLIENTS: list[tuple[str, Reader]] = [
    ("kafka-consumer-perf-test", perf_consumer),
    ("confluent-kafka", confluent_consumer),
]


def run(ctx: Context) -> list[Measurement]:
    topics = []
    for label, size, count in sizes(ctx):
        topic = f"consume-{size}"
        ctx.log(f"consume: filling {topic} with {count:,} records of {label}")
        fill(ctx, topic, count, size)
        topics.append((label, size, count, topic))
    rows = []
    for client, read in CLIENTS:
        for label, size, count, topic in topics:
            runs = []
            for i in range(ctx.scale.repeats):
                result = read(ctx, topic, count, i)
                ctx.log(f"consume {label} {client}: {result['rate']:,.0f} msg/s")
                runs.append(result)
            detail: dict[str, Any] = {
                "records": count,
                "record_size": size,
                "partitions": PARTITIONS,
                "runs": runs,
            }
            row = f"consume {label} ({client})"
            rate = statistics.median(r["rate"] for r in runs)
            mb = statistics.median(r["mb_per_s"] for r in runs)
            rows.append(ctx.measurement(row, "msg/s", rate, **detail))
            rows.append(ctx.measurement(row, "MB/s", mb, **detail))
    return rows


WORKLOADS = [Workload("consume", run)]
