"""Consumer groups with confluent-kafka (librdkafka's classic protocol): partitions split among
members, taken over when one leaves or dies, committed offsets resumed, nothing lost."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable

import pytest

confluent_kafka = pytest.importorskip("confluent_kafka")

from confluent_kafka import Consumer, Producer, TopicPartition  # noqa: E402
from confluent_kafka.admin import AdminClient, NewTopic  # noqa: E402
from kpy_process import KpyProcess  # noqa: E402

from clients.group_util import ConfluentMember  # noqa: E402

TOPIC = "grouped"
PARTITIONS = 6


def setup_topic(bootstrap: str, count: int, start: int = 0) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    if start == 0:
        admin.create_topics([NewTopic(TOPIC, PARTITIONS, 1)])[TOPIC].result(10)
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
    for i in range(start, start + count):
        p.produce(TOPIC, value=b"%d" % i, partition=i % PARTITIONS)
    assert p.flush(30) == 0


def member(bootstrap: str, group: str) -> ConfluentMember:
    return ConfluentMember(bootstrap, group, [TOPIC])


def wait_until(check: Callable[[], bool], what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def test_members_split_partitions_and_take_over(kpy: KpyProcess) -> None:
    setup_topic(kpy.bootstrap, 600)
    members = [member(kpy.bootstrap, "g1") for _ in range(3)]
    try:
        wait_until(
            lambda: (
                sorted(len(m.owned) for m in members) == [2, 2, 2]
                and set().union(*(m.owned for m in members)) == set(range(PARTITIONS))
            ),
            "three members with two partitions each",
        )
        leaving = members.pop()
        leaving.close()
        wait_until(
            lambda: sorted(len(m.owned) for m in members) == [3, 3],
            "two members with three partitions each",
        )
        setup_topic(kpy.bootstrap, 600, start=600)
        seen = lambda: set().union(*(set(m.values) for m in [*members, leaving]))  # noqa: E731
        wait_until(lambda: len(seen()) == 1200, "every message consumed")
        assert seen() == {b"%d" % i for i in range(1200)}
    finally:
        for m in members:
            m.close()


CHILD = """
import sys, time
from confluent_kafka import Consumer
c = Consumer({"bootstrap.servers": sys.argv[1], "group.id": "g2", "session.timeout.ms": 6000,
              "heartbeat.interval.ms": 500, "auto.offset.reset": "earliest"})
c.subscribe(["grouped"])
while True:
    c.poll(0.1)
    if c.assignment():
        print("assigned", flush=True)
"""


def test_a_killed_member_loses_its_partitions_after_the_session_timeout(kpy: KpyProcess) -> None:
    setup_topic(kpy.bootstrap, 60)
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, kpy.bootstrap], stdout=subprocess.PIPE, text=True
    )
    members = [member(kpy.bootstrap, "g2") for _ in range(2)]
    try:
        wait_until(lambda: sorted(len(m.owned) for m in members) == [2, 2], "a three-way split")
        child.kill()
        child.wait()
        wait_until(
            lambda: sorted(len(m.owned) for m in members) == [3, 3],
            "the survivors to take over after session.timeout.ms",
        )
    finally:
        child.kill()
        if child.stdout is not None:
            child.stdout.close()
        for m in members:
            m.close()


def test_a_restarted_consumer_resumes_from_committed_offsets(kpy: KpyProcess) -> None:
    setup_topic(kpy.bootstrap, 60)
    first = Consumer(
        {
            "bootstrap.servers": kpy.bootstrap,
            "group.id": "g3",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    first.subscribe([TOPIC])
    got = 0
    while got < 25:
        msg = first.poll(10)
        assert msg is not None
        if msg.error() is None:
            got += 1
            first.commit(message=msg, asynchronous=False)
    committed = {
        tp.partition: tp.offset
        for tp in first.committed([TopicPartition(TOPIC, p) for p in range(PARTITIONS)], timeout=10)
    }
    first.close()
    assert sum(o for o in committed.values() if o > 0) == 25
    second = Consumer(
        {"bootstrap.servers": kpy.bootstrap, "group.id": "g3", "auto.offset.reset": "earliest"}
    )
    second.subscribe([TOPIC])
    values = []
    while len(values) < 35:
        msg = second.poll(10)
        assert msg is not None, f"stalled after {len(values)}"
        if msg.error() is None:
            values.append(int(msg.value()))
            assert msg.offset() >= max(committed.get(msg.partition(), 0), 0)
    second.close()
    assert len(set(values)) == 35
