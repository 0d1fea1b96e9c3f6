"""kafka-producer-perf-test and kafka-consumer-perf-test run to completion against the broker under
test (kpy, or Apache Kafka with ``--compat-broker=kafka``), with the tools of every release.

Only the counts are checked, never the rates: 20000 records of 100 bytes go in, the log ends at
offset 20000, and the consumer side reads them all (2000000 bytes, 1.9073 MB).
"""

from __future__ import annotations

import re

from compat.steps import Broker, create_topic
from compat.tools import Tools

TOPIC = "perf"
RECORDS = 20000
SIZE = 100


def test_producer_then_consumer_perf(broker: Broker, tools: Tools) -> None:
    b = broker.bootstrap
    create_topic(tools, b, TOPIC, partitions=2)
    out = tools.ok("kafka-producer-perf-test", "--topic", TOPIC,
                   "--num-records", str(RECORDS), "--record-size", str(SIZE),
                   "--throughput", "-1", "--producer-props", f"bootstrap.servers={b}",
                   timeout=180)  # fmt: skip
    # The last line sums the run up: "20000 records sent, R records/sec (M MB/sec), A ms avg
    # latency, X ms max latency, then the 50th, 95th, 99th and 99.9th percentiles".
    summary = out.strip().splitlines()[-1]
    m = re.fullmatch(
        r"(\d+) records sent, [\d.]+ records/sec \([\d.]+ MB/sec\), [\d.]+ ms avg latency, "
        r"[\d.]+ ms max latency, \d+ ms 50th, \d+ ms 95th, \d+ ms 99th, \d+ ms 99\.9th\.",
        summary,
    )
    assert m, summary
    assert int(m.group(1)) == RECORDS

    ends = tools.ok("kafka-get-offsets", "--bootstrap-server", b, "--topic", TOPIC).split()
    assert sum(int(line.rsplit(":", 1)[1]) for line in ends) == RECORDS

    out = tools.ok("kafka-consumer-perf-test", "--bootstrap-server", b, "--topic", TOPIC,
                   "--messages", str(RECORDS), "--timeout", "60000", timeout=180)  # fmt: skip
    header, row = out.strip().splitlines()[-2:]
    names = [name.strip() for name in header.split(",")]
    assert names[:6] == ["start.time", "end.time", "data.consumed.in.MB", "MB.sec",
                         "data.consumed.in.nMsg", "nMsg.sec"]  # fmt: skip
    values = dict(zip(names, (value.strip() for value in row.split(",")), strict=True))
    assert int(values["data.consumed.in.nMsg"]) == RECORDS
    assert float(values["data.consumed.in.MB"]) == round(RECORDS * SIZE / 1024 / 1024, 4)
