"""CreateTopics, DeleteTopics and Metadata answers as Kafka gives them, and pipelining."""

from __future__ import annotations

import datetime
import io

from kio.schema.create_topics.v7 import request as ct
from kio.schema.delete_topics.v6 import request as dt
from kio.schema.errors import ErrorCode
from kio.schema.metadata.v12 import request as md
from kio.serial import entity_writer
from kpy_process import KpyProcess
from rawclient import RawClient
from requests_v import create_topic, fetch, find_group_coordinator, list_offsets, metadata


def create(c: RawClient, *topics: ct.CreatableTopic, validate_only: bool = False) -> list:
    resp = c.request(
        ct.CreateTopicsRequest(
            topics=topics, timeout=datetime.timedelta(seconds=5), validate_only=validate_only
        )
    )
    return list(resp.topics)


def topic(name: str, partitions: int = -1, rf: int = -1, **configs: str) -> ct.CreatableTopic:
    return ct.CreatableTopic(
        name=name,
        num_partitions=partitions,
        replication_factor=rf,
        assignments=(),
        configs=tuple(
            ct.CreatableTopicConfig(name=k.replace("_", "."), value=v) for k, v in configs.items()
        ),
    )


def test_create_topics_checks(kpy: KpyProcess) -> None:
    with RawClient(kpy.bootstrap) as c:
        ok = create_topic(c, "a.b", 2)
        assert ok.error_code == ErrorCode.none and ok.num_partitions == 2
        assert ok.replication_factor == 1 and ok.topic_id is not None
        assert {cfg.name for cfg in ok.configs} >= {"segment.bytes", "max.message.bytes"}
        cases = {
            "a.b": ErrorCode.topic_already_exists,
            "a_b": ErrorCode.invalid_topic_exception,  # collides with a.b
            "bad/name": ErrorCode.invalid_topic_exception,
        }
        for name, error in cases.items():
            assert create_topic(c, name).error_code == error, name
        (r,) = create(c, topic("rf3", 1, 3))
        assert r.error_code == ErrorCode.invalid_replication_factor
        assert r.error_message.startswith("Unable to replicate the partition 3 time(s)")
        (r,) = create(c, topic("zero", 0))
        assert r.error_code == ErrorCode.invalid_partitions
        (r,) = create(c, topic("cfg", 1, nope_config="1"))
        assert r.error_code == ErrorCode.invalid_config
        results = create(c, topic("dup"), topic("dup"), topic("single"))
        assert [(x.name, x.error_code) for x in results] == [
            ("dup", ErrorCode.invalid_request),
            ("single", ErrorCode.none),
        ]
        (r,) = create(c, topic("checked", 4, segment_bytes="1048576"), validate_only=True)
        assert r.error_code == ErrorCode.none and r.num_partitions == 4
        assert dict((cfg.name, cfg.value) for cfg in r.configs)["segment.bytes"] == "1048576"
        everything = c.request(
            md.MetadataRequest(
                topics=None,
                allow_auto_topic_creation=False,
                include_topic_authorized_operations=False,
            )
        )
        # No internal topic before a group needs one (as in Kafka); then it is listed too.
        names = {t.name: t.is_internal for t in everything.topics}
        assert names == {"a.b": False, "single": False}
        assert find_group_coordinator(c).error_code == ErrorCode.none
        everything = c.request(
            md.MetadataRequest(
                topics=None,
                allow_auto_topic_creation=False,
                include_topic_authorized_operations=False,
            )
        )
        names = {t.name: t.is_internal for t in everything.topics}
        assert names == {"a.b": False, "single": False, "__consumer_offsets": True}


def test_metadata_topic_ids_are_stable_across_restart(kpy: KpyProcess) -> None:
    with RawClient(kpy.bootstrap) as c:
        first = metadata(c, "stable").topics[0]
        assert first.error_code == ErrorCode.none and first.topic_id is not None
        assert metadata(c, "missing", auto_create=False).topics[0].error_code == (
            ErrorCode.unknown_topic_or_partition
        )
    kpy.restart()
    with RawClient(kpy.bootstrap) as c:
        again = metadata(c, "stable").topics[0]
        assert again.topic_id == first.topic_id
        assert [p.leader_epoch for p in again.partitions] == [0]


def test_delete_topics(kpy: KpyProcess) -> None:
    with RawClient(kpy.bootstrap) as c:
        tid = create_topic(c, "doomed", 2).topic_id
        resp = c.request(
            dt.DeleteTopicsRequest(
                topics=(
                    dt.DeleteTopicState(name=None, topic_id=tid),
                    dt.DeleteTopicState(name="never-there", topic_id=None),
                ),
                timeout=datetime.timedelta(seconds=5),
            )
        )
        assert [(r.name, r.error_code) for r in resp.responses] == [
            ("doomed", ErrorCode.none),
            ("never-there", ErrorCode.unknown_topic_or_partition),
        ]
        part = fetch(c, [("doomed", 0, 0, 1000)]).responses[0].partitions[0]
        assert part.error_code == ErrorCode.unknown_topic_or_partition
        # The name can be used again, with a new id.
        again = create_topic(c, "doomed", 1)
        assert again.error_code == ErrorCode.none and again.topic_id != tid


def test_delete_disabled(kpy_factory: object) -> None:
    kpy: KpyProcess = kpy_factory({"delete.topic.enable": "false"})  # type: ignore[operator]
    with RawClient(kpy.bootstrap) as c:
        create_topic(c, "kept")
        resp = c.request(
            dt.DeleteTopicsRequest(
                topics=(dt.DeleteTopicState(name="kept", topic_id=None),),
                timeout=datetime.timedelta(seconds=5),
            )
        )
        assert resp.responses[0].error_code == ErrorCode.topic_deletion_disabled


def test_list_offsets_special_timestamp_needs_its_version(kpy: KpyProcess) -> None:
    with RawClient(kpy.bootstrap) as c:
        create_topic(c, "lv")
        # -5 (latest tiered) arrived in v9; the helper sends v7.
        assert list_offsets(c, "lv", 0, -5).error_code == ErrorCode.unsupported_version
        assert list_offsets(c, "lv", 0, -3).error_code == ErrorCode.none


def test_pipelined_requests_are_answered_in_order_without_waiting_on_a_fetch(
    kpy: KpyProcess,
) -> None:
    with RawClient(kpy.bootstrap) as c:
        create_topic(c, "pipe")
        frames = []
        for _ in range(3):
            req = md.MetadataRequest(
                topics=(md.MetadataRequestTopic(topic_id=None, name="pipe"),),
                allow_auto_topic_creation=False,
                include_topic_authorized_operations=False,
            )
            buf = io.BytesIO()
            entity_writer(type(req))(buf, req)
            frames.append(c.frame(3, 12, buf.getvalue()))
        first = c.correlation_id - 2
        c.send_bytes(b"".join(frames))
        fetch(c, [("pipe", 0, 0, 1000)], max_wait_ms=60_000, min_bytes=1, send_only=True)
        # The three Metadata answers arrive, in order, while the Fetch still waits.
        c.sock.settimeout(20)
        got = [int.from_bytes(c.recv_frame()[:4], "big") for _ in range(3)]
        assert got == [first, first + 1, first + 2]
