"""ACLs over the wire: DescribeAcls, CreateAcls and DeleteAcls (every version), and each API's
denial code when an ACL denies the client (User:ANONYMOUS, over PLAINTEXT), through raw requests
to a real kpy (in this process, on a real socket).

The brokers run the StandardAuthorizer with allow.everyone.if.no.acl.found=true, so everything
is allowed until a test adds ACLs. As in Kafka, a resource with any ACL denies what no ACL
allows, so a test that means to deny one operation on a resource ALLOWs ALL there first (DENY
wins over it); a lone DENY denies every operation on its resource (tested here too). Kafka's rules
themselves are tested in test_acl.py; the stock tools and the Python clients against kpy and
Apache Kafka in tests/compat/test_acls.py.
"""

from __future__ import annotations

import datetime
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from acl_requests import (
    ANON,
    CLUSTER,
    acl,
    create_acls,
    delete_acls,
    deny,
    deny_on_cluster,
    describe_acls,
    described,
    filter_fields,
)
from kio.schema.errors import ErrorCode
from kpy_process import KpyProcess
from rawclient import RawClient
from requests_v import (
    build,
    create_topic,
    describe_cluster,
    describe_log_dirs,
    describe_topic_partitions,
    elect_leaders,
    fetch,
    list_offsets,
    list_partition_reassignments,
    metadata,
    produce,
)

import kpy
from kpy.acl import STANDARD_AUTHORIZER, AclOperation, AclPermissionType, PatternType, ResourceType
from kpy.protocol.records import TRANSACTIONAL_MASK, build_batch

Op, Res, Perm, Pat = AclOperation, ResourceType, AclPermissionType, PatternType
E = ErrorCode
ZERO_UUID = uuid.UUID(int=0)
TOPIC_OPS = sum(1 << op for op in (3, 4, 5, 6, 7, 8, 10, 11))


@contextmanager
def acl_broker(**settings: str) -> Iterator[RawClient]:
    """A broker with the authorizer on (allowing what no ACL covers) and a client of it."""
    config = {
        "authorizer.class.name": STANDARD_AUTHORIZER,
        "allow.everyone.if.no.acl.found": "true",
        **{k.replace("_", "."): v for k, v in settings.items()},
    }
    with (
        kpy.Broker(in_memory=True, config=config) as broker,
        RawClient(broker.bootstrap_servers) as client,
    ):
        yield client


@pytest.fixture
def c() -> Iterator[RawClient]:
    with acl_broker() as client:
        yield client


# --- DescribeAcls, CreateAcls, DeleteAcls ---------------------------------------------------


def test_acl_apis_without_an_authorizer_are_security_disabled() -> None:
    with kpy.Broker(in_memory=True) as broker, RawClient(broker.bootstrap_servers) as client:
        for version in range(4):
            made = create_acls(client, acl(Res.TOPIC, "t", Op.READ), version=version)
            assert made == [(E.security_disabled, "No Authorizer is configured.")]
            listed = describe_acls(client, version)
            assert listed.error_code == E.security_disabled
            assert listed.error_message == "No Authorizer is configured on the broker"
            assert listed.resources == ()
            gone = delete_acls(client, filter_fields(version=version), version=version)
            assert [(r.error_code, r.error_message) for r in gone.filter_results] == [
                (E.security_disabled, "No Authorizer is configured.")
            ]


def test_create_describe_delete_round_trip(c: RawClient) -> None:
    made = [
        acl(Res.TOPIC, "orders", Op.READ, Perm.ALLOW, principal="User:alice"),
        acl(Res.TOPIC, "pay", Op.WRITE, pattern=Pat.PREFIXED, host="10.0.0.1"),
        acl(Res.TOPIC, "*", Op.DESCRIBE, Perm.ALLOW, principal="User:*"),
        acl(Res.GROUP, "g", Op.ALL, Perm.ALLOW),
        acl(Res.CLUSTER, CLUSTER, Op.ALL, Perm.ALLOW),
        acl(Res.TRANSACTIONAL_ID, "tx", Op.WRITE, Perm.ALLOW),
        acl(Res.USER, "User:bob", Op.CREATE_TOKENS, Perm.ALLOW),
        acl(Res.DELEGATION_TOKEN, "token", Op.DESCRIBE, Perm.ALLOW),
    ]
    deny(c, *made)
    deny(c, made[0])  # an ACL that exists already is no error
    assert described(describe_acls(c)) == set(made)
    assert described(describe_acls(c, resource_type=Res.TOPIC, pattern=Pat.LITERAL)) == {
        made[0],
        made[2],
    }
    # MATCH: every ACL whose pattern covers the name given.
    match = describe_acls(c, resource_type=Res.TOPIC, name="payments", pattern=Pat.MATCH)
    assert described(match) == {made[1], made[2]}
    assert described(describe_acls(c, principal="User:alice")) == {made[0]}
    assert described(describe_acls(c, host="10.0.0.1", operation=Op.WRITE)) == {made[1]}
    for version in (1, 2):
        assert described(describe_acls(c, version)) == set(made)

    gone = delete_acls(c, filter_fields(Res.TOPIC, "orders"), filter_fields(Res.GROUP))
    assert [len(r.matching_acls) for r in gone.filter_results] == [1, 1]
    deleted = gone.filter_results[0].matching_acls[0]
    assert (deleted.error_code, deleted.resource_name, deleted.principal) == (
        E.none,
        "orders",
        "User:alice",
    )
    assert described(describe_acls(c)) == set(made) - {made[0], made[3]}
    assert delete_acls(c, filter_fields(Res.TOPIC, "nothing")).filter_results[0].matching_acls == ()


def test_version_0_knows_literal_patterns_only(c: RawClient) -> None:
    deny(c, acl(Res.TOPIC, "lit", Op.READ), acl(Res.TOPIC, "pre", Op.READ, pattern=Pat.PREFIXED))
    assert create_acls(c, acl(Res.TOPIC, "v0", Op.WRITE), version=0) == [(E.none, "")]
    assert described(describe_acls(c, 0)) == {
        acl(Res.TOPIC, "lit", Op.READ),
        acl(Res.TOPIC, "v0", Op.WRITE),
    }
    gone = delete_acls(c, filter_fields(version=0), version=0).filter_results[0]
    assert {a.resource_name for a in gone.matching_acls} == {"lit", "v0"}
    assert described(describe_acls(c)) == {acl(Res.TOPIC, "pre", Op.READ, pattern=Pat.PREFIXED)}


def test_create_acls_refusals(c: RawClient) -> None:
    invalid = E.invalid_request
    results = create_acls(
        c,
        acl(Res.CLUSTER, "my-cluster", Op.ALTER),
        acl(Res.TOPIC, "", Op.READ),
        acl(Res.TOPIC, "t", Op.READ, principal="alice"),
        acl(Res.TOPIC, "t", Op.READ),
    )
    assert results == [
        (invalid, "The only valid name for the CLUSTER resource is kafka-cluster"),
        (invalid, "Invalid empty resource name"),
        (
            invalid,
            "Could not parse principal from `alice` (no colon is present separating the "
            "principal type from the principal name)",
        ),
        (E.none, ""),
    ]
    # A code Kafka does not know (not 0) is UNKNOWN to it: INVALID_REQUEST for that one.
    odd = (Res.TOPIC, "t", Pat.LITERAL, ANON, "*", 99, Perm.DENY)
    assert create_acls(c, odd) == [(invalid, "Invalid operation UNKNOWN")]  # type: ignore[arg-type]
    # A filter's ANY or MATCH in a creation fails the whole request, as Kafka's AclBinding throws.
    any_pattern = acl(Res.TOPIC, "t", Op.WRITE, pattern=Pat.MATCH)
    assert (
        create_acls(c, acl(Res.TOPIC, "u", Op.READ), any_pattern)
        == [(E.unknown_server_error, None)] * 2
    )
    assert described(describe_acls(c)) == {acl(Res.TOPIC, "t", Op.READ)}
    # DeleteAcls: a code Kafka does not know is INVALID_REQUEST for its filter.
    gone = delete_acls(c, filter_fields(resource_type=99))  # type: ignore[arg-type]
    assert (gone.filter_results[0].error_code, gone.filter_results[0].error_message) == (
        invalid,
        "Unknown patternFilter.",
    )


@pytest.mark.parametrize("api", ["create", "describe", "delete"])
def test_unknown_codes_close_the_connection(c: RawClient, api: str) -> None:
    """An UNKNOWN (0) code does not parse in Kafka: the connection closes."""
    zero: Any = 0
    if api == "create":
        c.send(
            build(
                "create_acls",
                3,
                "CreateAclsRequest",
                creations=(
                    build(
                        "create_acls",
                        3,
                        "AclCreation",
                        resource_type=zero,
                        resource_name="t",
                        resource_pattern_type=Pat.LITERAL,
                        principal=ANON,
                        host="*",
                        operation=Op.READ,
                        permission_type=Perm.DENY,
                    ),
                ),
            )
        )
    elif api == "describe":
        c.send(build("describe_acls", 3, "DescribeAclsRequest", **filter_fields(operation=zero)))
    else:
        flt = build("delete_acls", 3, "DeleteAclsFilter", **filter_fields(pattern=zero))
        c.send(build("delete_acls", 3, "DeleteAclsRequest", filters=(flt,)))
    assert c.is_closed_by_peer()


def test_acl_apis_need_cluster_permissions(c: RawClient) -> None:
    deny_on_cluster(c, Op.DESCRIBE)
    assert describe_acls(c).error_code == E.cluster_authorization_failed
    assert create_acls(c, acl(Res.TOPIC, "t", Op.READ)) == [(E.none, "")]
    # ALTER denied: neither create nor delete (and the DENY itself cannot be removed).
    deny(c, acl(Res.CLUSTER, CLUSTER, Op.ALTER))
    assert create_acls(c, acl(Res.TOPIC, "u", Op.READ)) == [(E.cluster_authorization_failed, None)]
    gone = delete_acls(c, filter_fields())
    assert gone.filter_results[0].error_code == E.cluster_authorization_failed


def test_super_users_and_the_default() -> None:
    with acl_broker(super_users="User:ANONYMOUS") as c:
        deny(c, acl(Res.TOPIC, "*", Op.ALL), acl(Res.CLUSTER, CLUSTER, Op.ALL))
        assert create_topic(c, "t").error_code == E.none
        assert metadata(c, "t").topics[0].error_code == E.none
        assert len(described(describe_acls(c))) == 2
    with acl_broker(allow_everyone_if_no_acl_found="false") as c:
        # No ACL allows anything, and the cluster has none to allow ALTER: nothing goes.
        assert metadata(c, "t").topics[0].error_code == E.topic_authorization_failed
        assert create_acls(c, acl(Res.TOPIC, "t", Op.READ)) == [
            (E.cluster_authorization_failed, None)
        ]


# --- Produce, Fetch, ListOffsets, Metadata ----------------------------------------------------


def test_produce_fetch_list_offsets(c: RawClient) -> None:
    create_topic(c, "open")
    create_topic(c, "closed")
    create_topic(c, "readonly")
    deny(
        c,
        acl(Res.TOPIC, "closed", Op.WRITE),
        acl(Res.TOPIC, "closed", Op.READ),
        acl(Res.TOPIC, "readonly", Op.ALL, Perm.ALLOW),
        acl(Res.TOPIC, "readonly", Op.WRITE),
    )
    batch = build_batch([(b"k", b"v")])
    ok = produce(c, "open", batch).responses[0].partition_responses[0]
    assert ok.error_code == E.none
    denied = produce(c, "closed", batch).responses[0].partition_responses[0]
    assert denied.error_code == E.topic_authorization_failed
    # Before whether the topic exists.
    missing = produce(c, "nowhere-closed", batch).responses[0].partition_responses[0]
    assert missing.error_code == E.unknown_topic_or_partition
    deny(c, acl(Res.TOPIC, "nowhere", Op.WRITE, pattern=Pat.PREFIXED))
    denied = produce(c, "nowhere-x", batch).responses[0].partition_responses[0]
    assert denied.error_code == E.topic_authorization_failed

    readonly = produce(c, "readonly", batch).responses[0].partition_responses[0]
    assert readonly.error_code == E.topic_authorization_failed

    parts = [("open", 0, 0, 1 << 20), ("closed", 0, 0, 1 << 20), ("readonly", 0, 0, 1 << 20)]
    errors = {t.topic: t.partitions[0].error_code for t in fetch(c, parts).responses}
    assert errors == {
        "open": E.none,
        "closed": E.topic_authorization_failed,
        "readonly": E.none,
    }
    assert list_offsets(c, "open", 0, -1).error_code == E.none
    assert list_offsets(c, "readonly", 0, -1).error_code == E.none  # ALL grants DESCRIBE
    # No ACL of "closed" allows DESCRIBE, and it has ACLs: denied, as every operation there.
    assert list_offsets(c, "closed", 0, -1).error_code == E.topic_authorization_failed


def test_transactional_produce_needs_the_transactional_id(c: RawClient) -> None:
    create_topic(c, "t")
    deny(c, acl(Res.TRANSACTIONAL_ID, "tx", Op.WRITE))
    batch = build_batch(
        [(b"k", b"v")],
        producer_id=1,
        producer_epoch=0,
        base_sequence=0,
        attributes=TRANSACTIONAL_MASK,
    )
    m = "produce"
    request = build(
        m,
        9,
        "ProduceRequest",
        transactional_id="tx",
        acks=-1,
        topic_data=(
            build(
                m,
                9,
                "TopicProduceData",
                name="t",
                partition_data=(build(m, 9, "PartitionProduceData", index=0, records=batch),),
            ),
        ),
    )
    part = c.request(request).responses[0].partition_responses[0]
    assert part.error_code == E.transactional_id_authorization_failed


def test_metadata(c: RawClient) -> None:
    create_topic(c, "seen")
    hidden = create_topic(c, "hidden")
    deny(c, acl(Res.TOPIC, "hidden", Op.DESCRIBE))
    everything = metadata_request(c, None)
    names = {t.name for t in everything.topics}
    assert "seen" in names and "hidden" not in names
    named = {t.name: t for t in metadata(c, "seen", "hidden").topics}
    assert named["seen"].error_code == E.none
    assert named["hidden"].error_code == E.topic_authorization_failed
    assert named["hidden"].topic_id in (None, ZERO_UUID)  # kio reads the zero id as None
    assert named["hidden"].partitions == ()
    # By id: the id comes back, the name does not.
    by_id = metadata_request(c, [hidden.topic_id])
    assert by_id.topics[0].error_code == E.topic_authorization_failed
    assert by_id.topics[0].name is None and by_id.topics[0].topic_id == hidden.topic_id
    # Auto-creation needs CREATE on the cluster (allowed here by default: no ACL)...
    deny(
        c,
        acl(Res.TOPIC, "auto", Op.ALL, Perm.ALLOW, pattern=Pat.PREFIXED),
        acl(Res.TOPIC, "auto", Op.CREATE, pattern=Pat.PREFIXED),
    )
    assert metadata(c, "auto-1").topics[0].error_code == E.none
    # ... or on the topic.
    deny_on_cluster(c, Op.CREATE)
    assert metadata(c, "free-auto").topics[0].error_code == E.none  # no ACL: allowed
    refused = metadata(c, "auto-2").topics[0]
    assert (refused.error_code, refused.is_internal) == (E.topic_authorization_failed, False)
    assert refused.topic_id in (None, ZERO_UUID)
    assert metadata(c, "auto-2", auto_create=False).topics[0].error_code == (
        E.unknown_topic_or_partition
    )
    # Authorized operations: what the ACLs grant.
    deny(
        c,
        acl(Res.TOPIC, "seen", Op.ALL, Perm.ALLOW),
        acl(Res.TOPIC, "seen", Op.ALTER),
        acl(Res.TOPIC, "seen", Op.DELETE),
    )
    ops = metadata_request(c, ["seen"], topic_ops=True).topics[0].topic_authorized_operations
    assert ops == TOPIC_OPS & ~(1 << Op.ALTER) & ~(1 << Op.DELETE)
    cluster_ops = metadata_request(c, None, version=10, cluster_ops=True)
    assert cluster_ops.cluster_authorized_operations == sum(
        1 << op for op in (7, 8, 9, 10, 11, 12)
    )  # every cluster operation but CREATE


def metadata_request(
    c: RawClient,
    topics: list[Any] | None,
    *,
    version: int = 12,
    topic_ops: bool = False,
    cluster_ops: bool = False,
) -> Any:
    entries = None
    if topics is not None:
        entries = tuple(
            build("metadata", version, "MetadataRequestTopic", name=t, topic_id=None)
            if isinstance(t, str)
            else build("metadata", version, "MetadataRequestTopic", name=None, topic_id=t)
            for t in topics
        )
    fields: dict[str, Any] = {}
    if version <= 10:
        fields["include_cluster_authorized_operations"] = cluster_ops
    return c.request(
        build(
            "metadata",
            version,
            "MetadataRequest",
            topics=entries,
            allow_auto_topic_creation=False,
            include_topic_authorized_operations=topic_ops,
            **fields,
        )
    )


# --- Groups and offsets -------------------------------------------------------------------


def test_group_apis(c: RawClient) -> None:
    deny(c, acl(Res.GROUP, "g", Op.ALL, Perm.ALLOW), acl(Res.GROUP, "g", Op.READ))
    gaf = E.group_authorization_failed
    join = c.request(
        build("join_group", 9, "JoinGroupRequest", group_id="g", member_id="m", protocol_type="x")
    )
    assert (join.error_code, join.member_id, join.generation_id) == (gaf, "", -1)
    for api, name, extra in (
        ("heartbeat", "HeartbeatRequest", {}),
        ("leave_group", "LeaveGroupRequest", {}),
        ("sync_group", "SyncGroupRequest", {"protocol_type": "x", "protocol_name": "y"}),
    ):
        response = c.request(
            build(api, 4 if api != "sync_group" else 5, name, group_id="g", **extra)
        )
        assert response.error_code == gaf, api
    # SyncGroup v5 without its protocol type and name: Kafka answers that before authorizing.
    sync = c.request(build("sync_group", 5, "SyncGroupRequest", group_id="g"))
    assert sync.error_code == E.inconsistent_group_protocol
    # A DENY of READ does not deny DESCRIBE (a DENY implies nothing): ALL allows it.
    described_groups = c.request(
        build("describe_groups", 5, "DescribeGroupsRequest", groups=("g", "h"))
    ).groups
    assert [(g.group_id, g.error_code) for g in described_groups] == [("g", E.none), ("h", E.none)]
    deny(c, acl(Res.GROUP, "g", Op.DESCRIBE))
    described_groups = c.request(
        build(
            "describe_groups",
            5,
            "DescribeGroupsRequest",
            groups=("g", "h"),
            include_authorized_operations=True,
        )
    ).groups
    assert [g.error_code for g in described_groups] == [gaf, E.none]
    assert described_groups[1].authorized_operations == sum(1 << op for op in (3, 6, 8, 10, 11))

    find = c.request(build("find_coordinator", 3, "FindCoordinatorRequest", key="g", key_type=0))
    assert (find.error_code, find.error_message, find.node_id) == (
        gaf,
        "Group authorization failed.",
        -1,
    )
    find4 = c.request(
        build("find_coordinator", 4, "FindCoordinatorRequest", coordinator_keys=("g", "h"))
    )
    assert [(k.key, k.error_code) for k in find4.coordinators] == [("g", gaf), ("h", E.none)]

    deny(c, acl(Res.GROUP, "d", Op.DELETE))
    deleted = c.request(build("delete_groups", 2, "DeleteGroupsRequest", groups_names=("d",)))
    assert deleted.results[0].error_code == gaf
    consumer = c.request(
        build(
            "consumer_group_heartbeat",
            0,
            "ConsumerGroupHeartbeatRequest",
            group_id="g",
            member_epoch=0,
            rebalance_timeout=datetime.timedelta(seconds=5),
            subscribed_topic_names=("t",),
            topic_partitions=(),
        )
    )
    assert consumer.error_code == gaf
    cg_describe = c.request(
        build("consumer_group_describe", 0, "ConsumerGroupDescribeRequest", group_ids=("g",))
    )
    assert cg_describe.groups[0].error_code == gaf


def test_list_groups_shows_what_the_client_may_describe(c: RawClient) -> None:
    for group in ("a", "b"):
        commit(c, group, "t", 0, 1)
    create_topic(c, "t")
    for group in ("a", "b"):
        assert commit(c, group, "t", 0, 1) == E.none
    deny(c, acl(Res.GROUP, "b", Op.DESCRIBE))
    # DESCRIBE on the cluster (here by default: no ACL) lists every group.
    listed = c.request(build("list_groups", 4, "ListGroupsRequest", states_filter=()))
    assert [g.group_id for g in listed.groups] == ["a", "b"]
    deny_on_cluster(c, Op.DESCRIBE)
    listed = c.request(build("list_groups", 4, "ListGroupsRequest", states_filter=()))
    assert [g.group_id for g in listed.groups] == ["a"]
    delete_acls(c, filter_fields(Res.CLUSTER, permission=Perm.DENY))
    listed = c.request(build("list_groups", 4, "ListGroupsRequest", states_filter=()))
    assert [g.group_id for g in listed.groups] == ["a", "b"]


def commit(c: RawClient, group: str, topic: str, partition: int, offset: int) -> Any:
    m = "offset_commit"
    response = c.request(
        build(
            m,
            8,
            "OffsetCommitRequest",
            group_id=group,
            generation_id_or_member_epoch=-1,
            topics=(
                build(
                    m,
                    8,
                    "OffsetCommitRequestTopic",
                    name=topic,
                    partitions=(
                        build(
                            m,
                            8,
                            "OffsetCommitRequestPartition",
                            partition_index=partition,
                            committed_offset=offset,
                            committed_leader_epoch=-1,
                        ),
                    ),
                ),
            ),
        )
    )
    return response.topics[0].partitions[0].error_code


def offset_fetch(
    c: RawClient, version: int, group: str, topics: dict[str, list[int]] | None
) -> Any:
    m = "offset_fetch"
    if version >= 8:
        entries = None
        if topics is not None:
            entries = tuple(
                build(m, version, "OffsetFetchRequestTopics", name=t, partition_indexes=tuple(ps))
                for t, ps in topics.items()
            )
        return c.request(
            build(
                m,
                version,
                "OffsetFetchRequest",
                groups=(
                    build(m, version, "OffsetFetchRequestGroup", group_id=group, topics=entries),
                ),
            )
        )
    entries = None
    if topics is not None:
        entries = tuple(
            build(m, version, "OffsetFetchRequestTopic", name=t, partition_indexes=tuple(ps))
            for t, ps in topics.items()
        )
    return c.request(build(m, version, "OffsetFetchRequest", group_id=group, topics=entries))


def test_offset_commit_and_fetch(c: RawClient) -> None:
    create_topic(c, "t")
    create_topic(c, "secret")
    assert commit(c, "g", "t", 0, 5) == E.none
    assert commit(c, "g", "secret", 0, 7) == E.none
    deny(c, acl(Res.TOPIC, "secret", Op.READ), acl(Res.TOPIC, "secret", Op.DESCRIBE))
    assert commit(c, "g", "secret", 0, 8) == E.topic_authorization_failed
    assert commit(c, "g", "secret-missing", 0, 8) == E.unknown_topic_or_partition

    # Named: TOPIC_AUTHORIZATION_FAILED; all of the group's offsets: left out.
    group = offset_fetch(c, 8, "g", {"t": [0], "secret": [0]}).groups[0]
    answers = {
        t.name: (t.partitions[0].error_code, t.partitions[0].committed_offset) for t in group.topics
    }
    assert answers == {"t": (E.none, 5), "secret": (E.topic_authorization_failed, -1)}
    everything = offset_fetch(c, 8, "g", None).groups[0]
    assert [t.name for t in everything.topics] == ["t"]

    deny(c, acl(Res.GROUP, "g", Op.READ), acl(Res.GROUP, "g", Op.DESCRIBE))
    assert commit(c, "g", "t", 0, 6) == E.group_authorization_failed
    gaf = E.group_authorization_failed
    assert offset_fetch(c, 8, "g", {"t": [0]}).groups[0].error_code == gaf
    assert offset_fetch(c, 7, "g", {"t": [0]}).error_code == gaf  # v2-v7: at the top
    v1 = offset_fetch(c, 1, "g", {"t": [0]})  # v1: on each partition
    assert v1.topics[0].partitions[0].error_code == gaf


def test_offset_delete(c: RawClient) -> None:
    create_topic(c, "t")
    create_topic(c, "secret")
    assert commit(c, "g", "t", 0, 1) == E.none
    deny(c, acl(Res.TOPIC, "secret", Op.READ))
    m = "offset_delete"

    def delete(group: str) -> Any:
        return c.request(
            build(
                m,
                0,
                "OffsetDeleteRequest",
                group_id=group,
                topics=tuple(
                    build(
                        m,
                        0,
                        "OffsetDeleteRequestTopic",
                        name=name,
                        partitions=(
                            build(m, 0, "OffsetDeleteRequestPartition", partition_index=0),
                        ),
                    )
                    for name in ("t", "secret")
                ),
            )
        )

    answers = {t.name: t.partitions[0].error_code for t in delete("g").topics}
    assert answers == {"t": E.none, "secret": E.topic_authorization_failed}
    deny(c, acl(Res.GROUP, "g", Op.DELETE))
    refused = delete("g")
    assert (refused.error_code, refused.topics) == (E.group_authorization_failed, ())


# --- Transactions ---------------------------------------------------------------------------


def test_transaction_apis(c: RawClient) -> None:
    create_topic(c, "t")
    deny(c, acl(Res.TRANSACTIONAL_ID, "tx", Op.ALL), acl(Res.TOPIC, "secret", Op.WRITE))
    taf, txn = E.topic_authorization_failed, E.transactional_id_authorization_failed
    init = c.request(
        build(
            "init_producer_id",
            4,
            "InitProducerIdRequest",
            transactional_id="tx",
            producer_id=-1,
            producer_epoch=-1,
        )
    )
    assert (init.error_code, init.producer_id) == (txn, -1)
    find = c.request(
        build("find_coordinator", 4, "FindCoordinatorRequest", key_type=1, coordinator_keys=("tx",))
    )
    assert find.coordinators[0].error_code == txn
    end = c.request(
        build("end_txn", 4, "EndTxnRequest", transactional_id="tx", producer_id=1, committed=True)
    )
    assert end.error_code == txn
    add_offsets = c.request(
        build(
            "add_offsets_to_txn", 4, "AddOffsetsToTxnRequest", transactional_id="tx", group_id="g"
        )
    )
    assert add_offsets.error_code == txn
    txn_commit = c.request(
        build(
            "txn_offset_commit",
            3,
            "TxnOffsetCommitRequest",
            transactional_id="tx",
            group_id="g",
            generation_id=-1,
            topics=(
                build(
                    "txn_offset_commit",
                    3,
                    "TxnOffsetCommitRequestTopic",
                    name="t",
                    partitions=(
                        build(
                            "txn_offset_commit",
                            3,
                            "TxnOffsetCommitRequestPartition",
                            partition_index=0,
                        ),
                    ),
                ),
            ),
        )
    )
    assert txn_commit.topics[0].partitions[0].error_code == txn

    def add_partitions(txn_id: str, topics: dict[str, list[int]]) -> dict[tuple[str, int], Any]:
        m = "add_partitions_to_txn"
        response = c.request(
            build(
                m,
                3,
                "AddPartitionsToTxnRequest",
                v3_and_below_transactional_id=txn_id,
                v3_and_below_producer_id=1,
                v3_and_below_topics=tuple(
                    build(m, 3, "AddPartitionsToTxnTopic", name=n, partitions=tuple(ps))
                    for n, ps in topics.items()
                ),
            )
        )
        return {
            (t.name, p.partition_index): p.partition_error_code
            for t in response.results_by_topic_v3_and_below
            for p in t.results_by_partition
        }

    assert add_partitions("tx", {"t": [0]}) == {("t", 0): txn}
    # Internal topics are never among the topics a producer may add (Kafka, with or without ACLs).
    assert add_partitions("other", {"t": [0], "secret": [0], "__consumer_offsets": [0]}) == {
        ("t", 0): E.operation_not_attempted,
        ("secret", 0): taf,
        ("__consumer_offsets", 0): taf,
    }


def test_idempotent_producers_need_idempotent_write_or_some_write(c: RawClient) -> None:
    def init() -> Any:
        return c.request(
            build(
                "init_producer_id",
                4,
                "InitProducerIdRequest",
                transactional_id=None,
                producer_id=-1,
                producer_epoch=-1,
            )
        ).error_code

    assert init() == E.none
    deny_on_cluster(c, Op.IDEMPOTENT_WRITE)
    assert init() == E.none  # WRITE on topics: no ACL says otherwise
    deny(c, acl(Res.TOPIC, "*", Op.WRITE))
    assert init() == E.cluster_authorization_failed
    deny(c, acl(Res.TOPIC, "mine", Op.WRITE, Perm.ALLOW))
    assert init() == E.cluster_authorization_failed  # the wildcard DENY still wins
    delete_acls(c, filter_fields(Res.TOPIC, "*"))
    assert init() == E.none


def test_broker_side_transaction_apis_need_cluster_action(c: RawClient) -> None:
    deny_on_cluster(c, Op.CLUSTER_ACTION, Op.ALTER)
    m = "add_partitions_to_txn"
    verify = c.request(
        build(
            m,
            4,
            "AddPartitionsToTxnRequest",
            transactions=(
                build(m, 4, "AddPartitionsToTxnTransaction", transactional_id="tx", topics=()),
            ),
        )
    )
    assert verify.error_code == E.cluster_authorization_failed
    w = "write_txn_markers"
    markers = c.request(
        build(
            w,
            1,
            "WriteTxnMarkersRequest",
            markers=(
                build(
                    w,
                    1,
                    "WritableTxnMarker",
                    producer_id=1,
                    transaction_result=False,
                    topics=(
                        build(w, 1, "WritableTxnMarkerTopic", name="t", partition_indexes=(0,)),
                    ),
                ),
            ),
        )
    )
    assert markers.markers[0].topics[0].partitions[0].error_code == E.cluster_authorization_failed


def test_describe_and_list_transactions(c: RawClient) -> None:
    deny(
        c,
        acl(Res.TRANSACTIONAL_ID, "hidden", Op.ALL, Perm.ALLOW),
        acl(Res.TRANSACTIONAL_ID, "hidden", Op.DESCRIBE),
    )
    for txn_id in ("hidden", "shown"):
        init = c.request(
            build(
                "init_producer_id",
                4,
                "InitProducerIdRequest",
                transactional_id=txn_id,
                transaction_timeout=datetime.timedelta(seconds=60),
                producer_id=-1,
                producer_epoch=-1,
            )
        )
        assert init.error_code == E.none
    described_txns = c.request(
        build(
            "describe_transactions",
            0,
            "DescribeTransactionsRequest",
            transactional_ids=("hidden", "unknown"),
        )
    ).transaction_states
    assert [(s.transactional_id, s.error_code) for s in described_txns] == [
        ("hidden", E.transactional_id_authorization_failed),
        ("unknown", E.transactional_id_not_found),
    ]
    listed = c.request(build("list_transactions", 1, "ListTransactionsRequest", duration_filter=-1))
    assert [s.transactional_id for s in listed.transaction_states] == ["shown"]


# --- Admin APIs ---------------------------------------------------------------------------------


def test_create_delete_topics_and_partitions(c: RawClient) -> None:
    create_topic(c, "kept")
    # Allowed on the cluster, CREATE and DELETE are allowed on every topic.
    deny_on_cluster(c, Op.CREATE, Op.DELETE)
    deny(
        c,
        acl(Res.TOPIC, "nope", Op.CREATE),
        acl(Res.TOPIC, "quiet", Op.ALL, Perm.ALLOW),
        acl(Res.TOPIC, "quiet", Op.DESCRIBE_CONFIGS),
        acl(Res.TOPIC, "kept", Op.DELETE),
    )
    refused = create_topic(c, "nope")
    assert (refused.error_code, refused.error_message) == (
        E.topic_authorization_failed,
        "Authorization failed.",
    )
    quiet = create_topic(c, "quiet")
    assert (quiet.error_code, quiet.topic_config_error_code) == (
        E.none,
        E.topic_authorization_failed,
    )
    assert (quiet.num_partitions, quiet.replication_factor, quiet.configs) == (-1, -1, ())
    shown = create_topic(c, "shown")
    assert shown.topic_config_error_code == E.none and shown.num_partitions == 1

    d = "delete_topics"
    deleted = c.request(
        build(
            d,
            6,
            "DeleteTopicsRequest",
            topics=(build(d, 6, "DeleteTopicState", name="kept", topic_id=None),),
        )
    )
    result = deleted.responses[0]
    assert (result.error_code, result.error_message) == (
        E.topic_authorization_failed,
        "Topic authorization failed.",
    )
    p = "create_partitions"
    grown = c.request(
        build(
            p,
            3,
            "CreatePartitionsRequest",
            topics=(build(p, 3, "CreatePartitionsTopic", name="kept", count=3, assignments=None),),
        )
    )
    assert (grown.results[0].error_code, grown.results[0].error_message) == (
        E.topic_authorization_failed,
        None,
    )
    r = "delete_records"
    records = c.request(
        build(
            r,
            2,
            "DeleteRecordsRequest",
            topics=(
                build(
                    r,
                    2,
                    "DeleteRecordsTopic",
                    name="kept",
                    partitions=(
                        build(r, 2, "DeleteRecordsPartition", partition_index=0, offset=0),
                    ),
                ),
            ),
        )
    )
    part = records.topics[0].partitions[0]
    assert (part.error_code, part.low_watermark) == (E.topic_authorization_failed, -1)

    delete_acls(c, filter_fields(Res.CLUSTER, permission=Perm.DENY))
    assert create_topic(c, "nope").error_code == E.none
    deleted = c.request(
        build(
            d,
            6,
            "DeleteTopicsRequest",
            topics=(build(d, 6, "DeleteTopicState", name="kept", topic_id=None),),
        )
    )
    assert deleted.responses[0].error_code == E.none


def test_configs(c: RawClient) -> None:
    create_topic(c, "t")
    deny(c, acl(Res.TOPIC, "t", Op.DESCRIBE_CONFIGS), acl(Res.TOPIC, "t", Op.ALTER_CONFIGS))
    deny_on_cluster(c, Op.DESCRIBE_CONFIGS, Op.ALTER_CONFIGS)
    d = "describe_configs"
    results = c.request(
        build(
            d,
            4,
            "DescribeConfigsRequest",
            resources=(
                build(
                    d,
                    4,
                    "DescribeConfigsResource",
                    resource_type=2,
                    resource_name="t",
                    configuration_keys=None,
                ),
                build(
                    d,
                    4,
                    "DescribeConfigsResource",
                    resource_type=4,
                    resource_name="1",
                    configuration_keys=None,
                ),
            ),
        )
    ).results
    assert [(r.error_code, r.error_message, r.configs) for r in results] == [
        (E.topic_authorization_failed, "Topic authorization failed.", ()),
        (E.cluster_authorization_failed, "Cluster authorization failed.", ()),
    ]
    i = "incremental_alter_configs"

    def resource(kind: int, name: str, key: str, value: str) -> Any:
        return build(
            i,
            1,
            "AlterConfigsResource",
            resource_type=kind,
            resource_name=name,
            configs=(build(i, 1, "AlterableConfig", name=key, config_operation=0, value=value),),
        )

    altered = c.request(
        build(
            i,
            1,
            "IncrementalAlterConfigsRequest",
            resources=(
                resource(2, "t", "retention.ms", "1000"),
                resource(4, "1", "log.retention.ms", "1000"),
                resource(8, "1", "kpy", "DEBUG"),
                resource(4, "7", "log.retention.ms", "1000"),  # the broker's own check first
            ),
        )
    ).responses
    assert [(r.error_code, r.error_message) for r in altered] == [
        (E.topic_authorization_failed, "Topic authorization failed."),
        (E.cluster_authorization_failed, "Cluster authorization failed."),
        (E.cluster_authorization_failed, None),  # a broker logger: no message, as Kafka
        (E.invalid_request, "Unexpected broker id, expected 1, but received 7"),
    ]
    a = "alter_configs"
    legacy_alter = c.request(
        build(
            a,
            2,
            "AlterConfigsRequest",
            resources=(
                build(
                    a,
                    2,
                    "AlterConfigsResource",
                    resource_type=2,
                    resource_name="t",
                    configs=(build(a, 2, "AlterableConfig", name="retention.ms", value="1"),),
                ),
            ),
        )
    ).responses
    assert legacy_alter[0].error_code == E.topic_authorization_failed


def test_cluster_apis(c: RawClient) -> None:
    create_topic(c, "t")
    assert describe_cluster(c, operations=True).cluster_authorized_operations == sum(
        1 << op for op in (5, 7, 8, 9, 10, 11, 12)
    )
    deny_on_cluster(c, Op.DESCRIBE, Op.ALTER)
    # DescribeCluster needs nothing; its operations are 0 without DESCRIBE.
    answer = describe_cluster(c, operations=True)
    assert (answer.error_code, answer.cluster_authorized_operations) == (E.none, 0)
    assert describe_log_dirs(c, None).error_code == E.cluster_authorization_failed
    assert list_partition_reassignments(c, None).error_code == E.cluster_authorization_failed
    elected = elect_leaders(c, {"t": [0]})
    assert elected.error_code == E.cluster_authorization_failed
    assert elected.replica_election_results[0].partition_result[0].error_code == (
        E.cluster_authorization_failed
    )


def test_describe_producers_and_topic_partitions(c: RawClient) -> None:
    create_topic(c, "t")
    create_topic(c, "secret")
    deny(c, acl(Res.TOPIC, "secret", Op.READ), acl(Res.TOPIC, "secret", Op.DESCRIBE))
    p = "describe_producers"
    producers = c.request(
        build(
            p,
            0,
            "DescribeProducersRequest",
            topics=tuple(
                build(p, 0, "TopicRequest", name=n, partition_indexes=(0,))
                for n in ("t", "secret", "a/b")
            ),
        )
    ).topics
    assert [(t.partitions[0].error_code, t.partitions[0].error_message) for t in producers] == [
        (E.none, None),
        (E.topic_authorization_failed, "Topic authorization failed."),
        (E.invalid_topic_exception, producers[2].partitions[0].error_message),
    ]
    named = describe_topic_partitions(c, ["t", "secret"]).topics
    assert [(t.name, t.error_code) for t in named] == [
        ("t", E.none),
        ("secret", E.topic_authorization_failed),
    ]
    assert named[1].topic_id in (None, ZERO_UUID) and named[1].partitions == ()
    everything = describe_topic_partitions(c, []).topics
    assert "secret" not in {t.name for t in everything}
    assert named[0].topic_authorized_operations == TOPIC_OPS


def test_consumer_group_heartbeat_needs_describe_on_subscribed_topics(c: RawClient) -> None:
    create_topic(c, "t")
    deny(c, acl(Res.TOPIC, "secret", Op.DESCRIBE))

    def heartbeat(*topics: str) -> Any:
        return c.request(
            build(
                "consumer_group_heartbeat",
                0,
                "ConsumerGroupHeartbeatRequest",
                group_id="cg",
                member_epoch=0,
                rebalance_timeout=datetime.timedelta(seconds=5),
                subscribed_topic_names=topics,
                topic_partitions=(),
            )
        )

    refused = heartbeat("t", "secret")
    assert (refused.error_code, refused.member_id) == (E.topic_authorization_failed, None)
    joined = heartbeat("t")
    assert joined.error_code == E.none and joined.member_id
    described_group = c.request(
        build(
            "consumer_group_describe",
            0,
            "ConsumerGroupDescribeRequest",
            group_ids=("cg",),
            include_authorized_operations=True,
        )
    ).groups[0]
    assert described_group.error_code == E.none
    assert described_group.authorized_operations == sum(1 << op for op in (3, 6, 8, 10, 11))


# --- Durability -------------------------------------------------------------------------------


def test_acls_survive_a_restart(tmp_path: Path) -> None:
    proc = KpyProcess(
        tmp_path / "data",
        {"authorizer.class.name": STANDARD_AUTHORIZER, "allow.everyone.if.no.acl.found": "true"},
    ).start()
    try:
        with RawClient(proc.bootstrap) as c:
            create_topic(c, "t")
            deny(
                c, acl(Res.TOPIC, "t", Op.WRITE), acl(Res.GROUP, "g", Op.ALL, pattern=Pat.PREFIXED)
            )
        proc.kill()  # no clean shutdown: the file was written before the answer
        proc.start()
        with RawClient(proc.bootstrap) as c:
            assert described(describe_acls(c)) == {
                acl(Res.TOPIC, "t", Op.WRITE),
                acl(Res.GROUP, "g", Op.ALL, pattern=Pat.PREFIXED),
            }
            part = produce(c, "t", build_batch([(b"k", b"v")])).responses[0].partition_responses[0]
            assert part.error_code == E.topic_authorization_failed
    finally:
        proc.stop()
    # A file that does not parse stops the start: the broker never runs without its ACLs.
    (tmp_path / "data" / "kpy-acls.json").write_text("{")
    args = [
        sys.executable,
        "-m",
        "kpy",
        "serve",
        "--port",
        "0",
        "--data-dir",
        str(tmp_path / "data"),
    ]
    args += ["--override", f"authorizer.class.name={STANDARD_AUTHORIZER}"]
    failed = subprocess.run(args, capture_output=True, text=True, timeout=60)
    assert failed.returncode == 1
    assert "kpy: cannot read the ACLs in" in failed.stderr


def test_consumer_group_regex_resolves_to_describable_topics(c: RawClient) -> None:
    """A KIP-848 member subscribed by regular expression is assigned the topics it matches
    that the member may DESCRIBE, as Kafka's group coordinator resolves it."""
    seen = create_topic(c, "r-open")
    create_topic(c, "r-secret")
    deny(c, acl(Res.TOPIC, "r-secret", Op.DESCRIBE))
    response = c.request(
        build(
            "consumer_group_heartbeat",
            1,
            "ConsumerGroupHeartbeatRequest",
            group_id="rg",
            member_id="m1",
            member_epoch=0,
            rebalance_timeout=datetime.timedelta(seconds=5),
            subscribed_topic_regex="r-.*",
            topic_partitions=(),
        )
    )
    assert response.error_code == E.none
    assert [t.topic_id for t in response.assignment.topic_partitions] == [seen.topic_id]
