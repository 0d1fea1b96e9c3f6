"""ListOffsets v0, OffsetCommit v0-v1 and OffsetFetch v0, over raw requests."""

from __future__ import annotations

import time

from kio.schema.errors import ErrorCode
from kpy_process import KpyProcess
from legacy_requests import list_offsets_v0, offset_commit, offset_fetch
from rawclient import RawClient
from requests_v import create_topic, metadata, produce

from kpy.protocol import records as rb


def test_list_offsets_v0(kpy: KpyProcess) -> None:
    with RawClient(kpy.bootstrap) as client:
        metadata(client, "lo")
        empty = list_offsets_v0(client, "lo", -1, 5)
        assert (empty.error_code, empty.old_style_offsets) == (ErrorCode.none, (0,))
        for _ in range(3):
            produce(client, "lo", rb.build_batch([(b"k", b"v")] * 2))
        assert list_offsets_v0(client, "lo", -1).old_style_offsets == (6,)
        assert list_offsets_v0(client, "lo", -2).old_style_offsets == (0,)
        # Every known offset, newest first: the log end, then the segment's base.
        assert list_offsets_v0(client, "lo", -1, 10).old_style_offsets == (6, 0)
        future = int(time.time() * 1000) + 3_600_000
        assert list_offsets_v0(client, "lo", future, 10).old_style_offsets == (6, 0)
        assert list_offsets_v0(client, "lo", 1, 10).old_style_offsets == ()  # before any file
        assert list_offsets_v0(client, "lo", -3).error_code == ErrorCode.unsupported_version
        assert list_offsets_v0(client, "none", -1).error_code == (
            ErrorCode.unknown_topic_or_partition
        )


def test_list_offsets_v0_lists_segment_bases(kpy: KpyProcess) -> None:
    with RawClient(kpy.bootstrap) as client:
        create_topic(client, "segs", internal_segment_bytes="300")
        batch = rb.build_batch([(b"k", b"x" * 150)])
        for _ in range(3):
            produce(client, "segs", batch)  # one segment each
        got = list_offsets_v0(client, "segs", -1, 10).old_style_offsets
        assert got == (3, 2, 1, 0)
        assert list_offsets_v0(client, "segs", -1, 2).old_style_offsets == (3, 2)
        assert list_offsets_v0(client, "segs", -2, 2).old_style_offsets == (0,)


def test_offset_commit_v0_v1_and_fetch_v0(kpy: KpyProcess) -> None:
    with RawClient(kpy.bootstrap) as client:
        metadata(client, "oc")
        assert offset_commit(client, 0, "g0", "oc", 7, metadata="zk") == ErrorCode.none
        for version in (0, 1):
            got = offset_fetch(client, version, "g0", "oc")
            assert (got.committed_offset, got.metadata, got.error_code) == (7, "zk", ErrorCode.none)
        assert offset_commit(client, 1, "g0", "oc", 9, commit_timestamp=12345) == ErrorCode.none
        assert offset_fetch(client, 0, "g0", "oc").committed_offset == 9
        # A generation for a group the coordinator does not know: as v2 answers.
        assert offset_commit(client, 1, "g1", "oc", 1, generation=3, member_id="m") == (
            ErrorCode.illegal_generation
        )
        assert offset_fetch(client, 0, "g1", "oc").committed_offset == -1
        # v0 asks nothing of the group, as Kafka's ZooKeeper path did.
        assert offset_commit(client, 0, "g1", "oc", 4) == ErrorCode.none
        assert offset_commit(client, 0, "g1", "missing", 4) == ErrorCode.unknown_topic_or_partition
        assert offset_fetch(client, 0, "nobody", "oc").committed_offset == -1
