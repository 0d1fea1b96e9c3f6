"""Describing groups that are not of the kind asked about. DescribeGroups, before and from v6
(KIP-1043): an unknown group and a KIP-848 consumer group answer GROUP_ID_NOT_FOUND with a message
from v6 and a bare "Dead" before it; a group known only by its committed offsets is "Empty" in
every version. ConsumerGroupDescribe: GROUP_ID_NOT_FOUND with Kafka's message for an unknown group
and for a classic one.

kafka-consumer-groups 4.x --describe relies on this: it falls back from ConsumerGroupDescribe to
DescribeGroups v6 and, for a group in neither, prints ConsumerGroupDescribe's message.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from kio.schema.consumer_group_describe.v1 import request as cgd
from kio.schema.consumer_group_heartbeat.v0 import request as hb
from kio.schema.describe_groups.v5 import request as dg5
from kio.schema.describe_groups.v6 import request as dg6
from kio.schema.errors import ErrorCode
from kio.schema.offset_commit.v9 import request as oc
from kio.static.primitive import i32, i64
from kpy_process import KpyProcess
from rawclient import RawClient
from requests_v import create_topic


def describe(client: RawClient, group: str, version: int) -> Any:
    mod = dg6 if version == 6 else dg5
    response = client.request(
        mod.DescribeGroupsRequest(groups=(group,), include_authorized_operations=False)
    )
    (described,) = response.groups
    return described


def describe_consumer_group(client: RawClient, group: str) -> Any:
    response = client.request(
        cgd.ConsumerGroupDescribeRequest(group_ids=(group,), include_authorized_operations=False)
    )
    (described,) = response.groups
    return described


def commit_offset(client: RawClient, group: str, topic: str) -> None:
    response = client.request(
        oc.OffsetCommitRequest(
            group_id=group,
            generation_id_or_member_epoch=i32(-1),
            member_id="",
            group_instance_id=None,
            topics=(
                oc.OffsetCommitRequestTopic(
                    name=topic,
                    partitions=(
                        oc.OffsetCommitRequestPartition(
                            partition_index=i32(0),
                            committed_offset=i64(3),
                            committed_leader_epoch=i32(-1),
                            committed_metadata="",
                        ),
                    ),
                ),
            ),
        )
    )
    assert response.topics[0].partitions[0].error_code == ErrorCode.none


def join_kip848(client: RawClient, group: str, topic: str) -> None:
    response = client.request(
        hb.ConsumerGroupHeartbeatRequest(
            group_id=group,
            member_id="",
            member_epoch=i32(0),
            instance_id=None,
            rack_id=None,
            rebalance_timeout=timedelta(seconds=30),
            subscribed_topic_names=(topic,),
            server_assignor=None,
            topic_partitions=(),
        )
    )
    assert response.error_code == ErrorCode.none, response


def test_unknown_group(kpy: KpyProcess) -> None:
    with RawClient(kpy.bootstrap) as client:
        old = describe(client, "nope", 5)
        assert (old.error_code, old.group_state) == (ErrorCode.none, "Dead")
        new = describe(client, "nope", 6)
        assert (new.error_code, new.group_state) == (ErrorCode.group_id_not_found, "Dead")
        assert new.error_message == "Group nope not found."
        assert new.members == ()
        modern = describe_consumer_group(client, "nope")
        assert modern.error_code == ErrorCode.group_id_not_found
        assert modern.error_message == "Group nope not found."


def test_kip848_group_is_not_classic(kpy: KpyProcess) -> None:
    with RawClient(kpy.bootstrap) as client:
        create_topic(client, "t848")
        join_kip848(client, "modern", "t848")
        old = describe(client, "modern", 5)
        assert (old.error_code, old.group_state) == (ErrorCode.none, "Dead")
        new = describe(client, "modern", 6)
        assert new.error_code == ErrorCode.group_id_not_found
        assert new.error_message == "Group modern is not a classic group."


def test_group_with_only_committed_offsets_is_empty(kpy: KpyProcess) -> None:
    with RawClient(kpy.bootstrap) as client:
        create_topic(client, "simple")
        commit_offset(client, "committer", "simple")
        for version in (5, 6):
            described = describe(client, "committer", version)
            assert (described.error_code, described.group_state) == (ErrorCode.none, "Empty")
            assert getattr(described, "error_message", None) is None
        modern = describe_consumer_group(client, "committer")
        assert modern.error_code == ErrorCode.group_id_not_found
        assert modern.error_message == "Group committer is not a consumer group"
