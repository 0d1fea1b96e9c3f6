"""DeleteRecords over the raw protocol: Kafka's error codes and low watermarks for every version,
and what Fetch, ListOffsets and Produce report once the log start offset moved, before and after
a restart (clean and SIGKILL)."""

from __future__ import annotations

import datetime
from typing import Any

import pytest
from kio.schema.delete_records.v0 import request as dr0
from kio.schema.delete_records.v1 import request as dr1
from kio.schema.delete_records.v2 import request as dr2
from kio.schema.errors import ErrorCode
from kio.schema.fetch.v11 import response as fetch_response
from kio.serial import entity_reader
from kio.static.primitive import i32, i64
from kpy_process import KpyProcess
from rawclient import RawClient
from requests_v import create_topic, fetch, find_group_coordinator, list_offsets, produce

from kpy.protocol.records import build_batch

VERSIONS = {0: dr0, 1: dr1, 2: dr2}


def delete_records(
    client: RawClient, wanted: list[tuple[str, int, int]], version: int = 2
) -> list[tuple[str, int, ErrorCode, int]]:
    """(topic, partition, error, low watermark) for each partition of the response, in order."""
    mod: Any = VERSIONS[version]
    topics: dict[str, list[Any]] = {}
    for topic, partition, offset in wanted:
        topics.setdefault(topic, []).append(
            mod.DeleteRecordsPartition(partition_index=i32(partition), offset=i64(offset))
        )
    response = client.request(
        mod.DeleteRecordsRequest(
            topics=tuple(
                mod.DeleteRecordsTopic(name=name, partitions=tuple(parts))
                for name, parts in topics.items()
            ),
            timeout=datetime.timedelta(seconds=5),
        )
    )
    return [
        (t.name, p.partition_index, p.error_code, p.low_watermark)
        for t in response.topics
        for p in t.partitions
    ]


def fill(client: RawClient, topic: str, count: int, partition: int = 0) -> None:
    """``count`` one-record batches with timestamps 1000, 1001, ... (keyed: compacted topics
    refuse records without a key)."""
    for i in range(count):
        batch = build_batch([(b"k%d" % i, b"m%d" % i)], timestamp=1000 + i)
        part = produce(client, topic, batch, partition).responses[0].partition_responses[0]
        assert part.error_code == ErrorCode.none


def fetch_one(client: RawClient, topic: str, offset: int) -> Any:
    return fetch(client, [(topic, 0, offset, 1 << 20)]).responses[0].partitions[0]


@pytest.mark.parametrize("version", [0, 1, 2])
def test_errors_and_low_watermarks(kpy: KpyProcess, version: int) -> None:
    with RawClient(kpy.bootstrap) as c:
        assert find_group_coordinator(c).error_code == ErrorCode.none  # makes __consumer_offsets
        assert create_topic(c, "t", 2).error_code == ErrorCode.none
        assert create_topic(c, "compacted", 1, cleanup_policy="compact").error_code == 0
        assert create_topic(c, "both", 1, cleanup_policy="compact,delete").error_code == 0
        fill(c, "t", 10)
        fill(c, "t", 3, partition=1)
        fill(c, "compacted", 2)
        fill(c, "both", 2)
        results = delete_records(
            c,
            [
                ("t", 0, 4),
                ("t", 1, -1),  # the high watermark
                ("t", 2, 0),  # no such partition
                ("missing", 0, 0),
                ("__consumer_offsets", 0, 0),  # internal: only the coordinator trims it
                ("compacted", 0, 1),
                ("both", 0, 1),
            ],
            version,
        )
        assert results == [
            ("t", 0, ErrorCode.none, 4),
            ("t", 1, ErrorCode.none, 3),
            ("t", 2, ErrorCode.unknown_topic_or_partition, -1),
            ("missing", 0, ErrorCode.unknown_topic_or_partition, -1),
            ("__consumer_offsets", 0, ErrorCode.invalid_topic_exception, -1),
            ("compacted", 0, ErrorCode.policy_violation, -1),
            ("both", 0, ErrorCode.none, 1),
        ]
        assert delete_records(c, [("t", 0, 11), ("t", 1, -2)], version) == [
            ("t", 0, ErrorCode.offset_out_of_range, -1),  # past the high watermark (10)
            ("t", 1, ErrorCode.offset_out_of_range, -1),  # negative, and not -1
        ]
        # Below or at the current start: nothing changes, the start comes back.
        assert delete_records(c, [("t", 0, 2)], version) == [("t", 0, ErrorCode.none, 4)]
        assert delete_records(c, [("t", 0, 10)], version) == [("t", 0, ErrorCode.none, 10)]
        # The internal topic was left alone.
        assert list_offsets(c, "__consumer_offsets", 0, -2).offset == 0


def test_a_partition_named_twice_is_answered_once_for_its_last_offset(kpy: KpyProcess) -> None:
    with RawClient(kpy.bootstrap) as c:
        create_topic(c, "t", 2)
        fill(c, "t", 10)
        fill(c, "t", 10, partition=1)
        results = delete_records(c, [("t", 0, 3), ("t", 1, 1), ("t", 0, 6)])
        assert results == [("t", 0, ErrorCode.none, 6), ("t", 1, ErrorCode.none, 1)]


def test_fetch_list_offsets_and_produce_honour_the_new_start(kpy: KpyProcess) -> None:
    with RawClient(kpy.bootstrap) as c:
        create_topic(c, "t", 1)
        fill(c, "t", 10)
        assert delete_records(c, [("t", 0, 6)]) == [("t", 0, ErrorCode.none, 6)]

        below = fetch_one(c, "t", 5)
        assert below.error_code == ErrorCode.offset_out_of_range
        assert (below.high_watermark, below.log_start_offset) == (-1, -1)  # as Kafka answers
        at = fetch_one(c, "t", 6)
        assert at.error_code == ErrorCode.none
        assert (at.high_watermark, at.log_start_offset) == (10, 6)
        assert at.records  # offsets 6..9

        assert list_offsets(c, "t", 0, -2).offset == 6  # earliest
        assert list_offsets(c, "t", 0, -1).offset == 10  # latest
        by_time = list_offsets(c, "t", 0, 0)  # every record qualifies: the first kept one
        assert (by_time.offset, by_time.timestamp) == (6, 1006)
        assert list_offsets(c, "t", 0, 1003).offset == 6
        assert list_offsets(c, "t", 0, 1008).offset == 8

        part = produce(c, "t", build_batch([(None, b"x")])).responses[0].partition_responses[0]
        assert (part.base_offset, part.log_start_offset) == (10, 6)


def test_a_long_poll_below_the_new_start_ends_with_offset_out_of_range(
    kpy: KpyProcess,
) -> None:
    """A fetch waiting for more bytes than there are is woken by the deletion: its offset is now
    out of range. (Its wait is a minute, its socket gives up after 30 s.)"""
    with RawClient(kpy.bootstrap, timeout=30) as waiting, RawClient(kpy.bootstrap) as c:
        create_topic(c, "t", 1)
        fill(c, "t", 5)
        fetch(waiting, [("t", 0, 1, 1 << 20)], max_wait_ms=60_000, min_bytes=1 << 20,
              send_only=True)  # fmt: skip
        assert delete_records(c, [("t", 0, 3)]) == [("t", 0, ErrorCode.none, 3)]
        frame = waiting.recv_frame()
        response, _ = entity_reader(fetch_response.FetchResponse)(frame, 4)
        (part,) = response.responses[0].partitions
        assert part.error_code == ErrorCode.offset_out_of_range


@pytest.mark.parametrize("how", ["clean", "sigkill"])
def test_the_new_start_survives_a_restart(kpy: KpyProcess, how: str) -> None:
    with RawClient(kpy.bootstrap) as c:
        create_topic(c, "t", 1, internal_segment_bytes="1024")
        fill(c, "t", 40)  # several segments
        assert delete_records(c, [("t", 0, 33)]) == [("t", 0, ErrorCode.none, 33)]
    partition_dir = kpy.data_dir / "t-0"
    logs = sorted(p.name for p in partition_dir.glob("*.log"))
    assert logs[0] != f"{0:020d}.log"  # the segments below the start are gone
    assert not list(partition_dir.glob("*.deleted"))
    if how == "clean":
        kpy.stop()
    else:
        kpy.kill()  # the checkpoint was written before the answer
    kpy.start()
    with RawClient(kpy.bootstrap) as c:
        assert list_offsets(c, "t", 0, -2).offset == 33
        assert list_offsets(c, "t", 0, -1).offset == 40
        assert fetch_one(c, "t", 32).error_code == ErrorCode.offset_out_of_range
        at = fetch_one(c, "t", 33)
        assert (at.error_code, at.log_start_offset) == (ErrorCode.none, 33)
        # And it moves on from there.
        assert delete_records(c, [("t", 0, -1)]) == [("t", 0, ErrorCode.none, 40)]
        fill(c, "t", 1)
        assert list_offsets(c, "t", 0, -2).offset == 40
        assert list_offsets(c, "t", 0, -1).offset == 41
    assert sorted(p.name for p in partition_dir.glob("*.log")) == [f"{40:020d}.log"]
