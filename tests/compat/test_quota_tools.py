"""kafka-configs for client quotas (users, clients, IPs, defaults), the stock tool against the
broker under test: set, described, deleted, and refused with Kafka's messages."""

from __future__ import annotations

from kpy_process import KpyProcess

from compat.tools import Tools


def test_user_and_client_quotas(broker: KpyProcess, tools: Tools) -> None:
    b = ("--bootstrap-server", broker.bootstrap)
    alice = ("--entity-type", "users", "--entity-name", "alice")
    out = tools.ok("kafka-configs", *b, "--alter", *alice,
                   "--add-config", "producer_byte_rate=1024,consumer_byte_rate=2048")  # fmt: skip
    assert "Completed updating config for user alice." in out
    out = tools.ok("kafka-configs", *b, "--describe", *alice)
    assert "Quota configs for user-principal 'alice' are " in out
    assert "producer_byte_rate=1024.0" in out and "consumer_byte_rate=2048.0" in out

    both = ("--entity-type", "users", "--entity-name", "alice", "--entity-type", "clients",
            "--entity-name", "app")  # fmt: skip
    tools.ok("kafka-configs", *b, "--alter", *both, "--add-config", "request_percentage=12.5")
    out = tools.ok("kafka-configs", *b, "--describe", *both)
    assert (
        "Quota configs for user-principal 'alice', client-id 'app' are request_percentage=12.5"
        in out
    )

    default = ("--entity-type", "clients", "--entity-default")
    tools.ok("kafka-configs", *b, "--alter", *default, "--add-config", "producer_byte_rate=4096")
    out = tools.ok("kafka-configs", *b, "--describe", *default)
    assert "Quota configs for the default client-id are producer_byte_rate=4096.0" in out

    out = tools.ok("kafka-configs", *b, "--describe", "--entity-type", "users")
    assert "user-principal 'alice'" in out

    tools.ok("kafka-configs", *b, "--alter", *alice, "--delete-config", "consumer_byte_rate")
    out = tools.ok("kafka-configs", *b, "--describe", *alice)
    assert "producer_byte_rate=1024.0" in out and "consumer_byte_rate" not in out


def test_ip_quotas(broker: KpyProcess, tools: Tools) -> None:
    b = ("--bootstrap-server", broker.bootstrap)
    ip = ("--entity-type", "ips", "--entity-name", "10.1.2.3")
    out = tools.ok(
        "kafka-configs", *b, "--alter", *ip, "--add-config", "connection_creation_rate=10"
    )
    assert "Completed updating config for ip 10.1.2.3." in out
    out = tools.ok("kafka-configs", *b, "--describe", *ip)
    assert "Quota configs for ip '10.1.2.3' are connection_creation_rate=10.0" in out


def test_quota_values_kafka_refuses(broker: KpyProcess, tools: Tools) -> None:
    b = ("--bootstrap-server", broker.bootstrap)
    bob = ("--entity-type", "users", "--entity-name", "bob")
    for config, message in [
        ("producer_byte_rate=10.5", "producer_byte_rate cannot be a fractional value."),
        ("request_percentage=-1", "Quota request_percentage must be greater than 0"),
    ]:
        result = tools.run("kafka-configs", *b, "--alter", *bob, "--add-config", config)
        assert result.returncode != 0
        assert message in result.stdout + result.stderr, result.stderr
    ip = ("--entity-type", "ips", "--entity-name", "10.1.2.3")
    result = tools.run("kafka-configs", *b, "--alter", *ip, "--add-config", "producer_byte_rate=1")
    assert result.returncode != 0
    out = tools.ok("kafka-configs", *b, "--describe", *bob)
    assert "producer_byte_rate" not in out
