"""aiokafka produces 10,000 messages and reads them back by partition assignment."""

from __future__ import annotations

import asyncio

import pytest

aiokafka = pytest.importorskip("aiokafka")

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition  # noqa: E402
from aiokafka.admin import AIOKafkaAdminClient, NewTopic  # noqa: E402
from kpy_process import KpyProcess  # noqa: E402

from clients.workload import PARTITIONS, assert_records_match, by_partition, messages  # noqa: E402

TOPIC = "aiokafka-roundtrip"


async def round_trip(bootstrap: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(TOPIC, PARTITIONS, 1)])
    finally:
        await admin.close()

    msgs = messages()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, acks="all")
    await producer.start()
    try:
        futures = [
            await producer.send(
                TOPIC,
                key=m.key,
                value=m.value,
                partition=m.partition,
                headers=list(m.headers),
                timestamp_ms=m.timestamp,
            )
            for m in msgs
        ]
        metas = await asyncio.gather(*futures)
    finally:
        await producer.stop()
    expected = by_partition(msgs)
    for p in range(PARTITIONS):
        assert sorted(md.offset for md in metas if md.partition == p) == list(
            range(len(expected[p]))
        )

    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        max_partition_fetch_bytes=2_000_000,
    )
    await consumer.start()
    try:
        for p in range(PARTITIONS):
            tp = TopicPartition(TOPIC, p)
            consumer.assign([tp])
            await consumer.seek_to_beginning(tp)
            got = []
            while len(got) < len(expected[p]):
                batch = await asyncio.wait_for(consumer.getmany(timeout_ms=1000), 30)
                for records in batch.values():
                    got.extend(records)
            assert_records_match(expected[p], got)
    finally:
        await consumer.stop()


def test_round_trip(kpy: KpyProcess) -> None:
    asyncio.run(round_trip(kpy.bootstrap))
