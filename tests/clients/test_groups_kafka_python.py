"""Consumer groups with kafka-python: three members split six partitions, the two left take
over when one leaves, and nothing is lost across the rebalance (auto commit on)."""

from __future__ import annotations

import pytest

pytest.importorskip("kafka")
pytest.importorskip("confluent_kafka")

from kpy_process import KpyProcess

from clients.group_util import (
    PARTITIONS,
    KafkaPythonMember,
    create_topic,
    group_log,
    produce,
    values,
    wait_until,
)

TOPIC = "grouped-kafka-python"


def test_members_split_partitions_and_take_over(kpy: KpyProcess) -> None:
    create_topic(kpy.bootstrap, TOPIC)
    produce(kpy.bootstrap, TOPIC, 0, 600)
    members = [KafkaPythonMember(kpy.bootstrap, "kp-g1", [TOPIC]) for _ in range(3)]
    explain = lambda: "\n".join(  # noqa: E731
        [str([sorted(m.owned) for m in members]), group_log(kpy), *(m.stack() for m in members)]
    )
    try:
        wait_until(
            lambda: (
                sorted(len(m.owned) for m in members) == [2, 2, 2]
                and frozenset().union(*(m.owned for m in members)) == set(range(PARTITIONS))
            ),
            "three members with two partitions each",
            explain=explain,
        )
        leaving = members.pop()
        leaving.close()  # commits what it consumed, then leaves the group
        wait_until(
            lambda: (
                sorted(len(m.owned) for m in members) == [3, 3]
                and frozenset().union(*(m.owned for m in members)) == set(range(PARTITIONS))
            ),
            "two members with three partitions each",
            explain=explain,
        )
        produce(kpy.bootstrap, TOPIC, 600, 600)
        seen = lambda: set().union(*(set(m.values) for m in [*members, leaving]))  # noqa: E731
        wait_until(lambda: len(seen()) == 1200, "every message consumed", explain=explain)
        assert seen() == values(0, 1200)
    finally:
        for m in members:
            m.close()
