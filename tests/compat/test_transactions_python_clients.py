"""Transactions with the pure-Python clients, kafka-python 3.x and aiokafka, whose protocol code is
their own (not librdkafka's): their transactional producers (init, begin, commit, abort,
send_offsets_to_transaction) and their read_committed consumers, checked the same against kpy and
against Apache Kafka (``--compat-broker=kafka``).

Each client writes 10 transactions over 3 partitions, every other one aborted, 2 records per
partition each, so transaction i owns offsets 3i and 3i+1 and its marker 3i+2 in every partition;
its own read_committed consumer must get exactly the committed records and its read_uncommitted
consumer all of them. The ends a consumer reads to come from ListOffsets at its isolation level
(``txn_steps.end_offsets``); the clients' own ListOffsets (end_offsets) must give the same LSO
while a transaction is open.
"""

from __future__ import annotations

import asyncio
import time

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.structs import TopicPartition as AioTopicPartition
from confluent_kafka import ConsumerGroupTopicPartitions
from confluent_kafka import TopicPartition as CkTopicPartition
from confluent_kafka.admin import AdminClient
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.structs import OffsetAndMetadata

from compat.steps import Broker
from compat.txn_steps import (
    READ_COMMITTED,
    READ_UNCOMMITTED,
    WAIT,
    create_topics,
    end_offsets,
    read_all,
)

PARTITIONS = 3
TXNS = 10

Placed = dict[int, list[tuple[int, bytes]]]


def record(client: str, txn: int, partition: int, r: int) -> bytes:
    return f"{client}-t{txn}-p{partition}-r{r}".encode()


def expected(client: str, txns: range) -> Placed:
    return {
        p: [(3 * i + r, record(client, i, p, r)) for i in txns for r in range(2)]
        for p in range(PARTITIONS)
    }


def group_offset(bootstrap: str, group: str, topic: str) -> int:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    request = ConsumerGroupTopicPartitions(group, [CkTopicPartition(topic, 0)])
    result = admin.list_consumer_group_offsets([request], request_timeout=WAIT)[group].result()
    return int(result.topic_partitions[0].offset)


def kafka_python_read(bootstrap: str, topic: str, isolation: str) -> Placed:
    """kafka-python's consumer at ``isolation``, from the start until its position in every
    partition reaches the end offset at that isolation level."""
    ends = end_offsets(bootstrap, topic, PARTITIONS, isolation)
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap, isolation_level=isolation, enable_auto_commit=False
    )
    try:
        tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        consumer.assign(tps)
        consumer.seek_to_beginning()
        got: Placed = {p: [] for p in range(PARTITIONS)}
        deadline = time.monotonic() + WAIT
        while any(consumer.position(tp) < ends[tp.partition] for tp in tps):
            assert time.monotonic() < deadline, f"ends {ends} not reached; got {got}"
            for tp, records in consumer.poll(timeout_ms=500).items():
                got[tp.partition] += [(r.offset, r.value) for r in records]
        return got
    finally:
        consumer.close()


def test_kafka_python_commit_and_abort(broker: Broker) -> None:
    """kafka-python's transactional producer: exactly the committed records for read_committed
    (its own consumer and librdkafka's), all for read_uncommitted; its consumer's end_offsets is
    the LSO while a transaction is open."""
    b = broker.bootstrap
    create_topics(b, "kp-txn", partitions=PARTITIONS)
    producer = KafkaProducer(bootstrap_servers=b, transactional_id="kafka-python-txn")
    producer.init_transactions()
    try:
        for i in range(TXNS):
            producer.begin_transaction()
            for p in range(PARTITIONS):
                for r in range(2):
                    producer.send("kp-txn", record("kp", i, p, r), partition=p)
            producer.flush(WAIT)
            if i % 2 == 0:
                producer.commit_transaction()
            else:
                producer.abort_transaction()

        assert kafka_python_read(b, "kp-txn", READ_COMMITTED) == expected("kp", range(0, TXNS, 2))
        assert kafka_python_read(b, "kp-txn", READ_UNCOMMITTED) == expected("kp", range(TXNS))
        assert read_all(b, "kp-txn", PARTITIONS, READ_COMMITTED) == expected(
            "kp", range(0, TXNS, 2)
        )

        producer.begin_transaction()
        producer.send("kp-txn", b"open", partition=0).get(WAIT)  # offset 30
        tp = TopicPartition("kp-txn", 0)
        for isolation, end in ((READ_COMMITTED, 30), (READ_UNCOMMITTED, 31)):
            probe = KafkaConsumer(bootstrap_servers=b, isolation_level=isolation)
            try:
                assert probe.end_offsets([tp]) == {tp: end}, isolation
            finally:
                probe.close()
        producer.abort_transaction()
        assert end_offsets(b, "kp-txn", 1, READ_COMMITTED) == [32]
    finally:
        producer.close(timeout=WAIT)


def test_kafka_python_send_offsets_to_transaction(broker: Broker) -> None:
    """kafka-python's consume-transform-produce: offsets sent in an aborted transaction are not
    committed for the group; sent in a committed one, they are, together with the output."""
    b = broker.bootstrap
    create_topics(b, "kp-in", "kp-out")
    feeder = KafkaProducer(bootstrap_servers=b)
    for i in range(4):
        feeder.send("kp-in", b"in%d" % i, partition=0)
    feeder.flush(WAIT)
    feeder.close()

    consumer = KafkaConsumer(
        "kp-in",
        bootstrap_servers=b,
        group_id="kp-copiers",
        isolation_level=READ_COMMITTED,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    producer = KafkaProducer(bootstrap_servers=b, transactional_id="kafka-python-copier")
    producer.init_transactions()
    try:
        got: list[bytes] = []
        deadline = time.monotonic() + WAIT
        while len(got) < 4:
            assert time.monotonic() < deadline, got
            for records in consumer.poll(timeout_ms=500).values():
                got += [r.value for r in records]
        assert got == [b"in0", b"in1", b"in2", b"in3"]
        tp = TopicPartition("kp-in", 0)
        for commit in (False, True):
            producer.begin_transaction()
            for value in got:
                producer.send("kp-out", b"out-" + value, partition=0)
            producer.send_offsets_to_transaction(
                {tp: OffsetAndMetadata(4, "", -1)}, consumer.group_metadata()
            )
            producer.flush(WAIT)  # in the log before the abort: unsent records would be dropped
            if commit:
                producer.commit_transaction()
            else:
                producer.abort_transaction()
                assert consumer.committed(tp) is None
    finally:
        producer.close(timeout=WAIT)
        consumer.close()

    assert group_offset(b, "kp-copiers", "kp-in") == 4
    # out-* four times aborted (0-3, marker 4), four times committed (5-8, marker 9).
    assert read_all(b, "kp-out", 1, READ_COMMITTED) == {
        0: [(5 + i, b"out-in%d" % i) for i in range(4)]
    }


async def aiokafka_read(bootstrap: str, topic: str, isolation: str) -> Placed:
    """aiokafka's consumer at ``isolation``, as kafka_python_read."""
    ends = end_offsets(bootstrap, topic, PARTITIONS, isolation)
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, isolation_level=isolation, enable_auto_commit=False
    )
    await consumer.start()
    try:
        tps = [AioTopicPartition(topic, p) for p in range(PARTITIONS)]
        consumer.assign(tps)
        await consumer.seek_to_beginning()
        got: Placed = {p: [] for p in range(PARTITIONS)}
        deadline = time.monotonic() + WAIT
        while any([await consumer.position(tp) < ends[tp.partition] for tp in tps]):
            assert time.monotonic() < deadline, f"ends {ends} not reached; got {got}"
            for tp, records in (await consumer.getmany(timeout_ms=500)).items():
                got[tp.partition] += [(r.offset, r.value) for r in records]
        if isolation == READ_COMMITTED:
            assert [consumer.last_stable_offset(tp) for tp in tps] == ends
        return got
    finally:
        await consumer.stop()


def test_aiokafka_commit_abort_and_offsets(broker: Broker) -> None:
    """aiokafka's transactional producer: exactly the committed records for read_committed (its
    own consumer, whose last_stable_offset is the broker's LSO, and librdkafka's), all for
    read_uncommitted; offsets sent with send_offsets_to_transaction are the group's once
    committed."""
    b = broker.bootstrap
    create_topics(b, "aio-txn", partitions=PARTITIONS)

    async def scenario() -> tuple[Placed, Placed]:
        producer = AIOKafkaProducer(bootstrap_servers=b, transactional_id="aiokafka-txn")
        await producer.start()
        try:
            for i in range(TXNS):
                await producer.begin_transaction()
                for p in range(PARTITIONS):
                    for r in range(2):
                        await producer.send_and_wait("aio-txn", record("aio", i, p, r), partition=p)
                if i % 2 == 0:
                    await producer.commit_transaction()
                else:
                    await producer.abort_transaction()
            async with producer.transaction():
                await producer.send_offsets_to_transaction(
                    {AioTopicPartition("aio-txn", 0): 30}, "aio-readers"
                )
        finally:
            await producer.stop()
        return (
            await aiokafka_read(b, "aio-txn", READ_COMMITTED),
            await aiokafka_read(b, "aio-txn", READ_UNCOMMITTED),
        )

    committed, everything = asyncio.run(scenario())
    assert committed == expected("aio", range(0, TXNS, 2))
    assert everything == expected("aio", range(TXNS))
    assert read_all(b, "aio-txn", PARTITIONS, READ_COMMITTED) == expected("aio", range(0, TXNS, 2))
    assert group_offset(b, "aio-readers", "aio-txn") == 30
