"""Steps the stock-tool scenarios share: make a topic, feed it lines, read it back, dump a segment.

Every step runs a stock Kafka tool and asserts its exit status (``Tools.ok``), so a scenario reads
as the commands an operator would type.
"""

from __future__ import annotations

import re

from kpy_process import KpyProcess

from compat.kafka_broker import KafkaBroker
from compat.tools import Tools

# What the ``broker`` fixture yields: kpy, or Apache Kafka with --compat-broker=kafka.
Broker = KpyProcess | KafkaBroker

# The console consumer never waits longer than this for a record it was told to expect.
CONSUME_TIMEOUT_MS = "20000"


def create_topic(tools: Tools, bootstrap: str, topic: str, partitions: int = 1) -> None:
    out = tools.ok("kafka-topics", "--bootstrap-server", bootstrap, "--create", "--topic", topic,
                   "--partitions", str(partitions), "--replication-factor", "1")  # fmt: skip
    assert f"Created topic {topic}." in out


def produce(tools: Tools, bootstrap: str, topic: str, lines: list[str], *options: str) -> None:
    """kafka-console-producer with ``options``, one record per line."""
    tools.ok("kafka-console-producer", "--bootstrap-server", bootstrap, "--topic", topic,
             *options, stdin="".join(f"{line}\n" for line in lines))  # fmt: skip


def consume(tools: Tools, bootstrap: str, topic: str, count: int, *options: str) -> list[str]:
    """kafka-console-consumer reading exactly ``count`` records; its output lines."""
    result = tools.run("kafka-console-consumer", "--bootstrap-server", bootstrap,
                       "--topic", topic, "--max-messages", str(count),
                       "--timeout-ms", CONSUME_TIMEOUT_MS, *options)  # fmt: skip
    out = Tools.check(result)
    assert f"Processed a total of {count} messages" in result.stderr, result.stderr
    return out.splitlines()


def segment_batches(tools: Tools, segment: str) -> list[str]:
    """The batch lines kafka-dump-log prints for one .log segment."""
    dump = tools.ok("kafka-dump-log", "--files", segment)
    return [line for line in dump.splitlines() if re.match(r"baseOffset: \d+ ", line)]


def batch_field(batch: str, name: str) -> str:
    """One ``name: value`` field of a kafka-dump-log batch line."""
    m = re.search(rf"(?:^| ){re.escape(name)}: (\S+)", batch)
    assert m, f"no {name} in {batch!r}"
    return m.group(1)
