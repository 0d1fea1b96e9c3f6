"""End-to-end latency (issue 6, item 3): from a producer's send to a consumer receiving it.

Both clients send one 100-byte record at a time with acks=1 to a fresh one-partition topic and
wait for it to come back before sending the next; Scale.latency_messages records per run.

- kafka-e2e-latency (org.apache.kafka.tools.EndToEndLatency): a synchronous send (waits for the
  acknowledgement), then the consumer's poll (fetch.max.wait.ms 0). It prints the average in
  ms and the 50th, 99th and 99.9th percentiles truncated to whole milliseconds, so a figure of
  0 means "under 1 ms".
- a confluent-kafka ping-pong (bench/clients.py): produce one record (linger.ms 0), poll the
  consumer until it returns it, repeat. The consumer's fetch waits at the broker until data
  arrives, so its fetch.wait.max.ms does not add to the figure. Ten warm-up records are not
  counted; percentiles in fractional ms.

The figure is the median over Scale.repeats runs; lower is better.
"""

from __future__ import annotations

import re
import statistics
from typing import Any

from bench.clients import run_client
from bench.core import Context, Measurement, Workload, create_topic, java_tool

SIZE = 100
ACKS = "1"
WARMUP = 10
AVG = re.compile(r"Avg latency: (?P<avg>[\d.]+) ms")
PERCENTILES = re.compile(r"Percentiles: 50th = (\d+), 99th = (\d+), 99\.9th = (\d+)")


def e2e_tool(ctx: Context, topic: str) -> dict[str, Any]:
    """One EndToEndLatency run: its average and percentiles, in ms."""
    out = java_tool(
        "kafka-e2e-latency",
        [ctx.bootstrap, topic, str(ctx.scale.latency_messages), ACKS, str(SIZE)],
    )
    avg = AVG.search(out)
    pct = PERCENTILES.search(out)
    if avg is None or pct is None:
        raise RuntimeError(f"no results in kafka-e2e-latency output:\n{out}")
    p50, p99, p999 = (float(v) for v in pct.groups())
    return {"avg": float(avg["avg"]), "p50": p50, "p99": p99, "p99.9": p999}


def ping_pong(ctx: Context, topic: str) -> dict[str, Any]:
    return run_client(
        "pingpong", ctx.bootstrap, topic, ctx.scale.latency_messages, SIZE, ACKS, WARMUP
    )


CLIENTS = [
    ("kafka-e2e-latency", "e2e", e2e_tool, ("avg", "p50", "p99", "p99.9"), 1),
    ("confluent-kafka ping-pong", "pingpong", ping_pong, ("p50", "p99", "p99.9"), 0),
]


def run(ctx: Context) -> list[Measurement]:
    rows = []
    for client, tag, measure, stats, resolution in CLIENTS:
        runs = []
        for i in range(ctx.scale.repeats):
            topic = f"latency-{tag}-{i}"
            create_topic(ctx.bootstrap, topic, 1)
            result = measure(ctx, topic)
            ctx.log(f"latency {client}: p50 {result['p50']:.2f} ms, p99 {result['p99']:.2f} ms")
            runs.append(result)
        for stat in stats:
            detail: dict[str, Any] = {
                "records": ctx.scale.latency_messages,
                "record_size": SIZE,
                "acks": ACKS,
                "runs": [r[stat] for r in runs],
            }
            if resolution and stat != "avg":
                detail["resolution_ms"] = resolution  # the tool truncates to whole ms
            value = statistics.median(r[stat] for r in runs)
            rows.append(
                ctx.measurement(f"latency {stat} ({client})", "ms", value, "lower", **detail)
            )
    return rows


WORKLOADS = [Workload("latency", run)]
