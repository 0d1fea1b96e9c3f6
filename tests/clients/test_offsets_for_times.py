"""offsets_for_times from each client returns what Kafka would: the first record whose timestamp
is at or after the target (not the first in timestamp order), with that record's timestamp, and
nothing past the last one."""

from __future__ import annotations

import asyncio

import pytest
from kpy_process import KpyProcess

confluent_kafka = pytest.importorskip("confluent_kafka")

from confluent_kafka import Consumer, Producer, TopicPartition  # noqa: E402

TOPIC = "times"
# Out of order on purpose: Kafka answers by offset order, not by timestamp order.
STAMPS = [1_000, 3_000, 2_000, 4_000, 4_000, 9_000, 5_000]
CASES = {
    0: (0, 1_000),
    1_000: (0, 1_000),
    1_500: (1, 3_000),
    2_000: (1, 3_000),
    3_500: (3, 4_000),
    4_000: (3, 4_000),
    6_000: (5, 9_000),
    9_000: (5, 9_000),
}
PAST_END = 9_001


def fill(bootstrap: str, compression: str) -> None:
    p = Producer({"bootstrap.servers": bootstrap, "compression.type": compression, "linger.ms": 50})
    for i, ts in enumerate(STAMPS):
        p.produce(TOPIC, value=b"v%d" % i, partition=0, timestamp=ts)
    assert p.flush(10) == 0


@pytest.mark.parametrize("compression", ["none", "gzip", "snappy", "lz4", "zstd"])
def test_confluent_kafka(kpy: KpyProcess, compression: str) -> None:
    fill(kpy.bootstrap, compression)
    c = Consumer({"bootstrap.servers": kpy.bootstrap, "group.id": "times"})
    try:
        for target, (offset, _) in CASES.items():
            (tp,) = c.offsets_for_times([TopicPartition(TOPIC, 0, target)], timeout=10)
            assert tp.error is None and tp.offset == offset, target
        (tp,) = c.offsets_for_times([TopicPartition(TOPIC, 0, PAST_END)], timeout=10)
        assert tp.offset == -1  # librdkafka's "end": no such record
    finally:
        c.close()


def test_kafka_python(kpy: KpyProcess) -> None:
    from kafka import KafkaConsumer
    from kafka import TopicPartition as KTP

    fill(kpy.bootstrap, "none")
    c = KafkaConsumer(bootstrap_servers=kpy.bootstrap, group_id=None)
    try:
        tp = KTP(TOPIC, 0)
        for target, (offset, ts) in CASES.items():
            got = c.offsets_for_times({tp: target})[tp]
            assert got is not None and (got.offset, got.timestamp) == (offset, ts), target
        assert c.offsets_for_times({tp: PAST_END})[tp] is None
        assert c.beginning_offsets([tp])[tp] == 0
        assert c.end_offsets([tp])[tp] == len(STAMPS)
    finally:
        c.close()


def test_aiokafka(kpy: KpyProcess) -> None:
    from aiokafka import AIOKafkaConsumer
    from aiokafka import TopicPartition as ATP

    fill(kpy.bootstrap, "none")

    async def check() -> None:
        c = AIOKafkaConsumer(bootstrap_servers=kpy.bootstrap, group_id=None)
        await c.start()
        try:
            tp = ATP(TOPIC, 0)
            for target, (offset, ts) in CASES.items():
                got = (await c.offsets_for_times({tp: target}))[tp]
                assert got is not None and (got.offset, got.timestamp) == (offset, ts), target
            assert (await c.offsets_for_times({tp: PAST_END}))[tp] is None
        finally:
            await c.stop()

    asyncio.run(check())
