"""MirrorMaker 2 moves a broker's topics, records, topic configs and consumer group offsets to
Apache Kafka: how a kpy user graduates to a cluster.

The source is the ``broker`` fixture (kpy; with ``--compat-broker=kafka``, Apache Kafka 4.1.0 as
the reference); the target is a real Kafka 4.1.0 broker from the jars, one for the module, emptied
after each test. MM2 runs in dedicated mode (``connect-mirror-maker``, the class
org.apache.kafka.connect.mirror.MirrorMaker) from the first release of KAFKA_TOOL_VERSIONS, with
the mm2.properties of README.md's "Moving to Apache Kafka (MirrorMaker 2)" section, read from the
README so that the two cannot drift: the test fills in the addresses and shortens the intervals
(FAST), nothing else.

That file uses IdentityReplicationPolicy, so that a topic keeps its name and applications move
without a change; test_default_policy_prefixes_topic_names shows what the default policy does
instead ("orders" becomes "kpy.orders" on Kafka, and the groups' offsets go there).

Group offsets: MM2 does not copy them, it translates them. As it copies records it writes offset
syncs (this kpy offset is that Kafka offset; with offset.lag.max=0 one per copied record, as far as
it keeps up), and its checkpoint task maps a group's committed offset through the latest sync at
or before it: to the sync's Kafka offset, plus one if the group is past the sync
(OffsetSyncStore.translateDownstream in connect-mirror). It keeps a sparse set of syncs, denser
near the end of a partition, and never maps a group past a record it has not copied. So:

- a group that had read to the end of what MM2 had copied when MM2 checkpointed it arrives
  exactly: the last copied record's sync maps the end. The billing and ledger groups here; the
  README's cut-over drains the consumers for that reason.
- a group stopped in the middle arrives at or before where it stopped (records are read again),
  or, for a partition with no sync at or before its position, not at all (the consumer's
  auto.offset.reset decides). No setting makes that exact (the store's size is fixed), so for the
  audit group the test asserts what MM2 promises: never ahead, nothing lost.

Waits poll the state they wait for, bounded by WAIT; ``JavaApp.wait_until`` fails at once, with
MM2's log, if MM2 exits.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from confluent_kafka import (
    Consumer,
    ConsumerGroupTopicPartitions,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import (
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    ConfigSource,
    NewTopic,
    ResourceType,
)

from compat import kafka_broker
from compat.conftest import VERSIONS, SharedKafka
from compat.java_app import JavaApp
from compat.kafka_broker import KafkaBroker
from compat.steps import Broker
from compat.tools import ROOT, libs, missing
from compat.txn_steps import READ_COMMITTED, end_offsets, poll_to_ends, txn_producer

MM2_VERSION = VERSIONS[0]
TARGET_VERSION = "4.1.0"
SECTION = "## Moving to Apache Kafka (MirrorMaker 2)\n"
# MM2's start (a herder per direction, each with its Connect group and internal topics, then the
# connectors' first rounds) takes tens of seconds on a loaded machine.
WAIT = 120.0

# The README's intervals (10-60 s) are for people; a test cannot wait that long.
FAST = {
    "emit.checkpoints.interval.seconds": "1",
    "sync.group.offsets.interval.seconds": "1",
    "refresh.topics.interval.seconds": "2",
    "refresh.groups.interval.seconds": "2",
    "sync.topic.configs.interval.seconds": "2",
    # The kpy->kafka worker's offset flush, which also sends the offset syncs MM2 held back while
    # ten were in flight (60 s by default; a worker setting, so it takes the target's prefix).
    "kafka.offset.flush.interval.ms": "1000",
}
# MM2's own loggers at INFO (the rest stays at kafka-tool's WARN): it says there that the source
# has no ACL authorizer, i.e. that DescribeAcls answered SECURITY_DISABLED, which is no error.
MM2_LOGGING = "-Dorg.slf4j.simpleLogger.log.org.apache.kafka.connect.mirror=info"
NO_AUTHORIZER = "No ACL authorizer is configured on the source Kafka cluster"
IDENTITY = "org.apache.kafka.connect.mirror.IdentityReplicationPolicy"
DEFAULT_POLICY = "org.apache.kafka.connect.mirror.DefaultReplicationPolicy"

# One record as a consumer sees it: key, value, headers, timestamp. Offsets are not compared:
# they may differ between the clusters (transaction markers take offsets on kpy only).
Rec = tuple[bytes | None, bytes | None, list[tuple[str, bytes | None]], int]
# Per topic, per partition, in order.
Records = dict[str, dict[int, list[Rec]]]
BASE_TS = 1_760_000_000_000


def mm2_missing() -> str | None:
    why = missing(MM2_VERSION) or kafka_broker.missing(TARGET_VERSION)
    if why is None and not (libs(MM2_VERSION) / f"connect-mirror-{MM2_VERSION}.jar").is_file():
        why = f"MirrorMaker 2 jars missing: run compat-tests/fetch-jars {MM2_VERSION}"
    return why


@pytest.fixture(scope="module")
def kafka_target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SharedKafka]:
    why = mm2_missing()
    if why is not None:
        pytest.skip(why)
    shared = SharedKafka(tmp_path_factory.mktemp("mm2-target"), TARGET_VERSION)
    try:
        yield shared
    finally:
        shared.stop()


@pytest.fixture
def target(kafka_target: SharedKafka) -> Iterator[KafkaBroker]:
    """The module's Kafka, emptied after the test (replaced if that fails)."""
    try:
        yield kafka_target.get()
    finally:
        kafka_target.release()


def readme_properties() -> str:
    text = (ROOT / "README.md").read_text()
    assert SECTION in text, f"README.md has no {SECTION.strip()!r} section"
    return text.split(SECTION, 1)[1].split("```properties\n", 1)[1].split("```", 1)[0]


def mm2_properties(source: str, target: str, **overrides: str) -> str:
    """The README's file with these addresses, FAST and ``overrides``: a key the file sets is
    changed where it stands, others are added."""
    settings = {
        "kpy.bootstrap.servers": source,
        "kafka.bootstrap.servers": target,
        **FAST,
        **overrides,
    }
    lines = []
    for line in readme_properties().splitlines():
        key = line.split("=", 1)[0].strip()
        if not line.startswith("#") and key in settings:
            line = f"{key} = {settings.pop(key)}"
        lines.append(line)
    assert "kpy.bootstrap.servers" not in settings, "the README's file names no kpy cluster"
    assert "kafka.bootstrap.servers" not in settings, "the README's file names no kafka cluster"
    lines += [f"{key} = {value}" for key, value in settings.items()]
    return "\n".join(lines) + "\n"


@contextmanager
def mirror_maker(directory: Path, source: str, target: str, **overrides: str) -> Iterator[JavaApp]:
    """MM2 copying ``source`` to ``target`` until the block ends (then SIGTERM)."""
    properties = directory / "mm2.properties"
    properties.write_text(mm2_properties(source, target, **overrides))
    app = JavaApp(
        MM2_VERSION,
        "connect-mirror-maker",
        str(properties),
        log_file=directory / "mm2.log",
        env={"KAFKA_OPTS": MM2_LOGGING},
    )
    with app:
        yield app


def errors_logged(app: JavaApp) -> list[str]:
    return [line for line in app.log_text().splitlines() if "] ERROR " in line]


def admin(bootstrap: str) -> AdminClient:
    # Callers keep the client while they wait on its futures: a collected client leaves them
    # pending for ever.
    return AdminClient({"bootstrap.servers": bootstrap})


def create(bootstrap: str, *topics: NewTopic) -> None:
    client = admin(bootstrap)
    for future in client.create_topics(list(topics), operation_timeout=30).values():
        future.result(60)


def partition_counts(bootstrap: str) -> dict[str, int]:
    listed = admin(bootstrap).list_topics(timeout=30).topics
    return {name: len(meta.partitions) for name, meta in listed.items()}


def produce(bootstrap: str, records: list[tuple[str, int, Rec]]) -> None:
    """Produce (topic, partition, record) in order; wait until all are acknowledged."""
    producer = Producer({"bootstrap.servers": bootstrap})
    for topic, partition, (key, value, headers, timestamp) in records:
        producer.produce(
            topic, value, key, partition=partition, headers=headers, timestamp=timestamp
        )
    assert producer.flush(30) == 0


def rec(msg: Message) -> Rec:
    return msg.key(), msg.value(), list(msg.headers() or []), msg.timestamp()[1]


def by_partition(
    records: list[tuple[str, int, Rec]], topic: str, partitions: int
) -> dict[int, list[Rec]]:
    out: dict[int, list[Rec]] = {p: [] for p in range(partitions)}
    for t, p, r in records:
        if t == topic:
            out[p].append(r)
    return out


def ends(bootstrap: str, topics: dict[str, int]) -> dict[str, list[int]]:
    """Each partition's high watermark (None while a topic is missing)."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "mm2-test-ends"})
    try:
        return {
            topic: [
                consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
                for p in range(partitions)
            ]
            for topic, partitions in topics.items()
        }
    finally:
        consumer.close()


def ends_when_there(bootstrap: str, topics: dict[str, int]) -> dict[str, list[int]] | None:
    counts = partition_counts(bootstrap)
    if any(counts.get(topic) != n for topic, n in topics.items()):
        return None
    try:
        return ends(bootstrap, topics)
    except KafkaException:  # a partition not yet served
        return None


def read_to(consumer: Consumer, until: dict[str, list[int]]) -> Records:
    """Poll ``consumer`` (assigned or subscribed) until it reports the end of every partition at
    or past ``until[topic][p]``; what it got, in order."""
    got: Records = {t: {p: [] for p in range(len(e))} for t, e in until.items()}
    poll_to_ends(
        consumer, until, lambda msg: got[msg.topic()][msg.partition()].append(rec(msg)), WAIT
    )
    return got


def read_all(bootstrap: str, topics: dict[str, int]) -> Records:
    """Everything a read_committed consumer reads of ``topics``, from the start to their end."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "mm2-test-reader",  # assigned, never committing: no group is made
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            "isolation.level": READ_COMMITTED,
        }
    )
    try:
        consumer.assign([TopicPartition(t, p, 0) for t, n in topics.items() for p in range(n)])
        until = {t: end_offsets(bootstrap, t, n, READ_COMMITTED) for t, n in topics.items()}
        return read_to(consumer, until)
    finally:
        consumer.close()


def group_consumer(bootstrap: str, group: str, topics: list[str]) -> Consumer:
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": group,
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "enable.partition.eof": True,
        }
    )
    consumer.subscribe(topics)
    return consumer


def consume_and_commit(bootstrap: str, group: str, topics: list[str], count: int) -> list[Rec]:
    """Read ``count`` records as a member of ``group``, commit their positions, leave."""
    consumer = group_consumer(bootstrap, group, topics)
    got: list[Rec] = []
    deadline = time.monotonic() + WAIT
    try:
        while len(got) < count:
            assert time.monotonic() < deadline, f"{group}: {len(got)} of {count} records"
            msg = consumer.poll(0.5)
            if msg is None or msg.error() is not None:
                continue
            got.append(rec(msg))
        consumer.commit(asynchronous=False)
    finally:
        consumer.close()
    return got


def committed(bootstrap: str, group: str) -> dict[tuple[str, int], int]:
    request = [ConsumerGroupTopicPartitions(group)]
    client = admin(bootstrap)
    result = client.list_consumer_group_offsets(request, request_timeout=30)[group].result(60)
    return {(tp.topic, tp.partition): tp.offset for tp in result.topic_partitions or []}


def committed_or_none(bootstrap: str, group: str) -> dict[tuple[str, int], int] | None:
    try:
        return committed(bootstrap, group)
    except KafkaException:
        return None


def overrides(bootstrap: str, topic: str) -> dict[str, str]:
    """The topic's own configs (set on the topic, not inherited)."""
    resource = ConfigResource(ResourceType.TOPIC, topic)
    client = admin(bootstrap)
    entries = client.describe_configs([resource], request_timeout=30)[resource].result(60)
    return {
        name: entry.value
        for name, entry in entries.items()
        if entry.source == ConfigSource.DYNAMIC_TOPIC_CONFIG.value
    }


def order(i: int) -> tuple[str, int, Rec]:
    """The i-th order: keyed, with headers (one without a value) and its own timestamp; the 29th
    is a tombstone of order 26 (same partition), as a compacted topic gets."""
    key = b"order-26" if i == 29 else f"order-{i}".encode()
    value = None if i == 29 else f"amount={i * 10}".encode()
    headers: list[tuple[str, bytes | None]] = [("trace", f"t-{i}".encode()), ("none", None)]
    return "orders", i % 3, (key, value, headers, BASE_TS + i * 1000)


def event(i: int) -> tuple[str, int, Rec]:
    """The i-th event: no key; the topic takes the broker's time (LogAppendTime)."""
    return "events", 0, (None, f"event-{i}".encode(), [], BASE_TS)


@pytest.mark.timeout(600)
def test_move_to_kafka_with_the_readme_file(
    broker: Broker, target: KafkaBroker, tmp_path: Path
) -> None:
    assert f"replication.policy.class = {IDENTITY}" in readme_properties()
    src, dst = broker.bootstrap, target.bootstrap
    create(
        src,
        NewTopic(
            "orders",
            3,
            1,
            config={
                "cleanup.policy": "compact",
                "min.compaction.lag.ms": "60000",
                "max.message.bytes": "200000",
                "min.insync.replicas": "1",  # in MM2's default exclusions
            },
        ),
        NewTopic(
            "events",
            1,
            1,
            config={"retention.ms": "3600000", "message.timestamp.type": "LogAppendTime"},
        ),
        NewTopic("payments", 1, 1),
    )
    produce(src, [order(i) for i in range(30)] + [event(i) for i in range(40)])
    # Transactions: the aborted one must not be copied (kpy.consumer.isolation.level), and the
    # markers make kpy's offsets differ from Kafka's, which the group offsets must survive.
    txn = txn_producer(src, "payments-app")
    for values, commit in (([b"pay-0", b"pay-1", b"pay-2"], True), ([b"void-0", b"void-1"], False)):
        txn.begin_transaction()
        for value in values:
            txn.produce("payments", value, partition=0)
        (txn.commit_transaction if commit else txn.abort_transaction)(30)
    txn.begin_transaction()
    txn.produce("payments", b"pay-3", partition=0)
    txn.produce("payments", b"pay-4", partition=0)
    txn.commit_transaction(30)

    # The consumers before the move: billing and ledger read everything, audit 15 of 40 events.
    assert len(consume_and_commit(src, "billing", ["orders"], 30)) == 30
    assert len(consume_and_commit(src, "ledger", ["payments"], 5)) == 5
    consume_and_commit(src, "audit", ["events"], 15)
    at_source = {g: committed(src, g) for g in ("billing", "ledger", "audit")}
    assert at_source["audit"] == {("events", 0): 15}
    topics = {"orders": 3, "events": 1, "payments": 1}

    with mirror_maker(tmp_path, src, dst) as mm2:
        # Caught up: every topic on Kafka, same partition counts, every committed record.
        want = {"orders": [10, 10, 10], "events": [40], "payments": [5]}
        mm2.wait_until(lambda: ends_when_there(dst, topics) == want, f"ends {want} on Kafka", WAIT)
        copied = read_all(dst, topics)
        assert copied == read_all(src, topics)
        assert [r[1] for r in copied["payments"][0]] == [b"pay-%d" % i for i in range(5)]
        assert copied["orders"] == by_partition([order(i) for i in range(30)], "orders", 3)
        counts = partition_counts(dst)
        assert {t: counts[t] for t in topics} == topics
        assert "kpy.orders" not in counts

        # Topic configs: what was set on the topic, less MM2's exclusions, and nothing else (a
        # default the source reported as set on the topic would be copied too).
        assert overrides(dst, "orders") == {
            "cleanup.policy": "compact",
            "min.compaction.lag.ms": "60000",
            "max.message.bytes": "200000",
        }
        assert overrides(dst, "events") == {"retention.ms": "3600000"}
        assert overrides(dst, "payments") == {}

        # Drained groups arrive exactly: billing at kpy's positions, ledger at the end of payments
        # on Kafka, 5, where on kpy its position also counts the transaction markers.
        want_billing = at_source["billing"]
        assert want_billing == {("orders", p): 10 for p in range(3)}
        mm2.wait_until(
            lambda: (
                committed_or_none(dst, "billing") == want_billing
                and committed_or_none(dst, "ledger") == {("payments", 0): 5}
            ),
            "billing and ledger offsets on Kafka",
            WAIT,
        )
        # The lagging group: never ahead of where it stopped (absent is allowed: see the header).
        audit_dst = committed(dst, "audit")
        assert audit_dst.get(("events", 0), 0) <= 15, audit_dst

        # What MM2 keeps where: the offset syncs and the reverse heartbeats herder on the source.
        on_src = partition_counts(src)
        for name in ("mm2-offset-syncs.kafka.internal", "heartbeats", "mm2-configs.kafka.internal",
                     "mm2-offsets.kafka.internal", "mm2-status.kafka.internal"):  # fmt: skip
            assert name in on_src, sorted(on_src)
        assert {"kpy.checkpoints.internal", "kpy.heartbeats"} <= set(counts)
        mm2.wait_for_log(NO_AUTHORIZER)

        # While MM2 runs: a config changed and one removed on the source, a new topic.
        changes = [
            ConfigResource(
                ResourceType.TOPIC,
                "events",
                incremental_configs=[
                    ConfigEntry(
                        "retention.ms", "7200000", incremental_operation=AlterConfigOpType.SET
                    )
                ],
            ),
            ConfigResource(
                ResourceType.TOPIC,
                "orders",
                incremental_configs=[
                    ConfigEntry(
                        "max.message.bytes", None, incremental_operation=AlterConfigOpType.DELETE
                    )
                ],
            ),
        ]
        client = admin(src)
        for future in client.incremental_alter_configs(changes, request_timeout=30).values():
            future.result(60)
        create(src, NewTopic("late", 2, 1))
        produce(src, [("late", i % 2, (b"k", b"late-%d" % i, [], BASE_TS + i)) for i in range(4)])
        mm2.wait_until(
            lambda: (
                overrides(dst, "events").get("retention.ms") == "7200000"
                and "max.message.bytes" not in overrides(dst, "orders")
            ),
            "config changes on Kafka",
            WAIT,
        )
        mm2.wait_until(
            lambda: ends_when_there(dst, {"late": 2}) == {"late": [2, 2]},
            "the new topic on Kafka",
            WAIT,
        )
        assert read_all(dst, {"late": 2}) == read_all(src, {"late": 2})

        # The consumers move: the same group ids against Kafka.
        billing = group_consumer(dst, "billing", ["orders"])
        audit = group_consumer(dst, "audit", ["events"])
        try:
            # billing has nothing left to read; audit resumes at or before its 15th event and
            # gets every one from there on.
            assert read_to(billing, {"orders": [10, 10, 10]}) == {"orders": {0: [], 1: [], 2: []}}
            audit_got = read_to(audit, {"events": [40]})["events"][0]
            resumed_at = 40 - len(audit_got)
            assert resumed_at <= 15
            assert audit_got == copied["events"][0][resumed_at:]

            # A producer still on kpy: MM2 copies what it writes, the moved consumers get it.
            produce(src, [order(i) for i in range(30, 36)] + [event(i) for i in range(40, 45)])
            now = {"orders": [12, 12, 12], "events": [45]}
            mm2.wait_until(
                lambda: ends_when_there(dst, {"orders": 3, "events": 1}) == now,
                "the later records on Kafka",
                WAIT,
            )
            assert read_to(billing, {"orders": now["orders"]})["orders"] == by_partition(
                [order(i) for i in range(30, 36)], "orders", 3
            )
            at_source_events = read_all(src, {"events": 1})["events"][0]
            assert read_to(audit, {"events": [45]})["events"][0] == at_source_events[40:]
            assert errors_logged(mm2) == []

            # The producer moves too (MM2 stopped once it has copied everything): straight to
            # Kafka, to the same topics.
            mm2.stop()
            produce(dst, [order(i) for i in range(36, 39)] + [event(i) for i in range(45, 47)])
            assert read_to(billing, {"orders": [13, 13, 13]})["orders"] == by_partition(
                [order(i) for i in range(36, 39)], "orders", 3
            )
            assert [r[1] for r in read_to(audit, {"events": [47]})["events"][0]] == [
                b"event-45",
                b"event-46",
            ]
        finally:
            billing.close()
            audit.close()


def test_default_policy_prefixes_topic_names(
    broker: Broker, target: KafkaBroker, tmp_path: Path
) -> None:
    """With MM2's default policy (the README's file with replication.policy.class changed) a
    topic arrives as "kpy.<name>", and so do the groups' offsets: consumers and producers would
    have to change their topic names, which IdentityReplicationPolicy spares them."""
    src, dst = broker.bootstrap, target.bootstrap
    create(src, NewTopic("orders", 2, 1))
    records = [("orders", i % 2, (b"k%d" % i, b"v%d" % i, [], BASE_TS + i)) for i in range(10)]
    produce(src, records)
    assert len(consume_and_commit(src, "billing", ["orders"], 10)) == 10
    with mirror_maker(tmp_path, src, dst, **{"replication.policy.class": DEFAULT_POLICY}) as mm2:
        want = {("kpy.orders", 0): 5, ("kpy.orders", 1): 5}
        mm2.wait_until(
            lambda: committed_or_none(dst, "billing") == want, "billing on kpy.orders", WAIT
        )
        assert read_all(dst, {"kpy.orders": 2})["kpy.orders"] == by_partition(records, "orders", 2)
        assert "orders" not in partition_counts(dst)
        assert errors_logged(mm2) == []
