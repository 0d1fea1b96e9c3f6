"""bench/sink.py: the server that acknowledges produces without storing them serves real
producers (confluent-kafka, and the Java one behind kafka-producer-perf-test), answers every
Produce version it advertises in a layout kio reads back, and closes the connection on anything
else.
"""

from __future__ import annotations

import datetime
import importlib
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from compat.tools import Tools, missing
from confluent_kafka import Producer
from kio.schema.api_versions.v3.request import ApiVersionsRequest
from kio.static.primitive import i16, i32
from rawclient import RawClient
from requests_v import metadata

from kpy.protocol import records as rb

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.sink import VERSIONS, SinkBroker

JAVA_VERSION = "4.1.0"


@pytest.fixture
def sink(tmp_path: Path) -> Iterator[SinkBroker]:
    broker = SinkBroker(tmp_path)
    broker.start(30)
    try:
        yield broker
    finally:
        broker.stop()


def test_confluent_producer_gets_every_record_acknowledged(sink: SinkBroker) -> None:
    delivered: list[int] = []
    failed: list[Any] = []

    def report(err: Any, msg: Any) -> None:
        if err is None:
            delivered.append(msg.offset())
        else:
            failed.append(err)

    producer = Producer({"bootstrap.servers": sink.bootstrap, "linger.ms": 5})
    for i in range(10_000):
        producer.produce("sunk", b"v" * 100, key=str(i).encode(), on_delivery=report)
        if i % 1000 == 0:
            producer.poll(0)
    assert producer.flush(30) == 0
    assert failed == []
    # One partition: the base offsets advance by each batch's records, so every record has an
    # offset of its own, 0 to 9999.
    assert sorted(delivered) == list(range(10_000))


@pytest.mark.skipif(missing(JAVA_VERSION) is not None, reason=str(missing(JAVA_VERSION)))
def test_java_perf_producer_completes(sink: SinkBroker) -> None:
    out = Tools(JAVA_VERSION).ok(
        "kafka-producer-perf-test", "--topic", "sunk", "--num-records", "50000",
        "--record-size", "100", "--throughput", "-1",
        "--producer-props", f"bootstrap.servers={sink.bootstrap}", "acks=all",
        timeout=180,
    )  # fmt: skip
    summary = out.strip().splitlines()[-1]
    assert re.match(r"50000 records sent, [\d.]+ records/sec", summary), out


def _produce_request(version: int, acks: int, parts: dict[tuple[str, int], list[int]]) -> Any:
    """A Produce request of one version: for each (topic, partition), batches of the given
    record counts, concatenated."""
    mod = importlib.import_module(f"kio.schema.produce.v{version}.request")
    topics: dict[str, list[Any]] = {}
    for (topic, partition), counts in parts.items():
        data = b"".join(rb.build_batch([(None, b"x")] * n) for n in counts)
        topics.setdefault(topic, []).append(
            mod.PartitionProduceData(index=i32(partition), records=data)
        )
    return mod.ProduceRequest(
        transactional_id=None,
        acks=i16(acks),
        timeout=datetime.timedelta(seconds=5),
        topic_data=tuple(
            mod.TopicProduceData(name=name, partition_data=tuple(data))
            for name, data in topics.items()
        ),
    )


def _base_offsets(response: Any) -> dict[tuple[str, int], tuple[int, int]]:
    return {
        (t.name, p.index): (p.error_code, p.base_offset)
        for t in response.responses
        for p in t.partition_responses
    }


@pytest.mark.parametrize("version", range(VERSIONS[0][0], VERSIONS[0][1] + 1))
def test_every_produce_version_is_acknowledged_per_partition(
    sink: SinkBroker, version: int
) -> None:
    parts = {("a", 0): [3], ("a", 1): [2, 4], ("b", 0): [1]}
    with RawClient(sink.bootstrap) as client:
        first = _base_offsets(client.request(_produce_request(version, -1, parts)))
        assert first == {("a", 0): (0, 0), ("a", 1): (0, 0), ("b", 0): (0, 0)}
        second = _base_offsets(client.request(_produce_request(version, 1, parts)))
        assert second == {("a", 0): (0, 3), ("a", 1): (0, 6), ("b", 0): (0, 1)}


def test_acks_zero_gets_no_response(sink: SinkBroker) -> None:
    with RawClient(sink.bootstrap) as client:
        client.send(_produce_request(9, 0, {("z", 0): [5]}))
        # The next frame on the connection answers the Metadata request, not the produce.
        topic = metadata(client, "z").topics[0]
        assert (topic.name, len(topic.partitions)) == ("z", 1)
        response = client.request(_produce_request(9, 1, {("z", 0): [1]}))
        assert _base_offsets(response) == {("z", 0): (0, 5)}


def test_api_versions_lists_what_the_sink_serves(sink: SinkBroker) -> None:
    with RawClient(sink.bootstrap) as client:
        response = client.request(
            ApiVersionsRequest(client_software_name="t", client_software_version="1")
        )
    ranges = {k.api_key: (k.min_version, k.max_version) for k in response.api_keys}
    assert ranges[0] == VERSIONS[0]
    assert ranges[22] == VERSIONS[22]


def test_any_other_request_closes_the_connection(sink: SinkBroker) -> None:
    with RawClient(sink.bootstrap) as client:
        client.send_bytes(client.frame(1, 12, b"\x00" * 40))  # a Fetch
        assert client.is_closed_by_peer()
    with RawClient(sink.bootstrap) as client:
        client.send_bytes(client.frame(0, 2, b"\x00" * 40))  # Produce v2: not served
        assert client.is_closed_by_peer()
