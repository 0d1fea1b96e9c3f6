"""DescribeCluster, DescribeTopicPartitions, DescribeLogDirs, ListPartitionReassignments and
ElectLeaders over raw requests: every field and error code as Kafka answers them."""

from __future__ import annotations

from pathlib import Path

from kio.schema.errors import ErrorCode
from kpy_process import KpyProcess
from rawclient import RawClient
from requests_v import (
    create_topic,
    describe_cluster,
    describe_log_dirs,
    describe_topic_partitions,
    elect_leaders,
    find_group_coordinator,
    list_partition_reassignments,
    metadata,
    produce,
)

from kpy.protocol.records import build_batch

NODE_ID = 1
NOT_REQUESTED = -2147483648
# AclOperation codes: CREATE 5, ALTER 7, DESCRIBE 8, CLUSTER_ACTION 9, DESCRIBE_CONFIGS 10,
# ALTER_CONFIGS 11, IDEMPOTENT_WRITE 12 for the cluster; READ 3, WRITE 4, CREATE 5, DELETE 6,
# ALTER 7, DESCRIBE 8, DESCRIBE_CONFIGS 10, ALTER_CONFIGS 11 for a topic.
CLUSTER_OPERATIONS = sum(1 << code for code in (5, 7, 8, 9, 10, 11, 12))
TOPIC_OPERATIONS = sum(1 << code for code in (3, 4, 5, 6, 7, 8, 10, 11))


def meta_cluster_id(data_dir: Path) -> str:
    for line in (data_dir / "meta.properties").read_text().splitlines():
        if line.startswith("cluster.id="):
            return line.split("=", 1)[1]
    raise AssertionError("no cluster.id in meta.properties")


def test_describe_cluster(kpy: KpyProcess) -> None:
    cluster_id = meta_cluster_id(kpy.data_dir)
    with RawClient(kpy.bootstrap) as c:
        for version in (0, 1, 2):
            r = describe_cluster(c, version)
            assert r.error_code == ErrorCode.none and r.error_message is None
            assert r.cluster_id == cluster_id
            assert r.controller_id == NODE_ID
            assert [(b.broker_id, b.host, b.port, b.rack) for b in r.brokers] == [
                (NODE_ID, "127.0.0.1", kpy.port, None)
            ]
            assert r.cluster_authorized_operations == NOT_REQUESTED
            if version >= 1:
                assert r.endpoint_type == 1
            if version >= 2:
                assert r.brokers[0].is_fenced is False
        # Without an authorizer Kafka grants, and reports, every cluster operation.
        assert describe_cluster(c, operations=True).cluster_authorized_operations == (
            CLUSTER_OPERATIONS
        )

        controllers = describe_cluster(c, 1, endpoint_type=2)
        assert controllers.error_code == ErrorCode.mismatched_endpoint_type
        assert controllers.error_message == (
            "The request was sent to an endpoint of type BROKER, but we wanted an endpoint of "
            "type CONTROLLER"
        )
        assert controllers.brokers == () and controllers.controller_id == -1
        unknown = describe_cluster(c, 2, endpoint_type=3)
        assert unknown.error_code == ErrorCode.unsupported_endpoint_type
        assert unknown.error_message == "Unsupported endpoint type 3"


def partitions_of(topic: object) -> list[int]:
    return [p.partition_index for p in topic.partitions]  # type: ignore[attr-defined]


def test_describe_topic_partitions_fields(kpy: KpyProcess) -> None:
    with RawClient(kpy.bootstrap) as c:
        find_group_coordinator(c)  # a group's lookup makes __consumer_offsets
        ids = {name: create_topic(c, name, n).topic_id for name, n in (("a", 3), ("b", 2))}
        r = describe_topic_partitions(c, ["b", "missing", "a", "bad/name", "a"])
        assert r.next_cursor is None
        # Deduplicated, in name order; unknown topics with no id and no partitions.
        assert [(t.name, t.error_code) for t in r.topics] == [
            ("a", ErrorCode.none),
            ("b", ErrorCode.none),
            ("bad/name", ErrorCode.invalid_topic_exception),
            ("missing", ErrorCode.unknown_topic_or_partition),
        ]
        a, b, bad, missing = r.topics
        assert (a.topic_id, b.topic_id) == (ids["a"], ids["b"])
        assert missing.topic_id is None and missing.partitions == () and bad.partitions == ()
        assert [t.topic_authorized_operations for t in r.topics] == [TOPIC_OPERATIONS] * 4
        assert not a.is_internal
        assert partitions_of(a) == [0, 1, 2] and partitions_of(b) == [0, 1]
        for p in a.partitions + b.partitions:
            assert p.error_code == ErrorCode.none
            assert (p.leader_id, p.leader_epoch) == (NODE_ID, 0)
            assert p.replica_nodes == (NODE_ID,) and p.isr_nodes == (NODE_ID,)
            assert p.eligible_leader_replicas == () and p.last_known_elr == ()
            assert p.offline_replicas == ()
        # The same ids and epochs as Metadata reports.
        md = {t.name: t for t in metadata(c, "a", "b").topics}
        assert md["a"].topic_id == a.topic_id
        assert {p.leader_epoch for p in md["a"].partitions} == {0}

        # An empty list: every topic, the group coordinator's internal one included.
        everything = describe_topic_partitions(c, [])
        names = [t.name for t in everything.topics]
        assert names == ["__consumer_offsets", "a", "b"]
        offsets = everything.topics[0]
        assert offsets.is_internal and len(offsets.partitions) == 50
        assert everything.next_cursor is None


def test_describe_topic_partitions_pages(kpy: KpyProcess) -> None:
    with RawClient(kpy.bootstrap) as c:
        find_group_coordinator(c)  # a group's lookup makes __consumer_offsets
        for name, n in (("a", 3), ("b", 2), ("c", 1)):
            create_topic(c, name, n)
        names = ["a", "b", "c", "missing"]
        # A topic that does not fit ends the page; the cursor names its first partition left out.
        first = describe_topic_partitions(c, names, limit=4)
        assert [(t.name, partitions_of(t)) for t in first.topics] == [("a", [0, 1, 2]), ("b", [0])]
        assert (first.next_cursor.topic_name, first.next_cursor.partition_index) == ("b", 1)
        # From the cursor: topics before it are left out, its topic starts at its partition.
        rest = describe_topic_partitions(c, names, limit=4, cursor=("b", 1))
        assert [(t.name, partitions_of(t)) for t in rest.topics] == [
            ("b", [1]),
            ("c", [0]),
            ("missing", []),
        ]
        assert rest.next_cursor is None
        # A page filled exactly at a topic's end points at the next topic, partition 0.
        exact = describe_topic_partitions(c, ["a", "b"], limit=3)
        assert [t.name for t in exact.topics] == ["a"]
        assert (exact.next_cursor.topic_name, exact.next_cursor.partition_index) == ("b", 0)
        # A cursor past a topic's partitions: the topic with none; a limit below 1 counts as 1.
        past = describe_topic_partitions(c, ["a", "c"], limit=0, cursor=("a", 7))
        assert [(t.name, partitions_of(t)) for t in past.topics] == [("a", []), ("c", [0])]

        # Paging through every topic one partition at a time visits each partition once.
        seen: list[tuple[str, int]] = []
        cursor: tuple[str, int] | None = None
        while True:
            page = describe_topic_partitions(c, [], limit=1, cursor=cursor)
            seen += [(t.name, p) for t in page.topics for p in partitions_of(t)]
            if page.next_cursor is None:
                break
            cursor = (page.next_cursor.topic_name, page.next_cursor.partition_index)
        expected = [("__consumer_offsets", p) for p in range(50)]
        expected += [("a", 0), ("a", 1), ("a", 2), ("b", 0), ("b", 1), ("c", 0)]
        assert seen == expected

        # The cursor's topic must be among those named, and its partition not negative.
        for bad_cursor in (("zzz", 0), ("a", -1)):
            r = describe_topic_partitions(c, ["a", "b"], cursor=bad_cursor)
            assert [(t.name, t.error_code) for t in r.topics] == [
                ("a", ErrorCode.invalid_request),
                ("b", ErrorCode.invalid_request),
            ]


def test_describe_topic_partitions_broker_limit(kpy_factory: object) -> None:
    kpy: KpyProcess = kpy_factory({"max.request.partition.size.limit": "2"})  # type: ignore[operator]
    with RawClient(kpy.bootstrap) as c:
        create_topic(c, "wide", 5)
        r = describe_topic_partitions(c, ["wide"], limit=2000)
        assert partitions_of(r.topics[0]) == [0, 1]
        assert (r.next_cursor.topic_name, r.next_cursor.partition_index) == ("wide", 2)


def segment_bytes(data_dir: Path, topic: str, partition: int) -> int:
    return sum(f.stat().st_size for f in (data_dir / f"{topic}-{partition}").glob("*.log"))


def test_describe_log_dirs(kpy: KpyProcess) -> None:
    with RawClient(kpy.bootstrap) as c:
        find_group_coordinator(c)  # a group's lookup makes __consumer_offsets
        create_topic(c, "sized", 2)
        for i in range(3):
            batch = build_batch([(b"k", b"v" * (100 * (i + 1)))])
            assert produce(c, "sized", batch).responses[0].partition_responses[0].error_code == 0
        log_dir = str(kpy.data_dir.absolute())

        r = describe_log_dirs(c, None)
        assert r.error_code == ErrorCode.none
        (result,) = r.results
        assert result.error_code == ErrorCode.none and result.log_dir == log_dir
        assert 0 < result.usable_bytes <= result.total_bytes
        topics = {t.name: t for t in result.topics}
        assert set(topics) == {"sized", "__consumer_offsets"}
        sized = {p.partition_index: p for p in topics["sized"].partitions}
        assert sized[0].partition_size == segment_bytes(kpy.data_dir, "sized", 0) > 600
        assert sized[1].partition_size == 0
        assert all(p.offset_lag == 0 and p.is_future_key is False for p in sized.values())
        assert len(topics["__consumer_offsets"].partitions) == 50

        # Named partitions: those not hosted are left out, and so is a topic left with none.
        r = describe_log_dirs(c, {"sized": [1, 9], "missing": [0]})
        assert [
            (t.name, [p.partition_index for p in t.partitions]) for t in r.results[0].topics
        ] == [("sized", [1])]
        # An empty list describes the directory and no partition.
        r = describe_log_dirs(c, {})
        assert r.results[0].log_dir == log_dir and r.results[0].topics == ()

        # v1: no top-level error code, no sizes of the file system.
        v1 = describe_log_dirs(c, {"sized": [0]}, version=1)
        assert not hasattr(v1, "error_code") and not hasattr(v1.results[0], "total_bytes")
        assert v1.results[0].topics[0].partitions[0].partition_size == sized[0].partition_size


def test_list_partition_reassignments(kpy: KpyProcess) -> None:
    with RawClient(kpy.bootstrap) as c:
        create_topic(c, "stay", 2)
        for topics in (None, {"stay": [0, 1, 5], "missing": [0]}):
            r = list_partition_reassignments(c, topics)
            assert (r.error_code, r.error_message, r.topics) == (ErrorCode.none, None, ())


def test_elect_leaders(kpy: KpyProcess) -> None:
    not_needed = "Leader election not needed for topic partition."
    with RawClient(kpy.bootstrap) as c:
        find_group_coordinator(c)  # a group's lookup makes __consumer_offsets
        create_topic(c, "elect", 2)
        for election_type in (0, 1):  # preferred, unclean
            r = elect_leaders(c, {"elect": [0, 1, 7], "missing": [0]}, election_type=election_type)
            assert r.error_code == ErrorCode.none
            got = [
                (t.topic, p.partition_id, p.error_code, p.error_message)
                for t in r.replica_election_results
                for p in t.partition_result
            ]
            assert got == [
                ("elect", 0, ErrorCode.election_not_needed, not_needed),
                ("elect", 1, ErrorCode.election_not_needed, not_needed),
                ("elect", 7, ErrorCode.unknown_topic_or_partition, "No such partition as elect-7"),
                ("missing", 0, ErrorCode.unknown_topic_or_partition, "No such topic as missing"),
            ]
        # Every partition: each topic is listed, without the partitions that needed no election.
        r = elect_leaders(c, None)
        assert [(t.topic, t.partition_result) for t in r.replica_election_results] == [
            ("__consumer_offsets", ()),
            ("elect", ()),
        ]
        # An election type Kafka does not know fails the request and every partition in it.
        r = elect_leaders(c, {"elect": [0]}, election_type=2)
        assert r.error_code == ErrorCode.invalid_request
        (p,) = r.replica_election_results[0].partition_result
        assert (p.error_code, p.error_message) == (
            ErrorCode.invalid_request,
            "Unknown election type 2",
        )
        # v0 names no election type: a preferred election.
        v0 = elect_leaders(c, {"elect": [1]}, version=0)
        assert v0.replica_election_results[0].partition_result[0].error_code == (
            ErrorCode.election_not_needed
        )
