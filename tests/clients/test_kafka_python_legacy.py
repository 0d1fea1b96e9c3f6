"""kafka-python pinned to api_version=(0, 9) and (0, 10): no ApiVersions, message formats v0 and
v1, Produce v1/v2, Fetch v1/v2, ListOffsets v0, the v0 group APIs. A producer writes with each
codec, a consumer group reads everything and commits, and the next consumer of the group
resumes after the commit."""

from __future__ import annotations

import time

import pytest

kafka = pytest.importorskip("kafka")

from kafka import KafkaConsumer, KafkaProducer  # noqa: E402
from kio.schema.errors import ErrorCode  # noqa: E402
from kpy_process import KpyProcess  # noqa: E402
from rawclient import RawClient  # noqa: E402
from requests_v import create_topic  # noqa: E402

from clients.workload import BASE_TS  # noqa: E402

pytestmark = pytest.mark.clients

COUNT = 1_000
GUARD_S = 60  # hang guard for client loops, not a check


def read(consumer: KafkaConsumer, count: int) -> list[tuple[int, int, bytes, bytes, int]]:
    got: list[tuple[int, int, bytes, bytes, int]] = []
    deadline = time.monotonic() + GUARD_S
    while len(got) < count and time.monotonic() < deadline:
        for records in consumer.poll(timeout_ms=500).values():
            got += [(r.partition, r.offset, r.key, r.value, r.timestamp) for r in records]
    return got


def send(producer: KafkaProducer, topic: str, start: int, stop: int, with_ts: bool) -> None:
    for i in range(start, stop):
        producer.send(
            topic,
            key=b"k%d" % i,
            value=b"value-%d" % i * 5,
            timestamp_ms=BASE_TS + i if with_ts else None,
        )
    producer.flush(30)


@pytest.mark.parametrize("codec", [None, "gzip", "snappy", "lz4"])
@pytest.mark.parametrize("api_version", [(0, 9), (0, 10)], ids=["0.9", "0.10"])
def test_pinned_old_protocol_end_to_end(
    kpy: KpyProcess, api_version: tuple[int, int], codec: str | None
) -> None:
    topic = "old-kafka-python"
    with RawClient(kpy.bootstrap) as raw:
        assert create_topic(raw, topic, 2).error_code == ErrorCode.none
    with_ts = api_version >= (0, 10)  # format v1 carries timestamps, v0 none
    producer = KafkaProducer(
        bootstrap_servers=kpy.bootstrap,
        api_version=api_version,
        compression_type=codec,
        acks=1,
        enable_idempotence=False,
        linger_ms=5,
    )
    send(producer, topic, 0, COUNT, with_ts)

    def consumer() -> KafkaConsumer:
        c = KafkaConsumer(
            topic,
            bootstrap_servers=kpy.bootstrap,
            api_version=api_version,
            group_id="old-group",
            auto_offset_reset="earliest",
            enable_auto_commit=False,
        )
        return c

    first = consumer()
    got = read(first, COUNT)
    first.commit()
    first.close()
    assert sorted(v for _, _, _, v, _ in got) == sorted(b"value-%d" % i * 5 for i in range(COUNT))
    for partition in (0, 1):
        offsets = [o for p, o, _, _, _ in got if p == partition]
        assert offsets == list(range(len(offsets)))
    index = {b"k%d" % i: i for i in range(COUNT)}
    # kafka-python shows a v0 message's missing timestamp as None.
    wrong = [(k, ts) for _, _, k, _, ts in got if ts != (BASE_TS + index[k] if with_ts else None)]
    assert not wrong, wrong[:3]

    send(producer, topic, COUNT, COUNT + 100, with_ts)
    producer.close()
    second = consumer()
    rest = read(second, 100)
    second.close()
    assert sorted(k for _, _, k, _, _ in rest) == sorted(
        b"k%d" % i for i in range(COUNT, COUNT + 100)
    )
