"""Real clients on the cluster- and partition-describing APIs and on leader epochs:
confluent-kafka's AdminClient.describe_cluster / describe_topics, kafka-python's
KafkaAdminClient (DescribeCluster, DescribeLogDirs, DescribeTopicPartitions, ElectLeaders,
ListPartitionReassignments), and a librdkafka consumer whose position carries a leader epoch,
which it validates with OffsetForLeaderEpoch (KIP-320) before fetching."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

confluent_kafka = pytest.importorskip("confluent_kafka")
kafka = pytest.importorskip("kafka")

from confluent_kafka import Consumer, TopicCollection, TopicPartition  # noqa: E402
from confluent_kafka.admin import AclOperation, AdminClient  # noqa: E402
from kafka import KafkaAdminClient  # noqa: E402
from kafka.admin import NewTopic  # noqa: E402
from kpy_process import KpyProcess  # noqa: E402

from clients.group_util import create_topic, produce  # noqa: E402
from kpy.protocol.records import iter_headers  # noqa: E402

CLUSTER_OPERATIONS = {"CREATE", "ALTER", "DESCRIBE", "CLUSTER_ACTION", "DESCRIBE_CONFIGS"}
CLUSTER_OPERATIONS |= {"ALTER_CONFIGS", "IDEMPOTENT_WRITE"}
TOPIC_OPERATIONS = {"READ", "WRITE", "CREATE", "DELETE", "ALTER", "DESCRIBE", "DESCRIBE_CONFIGS"}
TOPIC_OPERATIONS |= {"ALTER_CONFIGS"}


def cluster_id(data_dir: Path) -> str:
    props = dict(
        line.split("=", 1)
        for line in (data_dir / "meta.properties").read_text().splitlines()
        if "=" in line
    )
    return props["cluster.id"]


def test_confluent_admin_describes_cluster_and_topics(kpy: KpyProcess) -> None:
    create_topic(kpy.bootstrap, "described", 3)
    admin = AdminClient({"bootstrap.servers": kpy.bootstrap})
    cluster = admin.describe_cluster(include_authorized_operations=True).result(10)
    assert cluster.cluster_id == cluster_id(kpy.data_dir)
    assert (cluster.controller.id, cluster.controller.host, cluster.controller.port) == (
        1,
        "127.0.0.1",
        kpy.port,
    )
    assert [n.id for n in cluster.nodes] == [1]
    assert {op.name for op in cluster.authorized_operations} == CLUSTER_OPERATIONS

    # The internal topic is there once a group needed it (as in Kafka): a consumer's lookup.
    group_member = Consumer({"bootstrap.servers": kpy.bootstrap, "group.id": "describer"})
    try:
        group_member.committed([TopicPartition("described", 0)], timeout=10)
    finally:
        group_member.close()
    futures = admin.describe_topics(
        TopicCollection(["described", "__consumer_offsets"]), include_authorized_operations=True
    )
    topic = futures["described"].result(10)
    assert not topic.is_internal and topic.topic_id is not None
    assert [p.id for p in topic.partitions] == [0, 1, 2]
    for p in topic.partitions:
        assert (
            p.leader.id == 1 and [r.id for r in p.replicas] == [1] and [i.id for i in p.isr] == [1]
        )
    assert {op.name for op in topic.authorized_operations} == TOPIC_OPERATIONS
    assert AclOperation.READ in topic.authorized_operations
    assert futures["__consumer_offsets"].result(10).is_internal


def test_kafka_python_admin(kpy: KpyProcess) -> None:
    admin = KafkaAdminClient(bootstrap_servers=kpy.bootstrap)
    try:
        admin.create_topics([NewTopic("admin-t", 3, 1)])
        produce(kpy.bootstrap, "admin-t", 0, 20, 3)
        cluster = admin.describe_cluster()
        assert cluster["cluster_id"] == cluster_id(kpy.data_dir)
        assert cluster["controller_id"] == 1
        assert [(b["broker_id"], b["port"]) for b in cluster["brokers"]] == [(1, kpy.port)]
        assert set(cluster["authorized_operations"]) == CLUSTER_OPERATIONS

        (broker,) = admin.describe_log_dirs({"admin-t": [0, 1, 2]})
        (log_dir,) = broker["log_dirs"]
        assert log_dir["error_code"] == 0 and log_dir["log_dir"] == str(kpy.data_dir.absolute())
        sizes = {
            p["partition_index"]: p["partition_size"] for p in log_dir["topics"][0]["partitions"]
        }
        on_disk = {
            p: sum(f.stat().st_size for f in (kpy.data_dir / f"admin-t-{p}").glob("*.log"))
            for p in range(3)
        }
        assert sizes == on_disk and sum(sizes.values()) > 0
        assert log_dir["total_bytes"] >= log_dir["usable_bytes"] > 0

        # DescribeTopicPartitions, two partitions a page.
        page = admin.describe_topic_partitions(["admin-t"], response_partition_limit=2)
        assert [p["partition_index"] for p in page["topics"][0]["partitions"]] == [0, 1]
        assert page["next_cursor"] == {"topic_name": "admin-t", "partition_index": 2}
        page = admin.describe_topic_partitions(
            ["admin-t"], response_partition_limit=2, cursor=page["next_cursor"]
        )
        assert [p["partition_index"] for p in page["topics"][0]["partitions"]] == [2]
        assert page["next_cursor"] is None

        election = admin.elect_leaders(0, {"admin-t": [0, 1]}, raise_errors=False)
        results = election.replica_election_results[0].partition_result
        assert [(r.partition_id, r.error_code) for r in results] == [(0, 84), (1, 84)]
        assert admin.list_partition_reassignments() == {}
    finally:
        admin.close()


def consumer_with_log(bootstrap: str, lines: list[str]) -> Consumer:
    class Capture(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(record.getMessage())

    logger = logging.getLogger(f"librdkafka-{id(lines)}")
    logger.addHandler(Capture())
    logger.setLevel(logging.DEBUG)
    return Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "epoch-validation",
            "enable.auto.commit": False,
            "debug": "fetch,consumer",
        },
        logger=logger,
    )


def poll_until(
    consumer: Consumer, done: Callable[[list[Any]], bool], timeout: float = 30.0
) -> list[Any]:
    """Poll until ``done(messages so far)``; the messages."""
    got: list[Any] = []
    deadline = time.monotonic() + timeout
    while not done(got) and time.monotonic() < deadline:
        msg = consumer.poll(0.2)
        if msg is not None:
            assert msg.error() is None, msg.error()
            got.append(msg)
    return got


def test_confluent_consumer_validates_a_position_with_a_leader_epoch(kpy: KpyProcess) -> None:
    create_topic(kpy.bootstrap, "validated", 1)
    produce(kpy.bootstrap, "validated", 0, 10, 1)
    lines: list[str] = []
    consumer = consumer_with_log(kpy.bootstrap, lines)
    try:
        # A position with an epoch is checked against the broker's end of that epoch first.
        consumer.assign([TopicPartition("validated", 0, 3, leader_epoch=0)])
        got = poll_until(consumer, lambda msgs: len(msgs) >= 7)
        assert [(m.offset(), m.leader_epoch()) for m in got] == [(o, 0) for o in range(3, 10)]
        assert any("epoch validation succeeded: broker end offset 10" in line for line in lines)

        # A position past the end of its epoch (as after a truncation): librdkafka moves to
        # where the broker says the epoch ends, and reads what is produced from there on.
        seen = len(lines)
        consumer.seek(TopicPartition("validated", 0, 15, leader_epoch=0))

        def moved(_: object = None) -> bool:
            # librdkafka restarts fetching once the broker has told it where epoch 0 ends.
            wanted = "validated [0] start fetching at offset 10 (leader epoch 0)"
            return any(wanted in x for x in lines[seen:])

        poll_until(consumer, moved)
        assert moved()
        produce(kpy.bootstrap, "validated", 10, 2, 1)
        more = poll_until(consumer, lambda msgs: len(msgs) >= 2)
        assert [m.offset() for m in more] == [10, 11]

        # The commit carries the epoch of the last record consumed; OffsetFetch gives it back,
        # and the offsets coordinator's own batches carry the leader's epoch too.
        consumer.commit(message=more[-1], asynchronous=False)
        (committed,) = consumer.committed([TopicPartition("validated", 0)], timeout=10)
        assert (committed.offset, committed.leader_epoch) == (12, 0)
        epochs = {
            h.partition_leader_epoch
            for segment in kpy.data_dir.glob("__consumer_offsets-*/*.log")
            for _, h in iter_headers(segment.read_bytes())
        }
        assert epochs == {0}
    finally:
        consumer.close()


def test_confluent_admin_describes_group_operations(kpy: KpyProcess) -> None:
    """Without an authorizer Kafka reports every group operation when asked, and none otherwise."""
    create_topic(kpy.bootstrap, "grouped", 1)
    consumer = Consumer(
        {"bootstrap.servers": kpy.bootstrap, "group.id": "ops", "enable.auto.commit": False}
    )
    try:
        consumer.commit(offsets=[TopicPartition("grouped", 0, 0)], asynchronous=False)
    finally:
        consumer.close()
    admin = AdminClient({"bootstrap.servers": kpy.bootstrap})
    asked = admin.describe_consumer_groups(["ops"], include_authorized_operations=True)
    group = asked["ops"].result(10)
    assert {op.name for op in group.authorized_operations} == {
        "READ", "DESCRIBE", "DELETE", "DESCRIBE_CONFIGS", "ALTER_CONFIGS"
    }  # fmt: skip
    plain = admin.describe_consumer_groups(["ops"])["ops"].result(10)
    assert not plain.authorized_operations
