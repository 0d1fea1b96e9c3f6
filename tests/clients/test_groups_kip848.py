"""Consumer groups with confluent-kafka on the KIP-848 protocol (group.protocol=consumer): the
broker assigns, members split the partitions, one leaving hands its partitions to the other, and
every message is consumed."""

from __future__ import annotations

from collections.abc import Callable

import pytest

confluent_kafka = pytest.importorskip("confluent_kafka")

from kpy_process import KpyProcess  # noqa: E402

from clients.group_util import (  # noqa: E402
    PARTITIONS,
    ConfluentMember,
    create_topic,
    produce,
    values,
    wait_until,
)

TOPIC = "kip848"
# A short heartbeat interval so that released partitions reach their new owner quickly.
OVERRIDES = {"group.consumer.heartbeat.interval.ms": "500"}


def member(bootstrap: str) -> ConfluentMember:
    return ConfluentMember(bootstrap, "g848", [TOPIC], **{"group.protocol": "consumer"})


def split(members: list[ConfluentMember]) -> Callable[[], bool]:
    def check() -> bool:
        owned = [m.owned for m in members]
        return sorted(len(o) for o in owned) == [3, 3] and set().union(*owned) == set(
            range(PARTITIONS)
        )

    return check


def test_two_members_split_the_partitions_and_one_takes_over(kpy_factory: object) -> None:
    kpy: KpyProcess = kpy_factory(OVERRIDES)  # type: ignore[operator]
    create_topic(kpy.bootstrap, TOPIC)
    produce(kpy.bootstrap, TOPIC, 0, 600)
    members = [member(kpy.bootstrap) for _ in range(2)]
    try:
        wait_until(split(members), "two members with three partitions each")
        seen = lambda: set().union(*(set(m.values) for m in members))  # noqa: E731
        wait_until(lambda: seen() == values(0, 600), "every message consumed")
        # Each partition went to one member only: no message was read twice.
        assert sum(len(m.values) for m in members) == 600

        leaving = members.pop()
        leaving.close()
        survivor = members[0]
        wait_until(lambda: survivor.owned == set(range(PARTITIONS)), "the survivor owns all six")
        produce(kpy.bootstrap, TOPIC, 600, 600)
        wait_until(
            lambda: set(survivor.values) | set(leaving.values) == values(0, 1200),
            "every message consumed after the take-over",
        )
        assert not survivor.errors and not leaving.errors
    finally:
        for m in members:
            m.close()
