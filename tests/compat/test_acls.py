"""ACLs with the stock kafka-acls tool and the Python clients, against kpy and, with
``--compat-broker=kafka``, against Apache Kafka 4.1.0 running its StandardAuthorizer.

Both brokers run with ``authorizer.class.name`` set to Kafka's StandardAuthorizer and
``allow.everyone.if.no.acl.found=true``, and no super user: over PLAINTEXT every client, and
Kafka's own broker-to-controller traffic, is User:ANONYMOUS, so everything is allowed as long
as no ACL covers the resource (and the tests never put one on the cluster that would deny
ANONYMOUS anything). A scenario first ALLOWs ALL to User:ANONYMOUS on its topic or group (a
resource with ACLs denies what none allows), checks that the client works, then adds a DENY of
one operation and checks the error the client reports.

Kafka applies an ACL change once its broker has replayed it from the metadata log, a moment
after CreateAcls answers; ``changed`` waits until DescribeAcls (which the broker answers from its
own authorizer) shows it. kpy applies it before answering.

kpy starts fresh for each test; one Kafka with the authorizer serves the module, its ACLs,
topics and groups removed after each test.
"""

from __future__ import annotations

import datetime
import re
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from acl_requests import (
    ANON,
    CLUSTER,
    Op,
    Pat,
    Perm,
    Res,
    acl,
    create_acls,
    delete_acls,
    describe_acls,
    described,
    filter_fields,
)
from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import (
    AclBinding,
    AclBindingFilter,
    AclOperation,
    AclPermissionType,
    AdminClient,
    ResourcePatternType,
    ResourceType,
)
from kafka import KafkaConsumer, KafkaProducer
from kafka import TopicPartition as KpTopicPartition
from kafka import errors as kafka_errors
from kafka.admin import (
    ACL,
    ACLOperation,
    ACLPermissionType,
    ACLResourcePatternType,
    KafkaAdminClient,
    ResourcePattern,
)
from kafka.admin import ResourceType as KpResourceType
from kio.schema.errors import ErrorCode
from kpy_process import KpyProcess
from rawclient import RawClient
from requests_v import (
    build,
    describe_topic_partitions,
    fetch,
    list_offsets,
    metadata,
    produce,
)

from compat import kafka_broker
from compat.conftest import broker_choice
from compat.kafka_broker import DELETE_AT_ONCE, KafkaBroker
from compat.steps import Broker
from compat.tools import Tools
from compat.txn_steps import WAIT, create_topics
from kpy.protocol.records import build_batch

AUTHORIZER = {
    "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
    "allow.everyone.if.no.acl.found": "true",
}
SETTLE_S = 30.0
ANY_ACL = AclBindingFilter(
    ResourceType.ANY,
    None,
    ResourcePatternType.ANY,
    None,
    None,
    AclOperation.ANY,
    AclPermissionType.ANY,
)


@pytest.fixture(scope="module")
def kafka_with_acls(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[KafkaBroker | None]:
    """Apache Kafka with the authorizer for this module's tests, or None when testing kpy."""
    kind, version = broker_choice(request.config)
    if kind == "kpy":
        yield None
        return
    assert version is not None
    why = kafka_broker.missing(version)
    if why is not None:
        pytest.skip(why)
    directory = tmp_path_factory.mktemp("kafka-acls")
    broker = KafkaBroker(directory, version, {**DELETE_AT_ONCE, **AUTHORIZER}).start()
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture
def broker(tmp_path: Path, kafka_with_acls: KafkaBroker | None) -> Iterator[Broker]:
    if kafka_with_acls is None:
        proc = KpyProcess(tmp_path / "data", AUTHORIZER).start()
        try:
            yield proc
        finally:
            proc.stop()
        return
    try:
        yield kafka_with_acls
    finally:
        client = admin(kafka_with_acls.bootstrap)  # kept: futures fail once it is collected
        client.delete_acls([ANY_ACL], request_timeout=WAIT)[ANY_ACL].result()
        changed(kafka_with_acls.bootstrap, set())
        kafka_with_acls.reset()


def admin(bootstrap: str) -> AdminClient:
    return AdminClient({"bootstrap.servers": bootstrap})


Acl = tuple[str, str, str, str, str, str, str]  # type, name, pattern, principal, host, op, perm


def acls_of(bootstrap: str) -> set[Acl]:
    client = admin(bootstrap)
    found = client.describe_acls(ANY_ACL, request_timeout=WAIT).result()
    return {
        (
            type_name(b.restype),
            b.name,
            b.resource_pattern_type.name,
            b.principal,
            b.host,
            b.operation.name,
            b.permission_type.name,
        )
        for b in found
    }


def type_name(resource_type: ResourceType) -> str:
    """Kafka's name of a resource type (confluent-kafka calls CLUSTER "BROKER")."""
    return "CLUSTER" if resource_type is ResourceType.BROKER else resource_type.name


def changed(bootstrap: str, expected: set[Acl]) -> None:
    """Wait until the broker has the ACLs ``expected`` (Kafka: replayed from its metadata log)."""
    deadline = time.monotonic() + SETTLE_S
    while (found := acls_of(bootstrap)) != expected:
        assert time.monotonic() < deadline, f"ACLs {found}, expected {expected}"
        time.sleep(0.1)


def binding(
    resource_type: ResourceType, name: str, operation: AclOperation, permission: AclPermissionType
) -> AclBinding:
    return AclBinding(
        resource_type, name, ResourcePatternType.LITERAL, ANON, "*", operation, permission
    )


def add(bootstrap: str, *bindings: AclBinding) -> None:
    """Create ACLs with confluent-kafka's admin client and wait until they apply."""
    before = acls_of(bootstrap)
    client = admin(bootstrap)
    for future in client.create_acls(list(bindings), request_timeout=WAIT).values():
        future.result()
    changed(
        bootstrap,
        before
        | {
            (
                type_name(b.restype),
                b.name,
                b.resource_pattern_type.name,
                b.principal,
                b.host,
                b.operation.name,
                b.permission_type.name,
            )
            for b in bindings
        },
    )


# --- kafka-acls -------------------------------------------------------------------------------

ACL_RESOURCE = re.compile(
    r"ResourcePattern\(resourceType=(\w+), name=(.*), patternType=(\w+)\)`:?\s*$"
)
ACL_ENTRY = re.compile(
    r"^\s*\(principal=(.*), host=(.*), operation=(\w+), permissionType=(\w+)\)\s*$"
)


def listed(output: str) -> set[Acl]:
    """The ACLs of kafka-acls --list output (a resource line, then its entries)."""
    found: set[Acl] = set()
    resource: tuple[str, str, str] | None = None
    for line in output.splitlines():
        if (m := ACL_RESOURCE.search(line)) is not None:
            resource = (m.group(1), m.group(2), m.group(3))
        elif (e := ACL_ENTRY.match(line)) is not None:
            assert resource is not None, output
            found.add((*resource, *e.groups()))  # type: ignore[arg-type]
    return found


def test_kafka_acls_add_list_remove(broker: Broker, tools: Tools) -> None:
    b = broker.bootstrap

    def acls(*args: str) -> str:
        return tools.ok("kafka-acls", "--bootstrap-server", b, *args)

    acls("--add", "--allow-principal", "User:alice", "--operation", "Read", "--topic", "orders",
         "--group", "g1")  # fmt: skip
    acls("--add", "--deny-principal", ANON, "--operation", "Write", "--topic", "pay",
         "--resource-pattern-type", "prefixed")  # fmt: skip
    acls("--add", "--allow-principal", "User:*", "--operation", "Describe", "--topic", "*")
    acls("--add", "--allow-principal", "User:bob", "--allow-host", "10.0.0.1", "--operation",
         "Write", "--transactional-id", "tx")  # fmt: skip
    acls("--add", "--allow-principal", ANON, "--operation", "All", "--cluster")
    # Adding an ACL that exists changes nothing.
    acls("--add", "--allow-principal", "User:*", "--operation", "Describe", "--topic", "*")
    orders = ("TOPIC", "orders", "LITERAL", "User:alice", "*", "READ", "ALLOW")
    group = ("GROUP", "g1", "LITERAL", "User:alice", "*", "READ", "ALLOW")
    pay = ("TOPIC", "pay", "PREFIXED", ANON, "*", "WRITE", "DENY")
    everyone = ("TOPIC", "*", "LITERAL", "User:*", "*", "DESCRIBE", "ALLOW")
    txn = ("TRANSACTIONAL_ID", "tx", "LITERAL", "User:bob", "10.0.0.1", "WRITE", "ALLOW")
    cluster = ("CLUSTER", "kafka-cluster", "LITERAL", ANON, "*", "ALL", "ALLOW")
    every = {orders, group, pay, everyone, txn, cluster}
    changed(b, every)

    assert listed(acls("--list")) == every
    # match: every ACL whose pattern covers the topic; prefixed: the PREFIXED ones.
    match = acls("--list", "--topic", "payments", "--resource-pattern-type", "match")
    assert listed(match) == {pay, everyone}
    assert listed(acls("--list", "--topic", "pay", "--resource-pattern-type", "prefixed")) == {pay}
    assert listed(acls("--list", "--topic", "pay")) == set()  # LITERAL "pay": none
    assert listed(acls("--list", "--topic", "orders")) == {orders}
    assert listed(acls("--list", "--principal", "User:bob")) == {txn}

    acls("--remove", "--force", "--allow-principal", "User:alice", "--operation", "Read",
         "--topic", "orders")  # fmt: skip
    changed(b, every - {orders})
    acls("--remove", "--force", "--topic", "pay", "--resource-pattern-type", "prefixed")
    acls("--remove", "--force", "--group", "g1")
    changed(b, {everyone, txn, cluster})
    assert listed(acls("--list")) == {everyone, txn, cluster}


# --- confluent-kafka --------------------------------------------------------------------------


def first_event(consumer: Consumer, timeout_s: float = 20.0) -> Any:
    """The first message or error event the consumer reports."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        event = consumer.poll(0.5)
        if event is not None:
            return event
    raise AssertionError("the consumer reported nothing")


def deliver(producer: Producer, topic: str, value: bytes) -> KafkaError | None:
    errors: list[KafkaError | None] = []
    producer.produce(topic, value, on_delivery=lambda err, msg: errors.append(err))
    producer.flush(WAIT)
    assert len(errors) == 1
    return errors[0]


def test_confluent_kafka_denied_read_write_and_group(broker: Broker) -> None:
    b = broker.bootstrap
    create_topics(b, "guarded")
    add(b, binding(ResourceType.TOPIC, "guarded", AclOperation.ALL, AclPermissionType.ALLOW))
    producer = Producer({"bootstrap.servers": b})
    assert deliver(producer, "guarded", b"first") is None
    reader = {"bootstrap.servers": b, "group.id": "readers", "auto.offset.reset": "earliest"}

    consumer = Consumer(reader)
    consumer.assign([TopicPartition("guarded", 0, 0)])
    event = first_event(consumer)
    assert event.error() is None and event.value() == b"first"
    consumer.close()

    add(b, binding(ResourceType.TOPIC, "guarded", AclOperation.READ, AclPermissionType.DENY))
    consumer = Consumer(reader)
    consumer.assign([TopicPartition("guarded", 0, 0)])
    event = first_event(consumer)
    assert event.error() is not None
    assert event.error().code() == KafkaError.TOPIC_AUTHORIZATION_FAILED
    consumer.close()
    assert deliver(producer, "guarded", b"still writable") is None  # ALL allows WRITE

    add(b, binding(ResourceType.TOPIC, "guarded", AclOperation.WRITE, AclPermissionType.DENY))
    error = deliver(producer, "guarded", b"refused")
    assert error is not None and error.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED

    # A group: ALLOW ALL, then DENY READ.
    add(b, binding(ResourceType.TOPIC, "open", AclOperation.ALL, AclPermissionType.ALLOW))
    create_topics(b, "open")
    add(
        b,
        binding(ResourceType.GROUP, "blocked", AclOperation.ALL, AclPermissionType.ALLOW),
        binding(ResourceType.GROUP, "blocked", AclOperation.READ, AclPermissionType.DENY),
    )
    member = Consumer({**reader, "group.id": "blocked"})
    member.subscribe(["open"])
    event = first_event(member)
    assert event.error() is not None
    assert event.error().code() == KafkaError.GROUP_AUTHORIZATION_FAILED
    member.close()


# --- kafka-python -------------------------------------------------------------------------------


def kp_acl(kind: Any, name: str, operation: Any, permission: Any) -> ACL:
    pattern = ResourcePattern(kind, name, ACLResourcePatternType.LITERAL)
    return ACL(ANON, "*", operation, permission, pattern)


def kp_add(bootstrap: str, *acls: ACL) -> None:
    """Create ACLs with kafka-python's admin client and wait until they apply."""
    client = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        before = acls_of(bootstrap)
        result = client.create_acls(list(acls))
        assert result["failed"] == [], result
    finally:
        client.close()
    changed(
        bootstrap,
        before
        | {
            (
                a.resource_pattern.resource_type.name,
                a.resource_pattern.resource_name,
                a.resource_pattern.pattern_type.name,
                a.principal,
                a.host,
                a.operation.name,
                a.permission_type.name,
            )
            for a in acls
        },
    )


def raises_until(error: type[Exception], attempt: Callable[[], object]) -> Exception:
    """The ``error`` ``attempt`` raises (kafka-python raises it from a later poll when an
    earlier one only sent the request)."""
    deadline = time.monotonic() + 20.0
    while time.monotonic() < deadline:
        try:
            attempt()
        except error as e:
            return e
    raise AssertionError(f"no {error.__name__}")


def test_kafka_python_denied_read_write_and_group(broker: Broker) -> None:
    b = broker.bootstrap
    create_topics(b, "guarded")
    kp_add(b, kp_acl(KpResourceType.TOPIC, "guarded", ACLOperation.ALL, ACLPermissionType.ALLOW))
    producer = KafkaProducer(bootstrap_servers=b)
    try:
        producer.send("guarded", b"first").get(timeout=WAIT)
        consumer = KafkaConsumer(bootstrap_servers=b, auto_offset_reset="earliest")
        consumer.assign([KpTopicPartition("guarded", 0)])
        records: list[Any] = []
        deadline = time.monotonic() + 20.0
        while not records and time.monotonic() < deadline:
            records = [r for rs in consumer.poll(500).values() for r in rs]
        assert [r.value for r in records] == [b"first"]
        consumer.close()

        kp_add(
            b, kp_acl(KpResourceType.TOPIC, "guarded", ACLOperation.READ, ACLPermissionType.DENY)
        )
        consumer = KafkaConsumer(bootstrap_servers=b, auto_offset_reset="earliest")
        consumer.assign([KpTopicPartition("guarded", 0)])
        denied = raises_until(
            kafka_errors.TopicAuthorizationFailedError, lambda: consumer.poll(500)
        )
        assert "guarded" in str(denied)
        consumer.close()

        kp_add(
            b, kp_acl(KpResourceType.TOPIC, "guarded", ACLOperation.WRITE, ACLPermissionType.DENY)
        )
        with pytest.raises(kafka_errors.TopicAuthorizationFailedError):
            producer.send("guarded", b"refused").get(timeout=WAIT)
    finally:
        producer.close()

    create_topics(b, "open")
    kp_add(
        b,
        kp_acl(KpResourceType.GROUP, "blocked", ACLOperation.ALL, ACLPermissionType.ALLOW),
        kp_acl(KpResourceType.GROUP, "blocked", ACLOperation.READ, ACLPermissionType.DENY),
    )
    member = KafkaConsumer(bootstrap_servers=b, group_id="blocked")
    try:
        member.subscribe(["open"])
        raises_until(kafka_errors.GroupAuthorizationFailedError, lambda: member.poll(500))
    finally:
        member.close()


# --- Durability --------------------------------------------------------------------------------


@pytest.fixture
def own_broker(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Broker]:
    """A broker of this test's own, to restart (Kafka: with the authorizer too)."""
    kind, version = broker_choice(request.config)
    if kind == "kpy":
        proc = KpyProcess(tmp_path / "data", AUTHORIZER).start()
        try:
            yield proc
        finally:
            proc.stop()
        return
    assert version is not None
    why = kafka_broker.missing(version)
    if why is not None:
        pytest.skip(why)
    own = KafkaBroker(tmp_path / "kafka", version, {**DELETE_AT_ONCE, **AUTHORIZER}).start()
    try:
        yield own
    finally:
        own.stop()


def test_acls_survive_a_restart(own_broker: Broker) -> None:
    b = own_broker.bootstrap
    create_topics(b, "kept")
    add(
        b,
        binding(ResourceType.TOPIC, "kept", AclOperation.ALL, AclPermissionType.ALLOW),
        binding(ResourceType.TOPIC, "kept", AclOperation.WRITE, AclPermissionType.DENY),
    )
    before = acls_of(b)
    own_broker.restart()
    assert acls_of(b) == before
    error = deliver(Producer({"bootstrap.servers": b}), "kept", b"refused")
    assert error is not None and error.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED


# --- Raw requests: the answers' details ---------------------------------------------------------


def settled(client: RawClient, expected: set[tuple[Any, ...]]) -> None:
    """Wait until the broker has exactly the ACLs ``expected`` (see ``changed``)."""
    deadline = time.monotonic() + SETTLE_S
    while (found := described(describe_acls(client))) != expected:
        assert time.monotonic() < deadline, f"ACLs {found}, expected {expected}"
        time.sleep(0.1)


def test_acl_requests_as_kafka_answers(broker: Broker) -> None:
    """What CreateAcls, DescribeAcls and DeleteAcls answer to odd input, and what a few ACLs
    mean for other APIs, byte for byte as Kafka 4.1 answers (v1-v3: Kafka 4 no longer serves
    v0)."""
    create_topics(broker.bootstrap, "lone", "allowed")
    with RawClient(broker.bootstrap) as c:
        invalid = ErrorCode.invalid_request
        odd: Any = (Res.TOPIC, "t", Pat.LITERAL, ANON, "*", 99, Perm.DENY)
        assert create_acls(
            c,
            acl(Res.CLUSTER, "my-cluster", Op.ALTER),
            acl(Res.TOPIC, "", Op.READ),
            acl(Res.TOPIC, "t", Op.READ, principal="alice"),
            odd,
        ) == [
            (invalid, "The only valid name for the CLUSTER resource is kafka-cluster"),
            (invalid, "Invalid empty resource name"),
            (
                invalid,
                "Could not parse principal from `alice` (no colon is present separating the "
                "principal type from the principal name)",
            ),
            (invalid, "Invalid operation UNKNOWN"),
        ]
        match_pattern = acl(Res.TOPIC, "t", Op.READ, pattern=Pat.MATCH)
        assert (
            create_acls(c, acl(Res.TOPIC, "u", Op.READ), match_pattern, version=2)
            == [(ErrorCode.unknown_server_error, None)] * 2
        )
        made = {
            acl(Res.TOPIC, "pay", Op.WRITE, pattern=Pat.PREFIXED),
            acl(Res.TOPIC, "*", Op.DESCRIBE, Perm.ALLOW, principal="User:*"),
            acl(Res.TOPIC, "lone", Op.READ),
            acl(Res.TOPIC, "allowed", Op.ALL, Perm.ALLOW),
            acl(Res.TOPIC, "allowed", Op.WRITE),
            acl(Res.GROUP, "hidden", Op.DESCRIBE),
            acl(Res.CLUSTER, CLUSTER, Op.ALL, Perm.ALLOW),
            acl(Res.CLUSTER, CLUSTER, Op.IDEMPOTENT_WRITE),
        }
        for version in (1, 2, 3):
            assert create_acls(c, *sorted(made), version=version) == [(ErrorCode.none, "")] * len(
                made
            )
        settled(c, made)
        everything = describe_acls(c)
        assert (everything.error_code, everything.error_message) == (ErrorCode.none, "")
        match = describe_acls(c, 1, resource_type=Res.TOPIC, name="payments", pattern=Pat.MATCH)
        assert described(match) == {
            acl(Res.TOPIC, "pay", Op.WRITE, pattern=Pat.PREFIXED),
            acl(Res.TOPIC, "*", Op.DESCRIBE, Perm.ALLOW, principal="User:*"),
        }
        unknown = delete_acls(c, filter_fields(resource_type=99), filter_fields(operation=99))
        assert [
            (r.error_code, r.error_message, r.matching_acls) for r in unknown.filter_results
        ] == [
            (invalid, "Unknown patternFilter.", ()),
            (invalid, "Unknown entryFilter.", ()),
        ]

        # A lone DENY of READ: no ACL of "lone" allows DESCRIBE either (the "User:*" one covers
        # it: ALLOW DESCRIBE on "*"): Metadata sees it, Fetch does not.
        named = {t.name: t for t in metadata(c, "lone", "allowed", auto_create=False).topics}
        assert named["lone"].error_code == ErrorCode.none
        assert fetch(c, [("lone", 0, 0, 1024)]).responses[0].partitions[0].error_code == (
            ErrorCode.topic_authorization_failed
        )
        batch = build_batch([(b"k", b"v")])
        allowed = produce(c, "allowed", batch).responses[0].partition_responses[0]
        assert allowed.error_code == ErrorCode.topic_authorization_failed
        assert list_offsets(c, "allowed", 0, -1).error_code == ErrorCode.none

        # Idempotent producers: IDEMPOTENT_WRITE is denied; WRITE on some topic? The ALLOW ALL
        # of "allowed" is dominated by its DENY WRITE: no (Authorizer.authorizeByResourceType).
        def init_producer_id() -> ErrorCode:
            """Asked again while a fresh Kafka loads its producer id block (retriable)."""
            deadline = time.monotonic() + SETTLE_S
            while True:
                error: ErrorCode = c.request(
                    build(
                        "init_producer_id",
                        4,
                        "InitProducerIdRequest",
                        transactional_id=None,
                        producer_id=-1,
                        producer_epoch=-1,
                    )
                ).error_code
                if error is not ErrorCode.coordinator_load_in_progress:
                    return error
                assert time.monotonic() < deadline
                time.sleep(0.1)

        assert init_producer_id() == ErrorCode.cluster_authorization_failed
        write_lone = acl(Res.TOPIC, "lone", Op.WRITE, Perm.ALLOW)
        assert create_acls(c, write_lone) == [(ErrorCode.none, "")]
        settled(c, made | {write_lone})
        assert init_producer_id() == ErrorCode.none
        # Groups: DescribeGroups v5 of a group denied DESCRIBE, and of one that does not exist.
        coordinator = build("find_coordinator", 3, "FindCoordinatorRequest", key="nobody")
        assert c.request(coordinator).error_code in (
            ErrorCode.none,
            ErrorCode.coordinator_not_available,  # Kafka: until __consumer_offsets is made
        )
        deadline = time.monotonic() + SETTLE_S
        while True:
            groups = c.request(
                build(
                    "describe_groups",
                    5,
                    "DescribeGroupsRequest",
                    groups=("hidden", "nobody"),
                    include_authorized_operations=True,
                )
            ).groups
            loading = (ErrorCode.not_coordinator, ErrorCode.coordinator_load_in_progress)
            if groups[1].error_code not in loading or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert [(g.group_id, g.error_code, g.group_state) for g in groups] == [
            ("hidden", ErrorCode.group_authorization_failed, ""),
            ("nobody", ErrorCode.none, "Dead"),
        ]
        assert groups[1].authorized_operations == sum(1 << op for op in (3, 6, 8, 10, 11))

    with RawClient(broker.bootstrap) as c:
        c.send(build("describe_acls", 3, "DescribeAclsRequest", **filter_fields(operation=0)))  # type: ignore[arg-type]
        assert c.is_closed_by_peer()


def test_denial_codes_as_kafka_answers(broker: Broker) -> None:
    """Each API's answer to a client an ACL denies, field by field as Kafka 4.1 gives it."""
    b = broker.bootstrap
    create_topics(b, "open", "closed", "kept")
    taf, gaf = ErrorCode.topic_authorization_failed, ErrorCode.group_authorization_failed
    caf = ErrorCode.cluster_authorization_failed
    with RawClient(b) as c:
        # __consumer_offsets first: Kafka's broker asks its controller to create it as
        # User:ANONYMOUS too, which needs the CREATE on the cluster denied below.
        wait_for_group_coordinator(c)
        made = {
            acl(Res.TOPIC, "closed", Op.READ),
            acl(Res.TOPIC, "closed", Op.WRITE),
            acl(Res.TOPIC, "refused", Op.CREATE),
            *allow_all_but(Res.TOPIC, "quiet", Op.DESCRIBE_CONFIGS),
            *allow_all_but(
                Res.TOPIC, "kept", Op.DELETE, Op.ALTER, Op.DESCRIBE_CONFIGS, Op.ALTER_CONFIGS
            ),
            *allow_all_but(Res.GROUP, "g", Op.READ),
            *allow_all_but(Res.GROUP, "h", Op.DESCRIBE),
            *allow_all_but(
                Res.CLUSTER, CLUSTER, Op.CREATE, Op.DELETE, Op.DESCRIBE_CONFIGS, Op.ALTER_CONFIGS
            ),
            acl(Res.TRANSACTIONAL_ID, "tx", Op.DESCRIBE),
        }
        assert create_acls(c, *sorted(made)) == [(ErrorCode.none, "")] * len(made)
        settled(c, made)

        batch = build_batch([(b"k", b"v")])
        assert produce(c, "closed", batch).responses[0].partition_responses[0].error_code == taf
        fetched = fetch(c, [("closed", 0, 0, 1024)]).responses[0].partitions[0]
        assert (fetched.error_code, fetched.high_watermark, fetched.records) == (taf, -1, b"")
        listed_offset = list_offsets(c, "closed", 0, -1)
        assert (listed_offset.error_code, listed_offset.offset) == (taf, -1)
        hidden = metadata(c, "closed", auto_create=False).topics[0]
        assert (hidden.error_code, hidden.name, hidden.partitions) == (taf, "closed", ())
        assert hidden.topic_id in (None, uuid.UUID(int=0))
        everything = metadata_all(c)
        assert "open" in everything and "closed" not in everything

        assert commit_error(c, "g", "open") == gaf
        assert commit_error(c, "other", "closed") == taf
        fetched_offsets = offset_fetch_v8(c, "other", ["open", "closed"])
        assert fetched_offsets == {"open": (ErrorCode.none, -1), "closed": (taf, -1)}
        assert offset_fetch_v8(c, "h", ["open"]) == gaf
        found = c.request(build("find_coordinator", 3, "FindCoordinatorRequest", key="h"))
        assert (found.error_code, found.error_message, found.node_id, found.host, found.port) == (
            gaf,
            "Group authorization failed.",
            -1,
            "",
            -1,
        )
        txn = c.request(
            build(
                "find_coordinator",
                4,
                "FindCoordinatorRequest",
                key_type=1,
                coordinator_keys=("tx",),
            )
        ).coordinators[0]
        assert (txn.error_code, txn.node_id) == (
            ErrorCode.transactional_id_authorization_failed,
            -1,
        )
        join = c.request(
            build(
                "join_group",
                9,
                "JoinGroupRequest",
                group_id="g",
                member_id="m",
                protocol_type="consumer",
            )
        )
        assert (join.error_code, join.member_id, join.generation_id, join.leader) == (
            gaf,
            "",
            -1,
            "",
        )

        ct = "create_topics"
        created = c.request(
            build(
                ct,
                7,
                "CreateTopicsRequest",
                topics=tuple(
                    build(ct, 7, "CreatableTopic", name=n, num_partitions=1, replication_factor=1)
                    for n in ("refused", "quiet")
                ),
            )
        ).topics
        by_name = {t.name: t for t in created}
        assert (by_name["refused"].error_code, by_name["refused"].error_message) == (
            taf,
            "Authorization failed.",
        )
        quiet = by_name["quiet"]
        assert (quiet.error_code, quiet.topic_config_error_code) == (ErrorCode.none, taf)
        assert (quiet.num_partitions, quiet.replication_factor, quiet.configs) == (-1, -1, ())

        d = "delete_topics"
        deleted = c.request(
            build(
                d, 6, "DeleteTopicsRequest", topics=(build(d, 6, "DeleteTopicState", name="kept"),)
            )
        ).responses[0]
        assert (deleted.error_code, deleted.error_message) == (taf, "Topic authorization failed.")
        p = "create_partitions"
        grown = c.request(
            build(
                p,
                3,
                "CreatePartitionsRequest",
                topics=(build(p, 3, "CreatePartitionsTopic", name="kept", count=2),),
            )
        ).results[0]
        assert (grown.error_code, grown.error_message) == (taf, None)
        r = "delete_records"
        records = (
            c.request(
                build(
                    r,
                    2,
                    "DeleteRecordsRequest",
                    topics=(
                        build(
                            r,
                            2,
                            "DeleteRecordsTopic",
                            name="kept",
                            partitions=(build(r, 2, "DeleteRecordsPartition", partition_index=0),),
                        ),
                    ),
                )
            )
            .topics[0]
            .partitions[0]
        )
        assert (records.error_code, records.low_watermark) == (taf, -1)

        dc = "describe_configs"
        configs = c.request(
            build(
                dc,
                4,
                "DescribeConfigsRequest",
                resources=tuple(
                    build(dc, 4, "DescribeConfigsResource", resource_type=kind, resource_name=name)
                    for kind, name in ((2, "kept"), (4, "1"))
                ),
            )
        ).results
        assert [(x.error_code, x.error_message, x.configs) for x in configs] == [
            (taf, "Topic authorization failed.", ()),
            (caf, "Cluster authorization failed.", ()),
        ]
        ia = "incremental_alter_configs"
        altered = c.request(
            build(
                ia,
                1,
                "IncrementalAlterConfigsRequest",
                resources=tuple(
                    build(
                        ia,
                        1,
                        "AlterConfigsResource",
                        resource_type=kind,
                        resource_name=name,
                        configs=(build(ia, 1, "AlterableConfig", name=key, value=value),),
                    )
                    for kind, name, key, value in (
                        (2, "kept", "retention.ms", "1000"),
                        (4, "1", "log.retention.ms", "1000"),
                        (8, "1", "org.apache.kafka", "DEBUG"),
                    )
                ),
            )
        ).responses
        assert sorted((x.resource_type, x.error_code, x.error_message) for x in altered) == [
            (2, taf, "Topic authorization failed."),
            (4, caf, "Cluster authorization failed."),
            (8, caf, None),
        ]

        dp = "describe_producers"
        producers = (
            c.request(
                build(
                    dp,
                    0,
                    "DescribeProducersRequest",
                    topics=(build(dp, 0, "TopicRequest", name="closed", partition_indexes=(0,)),),
                )
            )
            .topics[0]
            .partitions[0]
        )
        assert (producers.error_code, producers.error_message) == (
            taf,
            "Topic authorization failed.",
        )
        described_topics = describe_topic_partitions(c, ["open", "closed"]).topics
        assert [(t.name, t.error_code) for t in described_topics] == [
            ("open", ErrorCode.none),
            ("closed", taf),
        ]
        assert described_topics[1].topic_id in (None, uuid.UUID(int=0))
        heartbeat = c.request(
            build(
                "consumer_group_heartbeat",
                0,
                "ConsumerGroupHeartbeatRequest",
                group_id="cg",
                member_epoch=0,
                rebalance_timeout=datetime.timedelta(seconds=30),
                subscribed_topic_names=("open", "closed"),
                topic_partitions=(),
            )
        )
        assert (heartbeat.error_code, heartbeat.member_id) == (taf, None)
        txns = c.request(
            build(
                "describe_transactions", 0, "DescribeTransactionsRequest", transactional_ids=("tx",)
            )
        ).transaction_states[0]
        assert txns.error_code == ErrorCode.transactional_id_authorization_failed


def allow_all_but(resource_type: Any, name: str, *operations: Any) -> list[tuple[Any, ...]]:
    """ALLOW ALL on a resource, and DENY ``operations`` there (DENY wins)."""
    return [
        acl(resource_type, name, Op.ALL, Perm.ALLOW),
        *(acl(resource_type, name, op) for op in operations),
    ]


def wait_for_group_coordinator(c: RawClient) -> None:
    """Until an offset commit succeeds: Kafka makes __consumer_offsets at the first lookup."""
    deadline = time.monotonic() + SETTLE_S
    c.request(build("find_coordinator", 3, "FindCoordinatorRequest", key="warm-up"))
    while commit_error(c, "warm-up", "open") is not ErrorCode.none:
        assert time.monotonic() < deadline
        time.sleep(0.2)


def commit_error(c: RawClient, group: str, topic: str) -> ErrorCode:
    m = "offset_commit"
    partition = build(m, 8, "OffsetCommitRequestPartition", partition_index=0, committed_offset=0)
    topics = (build(m, 8, "OffsetCommitRequestTopic", name=topic, partitions=(partition,)),)
    response = c.request(
        build(
            m,
            8,
            "OffsetCommitRequest",
            group_id=group,
            generation_id_or_member_epoch=-1,
            topics=topics,
        )
    )
    error: ErrorCode = response.topics[0].partitions[0].error_code
    return error


def offset_fetch_v8(
    c: RawClient, group: str, topics: list[str]
) -> ErrorCode | dict[str, tuple[ErrorCode, int]]:
    """The group's error, or each topic's (partition 0) error and committed offset."""
    m = "offset_fetch"
    request = build(
        m,
        8,
        "OffsetFetchRequest",
        groups=(
            build(
                m,
                8,
                "OffsetFetchRequestGroup",
                group_id=group,
                topics=tuple(
                    build(m, 8, "OffsetFetchRequestTopics", name=t, partition_indexes=(0,))
                    for t in topics
                ),
            ),
        ),
    )
    answer = c.request(request).groups[0]
    if answer.error_code is not ErrorCode.none:
        error: ErrorCode = answer.error_code
        return error
    return {
        t.name: (t.partitions[0].error_code, t.partitions[0].committed_offset)
        for t in answer.topics
    }


def metadata_all(c: RawClient) -> set[str]:
    request = build("metadata", 12, "MetadataRequest", topics=None, allow_auto_topic_creation=False)
    return {t.name for t in c.request(request).topics}
