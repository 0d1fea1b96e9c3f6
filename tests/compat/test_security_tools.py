"""The stock Java tools over TLS and SASL: kafka-console-producer and -consumer with SASL_SSL
(PLAIN, SCRAM-SHA-256, SCRAM-SHA-512, PEM truststore) and mutual TLS (PEM keystore), wrong
passwords refused, and SCRAM users added, described and deleted with kafka-configs.

These run against kpy only: the reference Kafka of ``--compat-broker=kafka`` runs without
security (tests/compat/kafka_broker.py), so the expectations here are Kafka's documented client
behaviour and messages, read from its sources."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from security_broker import PLAIN_USERS, SCRAM_USERS, SecureBroker, start_secure_broker

from compat.conftest import VERSIONS
from compat.tools import Tools, missing

pytestmark = pytest.mark.timeout(300)

PLAIN_MODULE = "org.apache.kafka.common.security.plain.PlainLoginModule"
SCRAM_MODULE = "org.apache.kafka.common.security.scram.ScramLoginModule"


@pytest.fixture
def tools() -> Tools:
    """One release's tools (the first of KAFKA_TOOL_VERSIONS), not each: TLS and SASL are the
    client library's, the same in the releases tested, and every tool run here costs a JVM."""
    why = missing(VERSIONS[0])
    if why is not None:
        pytest.skip(why)
    return Tools(VERSIONS[0])


@pytest.fixture(scope="module")
def secure(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureBroker]:
    broker = start_secure_broker(tmp_path_factory.mktemp("secure"))
    try:
        yield broker
    finally:
        broker.proc.stop()


def client_properties(
    path: Path, broker: SecureBroker, protocol: str, mechanism: str | None = None,
    user: str = "", password: str = "",
) -> Path:  # fmt: skip
    lines = [f"security.protocol={protocol}"]
    if protocol in ("SSL", "SASL_SSL"):
        lines += ["ssl.truststore.type=PEM", f"ssl.truststore.location={broker.certs.ca}"]
    if protocol == "SSL":
        lines += ["ssl.keystore.type=PEM", f"ssl.keystore.location={broker.certs.client.both}"]
    if mechanism is not None:
        module = PLAIN_MODULE if mechanism == "PLAIN" else SCRAM_MODULE
        lines += [
            f"sasl.mechanism={mechanism}",
            f'sasl.jaas.config={module} required username="{user}" password="{password}";',
        ]
    path.write_text("\n".join(lines) + "\n")
    return path


CASES = [
    ("SASL_SSL", "PLAIN", "alice", PLAIN_USERS["alice"]),
    ("SASL_SSL", "SCRAM-SHA-256", "bob", SCRAM_USERS["bob"]),
    ("SASL_SSL", "SCRAM-SHA-512", "carol", SCRAM_USERS["carol"]),
    ("SSL", None, "", ""),
]


@pytest.mark.parametrize(
    ("protocol", "mechanism", "user", "password"), CASES, ids=[f"{c[0]}-{c[1]}" for c in CASES]
)
def test_console_producer_and_consumer(
    secure: SecureBroker, tools: Tools, tmp_path: Path, protocol: str, mechanism: str | None,
    user: str, password: str,
) -> None:  # fmt: skip
    props = client_properties(tmp_path / "client.properties", secure, protocol, mechanism,
                              user, password)  # fmt: skip
    topic = f"java-{uuid.uuid4().hex[:8]}"
    b = ("--bootstrap-server", secure.bootstrap(protocol))
    lines = [f"line {i}" for i in range(10)]
    tools.ok("kafka-console-producer", *b, "--topic", topic, "--producer.config", str(props),
             stdin="\n".join(lines) + "\n")  # fmt: skip
    out = tools.ok("kafka-console-consumer", *b, "--topic", topic, "--from-beginning",
                   "--max-messages", "10", "--timeout-ms", "30000", "--consumer.config",
                   str(props), "--group", f"g-{topic}")  # fmt: skip
    assert out.splitlines() == lines


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256"])
def test_console_producer_with_a_wrong_password_fails(
    secure: SecureBroker, tools: Tools, tmp_path: Path, mechanism: str
) -> None:
    user = "alice" if mechanism == "PLAIN" else "bob"
    props = client_properties(tmp_path / "bad.properties", secure, "SASL_SSL", mechanism, user,
                              "wrong")  # fmt: skip
    result = tools.run("kafka-console-producer", "--bootstrap-server", secure.sasl_ssl,
                       "--topic", "refused", "--producer.config", str(props),
                       stdin="never\n", timeout=120)  # fmt: skip
    output = result.stdout + result.stderr
    assert "SaslAuthenticationException" in output
    expected = (
        "Authentication failed: Invalid username or password"
        if mechanism == "PLAIN"
        else "invalid credentials with SASL mechanism SCRAM-SHA-256"
    )
    assert expected in output


def test_kafka_configs_manages_scram_users(
    secure: SecureBroker, tools: Tools, tmp_path: Path
) -> None:
    admin = client_properties(tmp_path / "admin.properties", secure, "SASL_SSL", "PLAIN",
                              "admin", PLAIN_USERS["admin"])  # fmt: skip
    b = ("--bootstrap-server", secure.sasl_ssl, "--command-config", str(admin))
    user = f"u{uuid.uuid4().hex[:6]}"
    entity = ("--entity-type", "users", "--entity-name", user)
    # Both mechanisms in one request is one user altered twice: Kafka's KRaft controller
    # (ScramControlManager.alterCredentials) refuses it, so one request per mechanism.
    both = tools.run("kafka-configs", *b, "--alter", *entity, "--add-config",
                     "SCRAM-SHA-256=[password=a],SCRAM-SHA-512=[password=b]")  # fmt: skip
    assert both.returncode != 0
    assert "DuplicateResourceException: A user credential cannot be altered twice" in both.stderr
    for config in ("SCRAM-SHA-256=[iterations=8192,password=pw-256]",
                   "SCRAM-SHA-512=[password=pw-512]"):  # fmt: skip
        out = tools.ok("kafka-configs", *b, "--alter", *entity, "--add-config", config)
        assert f"Completed updating config for user {user}." in out
    out = tools.ok("kafka-configs", *b, "--describe", *entity)
    assert f"SCRAM credential configs for user-principal '{user}' are " in out
    assert "SCRAM-SHA-256=iterations=8192" in out and "SCRAM-SHA-512=iterations=4096" in out

    props = client_properties(tmp_path / "u.properties", secure, "SASL_SSL", "SCRAM-SHA-512",
                              user, "pw-512")  # fmt: skip
    topic = f"scram-{uuid.uuid4().hex[:8]}"
    tools.ok("kafka-console-producer", "--bootstrap-server", secure.sasl_ssl, "--topic", topic,
             "--producer.config", str(props), stdin="hello\n")  # fmt: skip

    out = tools.ok("kafka-configs", *b, "--alter", *entity, "--delete-config", "SCRAM-SHA-512")
    assert f"Completed updating config for user {user}." in out
    out = tools.ok("kafka-configs", *b, "--describe", *entity)
    assert "SCRAM-SHA-512" not in out and "SCRAM-SHA-256=iterations=8192" in out
    refused = tools.run("kafka-console-producer", "--bootstrap-server", secure.sasl_ssl,
                        "--topic", topic, "--producer.config", str(props), stdin="no\n",
                        timeout=120)  # fmt: skip
    assert "SaslAuthenticationException" in refused.stdout + refused.stderr


@pytest.fixture
def secure_acls(tmp_path: Path) -> Iterator[SecureBroker]:
    broker = start_secure_broker(
        tmp_path / "acl-broker",
        **{
            "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
            "super.users": "User:admin",
        },
    )
    try:
        yield broker
    finally:
        broker.proc.stop()


def test_kafka_acls_over_sasl_ssl_grants_and_revokes_a_users_read(
    secure_acls: SecureBroker, tools: Tools, tmp_path: Path
) -> None:
    broker = secure_acls
    admin = client_properties(tmp_path / "admin.properties", broker, "SASL_SSL", "PLAIN",
                              "admin", PLAIN_USERS["admin"])  # fmt: skip
    alice = client_properties(tmp_path / "alice.properties", broker, "SASL_SSL", "PLAIN",
                              "alice", PLAIN_USERS["alice"])  # fmt: skip
    b = ("--bootstrap-server", broker.sasl_ssl)
    acls = (*b, "--command-config", str(admin))
    topic = f"acl-{uuid.uuid4().hex[:8]}"
    group = f"g-{topic}"
    tools.ok("kafka-console-producer", *b, "--topic", topic, "--producer.config", str(admin),
             stdin="one\ntwo\n")  # fmt: skip

    def consume() -> tuple[int, str]:
        result = tools.run("kafka-console-consumer", *b, "--topic", topic, "--from-beginning",
                           "--max-messages", "2", "--timeout-ms", "20000", "--consumer.config",
                           str(alice), "--group", group, timeout=120)  # fmt: skip
        return result.returncode, result.stdout + result.stderr

    # The console consumer reports the denial and exits (with status 0, as it does).
    code, output = consume()
    assert "TopicAuthorizationException: Not authorized to access topics" in output
    assert "Processed a total of 0 messages" in output

    out = tools.ok("kafka-acls", *acls, "--add", "--allow-principal", "User:alice",
                   "--operation", "Read", "--topic", topic, "--group", group)  # fmt: skip
    assert f"name={topic}" in out and "principal=User:alice" in out
    listed = tools.ok("kafka-acls", *acls, "--list", "--topic", topic)
    assert "principal=User:alice" in listed and "operation=READ" in listed
    code, output = consume()
    assert code == 0 and output.splitlines()[:2] == ["one", "two"]

    tools.ok("kafka-acls", *acls, "--remove", "--force", "--allow-principal", "User:alice",
             "--operation", "Read", "--topic", topic)  # fmt: skip
    listed = tools.ok("kafka-acls", *acls, "--list", "--topic", topic)
    assert "User:alice" not in listed
    code, output = consume()
    assert "TopicAuthorizationException: Not authorized to access topics" in output

    # alice may not change ACLs: CLUSTER ALTER is the super user's here.
    refused = tools.run("kafka-acls", *b, "--command-config", str(alice), "--add",
                        "--allow-principal", "User:alice", "--operation", "All",
                        "--topic", topic)  # fmt: skip
    assert "ClusterAuthorizationException" in refused.stdout + refused.stderr
