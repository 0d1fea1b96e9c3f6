"""Authenticated principals meet ACLs: SASL users (PLAIN, SCRAM) and a mutual-TLS client's
certificate name are what ACLs match, with Kafka's StandardAuthorizer semantics (kpy.acl): a user
without READ on a topic gets TOPIC_AUTHORIZATION_FAILED, one without WRITE cannot produce, the
super user may do anything, and SCRAM and quota administration need the cluster permissions
Kafka asks for."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer
from confluent_kafka.admin import (
    AclBinding,
    AclOperation,
    AclPermissionType,
    AdminClient,
    NewTopic,
    ResourcePatternType,
    ResourceType,
    ScramCredentialInfo,
    ScramMechanism,
    UserScramCredentialUpsertion,
)
from kio.schema.describe_client_quotas.v1.request import DescribeClientQuotasRequest
from kio.schema.describe_user_scram_credentials.v0.request import (
    DescribeUserScramCredentialsRequest,
    UserName,
)
from kio.schema.errors import ErrorCode
from rawclient import RawClient
from security_broker import PLAIN_USERS, SCRAM_USERS, SecureBroker, start_secure_broker
from test_sasl_protocol import login_plain

pytestmark = pytest.mark.timeout(180)

CLIENT_PRINCIPAL = "User:CN=client,OU=test,O=kpy"  # tests/certs.py's client certificate


@pytest.fixture(scope="module")
def secure(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureBroker]:
    broker = start_secure_broker(
        tmp_path_factory.mktemp("acl"),
        **{
            "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
            "super.users": "User:admin",
        },
    )
    try:
        yield broker
    finally:
        broker.proc.stop()


def sasl(broker: SecureBroker, mechanism: str, user: str, password: str) -> dict[str, Any]:
    return {
        "bootstrap.servers": broker.sasl_ssl,
        "security.protocol": "SASL_SSL",
        "ssl.ca.location": str(broker.certs.ca),
        "sasl.mechanism": mechanism,
        "sasl.username": user,
        "sasl.password": password,
    }


def admin_client(broker: SecureBroker) -> AdminClient:
    return AdminClient(sasl(broker, "PLAIN", "admin", PLAIN_USERS["admin"]))


def mtls(broker: SecureBroker) -> dict[str, Any]:
    return {
        "bootstrap.servers": broker.ssl,
        "security.protocol": "SSL",
        "ssl.ca.location": str(broker.certs.ca),
        "ssl.certificate.location": str(broker.certs.client.cert),
        "ssl.key.location": str(broker.certs.client.key),
    }


def allow(principal: str, kind: ResourceType, name: str, operation: AclOperation) -> AclBinding:
    return AclBinding(
        kind, name, ResourcePatternType.LITERAL, principal, "*", operation, AclPermissionType.ALLOW
    )


def create_topic(admin: AdminClient, name: str) -> None:
    admin.create_topics([NewTopic(name, 1)])[name].result(15)


def grant(admin: AdminClient, *bindings: AclBinding) -> None:
    for future in admin.create_acls(list(bindings)).values():
        future.result(15)


def produce_one(conf: dict[str, Any], topic: str) -> KafkaError | None:
    delivered: list[KafkaError | None] = []
    producer = Producer({**conf, "message.timeout.ms": 10000})
    producer.produce(topic, b"v", on_delivery=lambda e, m: delivered.append(e))
    producer.flush(15)
    assert len(delivered) == 1
    return delivered[0]


def consume_error(conf: dict[str, Any], topic: str, group: str) -> KafkaError | None:
    """The first error a consumer of ``topic`` in ``group`` sees, or None after a record."""
    consumer = Consumer({**conf, "group.id": group, "auto.offset.reset": "earliest"})
    consumer.subscribe([topic])
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None:
                continue
            return msg.error()
        raise AssertionError("neither a record nor an error within 20 s")
    finally:
        consumer.close()


def test_a_user_without_read_gets_topic_authorization_failed(secure: SecureBroker) -> None:
    admin = admin_client(secure)
    topic = f"secret-{uuid.uuid4().hex[:6]}"
    create_topic(admin, topic)
    assert produce_one(sasl(secure, "PLAIN", "admin", PLAIN_USERS["admin"]), topic) is None
    group = f"g-{topic}"
    grant(admin, allow("User:alice", ResourceType.GROUP, group, AclOperation.READ))
    alice = sasl(secure, "PLAIN", "alice", PLAIN_USERS["alice"])
    error = consume_error(alice, topic, group)
    assert error is not None and error.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED

    grant(admin, allow("User:alice", ResourceType.TOPIC, topic, AclOperation.READ))
    assert consume_error(alice, topic, group) is None  # a record: READ granted


def test_write_is_granted_per_principal(secure: SecureBroker) -> None:
    admin = admin_client(secure)
    topic = f"writes-{uuid.uuid4().hex[:6]}"
    create_topic(admin, topic)
    bob = sasl(secure, "SCRAM-SHA-256", "bob", SCRAM_USERS["bob"])
    error = produce_one(bob, topic)
    assert error is not None and error.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED
    grant(admin, allow("User:bob", ResourceType.TOPIC, topic, AclOperation.WRITE))
    assert produce_one(bob, topic) is None
    # carol (SCRAM-SHA-512) is someone else: bob's ACL is not hers.
    carol = sasl(secure, "SCRAM-SHA-512", "carol", SCRAM_USERS["carol"])
    error = produce_one(carol, topic)
    assert error is not None and error.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED


def test_a_client_certificate_is_the_principal_acls_name(secure: SecureBroker) -> None:
    admin = admin_client(secure)
    topic = f"mtls-{uuid.uuid4().hex[:6]}"
    create_topic(admin, topic)
    error = produce_one(mtls(secure), topic)
    assert error is not None and error.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED
    grant(admin, allow(CLIENT_PRINCIPAL, ResourceType.TOPIC, topic, AclOperation.WRITE))
    assert produce_one(mtls(secure), topic) is None


def test_scram_and_quota_administration_need_cluster_permissions(secure: SecureBroker) -> None:
    alice = AdminClient(sasl(secure, "PLAIN", "alice", PLAIN_USERS["alice"]))
    info = ScramCredentialInfo(ScramMechanism.SCRAM_SHA_256, 4096)
    futures = alice.alter_user_scram_credentials(
        [UserScramCredentialUpsertion("mallory", info, b"pw")]
    )
    with pytest.raises(KafkaException) as raised:
        futures["mallory"].result(15)
    assert raised.value.args[0].code() == KafkaError.CLUSTER_AUTHORIZATION_FAILED
    # Describing is checked over a raw connection: librdkafka 2.16 crashes (munmap_chunk:
    # invalid pointer) on a denied DescribeUserScramCredentials, answered as Kafka's
    # getErrorResponse answers it (the error at the top and once per user named).
    with RawClient(secure.sasl_plaintext) as raw:
        login_plain(raw, "alice")
        described = raw.request(DescribeUserScramCredentialsRequest(users=(UserName(name="bob"),)))
        assert described.error_code == ErrorCode.cluster_authorization_failed
        assert described.error_message == "Cluster authorization failed."
        assert [(r.user, r.error_code) for r in described.results] == [
            ("", ErrorCode.cluster_authorization_failed)
        ]
        quotas = raw.request(DescribeClientQuotasRequest(components=(), strict=False))
        assert quotas.error_code == ErrorCode.cluster_authorization_failed
    # The super user may.
    admin = admin_client(secure)
    admin.alter_user_scram_credentials([UserScramCredentialUpsertion("mallory", info, b"pw")])[
        "mallory"
    ].result(15)
    assert "mallory" in admin.describe_user_scram_credentials().result(15)
