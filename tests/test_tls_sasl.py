"""TLS and SASL with real clients: confluent-kafka (librdkafka) and kafka-python connect to kpy's
SSL (mutual TLS), SASL_PLAINTEXT and SASL_SSL listeners with PLAIN, SCRAM-SHA-256 and
SCRAM-SHA-512; wrong passwords, unknown users and untrusted certificates are refused; SCRAM
users are managed with the admin API; secrets stay out of DescribeConfigs and the log."""

from __future__ import annotations

import gc
import ssl
import struct
import time
import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer
from confluent_kafka.admin import (
    AdminClient,
    ConfigResource,
    NewTopic,
    ResourceType,
    ScramCredentialInfo,
    ScramMechanism,
    UserScramCredentialDeletion,
    UserScramCredentialUpsertion,
)
from rawclient import RawClient
from requests_v import fetch
from security_broker import (
    PLAIN_USERS,
    REAUTH_MS,
    SCRAM_USERS,
    SecureBroker,
    start_secure_broker,
)

pytestmark = pytest.mark.timeout(180)


@pytest.fixture(scope="module")
def secure(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureBroker]:
    broker = start_secure_broker(tmp_path_factory.mktemp("secure"))
    try:
        yield broker
    finally:
        broker.proc.stop()


# (listener, mechanism, user, password); mechanism None: mutual TLS.
CASES = [
    ("SASL_SSL", "PLAIN", "alice", PLAIN_USERS["alice"]),
    ("SASL_SSL", "SCRAM-SHA-256", "bob", SCRAM_USERS["bob"]),
    ("SASL_SSL", "SCRAM-SHA-512", "carol", SCRAM_USERS["carol"]),
    ("SASL_PLAINTEXT", "PLAIN", "admin", PLAIN_USERS["admin"]),
    ("SASL_PLAINTEXT", "SCRAM-SHA-256", "carol", SCRAM_USERS["carol"]),
    ("SASL_PLAINTEXT", "SCRAM-SHA-512", "bob", SCRAM_USERS["bob"]),
    ("SSL", None, None, None),
]
IDS = [f"{c[0]}-{c[1] or 'mTLS'}" for c in CASES]


def ck_config(
    broker: SecureBroker,
    protocol: str,
    mechanism: str | None,
    user: str | None,
    password: str | None,
    client_cert: bool = True,
) -> dict[str, Any]:
    conf: dict[str, Any] = {
        "bootstrap.servers": broker.bootstrap(protocol),
        "security.protocol": protocol,
    }
    if protocol in ("SSL", "SASL_SSL"):
        conf["ssl.ca.location"] = str(broker.certs.ca)
    if protocol == "SSL" and client_cert:
        conf["ssl.certificate.location"] = str(broker.certs.client.cert)
        conf["ssl.key.location"] = str(broker.certs.client.key)
    if mechanism is not None:
        conf.update({"sasl.mechanism": mechanism, "sasl.username": user, "sasl.password": password})
    return conf


@pytest.mark.parametrize(("protocol", "mechanism", "user", "password"), CASES, ids=IDS)
def test_confluent_kafka_produces_and_consumes(
    secure: SecureBroker,
    protocol: str,
    mechanism: str | None,
    user: str | None,
    password: str | None,
) -> None:
    conf = ck_config(secure, protocol, mechanism, user, password)
    topic = f"sec-{uuid.uuid4().hex[:8]}"
    errors: list[KafkaError] = []
    producer = Producer({**conf, "error_cb": errors.append, "enable.idempotence": True})
    delivered: list[Any] = []
    sent = [f"{protocol}-{i}".encode() for i in range(50)]
    for value in sent:
        producer.produce(topic, value, on_delivery=lambda e, m: delivered.append(e or m.offset()))
    assert producer.flush(30) == 0
    assert delivered == list(range(50))
    consumer = Consumer(
        {
            **conf,
            "group.id": f"g-{topic}",
            "auto.offset.reset": "earliest",
            "error_cb": errors.append,
        }
    )
    consumer.subscribe([topic])
    got: list[bytes] = []
    deadline = time.monotonic() + 30
    while len(got) < len(sent) and time.monotonic() < deadline:
        msg = consumer.poll(0.5)
        if msg is not None and msg.error() is None:
            got.append(msg.value())
    consumer.commit(asynchronous=False)
    consumer.close()
    assert got == sent
    assert errors == []


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-512"])
def test_confluent_kafka_reauthenticates_across_sessions(
    secure: SecureBroker, mechanism: str
) -> None:
    """Sessions last REAUTH_MS: a producer sending for three of them re-authenticates on its
    connections (a request after a session's end would have the broker close the connection,
    which librdkafka reports)."""
    user, password = (
        ("alice", PLAIN_USERS["alice"]) if mechanism == "PLAIN" else ("bob", SCRAM_USERS["bob"])
    )
    conf = ck_config(secure, "SASL_SSL", mechanism, user, password)
    errors: list[KafkaError] = []
    expired_before = secure.proc.log_text().count("SASL session expired")
    producer = Producer({**conf, "error_cb": errors.append, "linger.ms": 0})
    delivered: list[Any] = []
    topic = f"reauth-{uuid.uuid4().hex[:8]}"
    end = time.monotonic() + 3 * REAUTH_MS / 1000
    n = 0
    while time.monotonic() < end:
        producer.produce(topic, str(n).encode(), on_delivery=lambda e, m: delivered.append(e))
        n += 1
        producer.poll(0.1)
    assert producer.flush(20) == 0
    assert delivered == [None] * n
    assert errors == []
    assert secure.proc.log_text().count("SASL session expired") == expired_before


def _auth_error(conf: dict[str, Any]) -> KafkaError:
    """The error librdkafka reports for a client that cannot authenticate (nothing delivered)."""
    errors: list[KafkaError] = []
    producer = Producer({**conf, "error_cb": errors.append, "message.timeout.ms": 4000})
    delivered: list[Any] = []
    producer.produce("refused", b"x", on_delivery=lambda e, m: delivered.append(e))
    producer.flush(10)
    assert len(delivered) == 1 and delivered[0] is not None, "the message was delivered"
    assert errors, "no error reported"
    return errors[0]


@pytest.mark.parametrize(
    ("protocol", "mechanism", "user", "password", "message"),
    [
        ("SASL_SSL", "PLAIN", "alice", "wrong", "Invalid username or password"),
        ("SASL_PLAINTEXT", "PLAIN", "mallory", "x", "Invalid username or password"),
        (
            "SASL_SSL",
            "SCRAM-SHA-256",
            "bob",
            "wrong",
            "invalid credentials with SASL mechanism SCRAM-SHA-256",
        ),
        (
            "SASL_PLAINTEXT",
            "SCRAM-SHA-512",
            "mallory",
            "x",
            "invalid credentials with SASL mechanism SCRAM-SHA-512",
        ),
        # A PLAIN user has no SCRAM credentials.
        (
            "SASL_SSL",
            "SCRAM-SHA-256",
            "alice",
            PLAIN_USERS["alice"],
            "invalid credentials with SASL mechanism SCRAM-SHA-256",
        ),
    ],
)
def test_confluent_kafka_wrong_credentials_are_refused(
    secure: SecureBroker, protocol: str, mechanism: str, user: str, password: str, message: str
) -> None:
    error = _auth_error(ck_config(secure, protocol, mechanism, user, password))
    assert error.code() == KafkaError._AUTHENTICATION, error
    assert message in error.str()


# With TLS 1.3 the client finishes its handshake before the broker checks its certificate, so
# librdkafka sees the broker close the connection rather than a handshake failure.
TLS_REFUSED = (KafkaError._SSL, KafkaError._TRANSPORT, KafkaError._ALL_BROKERS_DOWN)


def test_mutual_tls_refuses_clients_without_a_trusted_certificate(secure: SecureBroker) -> None:
    no_cert = ck_config(secure, "SSL", None, None, None, client_cert=False)
    assert _auth_error(no_cert).code() in TLS_REFUSED
    stranger = {
        **no_cert,
        "ssl.certificate.location": str(secure.certs.stranger.cert),
        "ssl.key.location": str(secure.certs.stranger.key),
    }
    assert _auth_error(stranger).code() in TLS_REFUSED


def test_a_client_that_does_not_trust_the_broker_refuses_it(
    secure: SecureBroker, tmp_path: Path
) -> None:
    from certs import make_certs

    other = make_certs(tmp_path / "other")
    conf = ck_config(secure, "SASL_SSL", "PLAIN", "alice", PLAIN_USERS["alice"])
    conf["ssl.ca.location"] = str(other.ca)
    assert _auth_error(conf).code() in TLS_REFUSED


# --- kafka-python ----------------------------------------------------------------------------


def kp_config(
    broker: SecureBroker,
    protocol: str,
    mechanism: str | None,
    user: str | None,
    password: str | None,
) -> dict[str, Any]:
    conf: dict[str, Any] = {
        "bootstrap_servers": broker.bootstrap(protocol),
        "security_protocol": protocol,
        "request_timeout_ms": 15000,
    }
    if protocol in ("SSL", "SASL_SSL"):
        conf["ssl_cafile"] = str(broker.certs.ca)
    if protocol == "SSL":
        conf["ssl_certfile"] = str(broker.certs.client.cert)
        conf["ssl_keyfile"] = str(broker.certs.client.key)
    if mechanism is not None:
        conf.update(
            {
                "sasl_mechanism": mechanism,
                "sasl_plain_username": user,
                "sasl_plain_password": password,
            }
        )
    return conf


@pytest.mark.parametrize(("protocol", "mechanism", "user", "password"), CASES, ids=IDS)
def test_kafka_python_produces_and_consumes(
    secure: SecureBroker,
    protocol: str,
    mechanism: str | None,
    user: str | None,
    password: str | None,
) -> None:
    from kafka import KafkaConsumer, KafkaProducer

    conf = kp_config(secure, protocol, mechanism, user, password)
    topic = f"kp-{uuid.uuid4().hex[:8]}"
    producer = KafkaProducer(acks="all", **conf)
    sent = [f"kp-{i}".encode() for i in range(20)]
    offsets = [producer.send(topic, v).get(timeout=30).offset for v in sent]
    producer.close()
    assert offsets == list(range(20))
    consumer = KafkaConsumer(
        topic,
        group_id=f"g-{topic}",
        auto_offset_reset="earliest",
        consumer_timeout_ms=15000,
        **conf,
    )
    got = []
    for msg in consumer:
        got.append(msg.value)
        if len(got) == len(sent):
            break
    consumer.close()
    assert got == sent


@pytest.mark.parametrize(
    ("protocol", "mechanism"),
    [("SASL_SSL", "PLAIN"), ("SASL_PLAINTEXT", "SCRAM-SHA-256"), ("SASL_SSL", "SCRAM-SHA-512")],
)
def test_kafka_python_wrong_password_is_refused(
    secure: SecureBroker, protocol: str, mechanism: str
) -> None:
    from kafka import KafkaProducer
    from kafka.errors import KafkaError as KpError

    user = "alice" if mechanism == "PLAIN" else "bob"
    conf = kp_config(secure, protocol, mechanism, user, "wrong")
    failed_before = secure.proc.log_text().count(f"with {mechanism} failed")
    refused = ""
    # A producer that never bootstraps is never closed: its sockets go with the garbage
    # collector, here rather than as unraisable ResourceWarnings in a later test.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        try:
            # api_version given: kafka-python 3 would spend 30 s probing before it gave up.
            producer = KafkaProducer(max_block_ms=4000, api_version=(2, 8), **conf)
            try:
                producer.send("refused", b"x").get(timeout=10)
            finally:
                producer.close(timeout=5)
        except KpError as e:
            refused = repr(e)
        gc.collect()
    assert refused, "the producer was not refused"
    # kafka-python reports the SASL_AUTHENTICATION_FAILED answer or only the close that
    # follows it, whichever it reads first; the broker says which user it refused.
    failed = f"with {mechanism} failed"
    assert secure.proc.log_text().count(failed) > failed_before


# --- SCRAM credentials through the admin API -------------------------------------------------


def test_scram_users_are_added_described_and_deleted(secure: SecureBroker) -> None:
    admin = AdminClient(ck_config(secure, "SASL_SSL", "PLAIN", "admin", PLAIN_USERS["admin"]))
    info = ScramCredentialInfo(ScramMechanism.SCRAM_SHA_256, 8192)
    futures = admin.alter_user_scram_credentials(
        [UserScramCredentialUpsertion("dave", info, b"dave-secret")]
    )
    futures["dave"].result(15)
    described = admin.describe_user_scram_credentials(["dave"])["dave"].result(15)
    infos = described.scram_credential_infos
    assert [(i.mechanism, i.iterations) for i in infos] == [(ScramMechanism.SCRAM_SHA_256, 8192)]

    dave = ck_config(secure, "SASL_SSL", "SCRAM-SHA-256", "dave", "dave-secret")
    p = Producer(dave)
    delivered: list[Any] = []
    p.produce("dave-topic", b"hi", on_delivery=lambda e, m: delivered.append(e))
    p.flush(20)
    assert delivered == [None]

    # Kafka's refusals: too few iterations, a user unknown to describe.
    bad = admin.alter_user_scram_credentials(
        [
            UserScramCredentialUpsertion(
                "erin", ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, 100), b"pw"
            )
        ]
    )
    with pytest.raises(KafkaException) as raised:
        bad["erin"].result(15)
    assert raised.value.args[0].code() == KafkaError.UNACCEPTABLE_CREDENTIAL
    assert "Too few iterations" in raised.value.args[0].str()
    with pytest.raises(KafkaException) as raised:
        admin.describe_user_scram_credentials(["nobody"])["nobody"].result(15)
    assert raised.value.args[0].code() == KafkaError.RESOURCE_NOT_FOUND

    everyone = admin.describe_user_scram_credentials().result(15)
    assert {"bob", "carol", "dave"} <= set(everyone)

    admin.alter_user_scram_credentials(
        [UserScramCredentialDeletion("dave", ScramMechanism.SCRAM_SHA_256)]
    )["dave"].result(15)
    error = _auth_error(dave)
    assert error.code() == KafkaError._AUTHENTICATION
    with pytest.raises(KafkaException) as raised:
        admin.alter_user_scram_credentials(
            [UserScramCredentialDeletion("dave", ScramMechanism.SCRAM_SHA_256)]
        )["dave"].result(15)
    assert raised.value.args[0].code() == KafkaError.RESOURCE_NOT_FOUND


def test_scram_credentials_survive_a_restart(tmp_path: Path) -> None:
    broker = start_secure_broker(tmp_path)
    try:
        admin = AdminClient(ck_config(broker, "SASL_PLAINTEXT", "PLAIN", "admin", "admin-secret"))
        info = ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, 4096)
        admin.alter_user_scram_credentials(
            [UserScramCredentialUpsertion("frank", info, b"frank-secret")]
        )["frank"].result(15)
        broker.proc.restart()
        frank = ck_config(broker, "SASL_PLAINTEXT", "SCRAM-SHA-512", "frank", "frank-secret")
        p = Producer(frank)
        delivered: list[Any] = []
        p.produce("after-restart", b"hi", on_delivery=lambda e, m: delivered.append(e))
        p.flush(20)
        assert delivered == [None]
        assert "frank-secret" not in broker.proc.log_text()
    finally:
        broker.proc.stop()


# --- Secrets ---------------------------------------------------------------------------------


def test_secrets_are_hidden_from_describe_configs_and_the_log(secure: SecureBroker) -> None:
    admin = AdminClient({"bootstrap.servers": secure.plaintext})
    resource = ConfigResource(ResourceType.BROKER, "1")
    configs = admin.describe_configs([resource])[resource].result(15)
    jaas = configs["listener.name.sasl_ssl.plain.sasl.jaas.config"]
    assert jaas.is_sensitive and jaas.value is None
    assert configs["kpy.add.scram"].is_sensitive and configs["kpy.add.scram"].value is None
    assert configs["ssl.key.password"].is_sensitive
    assert configs["ssl.keystore.location"].value == str(secure.certs.server.both)
    # A listener's own setting is judged by its key, as Kafka types it: not a secret.
    client_auth = configs["listener.name.ssl.ssl.client.auth"]
    assert not client_auth.is_sensitive and client_auth.value == "required"
    log = secure.proc.log_text()
    for secret in [*PLAIN_USERS.values(), *SCRAM_USERS.values()]:
        assert secret not in log


# --- TLS details -----------------------------------------------------------------------------


def test_an_encrypted_key_with_ssl_key_password(tmp_path: Path) -> None:
    from certs import make_certs
    from kpy_process import KpyProcess

    certs = make_certs(tmp_path / "certs", key_password="keypass")
    proc = KpyProcess(
        tmp_path / "data",
        {
            "listeners": "SSL://127.0.0.1:0",
            "ssl.keystore.type": "PEM",
            "ssl.keystore.location": str(certs.server.both),
            "ssl.key.password": "keypass",
        },
    ).start()
    try:
        ctx = ssl.create_default_context(cafile=str(certs.ca))
        import socket

        with (
            socket.create_connection(("127.0.0.1", proc.port), timeout=10) as raw,
            ctx.wrap_socket(raw, server_hostname="localhost") as tls_sock,
        ):
            assert tls_sock.version() in ("TLSv1.2", "TLSv1.3")
        assert "keypass" not in proc.log_text()
    finally:
        proc.stop()


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"listeners": "SASL_PLAINTEXT://127.0.0.1:0"}, "GSSAPI"),
        (
            {"listeners": "SSL://127.0.0.1:0", "ssl.keystore.location": "/nonexistent.jks"},
            "ssl.keystore.type is JKS",
        ),
        ({"listeners": "SSL://127.0.0.1:0"}, "has no keystore"),
        (
            {"listeners": "SASL_PLAINTEXT://127.0.0.1:0", "sasl.enabled.mechanisms": "PLAIN"},
            "listener.name.sasl_plaintext.plain.sasl.jaas.config is not set",
        ),
        ({"listeners": "INTERNAL://127.0.0.1:0"}, "listener.security.protocol.map"),
    ],
)
def test_security_settings_kafka_would_refuse_stop_kpy_at_start(
    tmp_path: Path, overrides: dict[str, str], message: str
) -> None:
    import subprocess
    import sys

    args = [sys.executable, "-m", "kpy", "serve", "--data-dir", str(tmp_path)]
    for key, value in overrides.items():
        args += ["--override", f"{key}={value}"]
    result = subprocess.run(args, capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    assert message in result.stderr


def test_pipelined_requests_over_tls_are_all_answered(secure: SecureBroker) -> None:
    """A request read while the one before it waits (a Fetch for data that does not come) is
    answered once that one is, over TLS as over PLAINTEXT. kpy once paused its TLS writes with
    nothing buffered and answered the second only after the client's next request: the Java
    consumer's close (a last Fetch sent behind the one waiting) then hung for its 30 s
    request.timeout.ms."""
    topic = f"pipelined-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": secure.plaintext})
    for future in admin.create_topics([NewTopic(topic, 1, 1)]).values():
        future.result(30)
    context = ssl.create_default_context(cafile=str(secure.certs.ca))
    context.load_cert_chain(str(secure.certs.client.cert), str(secure.certs.client.key))
    with RawClient(secure.ssl, timeout=15.0) as client:
        client.sock = context.wrap_socket(client.sock, server_hostname="localhost")
        # Whether the write was left paused depended on how many writes and reads the TLS layer
        # had seen: a single request between the pairs changes that.
        for pipelined in (False, True, True, False, True):
            first = client.correlation_id + 1
            if pipelined:
                fetch(client, [(topic, 0, 0, 1 << 20)], max_wait_ms=300, min_bytes=1,
                      send_only=True)  # fmt: skip
            fetch(client, [], max_wait_ms=300, min_bytes=1, send_only=True)
            expected = [first, first + 1] if pipelined else [first]
            got = [struct.unpack(">i", client.recv_frame()[:4])[0] for _ in expected]
            assert got == expected
