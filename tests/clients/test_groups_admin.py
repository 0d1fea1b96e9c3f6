"""confluent-kafka's AdminClient views of groups: list, describe, list/alter offsets, delete."""

from __future__ import annotations

import time

import pytest

confluent_kafka = pytest.importorskip("confluent_kafka")

from confluent_kafka import (  # noqa: E402
    Consumer,
    ConsumerGroupState,
    ConsumerGroupTopicPartitions,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient, NewTopic  # noqa: E402
from kpy_process import KpyProcess  # noqa: E402

TOPIC = "admin-groups"


def test_admin_client_group_views(kpy: KpyProcess) -> None:
    admin = AdminClient({"bootstrap.servers": kpy.bootstrap})
    admin.create_topics([NewTopic(TOPIC, 2, 1)])[TOPIC].result(10)
    p = Producer({"bootstrap.servers": kpy.bootstrap})
    for i in range(20):
        p.produce(TOPIC, value=b"%d" % i, partition=i % 2)
    assert p.flush(10) == 0

    c = Consumer(
        {
            "bootstrap.servers": kpy.bootstrap,
            "group.id": "viewed",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    c.subscribe([TOPIC])
    got = 0
    deadline = time.monotonic() + 30
    while got < 20 and time.monotonic() < deadline:
        msg = c.poll(1)
        if msg is not None and msg.error() is None:
            got += 1
    assert got == 20
    c.commit(asynchronous=False)

    listed = admin.list_consumer_groups().result(10)
    assert [(g.group_id, g.state) for g in listed.valid] == [("viewed", ConsumerGroupState.STABLE)]
    desc = admin.describe_consumer_groups(["viewed"])["viewed"].result(10)
    assert desc.state == ConsumerGroupState.STABLE
    assert desc.partition_assignor == "range"
    (member,) = desc.members
    assert {tp.partition for tp in member.assignment.topic_partitions} == {0, 1}
    assert desc.coordinator.id == 1

    offsets = admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions("viewed")])
    result = offsets["viewed"].result(10)
    assert sorted((tp.partition, tp.offset) for tp in result.topic_partitions) == [(0, 10), (1, 10)]

    # Offsets can be altered and the group deleted only once it is empty.
    with pytest.raises(confluent_kafka.KafkaException):
        admin.delete_consumer_groups(["viewed"])["viewed"].result(10)
    c.close()
    change = ConsumerGroupTopicPartitions("viewed", [TopicPartition(TOPIC, 0, 3)])
    admin.alter_consumer_group_offsets([change])["viewed"].result(10)
    result = admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions("viewed")])
    got_offsets = sorted(
        (tp.partition, tp.offset) for tp in result["viewed"].result(10).topic_partitions
    )
    assert got_offsets == [(0, 3), (1, 10)]
    desc = admin.describe_consumer_groups(["viewed"])["viewed"].result(10)
    assert desc.state == ConsumerGroupState.EMPTY and desc.members == []
    admin.delete_consumer_groups(["viewed"])["viewed"].result(10)
    listed = admin.list_consumer_groups().result(10)
    assert [g.group_id for g in listed.valid] == []
    with pytest.raises(confluent_kafka.KafkaException):
        admin.delete_consumer_groups(["viewed"])["viewed"].result(10)
