"""Compacted topics over raw requests: Produce refuses records without a key with INVALID_RECORD
and one record error per keyless record, as Kafka's LogValidator.validateKey (uncompressed and
compressed batches; other topics take keyless records); ``__consumer_offsets`` (compacted, every
record keyed) is kept small by the cleaner while a group commits over and over."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from kio.schema.errors import ErrorCode
from kpy_process import KpyProcess
from rawclient import RawClient
from requests_v import create_topic, produce

from kpy.protocol import compression
from kpy.protocol.records import Record, build_batch, encode_batch, iter_headers, split_records

FAST_CLEANER = {"log.cleaner.backoff.ms": "100", "log.initial.task.delay.ms": "0"}


def partition_response(response: Any) -> Any:
    return response.responses[0].partition_responses[0]


def test_keyless_records_refused_on_compacted_topics(kpy: KpyProcess) -> None:
    with RawClient(kpy.bootstrap) as c:
        assert create_topic(c, "compacted", 1, cleanup_policy="compact").error_code == 0
        assert create_topic(c, "both", 1, cleanup_policy="compact,delete").error_code == 0
        assert create_topic(c, "plain", 1).error_code == 0
        mixed = build_batch([(b"a", b"1"), (None, b"2"), (b"c", b"3"), (None, b"4")])
        for topic in ("compacted", "both"):
            part = partition_response(produce(c, topic, mixed))
            assert part.error_code == ErrorCode.invalid_record
            assert part.base_offset == -1
            message = (
                f"Compacted topic cannot accept message without key in topic partition {topic}-0."
            )
            assert [(e.batch_index, e.batch_index_error_message) for e in part.record_errors] == [
                (1, message),
                (3, message),
            ]
            assert part.error_message.startswith(
                "One or more records have been rejected due to 2 record errors in total"
            )
        compressed = encode_batch(
            [Record(0, 1000, b"k", b"v", ()), Record(1, 1000, None, b"v", ())],
            base_offset=0,
            codec=compression.GZIP,
        )
        part = partition_response(produce(c, "compacted", compressed))
        assert part.error_code == ErrorCode.invalid_record
        assert [e.batch_index for e in part.record_errors] == [1]
        # Keyed records go in; keyless ones go in elsewhere.
        keyed = build_batch([(b"a", b"1"), (b"b", None)])
        assert partition_response(produce(c, "compacted", keyed)).error_code == ErrorCode.none
        assert partition_response(produce(c, "plain", mixed)).error_code == ErrorCode.none


def offsets_log_size(data_dir: Path) -> int:
    return sum(p.stat().st_size for p in data_dir.glob("__consumer_offsets-*/*.log"))


def test_consumer_offsets_stay_small(kpy_factory: Any) -> None:
    # Small segments for __consumer_offsets so that commits roll them.
    broker = kpy_factory({**FAST_CLEANER, "offsets.topic.segment.bytes": "4096"})
    from kafka import KafkaConsumer, TopicPartition
    from kafka.structs import OffsetAndMetadata

    consumer = KafkaConsumer(bootstrap_servers=broker.bootstrap, group_id="committer")
    tp = TopicPartition("t", 0)
    with RawClient(broker.bootstrap) as c:
        assert create_topic(c, "t", 1).error_code == 0
    try:
        for i in range(3000):
            consumer.commit({tp: OffsetAndMetadata(i, "", -1)})
    finally:
        consumer.close()
    # 3000 commits of about 100 bytes each; compacted, one key's latest value is left (plus the
    # active segment's share).
    deadline = time.monotonic() + 60
    while offsets_log_size(broker.data_dir) > 20_000:
        assert time.monotonic() < deadline, offsets_log_size(broker.data_dir)
        time.sleep(0.2)
    for path in broker.data_dir.glob("__consumer_offsets-*/*.log"):
        data = path.read_bytes()
        for pos, header in iter_headers(data):
            assert all(r.key is not None for r in split_records(data[pos : pos + header.size]))
    broker.restart()
    consumer = KafkaConsumer(bootstrap_servers=broker.bootstrap, group_id="committer")
    try:
        assert consumer.committed(tp) == 2999
    finally:
        consumer.close()
