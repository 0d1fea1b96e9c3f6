"""DeleteRecords from confluent-kafka's AdminClient and kafka-python's KafkaAdminClient, and what
their consumers do afterwards: reading from the beginning starts at the new log start, and a
group whose committed offset fell below it is reset as auto.offset.reset says."""

from __future__ import annotations

import time

import pytest

confluent_kafka = pytest.importorskip("confluent_kafka")
kafka = pytest.importorskip("kafka")

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, Producer  # noqa: E402
from confluent_kafka import TopicPartition as CTopicPartition  # noqa: E402
from confluent_kafka.admin import AdminClient, NewTopic, OffsetSpec  # noqa: E402
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, OffsetAndMetadata  # noqa: E402
from kafka import TopicPartition as KTopicPartition  # noqa: E402
from kafka.admin import NewTopic as KNewTopic  # noqa: E402
from kafka.errors import OffsetOutOfRangeError  # noqa: E402
from kpy_process import KpyProcess  # noqa: E402

COUNT = 20
DEADLINE = 30.0  # seconds a consumer gets to see its first message


def confluent_fill(bootstrap: str, topic: str) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])[topic].result(10)
    producer = Producer({"bootstrap.servers": bootstrap})
    for i in range(COUNT):
        producer.produce(topic, value=b"m%d" % i, partition=0)
    assert producer.flush(30) == 0


def confluent_consumer(bootstrap: str, group: str, reset: str) -> Consumer:
    return Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": group,
            "auto.offset.reset": reset,
            "enable.auto.commit": False,
        }
    )


def first_message(consumer: Consumer) -> tuple[int, bytes]:
    deadline = time.monotonic() + DEADLINE
    while time.monotonic() < deadline:
        msg = consumer.poll(0.5)
        if msg is None:
            continue
        assert msg.error() is None, msg.error()
        return msg.offset(), msg.value()
    raise AssertionError("no message")


def commit(bootstrap: str, group: str, topic: str, offset: int) -> None:
    consumer = confluent_consumer(bootstrap, group, "earliest")
    try:
        consumer.commit(offsets=[CTopicPartition(topic, 0, offset)], asynchronous=False)
    finally:
        consumer.close()


def test_confluent_delete_records_then_consumers(kpy: KpyProcess) -> None:
    b = kpy.bootstrap
    topic = "purged"
    confluent_fill(b, topic)
    commit(b, "early", topic, 3)
    commit(b, "late", topic, 3)

    admin = AdminClient({"bootstrap.servers": b})
    (future,) = admin.delete_records([CTopicPartition(topic, 0, 8)]).values()
    assert future.result(10).low_watermark == 8
    (future,) = admin.delete_records([CTopicPartition(topic, 0, COUNT + 1)]).values()
    with pytest.raises(KafkaException) as err:
        future.result(10)
    assert err.value.args[0].name() == "OFFSET_OUT_OF_RANGE"
    (future,) = admin.list_offsets({CTopicPartition(topic, 0): OffsetSpec.earliest()}).values()
    assert future.result(10).offset == 8

    # By assignment from the beginning: the first record is the new start.
    reader = confluent_consumer(b, "unused-by-assign", "earliest")
    try:
        assert reader.get_watermark_offsets(CTopicPartition(topic, 0), timeout=10) == (8, COUNT)
        reader.assign([CTopicPartition(topic, 0, OFFSET_BEGINNING)])
        assert first_message(reader) == (8, b"m8")
    finally:
        reader.close()

    # A group whose committed offset (3) is below the start: reset to the earliest...
    early = confluent_consumer(b, "early", "earliest")
    try:
        early.subscribe([topic])
        assert first_message(early) == (8, b"m8")
    finally:
        early.close()

    # ... or to the latest: only records written after the reset arrive.
    late = confluent_consumer(b, "late", "latest")
    producer = Producer({"bootstrap.servers": b})
    try:
        late.subscribe([topic])
        deadline = time.monotonic() + DEADLINE
        got: tuple[int, bytes] | None = None
        while got is None and time.monotonic() < deadline:
            producer.produce(topic, value=b"after", partition=0)
            producer.flush(10)
            msg = late.poll(0.5)
            if msg is not None:
                assert msg.error() is None, msg.error()
                got = (msg.offset(), msg.value())
        assert got is not None
        assert got[0] >= COUNT and got[1] == b"after"
    finally:
        late.close()


def test_kafka_python_delete_records_then_consumers(kpy: KpyProcess) -> None:
    b = kpy.bootstrap
    topic = "purged-kp"
    tp = KTopicPartition(topic, 0)
    admin = KafkaAdminClient(bootstrap_servers=b)
    try:
        admin.create_topics([KNewTopic(topic, 1, 1)])
        producer = KafkaProducer(bootstrap_servers=b)
        for i in range(COUNT):
            producer.send(topic, value=b"m%d" % i, partition=0)
        producer.flush(30)
        producer.close()
        committer = KafkaConsumer(bootstrap_servers=b, group_id="kp-group")
        committer.commit({tp: OffsetAndMetadata(3, "", -1)})
        committer.close()

        result = admin.delete_records({tp: 12})
        assert result[tp]["low_watermark"] == 12 and result[tp]["error_code"] == 0
        with pytest.raises(OffsetOutOfRangeError):
            admin.delete_records({tp: COUNT + 5})

        # The group's committed offset (3) is below the start: reset to the earliest, 12.
        grouped = KafkaConsumer(
            topic,
            bootstrap_servers=b,
            group_id="kp-group",
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            consumer_timeout_ms=int(DEADLINE * 1000),
        )
        try:
            first = next(iter(grouped))
            assert (first.offset, first.value) == (12, b"m12")
        finally:
            grouped.close()

        # -1: everything below the high watermark.
        result = admin.delete_records({tp: -1})
        assert result[tp]["low_watermark"] == COUNT
    finally:
        admin.close()

    reader = KafkaConsumer(bootstrap_servers=b, group_id=None, auto_offset_reset="earliest")
    try:
        reader.assign([tp])
        assert reader.beginning_offsets([tp]) == {tp: COUNT}
        reader.seek_to_beginning(tp)
        assert reader.position(tp) == COUNT
    finally:
        reader.close()
