"""kafka-python, with its defaults (idempotent, acks=all), produces 10,000 messages and reads them
back by partition assignment."""

from __future__ import annotations

import pytest

kafka = pytest.importorskip("kafka")

from kafka import KafkaConsumer, KafkaProducer, TopicPartition  # noqa: E402
from kafka.admin import KafkaAdminClient, NewTopic  # noqa: E402
from kpy_process import KpyProcess  # noqa: E402

from clients.workload import PARTITIONS, assert_records_match, by_partition, messages  # noqa: E402

TOPIC = "kafka-python-roundtrip"


def test_round_trip(kpy: KpyProcess) -> None:
    admin = KafkaAdminClient(bootstrap_servers=kpy.bootstrap)
    admin.create_topics([NewTopic(TOPIC, PARTITIONS, 1)])
    admin.close()

    msgs = messages()
    producer = KafkaProducer(bootstrap_servers=kpy.bootstrap, linger_ms=5)
    assert producer.config["enable_idempotence"], "kafka-python's default should be idempotent"
    futures = [
        producer.send(
            TOPIC,
            key=m.key,
            value=m.value,
            partition=m.partition,
            headers=list(m.headers),
            timestamp_ms=m.timestamp,
        )
        for m in msgs
    ]
    producer.flush(60)
    metas = [f.get(timeout=30) for f in futures]
    producer.close()
    expected = by_partition(msgs)
    for p in range(PARTITIONS):
        assert sorted(md.offset for md in metas if md.partition == p) == list(
            range(len(expected[p]))
        )

    consumer = KafkaConsumer(
        bootstrap_servers=kpy.bootstrap,
        group_id=None,
        enable_auto_commit=False,
        max_partition_fetch_bytes=2_000_000,
    )
    try:
        for p in range(PARTITIONS):
            tp = TopicPartition(TOPIC, p)
            consumer.assign([tp])
            consumer.seek_to_beginning(tp)
            got = []
            idle = 0
            while len(got) < len(expected[p]) and idle < 20:
                batch = consumer.poll(timeout_ms=1000)
                idle = 0 if batch else idle + 1
                for records in batch.values():
                    got.extend(records)
            assert_records_match(expected[p], got)
    finally:
        consumer.close()
