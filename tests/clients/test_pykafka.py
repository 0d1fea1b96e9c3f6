"""pykafka 2.8 in pure-Python mode (no librdkafka extension), with its default broker_version
(0.9.0: Produce v0 and message format v0, Fetch v1, no ApiVersions) and with "0.10.0"
(ApiVersions, then message format v1 with timestamps, Fetch v2): the sync and the async
producer, SimpleConsumer from the beginning and from committed offsets, and a BalancedConsumer
group of two (managed=True: JoinGroup/SyncGroup/Heartbeat v0) each round-trip 10,000 messages
with every codec pykafka writes."""

from __future__ import annotations

import datetime
import time
from collections.abc import Iterable, Iterator
from typing import Any

import pytest

pykafka = pytest.importorskip("pykafka", reason="pykafka is in the test extras")

from kio.schema.errors import ErrorCode  # noqa: E402
from kpy_process import KpyProcess  # noqa: E402
from pykafka import BalancedConsumer, KafkaClient, SimpleConsumer  # noqa: E402
from pykafka.common import CompressionType, OffsetType  # noqa: E402
from pykafka.producer import Producer  # noqa: E402
from rawclient import RawClient  # noqa: E402
from requests_v import create_topic  # noqa: E402

from clients.workload import BASE_TS  # noqa: E402

pytestmark = pytest.mark.clients

COUNT = 10_000
PARTITIONS = 2
CODECS = {
    "none": CompressionType.NONE,
    "gzip": CompressionType.GZIP,
    "snappy": CompressionType.SNAPPY,
    "lz4": CompressionType.LZ4,
}
BROKER_VERSIONS = ["default", "0.10.0"]  # pykafka's default is 0.9.0
GUARD_S = 120  # a loop waiting on the client gives up after this (a hang guard, not a check)


def make_client(bootstrap: str, broker_version: str) -> KafkaClient:
    if broker_version == "default":
        return KafkaClient(hosts=bootstrap)
    return KafkaClient(hosts=bootstrap, broker_version=broker_version)


def create_topics(broker: KpyProcess, *names: str) -> None:
    with RawClient(broker.bootstrap) as raw:
        for name in names:
            assert create_topic(raw, name, PARTITIONS).error_code == ErrorCode.none


def payload(prefix: str, i: int) -> tuple[bytes, bytes]:
    # Keys spread the messages over both partitions; values are long enough to compress.
    return b"key-%d" % i, (b"%s-%d-" % (prefix.encode(), i)) * 8


def timestamp(i: int) -> datetime.datetime:
    # pykafka takes naive datetimes in UTC.
    return datetime.datetime(1970, 1, 1) + datetime.timedelta(milliseconds=BASE_TS + i)


def sent_timestamp(i: int) -> int:
    """The milliseconds pykafka writes for timestamp(i) (its float arithmetic may round down)."""
    return int(1000 * (timestamp(i) - datetime.datetime(1970, 1, 1)).total_seconds())


def produce(producer: Producer, prefix: str, with_timestamps: bool) -> None:
    for i in range(COUNT):
        key, value = payload(prefix, i)
        producer.produce(
            value, partition_key=key, timestamp=timestamp(i) if with_timestamps else None
        )


def consume(consumers: Iterable[Any], count: int) -> Iterator[tuple[Any, Any]]:
    """(consumer, message) until ``count`` messages arrived from the consumers together."""
    members = list(consumers)
    got = 0
    deadline = time.monotonic() + GUARD_S
    while got < count and time.monotonic() < deadline:
        progressed = False
        for member in members:
            message = member.consume(block=False)
            if message is not None:
                got += 1
                progressed = True
                yield member, message
                if got == count:
                    return
        if not progressed:
            time.sleep(0.01)


def check_messages(messages: list[Any], prefix: str, with_timestamps: bool) -> None:
    """All COUNT messages, once each, with offsets 0.. per partition in order."""
    values = sorted(m.value for m in messages)
    assert values == sorted(payload(prefix, i)[1] for i in range(COUNT))
    by_partition: dict[int, list[int]] = {}
    for m in messages:
        by_partition.setdefault(m.partition_id, []).append(m.offset)
    assert sorted(by_partition) == list(range(PARTITIONS))
    for offsets in by_partition.values():
        assert offsets == list(range(len(offsets)))
    if with_timestamps:
        index = {payload(prefix, i)[1]: i for i in range(COUNT)}
        wrong = [
            (m.partition_id, m.offset, m.timestamp, sent_timestamp(index[m.value]))
            for m in messages
            if m.timestamp != sent_timestamp(index[m.value])
        ]
        assert not wrong, wrong[:5]
        assert all(m.partition_key == payload(prefix, index[m.value])[0] for m in messages)


@pytest.fixture(autouse=True)
def fresh_version_choice() -> None:
    """pykafka caches the API versions it picks in a global (pykafka.utils.VERSIONS_CACHE) for
    the life of the process; each test starts from its own broker_version."""
    pykafka.utils.VERSIONS_CACHE.clear()


@pytest.fixture
def broker(kpy_factory: Any) -> KpyProcess:
    proc: KpyProcess = kpy_factory()
    return proc


@pytest.mark.parametrize("codec", list(CODECS))
@pytest.mark.parametrize("broker_version", BROKER_VERSIONS)
def test_sync_producer_and_simple_consumers(
    broker: KpyProcess, broker_version: str, codec: str
) -> None:
    with_timestamps = broker_version != "default"
    create_topics(broker, "sync")
    client = make_client(broker.bootstrap, broker_version)
    topic = client.topics[b"sync"]
    with topic.get_sync_producer(compression=CODECS[codec]) as producer:
        assert type(producer) is Producer  # the pure-Python producer
        produce(producer, "sync", with_timestamps)

    # From the beginning, without a group.
    consumer = topic.get_simple_consumer(
        auto_offset_reset=OffsetType.EARLIEST, consumer_timeout_ms=10_000
    )
    assert type(consumer) is SimpleConsumer
    messages = [m for _, m in consume([consumer], COUNT)]
    consumer.stop()
    check_messages(messages, "sync", with_timestamps)

    # From committed offsets: one consumer commits part way, the next resumes there.
    group = b"pykafka-commit"
    first = topic.get_simple_consumer(
        consumer_group=group,
        auto_commit_enable=False,
        auto_offset_reset=OffsetType.EARLIEST,
        reset_offset_on_start=False,
    )
    head = [m for _, m in consume([first], 4_000)]
    first.commit_offsets()
    first.stop()
    second = topic.get_simple_consumer(
        consumer_group=group,
        auto_commit_enable=False,
        auto_offset_reset=OffsetType.LATEST,  # only the committed offsets can lead it back
        reset_offset_on_start=False,
    )
    tail = [m for _, m in consume([second], COUNT - 4_000)]
    second.stop()
    check_messages(head + tail, "sync", with_timestamps)


@pytest.mark.parametrize("codec", list(CODECS))
@pytest.mark.parametrize("broker_version", BROKER_VERSIONS)
def test_async_producer_and_a_balanced_group_of_two(
    broker: KpyProcess, broker_version: str, codec: str
) -> None:
    with_timestamps = broker_version != "default"
    create_topics(broker, "async")
    clients = [make_client(broker.bootstrap, broker_version) for _ in range(2)]
    members = [
        c.topics[b"async"].get_balanced_consumer(
            consumer_group=b"pykafka-balanced",
            managed=True,
            auto_offset_reset=OffsetType.EARLIEST,
            consumer_timeout_ms=10_000,
        )
        for c in clients
    ]
    try:
        assert all(type(m) is not BalancedConsumer for m in members)  # the managed subclass
        # Produce once the group has settled: each member owns one partition.
        deadline = time.monotonic() + GUARD_S
        while time.monotonic() < deadline and sorted(len(m.partitions) for m in members) != [1, 1]:
            time.sleep(0.1)
        owned = [set(m.partitions) for m in members]  # partition id -> Partition
        assert sorted(owned, key=min) == [{0}, {1}]

        producer_client = make_client(broker.bootstrap, broker_version)
        with producer_client.topics[b"async"].get_producer(
            compression=CODECS[codec], linger_ms=10, min_queued_messages=500
        ) as producer:
            assert type(producer) is Producer
            produce(producer, "async", with_timestamps)

        received = list(consume(members, COUNT))
        check_messages([m for _, m in received], "async", with_timestamps)
        for member, message in received:
            assert message.partition_id in member.partitions
    finally:
        for member in members:
            member.stop()
