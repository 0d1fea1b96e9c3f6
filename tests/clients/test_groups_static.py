"""Static membership (KIP-345) with confluent-kafka: a member with group.instance.id that goes
away without leaving the group (a clean close, where librdkafka sends no LeaveGroup for a static
member, or SIGKILL) and comes back within its session timeout gets its partitions back, and the
group does not rebalance: the other member keeps its generation and sees no revocation."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

pytest.importorskip("confluent_kafka")

from kpy_process import KpyProcess

from clients.group_util import (
    PARTITIONS,
    ConfluentMember,
    create_topic,
    group_log,
    produce,
    wait_until,
)

TOPIC = "static"

# A static member on its own process: prints its member id and partitions whenever they change,
# closes cleanly when told on stdin (or dies by SIGKILL).
CHILD = """
import select, sys
from confluent_kafka import Consumer
c = Consumer({"bootstrap.servers": sys.argv[1], "group.id": sys.argv[2],
              "group.instance.id": "static-1", "session.timeout.ms": 10000,
              "heartbeat.interval.ms": 500, "auto.offset.reset": "earliest",
              "partition.assignment.strategy": "range"})
c.subscribe(["static"])
last = None
while not select.select([sys.stdin], [], [], 0)[0]:
    c.poll(0.1)
    now = (c.memberid(), sorted(tp.partition for tp in c.assignment()))
    if now != last and now[1]:
        print("assigned", now[0], *now[1], flush=True)
        last = now
c.close()
print("closed", flush=True)
"""


class StaticChild:
    def __init__(self, bootstrap: str, group: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", CHILD, bootstrap, group],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def assignment(self) -> tuple[str, frozenset[int]]:
        """Waits for the first line saying what it owns."""
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().split()
        assert line and line[0] == "assigned", f"child said {line}"
        return line[1], frozenset(int(p) for p in line[2:])

    def close(self) -> None:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write("close\n")
        self.proc.stdin.flush()
        assert self.proc.stdout.readline().strip() == "closed"
        assert self.proc.wait(20) == 0
        self._release()

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait()
        self._release()

    def _release(self) -> None:
        for f in (self.proc.stdin, self.proc.stdout):
            if f is not None:
                f.close()


@pytest.mark.parametrize("leader", ["static", "other"])
@pytest.mark.parametrize("how", ["close", "kill"])
def test_static_member_comes_back_to_its_partitions(kpy: KpyProcess, how: str, leader: str) -> None:
    """The group's leader is its first member: the static one (whose return must not make it
    run an assignment the Stable group would ignore) or the other."""
    create_topic(kpy.bootstrap, TOPIC)
    produce(kpy.bootstrap, TOPIC, 0, 60)
    group = f"static-{how}-{leader}"
    if leader == "static":
        child = StaticChild(kpy.bootstrap, group)
        assert child.assignment()[1] == frozenset(range(PARTITIONS))
    other = ConfluentMember(
        kpy.bootstrap, group, [TOPIC], **{"partition.assignment.strategy": "range"}
    )
    explain = lambda: f"{other.events}\n{group_log(kpy)}"  # noqa: E731
    if leader == "other":
        wait_until(lambda: len(other.owned) == PARTITIONS, "the first member", explain=explain)
        child = StaticChild(kpy.bootstrap, group)
    try:
        wait_until(lambda: len(other.owned) == PARTITIONS // 2, "a two-way split", explain=explain)
        first_id, first_parts = child.assignment()
        assert first_parts == frozenset(range(PARTITIONS)) - other.owned
        events, member_id, owned = list(other.events), other.member_id, other.owned
        rebalances = group_log(kpy).count("preparing to rebalance")

        child.close() if how == "close" else child.kill()
        child = StaticChild(kpy.bootstrap, group)
        second_id, second_parts = child.assignment()
        assert second_parts == first_parts
        assert second_id != first_id  # a new member id for the same instance

        time.sleep(2)  # several heartbeats of the other member: it would be told to rejoin here
        assert group_log(kpy).count("preparing to rebalance") == rebalances, explain()
        assert (other.events, other.member_id, other.owned) == (events, member_id, owned)
    finally:
        child.kill()
        other.close()
