"""kafka-configs and kafka-topics --describe/--config, the stock tools, against the broker under
test: topic and broker configs described, altered, deleted, refused (output and exit codes)."""

from __future__ import annotations

from kpy_process import KpyProcess

from compat.tools import Tools


def test_topic_configs(broker: KpyProcess, tools: Tools) -> None:
    b = ("--bootstrap-server", broker.bootstrap)
    out = tools.ok("kafka-topics", *b, "--create", "--topic", "cfg", "--partitions", "2",
                   "--config", "retention.ms=5000")  # fmt: skip
    assert "Created topic cfg." in out
    topic = ("--entity-type", "topics", "--entity-name", "cfg")

    out = tools.ok("kafka-configs", *b, "--describe", *topic)
    assert "Dynamic configs for topic cfg are:" in out
    assert (
        "retention.ms=5000 sensitive=false synonyms={DYNAMIC_TOPIC_CONFIG:retention.ms=5000" in out
    )

    out = tools.ok("kafka-configs", *b, "--alter", *topic,
                   "--add-config", "max.message.bytes=2000,cleanup.policy=compact")  # fmt: skip
    assert "Completed updating config for topic cfg." in out
    out = tools.ok("kafka-configs", *b, "--describe", *topic)
    assert "max.message.bytes=2000 sensitive=false synonyms={DYNAMIC_TOPIC_CONFIG:" in out
    assert "cleanup.policy=compact sensitive=false synonyms={DYNAMIC_TOPIC_CONFIG:" in out

    # kafka-topics --describe: the topic's id, partitions and its non-default configs.
    out = tools.ok("kafka-topics", *b, "--describe", "--topic", "cfg")
    header = out.splitlines()[0]
    assert header.startswith("Topic: cfg\tTopicId: ")
    assert "PartitionCount: 2\tReplicationFactor: 1\tConfigs: " in header
    configs = dict(kv.split("=", 1) for kv in header.split("Configs: ")[1].split(","))
    assert configs["retention.ms"] == "5000" and configs["max.message.bytes"] == "2000"
    assert configs["cleanup.policy"] == "compact"
    rows = [line.split("\t") for line in out.splitlines()[1:] if line.strip()]
    assert [r[1:5] for r in rows] == [
        ["Topic: cfg", f"Partition: {p}", "Leader: 1", "Replicas: 1"] for p in range(2)
    ]

    out = tools.ok("kafka-configs", *b, "--alter", *topic, "--delete-config", "retention.ms")
    assert "Completed updating config for topic cfg." in out
    out = tools.ok("kafka-configs", *b, "--describe", *topic, "--all")
    assert "All configs for topic cfg are:" in out
    # Back to the default, every topic config listed.
    assert "retention.ms=604800000 sensitive=false" in out
    assert "segment.bytes=1073741824 sensitive=false" in out

    bad = tools.run("kafka-configs", *b, "--alter", *topic, "--add-config", "segment.bytes=10")
    assert bad.returncode != 0
    assert (
        "Invalid value 10 for configuration segment.bytes: Value must be at least 1048576"
        in bad.stdout + bad.stderr
    )
    missing = tools.run("kafka-configs", *b, "--alter", "--entity-type", "topics",
                        "--entity-name", "missing", "--add-config", "retention.ms=1")  # fmt: skip
    assert missing.returncode != 0
    assert "UnknownTopicOrPartitionException" in missing.stdout + missing.stderr


def test_topic_create_with_bad_config(broker: KpyProcess, tools: Tools) -> None:
    b = ("--bootstrap-server", broker.bootstrap)
    bad = tools.run("kafka-topics", *b, "--create", "--topic", "x", "--config",
                    "cleanup.policy=shred")  # fmt: skip
    assert bad.returncode != 0
    assert "Invalid value shred for configuration cleanup.policy" in bad.stdout + bad.stderr
    assert "x" not in tools.ok("kafka-topics", *b, "--list").split()


def test_broker_configs(broker: KpyProcess, tools: Tools) -> None:
    b = ("--bootstrap-server", broker.bootstrap)
    one = ("--entity-type", "brokers", "--entity-name", "1")
    default = ("--entity-type", "brokers", "--entity-default")
    tools.ok("kafka-topics", *b, "--create", "--topic", "inherit", "--partitions", "1")

    out = tools.ok("kafka-configs", *b, "--alter", *one, "--add-config", "log.retention.ms=100000")
    assert "Completed updating config for broker 1." in out
    out = tools.ok("kafka-configs", *b, "--describe", *one)
    assert "Dynamic configs for broker 1 are:" in out
    assert (
        "log.retention.ms=100000 sensitive=false "
        "synonyms={DYNAMIC_BROKER_CONFIG:log.retention.ms=100000" in out
    )
    # Topics without an override follow the broker.
    out = tools.ok("kafka-configs", *b, "--describe", "--entity-type", "topics",
                   "--entity-name", "inherit", "--all")  # fmt: skip
    inherited = "retention.ms=100000 sensitive=false synonyms={DYNAMIC_BROKER_CONFIG:"
    assert inherited + "log.retention.ms=100000" in out

    out = tools.ok("kafka-configs", *b, "--alter", *default,
                   "--add-config", "log.cleaner.delete.retention.ms=1000")  # fmt: skip
    assert "Completed updating default config for brokers in the cluster." in out
    out = tools.ok("kafka-configs", *b, "--describe", *default)
    assert "Default configs for brokers in the cluster are:" in out
    assert "log.cleaner.delete.retention.ms=1000 sensitive=false" in out
    assert "DYNAMIC_DEFAULT_BROKER_CONFIG:log.cleaner.delete.retention.ms=1000" in out

    fixed = tools.run("kafka-configs", *b, "--alter", *one, "--add-config", "num.partitions=3")
    assert fixed.returncode != 0
    assert "Cannot update these configs dynamically: Set(num.partitions)" in (
        fixed.stdout + fixed.stderr
    )

    for args in ((*one, "--delete-config", "log.retention.ms"),
                 (*default, "--delete-config", "log.cleaner.delete.retention.ms")):  # fmt: skip
        tools.ok("kafka-configs", *b, "--alter", *args)
    out = tools.ok("kafka-configs", *b, "--describe", *one)
    assert "log.retention.ms" not in out
    assert "log.cleaner.delete.retention.ms" not in tools.ok(
        "kafka-configs", *b, "--describe", *default
    )


def test_broker_loggers(broker: KpyProcess, tools: Tools) -> None:
    b = ("--bootstrap-server", broker.bootstrap)
    loggers = ("--entity-type", "broker-loggers", "--entity-name", "1")
    out = tools.ok("kafka-configs", *b, "--describe", *loggers)
    assert "Dynamic configs for broker-logger 1 are:" in out
    root = next(line for line in out.splitlines() if line.strip().startswith("root="))
    before = root.strip().split()[0].split("=")[1]
    tools.ok("kafka-configs", *b, "--alter", *loggers, "--add-config", "root=ERROR")
    out = tools.ok("kafka-configs", *b, "--describe", *loggers)
    assert "root=ERROR sensitive=false" in out
    tools.ok("kafka-configs", *b, "--alter", *loggers, "--add-config", f"root={before}")
    bad = tools.run("kafka-configs", *b, "--alter", *loggers, "--add-config", "root=LOUD")
    assert bad.returncode != 0
    assert "not a supported log level" in bad.stdout + bad.stderr
