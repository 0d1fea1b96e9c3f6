"""The stock Apache Kafka command-line tools against the broker under test.

The jars come from ``compat-tests/fetch-jars`` (run by ``scripts/test``); these tests never
download anything and skip when java or the jars are missing. Each tool runs as
``compat-tests/kafka-tool TOOL ...`` (``java -cp libs/* <main class>``, as bin/kafka-run-class.sh),
once per release in ``tools`` (4.1.0 and 3.9.1).
"""

from __future__ import annotations

import re

from kpy_process import KpyProcess

from compat.tools import Tools


def create_and_fill(tools: Tools, bootstrap: str, topic: str, lines: str) -> None:
    """A one-partition topic made by kafka-topics, fed ``lines`` by kafka-console-producer."""
    tools.ok("kafka-topics", "--bootstrap-server", bootstrap, "--create", "--topic", topic,
             "--partitions", "1")  # fmt: skip
    tools.ok("kafka-console-producer", "--bootstrap-server", bootstrap, "--topic", topic,
             stdin=lines)  # fmt: skip


def test_topics_create_and_list(broker: KpyProcess, tools: Tools) -> None:
    b = broker.bootstrap
    out = tools.ok("kafka-topics", "--bootstrap-server", b, "--create", "--topic", "three",
                   "--partitions", "3", "--replication-factor", "1")  # fmt: skip
    assert "Created topic three." in out
    out = tools.ok("kafka-topics", "--bootstrap-server", b, "--create", "--topic", "plain")
    assert "Created topic plain." in out
    listed = tools.ok("kafka-topics", "--bootstrap-server", b, "--list").split()
    assert "three" in listed and "plain" in listed
    dirs = sorted(p.name for p in broker.data_dir.glob("three-*"))
    assert dirs == ["three-0", "three-1", "three-2"]

    again = tools.run("kafka-topics", "--bootstrap-server", b, "--create", "--topic", "plain")
    assert again.returncode != 0
    assert "already exists" in again.stdout + again.stderr


def test_topics_alter_partitions(broker: KpyProcess, tools: Tools) -> None:
    b = broker.bootstrap
    tools.ok("kafka-topics", "--bootstrap-server", b, "--create", "--topic", "grow",
             "--partitions", "2")  # fmt: skip
    tools.ok("kafka-topics", "--bootstrap-server", b, "--alter", "--topic", "grow",
             "--partitions", "5")  # fmt: skip
    dirs = sorted(p.name for p in broker.data_dir.glob("grow-*"))
    assert dirs == [f"grow-{i}" for i in range(5)]
    shrink = tools.run("kafka-topics", "--bootstrap-server", b, "--alter", "--topic", "grow",
                       "--partitions", "3")  # fmt: skip
    assert shrink.returncode != 0
    assert "would not be an increase" in shrink.stdout + shrink.stderr
    # The new partitions take records.
    tools.ok("kafka-console-producer", "--bootstrap-server", b, "--topic", "grow",
             "--property", "parse.key=false", stdin="x\n")  # fmt: skip
    offsets = tools.ok("kafka-get-offsets", "--bootstrap-server", b, "--topic", "grow")
    assert sorted(line.split(":")[1] for line in offsets.split()) == [str(i) for i in range(5)]


def test_console_producer_then_consumer_in_order(broker: KpyProcess, tools: Tools) -> None:
    b = broker.bootstrap
    tools.ok("kafka-topics", "--bootstrap-server", b, "--create", "--topic", "lines",
             "--partitions", "1", "--replication-factor", "1")  # fmt: skip
    lines = [f"line-{i}" for i in range(100)]
    # Defaults: enable.idempotence=true, acks=all.
    tools.ok("kafka-console-producer", "--bootstrap-server", b, "--topic", "lines",
             stdin="\n".join(lines) + "\n")  # fmt: skip
    result = tools.run("kafka-console-consumer", "--bootstrap-server", b, "--topic", "lines",
                       "--from-beginning", "--max-messages", "100",
                       "--timeout-ms", "20000")  # fmt: skip
    out = Tools.check(result)
    assert out.splitlines() == lines
    assert "Processed a total of 100 messages" in result.stderr

    # The producer was idempotent: one batch (or a few) with a producer id and sequence 0.
    segment = broker.data_dir / "lines-0" / f"{0:020d}.log"
    dump = tools.ok("kafka-dump-log", "--files", str(segment))
    first = next(line for line in dump.splitlines() if line.startswith("baseOffset: 0 "))
    assert "baseSequence: 0" in first
    assert re.search(r"producerId: \d+ ", first) and "producerId: -1 " not in first


def test_console_consumer_group_then_describe(broker: KpyProcess, tools: Tools) -> None:
    b = broker.bootstrap
    create_and_fill(tools, b, "grp", "".join(f"m{i}\n" for i in range(10)))
    out = tools.ok("kafka-console-consumer", "--bootstrap-server", b, "--topic", "grp",
                   "--group", "g", "--from-beginning", "--max-messages", "10",
                   "--timeout-ms", "20000")  # fmt: skip
    assert out.splitlines() == [f"m{i}" for i in range(10)]

    groups = tools.ok("kafka-consumer-groups", "--bootstrap-server", b, "--list").split()
    assert "g" in groups
    described = tools.ok("kafka-consumer-groups", "--bootstrap-server", b, "--describe",
                         "--group", "g")  # fmt: skip
    rows = [line.split() for line in described.splitlines() if line.startswith("g ")]
    # GROUP TOPIC PARTITION CURRENT-OFFSET LOG-END-OFFSET LAG CONSUMER-ID HOST CLIENT-ID
    assert [r[:6] for r in rows] == [["g", "grp", "0", "10", "10", "0"]], described

    offsets = tools.ok("kafka-get-offsets", "--bootstrap-server", b, "--topic", "grp")
    assert offsets.split() == ["grp:0:10"]


def test_dump_log_reads_segments(broker: KpyProcess, tools: Tools) -> None:
    b = broker.bootstrap
    create_and_fill(tools, b, "dump", "".join(f"v{i}\n" for i in range(5)))
    part = broker.data_dir / "dump-0"
    out = tools.ok("kafka-dump-log", "--files", str(part / f"{0:020d}.log"),
                   "--print-data-log", "--deep-iteration")  # fmt: skip
    assert "baseOffset: 0" in out
    assert "isvalid: true" in out and "isvalid: false" not in out
    assert [m for m in re.findall(r"payload: (\S+)", out)] == [f"v{i}" for i in range(5)]

    # The offset and time indexes pass Kafka's own checks.
    idx = tools.ok("kafka-dump-log", "--files", str(part / f"{0:020d}.index"),
                   "--index-sanity-check")  # fmt: skip
    assert "is not sane" not in idx and "Mismatches" not in idx


def test_topics_delete(broker: KpyProcess, tools: Tools) -> None:
    b = ("--bootstrap-server", broker.bootstrap)
    create_and_fill(tools, broker.bootstrap, "doomed", "a\nb\n")
    tools.ok("kafka-topics", *b, "--create", "--topic", "kept", "--partitions", "1")
    tools.ok("kafka-topics", *b, "--delete", "--topic", "doomed")
    listed = tools.ok("kafka-topics", *b, "--list").split()
    assert "doomed" not in listed and "kept" in listed
    again = tools.run("kafka-topics", *b, "--delete", "--topic", "doomed")
    assert again.returncode != 0
    # 4.1 says "Topic 'doomed' does not exist", 3.9 "Topic 'Optional[doomed]' does not exist".
    assert re.search(r"Topic '(Optional\[)?doomed\]?' does not exist", again.stdout + again.stderr)
    # Recreated under the same name, it starts empty.
    tools.ok("kafka-topics", *b, "--create", "--topic", "doomed", "--partitions", "1")
    assert tools.ok("kafka-get-offsets", *b, "--topic", "doomed").split() == ["doomed:0:0"]


def test_broker_api_versions(broker: KpyProcess, tools: Tools) -> None:
    out = tools.ok("kafka-broker-api-versions", "--bootstrap-server", broker.bootstrap)
    lines = {line.split("(")[0].strip(): line for line in out.splitlines() if "(" in line}
    for api in ("Produce", "Fetch", "Metadata", "DescribeConfigs", "IncrementalAlterConfigs"):
        assert "[usable: " in lines[api], out
