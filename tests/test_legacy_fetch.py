"""Fetch v0-v3: stored v2 batches converted down to message formats v0/v1, over raw requests;
and Fetch v4, whose request lacks the fields of later versions."""

from __future__ import annotations

import datetime

import pytest
from kio.schema.errors import ErrorCode
from kio.schema.fetch.v4 import request as f4
from kio.static.primitive import i8, i32, i64
from kpy_process import KpyProcess
from legacy_requests import fetch as fetch_v
from legacy_requests import produce as produce_v
from rawclient import RawClient
from requests_v import create_topic, fetch, metadata, produce, produce_result

from kpy.protocol import compression as c
from kpy.protocol import legacy_records as lr
from kpy.protocol import records as rb

TS = 1_650_000_000_000


def v2_batch(n: int, codec: int = c.NONE, start: int = 0) -> bytes:
    recs = [rb.Record(i, TS + i, b"k%d" % (start + i), b"v%d" % (start + i), ()) for i in range(n)]
    return rb.encode_batch(recs, base_offset=0, codec=codec)


def flat(records: bytes) -> list[lr.Message]:
    out: list[lr.Message] = []
    for m in lr.iter_messages(records):
        out += lr.inner_messages(m, 1 << 24) if m.codec else [m]
    return out


@pytest.mark.parametrize("codec", [c.NONE, c.GZIP, c.SNAPPY, c.LZ4])
def test_stored_batches_come_back_in_the_fetchers_format(kpy: KpyProcess, codec: int) -> None:
    with RawClient(kpy.bootstrap) as client:
        metadata(client, "down")
        assert produce_result(produce(client, "down", v2_batch(4, codec)))[0] == ErrorCode.none
        assert produce_result(produce(client, "down", v2_batch(3, codec, 4)))[0] == ErrorCode.none
        for version in (0, 1, 2, 3):
            magic = 0 if version <= 1 else 1
            part = fetch_v(client, version, "down", 0)
            assert part.error_code == ErrorCode.none and part.high_watermark == 7
            shallow = list(lr.iter_messages(part.records))
            assert {m.magic for m in shallow} == {magic}
            assert len(shallow) == (2 if codec else 7)
            msgs = flat(part.records)
            assert [m.offset for m in msgs] == list(range(7))
            assert [(m.key, m.value) for m in msgs] == [(b"k%d" % i, b"v%d" % i) for i in range(7)]
            want = [TS + i for i in range(4)] + [TS + i for i in range(3)]
            assert [m.timestamp for m in msgs] == (want if magic else [-1] * 7)
            if codec:
                assert [m.offset for m in shallow] == [3, 6]  # wrappers: their last offset
                raw = c.decompress(codec, shallow[1].value or b"", magic=magic)
                inner = [m.offset for m in lr.iter_messages(raw)]
                assert inner == ([0, 1, 2] if magic else [4, 5, 6])  # relative in v1
                assert shallow[1].timestamp == (TS + 2 if magic else -1)
            # From the middle: uncompressed records below the offset are dropped, a compressed
            # wrapper comes whole (the client skips).
            part = fetch_v(client, version, "down", 5)
            offsets = [m.offset for m in flat(part.records)]
            assert offsets == ([4, 5, 6] if codec else [5, 6])


def test_log_append_time_in_v1_messages(kpy: KpyProcess) -> None:
    with RawClient(kpy.bootstrap) as client:
        create_topic(client, "lat", message_timestamp_type="LogAppendTime")
        produce(client, "lat", v2_batch(2))
        produce(client, "lat", v2_batch(2, c.GZIP))
        hdrs = [
            h
            for _, h in rb.iter_headers(
                fetch(client, [("lat", 0, 0, 1 << 20)]).responses[0].partitions[0].records
            )
        ]
        times = [h.max_timestamp for h in hdrs]
        part = fetch_v(client, 2, "lat", 0)
        shallow = list(lr.iter_messages(part.records))
        assert all(m.is_log_append_time for m in shallow)
        assert [m.timestamp for m in shallow] == [times[0], times[0], times[1]]
        assert [m.timestamp for m in flat(part.records)] == [times[0]] * 2 + [times[1]] * 2


def test_budget_and_at_least_one_message(kpy: KpyProcess) -> None:
    with RawClient(kpy.bootstrap) as client:
        metadata(client, "budget")
        produce(client, "budget", rb.build_batch([(None, b"x" * 100)] * 10))
        one = fetch_v(client, 1, "budget", 0, partition_max_bytes=10)
        assert [m.offset for m in lr.iter_messages(one.records)] == [0]
        some = fetch_v(client, 3, "budget", 0, partition_max_bytes=500)
        assert len(some.records) <= 500
        assert [m.offset for m in lr.iter_messages(some.records)] == [0, 1, 2]  # 134 B each
        none = fetch_v(client, 3, "budget", 0, max_bytes=0)  # the total limit, v3
        assert [m.offset for m in lr.iter_messages(none.records)] == [0]


def test_zstd_goes_down_uncompressed_unless_the_topic_compresses_with_zstd(
    kpy: KpyProcess,
) -> None:
    with RawClient(kpy.bootstrap) as client:
        metadata(client, "z")
        produce(client, "z", v2_batch(2))
        produce(client, "z", v2_batch(3, c.ZSTD, 2))
        part = fetch_v(client, 3, "z", 3)
        assert part.error_code == ErrorCode.none
        shallow = list(lr.iter_messages(part.records))
        assert [(m.offset, m.codec, m.value) for m in shallow] == [
            (3, c.NONE, b"v3"),
            (4, c.NONE, b"v4"),
        ]
        create_topic(client, "zt", compression_type="zstd")
        produce(client, "zt", v2_batch(1))
        assert fetch_v(client, 0, "zt", 0).error_code == ErrorCode.unsupported_compression_type
        assert fetch(client, [("zt", 0, 0, 1 << 20)]).responses[0].partitions[0].error_code == (
            ErrorCode.none
        )


def test_errors_and_empty_partitions(kpy: KpyProcess) -> None:
    with RawClient(kpy.bootstrap) as client:
        metadata(client, "e")
        produce(client, "e", v2_batch(2))
        assert fetch_v(client, 0, "e", 5).error_code == ErrorCode.offset_out_of_range
        assert fetch_v(client, 0, "missing", 0).error_code == (ErrorCode.unknown_topic_or_partition)
        empty = fetch_v(client, 2, "e", 2)
        assert (empty.error_code, empty.records, empty.high_watermark) == (ErrorCode.none, b"", 2)


def test_round_trip_legacy_produce_and_fetch(kpy: KpyProcess) -> None:
    """What an old client writes, it reads back byte for byte (same magic, same fields)."""
    msgs = [(i, TS + i, b"k%d" % i, b"v" * i) for i in range(5)]
    with RawClient(kpy.bootstrap) as client:
        metadata(client, "rt")
        for magic, version in ((0, 0), (1, 2)):
            sent = lr.encode_message_set(msgs, magic=magic)
            assert produce_v(client, version, "rt", sent).error_code == ErrorCode.none
        got = fetch_v(client, 2, "rt", 5).records  # v1 view of the magic 1 messages
        assert got == lr.encode_message_set([(5 + o, t, k, v) for o, t, k, v in msgs], magic=1)
        got = fetch_v(client, 0, "rt", 0).records
        assert got[: len(got) // 2] == lr.encode_message_set(msgs, magic=0)


def test_fetch_v4_request_has_no_session_or_leader_epoch_fields(kpy: KpyProcess) -> None:
    with RawClient(kpy.bootstrap) as client:
        metadata(client, "f4")
        produce(client, "f4", v2_batch(3))
        resp = client.request(
            f4.FetchRequest(
                replica_id=i32(-1),
                max_wait=datetime.timedelta(0),
                min_bytes=i32(0),
                max_bytes=i32(1 << 20),
                isolation_level=i8(0),
                topics=(
                    f4.FetchTopic(
                        topic="f4",
                        partitions=(
                            f4.FetchPartition(
                                partition=i32(0),
                                fetch_offset=i64(0),
                                partition_max_bytes=i32(1 << 20),
                            ),
                        ),
                    ),
                ),
            )
        )
        part = resp.responses[0].partitions[0]
        assert part.error_code == ErrorCode.none and part.high_watermark == 3
        assert rb.read_header(part.records).records_count == 3
