"""Committed offsets survive a clean restart and a SIGKILL: a simple consumer's commits
(generation -1, no member id) over real sockets, then OffsetFetch after the broker restarts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kio.schema.errors import ErrorCode
from kio.schema.offset_commit.v9 import request as oc
from kio.schema.offset_delete.v0 import request as od
from kio.schema.offset_fetch.v8 import request as of
from kio.static.primitive import i32, i64
from kpy_process import KpyProcess
from rawclient import RawClient
from requests_v import create_topic

GROUP = "durable"


def commit(client: RawClient, offsets: dict[tuple[str, int], tuple[int, int, str]]) -> Any:
    topics: dict[str, list[Any]] = {}
    for (topic, partition), (offset, epoch, metadata) in offsets.items():
        topics.setdefault(topic, []).append(
            oc.OffsetCommitRequestPartition(
                partition_index=i32(partition),
                committed_offset=i64(offset),
                committed_leader_epoch=i32(epoch),
                committed_metadata=metadata,
            )
        )
    response = client.request(
        oc.OffsetCommitRequest(
            group_id=GROUP,
            generation_id_or_member_epoch=i32(-1),
            member_id="",
            group_instance_id=None,
            topics=tuple(
                oc.OffsetCommitRequestTopic(name=t, partitions=tuple(ps))
                for t, ps in topics.items()
            ),
        )
    )
    return {
        (t.name, p.partition_index): p.error_code for t in response.topics for p in t.partitions
    }


def fetch_all(client: RawClient) -> dict[tuple[str, int], tuple[int, int, str | None]]:
    response = client.request(
        of.OffsetFetchRequest(
            groups=(of.OffsetFetchRequestGroup(group_id=GROUP, topics=None),),
            require_stable=True,
        )
    )
    (group,) = response.groups
    assert group.error_code == ErrorCode.none
    out = {}
    for t in group.topics:
        for p in t.partitions:
            assert p.error_code == ErrorCode.none
            out[(t.name, p.partition_index)] = (
                p.committed_offset,
                p.committed_leader_epoch,
                p.metadata,
            )
    return out


def test_commits_survive_clean_restart_and_sigkill(tmp_path: Path) -> None:
    broker = KpyProcess(tmp_path / "data").start()
    try:
        with RawClient(broker.bootstrap) as client:
            assert create_topic(client, "events", 3).error_code == ErrorCode.none
            first = {("events", 0): (5, 0, "a"), ("events", 1): (7, -1, "")}
            assert commit(client, first) == dict.fromkeys(first, ErrorCode.none)
            assert commit(client, {("events", 0): (9, 0, "b")}) == {("events", 0): ErrorCode.none}
            expected = {("events", 0): (9, 0, "b"), ("events", 1): (7, -1, "")}
            assert fetch_all(client) == expected

        broker.restart()
        with RawClient(broker.bootstrap) as client:
            assert fetch_all(client) == expected
            assert commit(client, {("events", 2): (3, 0, "c")}) == {("events", 2): ErrorCode.none}
            expected[("events", 2)] = (3, 0, "c")
            deleted = client.request(
                od.OffsetDeleteRequest(
                    group_id=GROUP,
                    topics=(
                        od.OffsetDeleteRequestTopic(
                            name="events",
                            partitions=(od.OffsetDeleteRequestPartition(partition_index=i32(1)),),
                        ),
                    ),
                )
            )
            assert deleted.error_code == ErrorCode.none
            assert deleted.topics[0].partitions[0].error_code == ErrorCode.none
            del expected[("events", 1)]
            assert fetch_all(client) == expected

        broker.kill()  # SIGKILL: the commits are in the page cache, not yet fsynced
        broker.start()
        with RawClient(broker.bootstrap) as client:
            assert fetch_all(client) == expected
    finally:
        broker.stop()
