"""One consumer group whose members are three different clients (confluent-kafka, kafka-python
and aiokafka, all with the range assignor: the leader, whichever it is, reads the others'
subscriptions and writes their assignments); and two groups on one topic, each getting every
message."""

from __future__ import annotations

from collections import Counter

import pytest

pytest.importorskip("confluent_kafka")
pytest.importorskip("kafka")
pytest.importorskip("aiokafka")

from aiokafka.coordinator.assignors.range import (
    RangePartitionAssignor as AioRange,
)
from kafka.coordinator.assignors.range import RangePartitionAssignor
from kpy_process import KpyProcess

from clients.group_util import (
    PARTITIONS,
    AiokafkaMember,
    ConfluentMember,
    KafkaPythonMember,
    ThreadMember,
    create_topic,
    group_log,
    produce,
    values,
    wait_until,
)


def mixed_members(bootstrap: str, group: str, topic: str) -> list[ThreadMember]:
    return [
        ConfluentMember(bootstrap, group, [topic], **{"partition.assignment.strategy": "range"}),
        KafkaPythonMember(
            bootstrap, group, [topic], partition_assignment_strategy=[RangePartitionAssignor]
        ),
        AiokafkaMember(bootstrap, group, [topic], partition_assignment_strategy=(AioRange,)),
    ]


def split_evenly(members: list[ThreadMember], per_member: int) -> bool:
    return all(len(m.owned) == per_member for m in members) and frozenset().union(
        *(m.owned for m in members)
    ) == set(range(PARTITIONS))


def test_three_clients_in_one_group(kpy: KpyProcess) -> None:
    topic = "mixed"
    create_topic(kpy.bootstrap, topic)
    produce(kpy.bootstrap, topic, 0, 300)
    members = mixed_members(kpy.bootstrap, "mixed-g", topic)
    explain = lambda: f"{[sorted(m.owned) for m in members]}\n{group_log(kpy)}"  # noqa: E731
    try:
        wait_until(lambda: split_evenly(members, 2), "two partitions each", explain=explain)
        seen = lambda: set().union(*(set(m.values) for m in members))  # noqa: E731
        wait_until(lambda: len(seen()) == 300, "the first messages consumed", explain=explain)
        owned = [m.owned for m in members]
        before = [len(m.values) for m in members]
        produce(kpy.bootstrap, topic, 300, 600)
        wait_until(lambda: len(seen()) == 900, "every message consumed", explain=explain)
        assert seen() == values(0, 900)
        # The group stayed as it was, and split the new messages by partition: each was
        # consumed once, by the member owning its partition.
        assert [m.owned for m in members] == owned
        for m, start in zip(members, before, strict=True):
            fresh = m.values[start:]
            assert all(int(v) % PARTITIONS in m.owned for v in fresh)
            assert len(fresh) == 600 * 2 // PARTITIONS
        assert Counter(v for m, s in zip(members, before, strict=True) for v in m.values[s:]) == (
            Counter(values(300, 900))
        )
    finally:
        for m in members:
            m.close()


def test_two_groups_each_get_every_message(kpy: KpyProcess) -> None:
    topic = "two-groups"
    create_topic(kpy.bootstrap, topic)
    splitting = mixed_members(kpy.bootstrap, "split-g", topic)
    alone = [ConfluentMember(kpy.bootstrap, "alone-g", [topic])]
    everyone = [*splitting, *alone]
    explain = lambda: f"{[sorted(m.owned) for m in everyone]}\n{group_log(kpy)}"  # noqa: E731
    try:
        wait_until(
            lambda: split_evenly(splitting, 2) and split_evenly(alone, PARTITIONS),
            "both groups stable",
            explain=explain,
        )
        produce(kpy.bootstrap, topic, 0, 600)
        got = lambda ms: [v for m in ms for v in m.values]  # noqa: E731
        wait_until(
            lambda: len(got(splitting)) >= 600 and len(got(alone)) >= 600,
            "both groups to consume everything",
            explain=explain,
        )
        assert Counter(got(alone)) == Counter(values(0, 600))
        assert Counter(got(splitting)) == Counter(values(0, 600))
        for m in splitting:
            assert len(m.values) == 200
            assert {int(v) % PARTITIONS for v in m.values} == m.owned
    finally:
        for m in everyone:
            m.close()
