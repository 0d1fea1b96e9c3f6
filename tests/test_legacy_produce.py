"""Produce v0-v2 (message formats v0/v1 converted to v2 on the way in) and the checks Kafka's
LogValidator makes on compressed batches, over raw requests."""

from __future__ import annotations

import struct
from pathlib import Path

import crc32c
import pytest
import zstandard
from clients.workload import BASE_TS
from kio.schema.errors import ErrorCode
from kpy_process import KpyProcess
from legacy_requests import produce as produce_v
from rawclient import RawClient
from requests_v import create_topic, fetch, metadata, produce, produce_result

from kpy.protocol import compression as c
from kpy.protocol import legacy_records as lr
from kpy.protocol import records as rb


def stored(
    client: RawClient, topic: str, offset: int = 0
) -> list[tuple[rb.BatchHeader, list[rb.Record]]]:
    """The v2 batches kpy keeps, read back with Fetch v11."""
    data = fetch(client, [(topic, 0, offset, 1 << 20)]).responses[0].partitions[0].records
    return [(h, rb.decode_records(data[pos : pos + h.size])) for pos, h in rb.iter_headers(data)]


def messages(n: int, start_ts: int = BASE_TS) -> list[tuple[int, int, bytes, bytes]]:
    return [(i, start_ts + i, b"key%d" % i, b"value%d" % i) for i in range(n)]


@pytest.mark.parametrize("codec", [c.NONE, c.GZIP, c.SNAPPY, c.LZ4])
def test_message_sets_become_v2_batches(kpy: KpyProcess, codec: int) -> None:
    with RawClient(kpy.bootstrap) as client:
        for version in (0, 1, 2):
            for magic in (0, 1):
                topic = f"legacy-{version}-{magic}"
                metadata(client, topic)
                produce(client, topic, rb.build_batch([(b"x", b"first")]))  # offset 0
                msgs = messages(5)
                records = lr.encode_message_set(msgs, magic=magic, codec=codec)
                part = produce_v(client, version, topic, records)
                assert part.error_code == ErrorCode.none
                assert part.base_offset == 1
                if version == 2:
                    assert part.log_append_time is None  # CreateTime topic: -1
                _, (header, recs) = stored(client, topic)
                assert header.compression == codec and header.base_offset == 1
                assert [(r.offset, r.key, r.value) for r in recs] == [
                    (1 + i, k, v) for i, _, k, v in msgs
                ]
                want_ts = [ts for _, ts, _, _ in msgs] if magic == 1 else [-1] * 5
                assert [r.timestamp for r in recs] == want_ts
                assert header.max_timestamp == max(want_ts)


def test_log_append_time_topic_stamps_converted_batches(kpy: KpyProcess) -> None:
    with RawClient(kpy.bootstrap) as client:
        create_topic(client, "lat", message_timestamp_type="LogAppendTime")
        part = produce_v(
            client, 2, "lat", lr.encode_message_set(messages(3), magic=1, codec=c.GZIP)
        )
        assert part.error_code == ErrorCode.none and part.log_append_time is not None
        append_ms = int(part.log_append_time.timestamp() * 1000)
        ((header, recs),) = stored(client, "lat")
        assert header.is_log_append_time and header.max_timestamp == append_ms
        assert [r.timestamp for r in recs] == [append_ms] * 3


def test_topic_compression_type_recompresses_converted_batches(kpy: KpyProcess) -> None:
    with RawClient(kpy.bootstrap) as client:
        create_topic(client, "ct", compression_type="lz4")
        assert (
            produce_v(client, 1, "ct", lr.encode_message_set(messages(3), magic=1)).error_code
            == ErrorCode.none
        )
        ((header, recs),) = stored(client, "ct")
        assert header.compression == c.LZ4 and len(recs) == 3


def test_legacy_produce_errors(kpy: KpyProcess) -> None:
    good = lr.encode_message_set(messages(2), magic=1)
    bad_crc = bytearray(good)
    bad_crc[-1] ^= 1
    inner = lr.encode_message(0, 1, 0, 5, b"k", b"v")
    garbled = lr.encode_message(0, 1, c.SNAPPY, 5, None, b"this is not snappy data at all" * 3)
    zstd = lr.encode_message(0, 1, c.ZSTD, 5, None, c.compress(c.ZSTD, inner))
    mixed = good + lr.encode_message_set(messages(1), magic=0)
    producer_lat = lr.encode_message(0, 1, 0x08, 5, b"k", b"v")
    cases = [
        (bytes(bad_crc), ErrorCode.corrupt_message),
        (garbled, ErrorCode.corrupt_message),
        (zstd, ErrorCode.unsupported_compression_type),
        (mixed, ErrorCode.invalid_record),
        (good[:20], ErrorCode.invalid_record),
        (producer_lat, ErrorCode.none),  # CreateTime topic and a timestamp: taken as it is
        (lr.encode_message(0, 1, 0x08, -1, b"k", b"v"), ErrorCode.invalid_timestamp),
    ]
    with RawClient(kpy.bootstrap) as client:
        metadata(client, "errs")
        for records, want in cases:
            assert produce_v(client, 2, "errs", records).error_code == want, records
        assert produce_v(client, 0, "nope", good).error_code == ErrorCode.unknown_topic_or_partition
        # Nothing but the accepted message was written.
        assert [len(recs) for _, recs in stored(client, "errs")] == [1]


def test_v2_batch_in_a_v0_request_is_taken_as_v2(kpy: KpyProcess) -> None:
    """Kafka does not check the magic of Produce v0-v2."""
    with RawClient(kpy.bootstrap) as client:
        metadata(client, "mix")
        part = produce_v(client, 0, "mix", rb.build_batch([(b"k", b"v")], timestamp=42))
        assert part.error_code == ErrorCode.none
        ((header, recs),) = stored(client, "mix")
        assert header.max_timestamp == 42 and recs[0].value == b"v"


def test_acks_zero_legacy_produce_sends_no_response(kpy: KpyProcess) -> None:
    with RawClient(kpy.bootstrap) as client:
        metadata(client, "a0")
        records = lr.encode_message_set(messages(2), magic=0)
        assert produce_v(client, 0, "a0", records, acks=0, send_only=True) is None
        # The next answer on the connection is the fetch's: no produce response came first.
        assert [len(r) for _, r in stored(client, "a0")] == [2]


def _compressed_v2(codec: int, records: list[rb.Record]) -> bytearray:
    return bytearray(rb.encode_batch(records, base_offset=0, codec=codec))


def _recrc(batch: bytearray) -> bytes:
    struct.pack_into(">I", batch, rb.CRC_OFFSET, rb.compute_crc(batch, 0, len(batch)))
    return bytes(batch)


def test_compressed_v2_batches_are_decoded_and_checked(kpy: KpyProcess) -> None:
    recs = [rb.Record(i, 1_000 + i, None, b"v%d" % i, ()) for i in range(4)]
    with RawClient(kpy.bootstrap) as client:
        metadata(client, "v2c")
        # A payload that does not decompress, under a good CRC-32C: CORRUPT_MESSAGE.
        batch = _compressed_v2(c.LZ4, recs)
        batch[rb.HEADER_SIZE + 8 :] = b"\xff" * (len(batch) - rb.HEADER_SIZE - 8)
        assert produce_result(produce(client, "v2c", _recrc(batch)))[0] == ErrorCode.corrupt_message
        # A record count the records do not match: INVALID_RECORD.
        batch = _compressed_v2(c.GZIP, recs)
        struct.pack_into(">i", batch, 57, 5)
        struct.pack_into(">i", batch, 23, 4)
        assert produce_result(produce(client, "v2c", _recrc(batch)))[0] == ErrorCode.invalid_record
        # A max timestamp that is not the records' is set right, as Kafka sets it.
        batch = _compressed_v2(c.SNAPPY, recs)
        struct.pack_into(">q", batch, 35, 5)
        assert produce_result(produce(client, "v2c", _recrc(batch))) == (ErrorCode.none, 0)
        ((header, got),) = stored(client, "v2c")
        assert header.max_timestamp == 1_003 and [r.value for r in got] == [r.value for r in recs]


def _peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs /proc for peak RSS")
def test_a_batch_that_decompresses_to_gigabytes_is_refused(kpy: KpyProcess) -> None:
    """4 GiB of zeros in a zstd batch of a few hundred KiB: CORRUPT_MESSAGE, and the broker's
    peak memory stays far below what decoding it would take."""
    record = bytearray([0])
    rb._write_varint(record, 0)
    rb._write_varint(record, 0)
    rb._write_varint(record, -1)
    value_len = 4 << 30
    rb._write_varint(record, value_len)
    head = bytearray()
    rb._write_varint(head, len(record) + value_len + 1)
    compressor = zstandard.ZstdCompressor(level=1).compressobj()
    payload = bytearray(compressor.compress(bytes(head + record)))
    zeros = bytes(16 << 20)
    for _ in range(value_len // len(zeros)):
        payload += compressor.compress(zeros)
    payload += compressor.compress(b"\x00") + compressor.flush()
    assert len(payload) < 1 << 20
    tail = struct.pack(">hiqqqhii", c.ZSTD, 0, 1, 1, -1, -1, -1, 1) + bytes(payload)
    batch = struct.pack(">qiibI", 0, len(tail) + 9, -1, 2, crc32c.crc32c(tail)) + tail
    with RawClient(kpy.bootstrap) as client:
        metadata(client, "bomb")
        assert produce_result(produce(client, "bomb", batch))[0] == ErrorCode.corrupt_message
        assert produce_result(produce(client, "bomb", rb.build_batch([(b"k", b"v")]))) == (
            ErrorCode.none,
            0,
        )
    assert kpy.proc is not None
    assert _peak_rss_mb(kpy.proc.pid) < 600
