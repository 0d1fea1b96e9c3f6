"""Bad input gets the error code or the closed connection Apache Kafka gives; the broker stays up
and other clients' data does not change."""

from __future__ import annotations

import datetime
import struct
from collections.abc import Iterator

import pytest
from kio.schema.api_versions.v3.request import ApiVersionsRequest
from kio.schema.errors import ErrorCode
from kio.schema.produce.v9 import request as pr
from kio.static.primitive import i16, i32
from kpy_process import KpyProcess
from rawclient import RawClient
from requests_v import find_group_coordinator, metadata, produce, produce_result

from kpy.protocol import records as rb

TOPIC = "bystander"


def partition_error(response: object) -> ErrorCode:
    return produce_result(response)[0]  # type: ignore[no-any-return]


@pytest.fixture
def broker(kpy: KpyProcess) -> Iterator[KpyProcess]:
    """A broker with a bystander topic holding known data, checked intact after each test."""
    batch = rb.build_batch([(b"k%d" % i, b"v%d" % i) for i in range(10)], timestamp=1000)
    with RawClient(kpy.bootstrap) as c:
        metadata(c, TOPIC)  # auto-creates
        assert partition_error(produce(c, TOPIC, batch)) == ErrorCode.none
    yield kpy
    # The broker still answers, and the bystander's data is what it was.
    from kio.schema.fetch.v11 import request as fr

    with RawClient(kpy.bootstrap) as c:
        resp = c.request(
            fr.FetchRequest(
                replica_id=i32(-1),
                max_wait=datetime.timedelta(0),
                min_bytes=i32(0),
                max_bytes=i32(1 << 20),
                isolation_level=0,
                session_id=i32(0),
                session_epoch=i32(-1),
                topics=(
                    fr.FetchTopic(
                        topic=TOPIC,
                        partitions=(
                            fr.FetchPartition(
                                partition=i32(0),
                                current_leader_epoch=i32(-1),
                                fetch_offset=0,
                                log_start_offset=-1,
                                partition_max_bytes=i32(1 << 20),
                            ),
                        ),
                    ),
                ),
                forgotten_topics_data=(),
                rack_id="",
            )
        )
        part = resp.responses[0].partitions[0]
        assert part.error_code == ErrorCode.none
        assert part.high_watermark == 10
        got = rb.decode_records(part.records)
        assert [(r.offset, r.key, r.value) for r in got] == [
            (i, b"k%d" % i, b"v%d" % i) for i in range(10)
        ]
    assert kpy.proc is not None and kpy.proc.poll() is None


def test_garbage_bytes_close_the_connection(broker: KpyProcess) -> None:
    with RawClient(broker.bootstrap) as c:
        c.send_bytes(struct.pack(">i", 24) + bytes(range(200, 224)))
        assert c.is_closed_by_peer()


def test_truncated_frame_then_hangup(broker: KpyProcess) -> None:
    with RawClient(broker.bootstrap) as c:
        c.send_bytes(struct.pack(">i", 100) + b"\x00\x12\x00\x00")
        c.sock.shutdown(1)
        assert c.is_closed_by_peer()


def test_truncated_body_closes_the_connection(broker: KpyProcess) -> None:
    with RawClient(broker.bootstrap) as c:
        # A Metadata v1 header whose body claims 5 topics and has none.
        c.send_bytes(c.frame(3, 1, struct.pack(">i", 5)))
        assert c.is_closed_by_peer()


# A compact array length of about 15.9 billion (a five-byte varint). kio's native reader would
# size the array's storage first and abort the whole process when that allocation fails.
BILLIONS = bytes([0xF2, 0x9B, 0xB6, 0x8A, 0x3B])


@pytest.mark.parametrize(
    "api_key, version, body",
    [
        (3, 12, BILLIONS + b"\x00" * 10),  # Metadata: the topics array
        (19, 7, BILLIONS + b"\x00" * 10),  # CreateTopics: the topics array
        (0, 9, b"\x00\xff\xff\x00\x00\x03\xe8" + BILLIONS + b"\x00" * 10),  # Produce: topic_data
        # CreateTopics: one topic "a", 1 partition, factor 1, then its assignments array
        (19, 7, b"\x02\x02a\x00\x00\x00\x01\x00\x01" + BILLIONS + b"\x00" * 10),
    ],
)
def test_array_claiming_billions_of_entries_closes_the_connection(
    broker: KpyProcess, api_key: int, version: int, body: bytes
) -> None:
    with RawClient(broker.bootstrap) as c:
        c.send_bytes(c.frame(api_key, version, body))
        assert c.is_closed_by_peer()
    assert broker.proc is not None and broker.proc.poll() is None  # alive; the fixture reads on


@pytest.mark.parametrize("name, software_version", [("bad name", "1.0"), ("kcat", "-1"), ("", "1")])
def test_api_versions_with_invalid_client_software_is_invalid_request(
    broker: KpyProcess, name: str, software_version: str
) -> None:
    """Kafka checks ApiVersions v3+'s client software name and version against its pattern."""
    with RawClient(broker.bootstrap) as c:
        resp = c.request(
            ApiVersionsRequest(client_software_name=name, client_software_version=software_version)
        )
        assert resp.error_code == ErrorCode.invalid_request
        assert resp.api_keys == ()


@pytest.mark.parametrize("size", [2**31 - 1, -1, 100 * 1024 * 1024 + 1])
def test_frame_length_out_of_range_closes_the_connection(broker: KpyProcess, size: int) -> None:
    with RawClient(broker.bootstrap) as c:
        c.send_bytes(struct.pack(">i", size) + b"\x00" * 16)
        assert c.is_closed_by_peer()


def test_unknown_api_key_closes_the_connection(broker: KpyProcess) -> None:
    with RawClient(broker.bootstrap) as c:
        c.send_bytes(c.frame(9999, 0, b""))
        assert c.is_closed_by_peer()


def test_unserved_version_of_another_api_closes_the_connection(broker: KpyProcess) -> None:
    with RawClient(broker.bootstrap) as c:
        c.send_bytes(c.frame(3, 99, b""))
        assert c.is_closed_by_peer()


def test_unknown_api_versions_version_gets_v0_layout_with_ranges(broker: KpyProcess) -> None:
    with RawClient(broker.bootstrap) as c:
        c.send_bytes(c.frame(18, 99, b"\x00\x00\x00"))
        data = c.recv_frame()
        corr, error, count = struct.unpack_from(">ihi", data)
        assert corr == c.correlation_id
        assert error == ErrorCode.unsupported_version
        ranges = {
            key: (lo, hi)
            for key, lo, hi in (struct.unpack_from(">hhh", data, 10 + 6 * i) for i in range(count))
        }
        assert ranges[18] == (0, 4)
        assert ranges[0] == (0, 11) and ranges[1] == (0, 16)
        assert len(data) == 10 + 6 * count
        # The connection stays usable: the client retries at a version both sides know.
        resp = c.request(
            ApiVersionsRequest(client_software_name="raw", client_software_version="1")
        )
        assert resp.error_code == ErrorCode.none


def test_wrong_crc_is_corrupt_message(broker: KpyProcess) -> None:
    batch = bytearray(rb.build_batch([(b"k", b"value")]))
    batch[-2] ^= 0x55
    with RawClient(broker.bootstrap) as c:
        metadata(c, "crc")
        assert partition_error(produce(c, "crc", bytes(batch))) == ErrorCode.corrupt_message


def test_batch_over_max_message_bytes_is_message_too_large(broker: KpyProcess) -> None:
    batch = rb.build_batch([(b"k", b"x" * 1_100_000)])
    with RawClient(broker.bootstrap) as c:
        metadata(c, "big")
        assert partition_error(produce(c, "big", batch)) == ErrorCode.message_too_large


def test_batch_with_inconsistent_count_is_invalid_record(broker: KpyProcess) -> None:
    batch = bytearray(rb.build_batch([(b"a", b"1"), (b"b", b"2")]))
    struct.pack_into(">i", batch, 57, 3)  # records_count no longer matches last_offset_delta
    import crc32c

    struct.pack_into(">I", batch, 17, crc32c.crc32c(bytes(batch[21:])))
    with RawClient(broker.bootstrap) as c:
        metadata(c, "count")
        assert partition_error(produce(c, "count", bytes(batch))) == ErrorCode.invalid_record


def test_produce_to_invalid_topic_name(broker: KpyProcess) -> None:
    batch = rb.build_batch([(b"k", b"v")])
    with RawClient(broker.bootstrap) as c:
        # Metadata refuses the name; Produce does not know the topic, as in Kafka.
        resp = metadata(c, "bad topic!")
        assert resp.topics[0].error_code == ErrorCode.invalid_topic_exception
        error = partition_error(produce(c, "bad topic!", batch))
        assert error == ErrorCode.unknown_topic_or_partition


def test_produce_to_an_internal_topic_is_refused(broker: KpyProcess) -> None:
    batch = rb.build_batch([(b"k", b"v")])
    with RawClient(broker.bootstrap) as c:
        # Not there until a group needs it (as in Kafka): unknown, like any missing topic.
        assert partition_error(produce(c, "__consumer_offsets", batch)) == (
            ErrorCode.unknown_topic_or_partition
        )
        assert find_group_coordinator(c).error_code == ErrorCode.none
        assert partition_error(produce(c, "__consumer_offsets", batch)) == (
            ErrorCode.invalid_topic_exception
        )


def test_acks_zero_error_closes_the_connection(broker: KpyProcess) -> None:
    batch = bytearray(rb.build_batch([(b"k", b"value")]))
    batch[-1] ^= 1
    with RawClient(broker.bootstrap) as c:
        req = pr.ProduceRequest(
            transactional_id=None,
            acks=i16(0),
            timeout=datetime.timedelta(seconds=5),
            topic_data=(
                pr.TopicProduceData(
                    name=TOPIC,
                    partition_data=(pr.PartitionProduceData(index=i32(0), records=bytes(batch)),),
                ),
            ),
        )
        c.send(req)
        assert c.is_closed_by_peer()
