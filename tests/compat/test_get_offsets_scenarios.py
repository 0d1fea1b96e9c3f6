"""kafka-get-offsets scenarios: --time earliest/-2, latest/-1, max-timestamp/-3 and a timestamp,
checked the same against kpy and against Apache Kafka (``--compat-broker=kafka``) with the tools
of every release.

The tool prints ``topic:partition:offset`` for each partition the broker found an offset for, and
nothing for a partition without one (ListOffsets answered offset -1).
"""

from __future__ import annotations

from compat.steps import Broker, consume, create_topic, produce
from compat.tools import Tools

TOPIC = "stamps"


def offsets(tools: Tools, bootstrap: str, time: str, *args: str) -> list[str]:
    out = tools.ok("kafka-get-offsets", "--bootstrap-server", bootstrap, "--topic", TOPIC,
                   "--time", time, *args)  # fmt: skip
    return out.split()


def test_get_offsets_by_time(broker: Broker, tools: Tools) -> None:
    b = broker.bootstrap
    create_topic(tools, b, TOPIC)
    # Two producer runs: the last record is alone in the second, so its timestamp is the
    # largest and unique.
    produce(tools, b, TOPIC, [f"r{i}" for i in range(5)])
    produce(tools, b, TOPIC, ["last"])
    stamped = consume(tools, b, TOPIC, 6, "--from-beginning",
                      "--property", "print.timestamp=true")  # fmt: skip
    stamps = [int(line.split("\t")[0].removeprefix("CreateTime:")) for line in stamped]
    assert max(stamps[:5]) < stamps[5]

    assert offsets(tools, b, "earliest") == [f"{TOPIC}:0:0"]
    assert offsets(tools, b, "-2") == [f"{TOPIC}:0:0"]
    assert offsets(tools, b, "latest") == [f"{TOPIC}:0:6"]
    assert offsets(tools, b, "-1") == [f"{TOPIC}:0:6"]
    assert offsets(tools, b, "max-timestamp") == [f"{TOPIC}:0:5"]
    assert offsets(tools, b, "-3") == [f"{TOPIC}:0:5"]
    # A timestamp: the first offset whose timestamp is at or after it.
    assert offsets(tools, b, str(stamps[0])) == [f"{TOPIC}:0:0"]
    assert offsets(tools, b, str(stamps[4] + 1)) == [f"{TOPIC}:0:5"]
    assert offsets(tools, b, str(stamps[5])) == [f"{TOPIC}:0:5"]
    # Past every record: no offset, so no line.
    assert offsets(tools, b, str(stamps[5] + 1)) == []


def test_get_offsets_empty_partition_and_filters(broker: Broker, tools: Tools) -> None:
    b = broker.bootstrap
    create_topic(tools, b, TOPIC)
    produce(tools, b, TOPIC, ["a", "b", "c"])
    # Partition 1, added afterwards, stays empty.
    tools.ok("kafka-topics", "--bootstrap-server", b, "--alter", "--topic", TOPIC,
             "--partitions", "2")  # fmt: skip

    assert offsets(tools, b, "-1") == [f"{TOPIC}:0:3", f"{TOPIC}:1:0"]
    assert offsets(tools, b, "-2") == [f"{TOPIC}:0:0", f"{TOPIC}:1:0"]
    # An empty partition has no record with a largest timestamp: no line for it.
    latest_stamp = offsets(tools, b, "-3")
    assert [line.rsplit(":", 1)[0] for line in latest_stamp] == [f"{TOPIC}:0"], latest_stamp
    assert int(latest_stamp[0].rsplit(":", 1)[1]) in range(3)
    assert offsets(tools, b, "-1", "--partitions", "1") == [f"{TOPIC}:1:0"]
    out = tools.ok("kafka-get-offsets", "--bootstrap-server", b, "--topic-partitions",
                   f"{TOPIC}:0", "--time", "-1")  # fmt: skip
    assert out.split() == [f"{TOPIC}:0:3"]

    nothing = tools.run("kafka-get-offsets", "--bootstrap-server", b, "--topic", "no-such-topic")
    assert nothing.returncode != 0
    assert "Could not match any topic-partitions with the specified filters" in nothing.stderr
