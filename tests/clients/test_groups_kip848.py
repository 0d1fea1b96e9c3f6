"""Consumer groups with confluent-kafka on the KIP-848 protocol (group.protocol=consumer): the
broker assigns, members split the partitions, one leaving hands its partitions to the other, and
every message is consumed."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest

confluent_kafka = pytest.importorskip("confluent_kafka")

from confluent_kafka import Consumer  # noqa: E402
from kpy_process import KpyProcess  # noqa: E402

from clients.group_util import PARTITIONS, create_topic, produce, values, wait_until  # noqa: E402

TOPIC = "kip848"
# A short heartbeat interval so that released partitions reach their new owner quickly.
OVERRIDES = {"group.consumer.heartbeat.interval.ms": "500"}


class Member:
    """A consumer polling on its own thread, recording what it gets and what it owns."""

    def __init__(self, bootstrap: str, group: str) -> None:
        self.consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": group,
                "group.protocol": "consumer",
                "auto.offset.reset": "earliest",
                "enable.auto.commit": True,
                "auto.commit.interval.ms": 200,
            }
        )
        self.consumer.subscribe([TOPIC])
        self.values: list[bytes] = []
        self.errors: list[str] = []
        self.owned: set[int] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            msg = self.consumer.poll(0.1)
            if msg is not None:
                if msg.error() is None:
                    self.values.append(msg.value())
                else:
                    self.errors.append(str(msg.error()))
            self.owned = {tp.partition for tp in self.consumer.assignment()}

    def close(self) -> None:
        self._stop.set()
        self._thread.join(10)
        self.consumer.close()


def split(members: list[Member]) -> Callable[[], bool]:
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
    members = [Member(kpy.bootstrap, "g848") for _ in range(2)]
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
