"""Old and new clients read each other through kpy's conversions: batches confluent-kafka writes
(format v2, each codec, zstd included) reach pykafka as v0/v1 messages, and what pykafka writes
in formats v0 and v1 reaches confluent-kafka and kafka-python with the same bytes, offsets and
timestamps (v0 has none: -1)."""

from __future__ import annotations

import datetime
import time
from typing import Any

import pytest

pykafka = pytest.importorskip("pykafka", reason="pykafka is in the test extras")

from confluent_kafka import Consumer, Producer, TopicPartition  # noqa: E402
from kafka import KafkaConsumer  # noqa: E402
from kafka import TopicPartition as KafkaPythonPartition  # noqa: E402
from kpy_process import KpyProcess  # noqa: E402
from pykafka import KafkaClient  # noqa: E402
from pykafka.common import CompressionType, OffsetType  # noqa: E402

from clients.workload import BASE_TS  # noqa: E402

pytestmark = pytest.mark.clients

COUNT = 300
GUARD_S = 60  # hang guard for client loops, not a check


@pytest.fixture(autouse=True)
def fresh_version_choice() -> None:
    """pykafka caches its API version choices process-wide (pykafka.utils.VERSIONS_CACHE)."""
    pykafka.utils.VERSIONS_CACHE.clear()


def expected(i: int) -> tuple[bytes, bytes]:
    return b"key-%d" % i, b"value-%d-" % i * (i % 7 + 1)


def pykafka_client(bootstrap: str, broker_version: str) -> KafkaClient:
    if broker_version == "default":
        return KafkaClient(hosts=bootstrap)
    return KafkaClient(hosts=bootstrap, broker_version=broker_version)


def pykafka_read(bootstrap: str, topic: str, broker_version: str) -> list[Any]:
    client = pykafka_client(bootstrap, broker_version)
    consumer = client.topics[topic.encode()].get_simple_consumer(
        auto_offset_reset=OffsetType.EARLIEST, consumer_timeout_ms=5_000
    )
    got = []
    deadline = time.monotonic() + GUARD_S
    while len(got) < COUNT and time.monotonic() < deadline:
        message = consumer.consume(block=False)
        if message is None:
            time.sleep(0.01)
        else:
            got.append(message)
    consumer.stop()
    return got


@pytest.mark.parametrize("codec", ["gzip", "snappy", "lz4", "zstd"])
def test_pykafka_reads_what_confluent_kafka_compressed(kpy: KpyProcess, codec: str) -> None:
    topic = f"from-confluent-{codec}"
    producer = Producer(
        {"bootstrap.servers": kpy.bootstrap, "compression.type": codec, "linger.ms": 50}
    )
    for i in range(COUNT):
        key, value = expected(i)
        producer.produce(topic, key=key, value=value, partition=0, timestamp=BASE_TS + i)
    assert producer.flush(30) == 0
    for broker_version in ("default", "0.10.0"):
        pykafka.utils.VERSIONS_CACHE.clear()
        got = pykafka_read(kpy.bootstrap, topic, broker_version)
        assert [(m.offset, m.partition_key, m.value) for m in got] == [
            (i, *expected(i)) for i in range(COUNT)
        ]
        if broker_version == "0.10.0":  # format v1 carries the timestamps
            assert [m.timestamp for m in got] == [BASE_TS + i for i in range(COUNT)]


def pykafka_write(bootstrap: str, topic: str, broker_version: str, codec: int) -> None:
    client = pykafka_client(bootstrap, broker_version)
    with_timestamps = broker_version != "default"  # format v0 has none
    with client.topics[topic.encode()].get_producer(
        compression=codec, linger_ms=20, min_queued_messages=100, sync=False
    ) as producer:
        for i in range(COUNT):
            key, value = expected(i)
            ts = datetime.datetime(1970, 1, 1) + datetime.timedelta(milliseconds=BASE_TS + i)
            producer.produce(value, partition_key=key, timestamp=ts if with_timestamps else None)


def sent_timestamp(i: int) -> int:
    """pykafka's own millisecond conversion of the datetimes it was given."""
    ts = datetime.datetime(1970, 1, 1) + datetime.timedelta(milliseconds=BASE_TS + i)
    return int(1000 * (ts - datetime.datetime(1970, 1, 1)).total_seconds())


def confluent_read(bootstrap: str, topic: str) -> list[tuple[int, bytes, bytes, int]]:
    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": "reader", "enable.auto.commit": False}
    )
    consumer.assign([TopicPartition(topic, 0, 0)])
    got: list[tuple[int, bytes, bytes, int]] = []
    deadline = time.monotonic() + GUARD_S
    while len(got) < COUNT and time.monotonic() < deadline:
        for msg in consumer.consume(COUNT, timeout=1.0):
            assert msg.error() is None, msg.error()
            got.append((msg.offset(), msg.key(), msg.value(), msg.timestamp()[1]))
    consumer.close()
    return got


def kafka_python_read(
    bootstrap: str, topic: str, api_version: tuple[int, int] | None = None
) -> list[tuple[int, bytes, bytes, int]]:
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        api_version=api_version,
    )
    partition = KafkaPythonPartition(topic, 0)
    consumer.assign([partition])
    consumer.seek(partition, 0)
    got: list[tuple[int, bytes, bytes, int]] = []
    deadline = time.monotonic() + GUARD_S
    while len(got) < COUNT and time.monotonic() < deadline:
        for records in consumer.poll(timeout_ms=1_000).values():
            got += [(r.offset, r.key, r.value, r.timestamp) for r in records]
    consumer.close()
    return got


@pytest.mark.parametrize(
    "codec",
    [CompressionType.NONE, CompressionType.GZIP, CompressionType.SNAPPY, CompressionType.LZ4],
    ids=["none", "gzip", "snappy", "lz4"],
)
def test_new_clients_read_what_pykafka_wrote(kpy: KpyProcess, codec: int) -> None:
    for broker_version, magic in (("default", 0), ("0.10.0", 1)):
        pykafka.utils.VERSIONS_CACHE.clear()
        topic = f"from-pykafka-v{magic}-{codec}"
        pykafka_write(kpy.bootstrap, topic, broker_version, codec)
        want = [(i, *expected(i), sent_timestamp(i) if magic == 1 else -1) for i in range(COUNT)]
        assert confluent_read(kpy.bootstrap, topic) == want
        assert kafka_python_read(kpy.bootstrap, topic) == want


def test_log_append_time_through_both_conversions(kpy: KpyProcess) -> None:
    """On a LogAppendTime topic the broker's clock wins over pykafka's v1 timestamps, and a v1
    reader (kafka-python pinned to 0.10) and a v2 reader see the same append times. pykafka
    itself cannot read such messages, from Kafka either: it takes the whole attributes byte,
    LogAppendTime bit included, for the codec."""
    from confluent_kafka import TIMESTAMP_LOG_APPEND_TIME
    from rawclient import RawClient
    from requests_v import create_topic

    topic = "append-time"
    with RawClient(kpy.bootstrap) as raw:
        create_topic(raw, topic, message_timestamp_type="LogAppendTime")
    before = int(time.time() * 1000)
    pykafka_write(kpy.bootstrap, topic, "0.10.0", CompressionType.GZIP)
    after = int(time.time() * 1000)
    new = confluent_read_types(kpy.bootstrap, topic)
    assert {kind for kind, _ in new} == {TIMESTAMP_LOG_APPEND_TIME}
    assert all(before <= ts <= after for _, ts in new)
    old = kafka_python_read(kpy.bootstrap, topic, api_version=(0, 10))
    assert [ts for _, _, _, ts in old] == [ts for _, ts in new]


def confluent_read_types(bootstrap: str, topic: str) -> list[tuple[int, int]]:
    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": "reader", "enable.auto.commit": False}
    )
    consumer.assign([TopicPartition(topic, 0, 0)])
    got: list[tuple[int, int]] = []
    deadline = time.monotonic() + GUARD_S
    while len(got) < COUNT and time.monotonic() < deadline:
        for msg in consumer.consume(COUNT, timeout=1.0):
            assert msg.error() is None, msg.error()
            got.append(msg.timestamp())
    consumer.close()
    return got
