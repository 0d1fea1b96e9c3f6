"""confluent-kafka (librdkafka) produces 10,000 messages and reads them back by assignment."""

from __future__ import annotations

import pytest

confluent_kafka = pytest.importorskip("confluent_kafka")

from confluent_kafka import Consumer, Producer, TopicPartition  # noqa: E402
from confluent_kafka.admin import AdminClient, NewTopic  # noqa: E402
from kpy_process import KpyProcess  # noqa: E402

from clients.workload import PARTITIONS, by_partition, messages  # noqa: E402

TOPIC = "confluent-roundtrip"


def create_topic(bootstrap: str, name: str, partitions: int) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=1)])
    futures[name].result(10)


def test_round_trip(kpy: KpyProcess) -> None:
    create_topic(kpy.bootstrap, TOPIC, PARTITIONS)
    msgs = messages()
    producer = Producer(
        {"bootstrap.servers": kpy.bootstrap, "enable.idempotence": True, "linger.ms": 5}
    )
    errors: list[object] = []
    offsets: dict[int, list[int]] = {p: [] for p in range(PARTITIONS)}

    def delivered(err: object, msg: object) -> None:
        if err is not None:
            errors.append(err)
        else:
            offsets[msg.partition()].append(msg.offset())  # type: ignore[attr-defined]

    for m in msgs:
        producer.produce(
            TOPIC,
            key=m.key,
            value=m.value,
            partition=m.partition,
            headers=list(m.headers) or None,
            timestamp=m.timestamp,
            on_delivery=delivered,
        )
        producer.poll(0)
    assert producer.flush(60) == 0
    assert errors == []
    expected = by_partition(msgs)
    for p in range(PARTITIONS):
        assert sorted(offsets[p]) == list(range(len(expected[p])))

    consumer = Consumer(
        {
            "bootstrap.servers": kpy.bootstrap,
            "group.id": "unused-by-assign",
            "enable.auto.commit": False,
            "fetch.message.max.bytes": 2_000_000,
        }
    )
    try:
        for p in range(PARTITIONS):
            consumer.assign([TopicPartition(TOPIC, p, 0)])
            got = []
            while len(got) < len(expected[p]):
                msg = consumer.poll(10)
                assert msg is not None, f"partition {p}: stalled after {len(got)} messages"
                assert msg.error() is None, msg.error()
                got.append(msg)
            for i, (want, msg) in enumerate(zip(expected[p], got, strict=True)):
                assert msg.offset() == i
                assert msg.key() == want.key
                assert msg.value() == want.value
                assert tuple(msg.headers() or ()) == want.headers
                assert msg.timestamp() == (confluent_kafka.TIMESTAMP_CREATE_TIME, want.timestamp)
    finally:
        consumer.close()
