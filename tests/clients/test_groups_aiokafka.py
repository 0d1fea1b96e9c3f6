"""Consumer groups with aiokafka: three members split six partitions, the two left take over
when one leaves, and nothing is lost across the rebalance (auto commit on)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable

import pytest

aiokafka = pytest.importorskip("aiokafka")
pytest.importorskip("confluent_kafka")

from aiokafka import AIOKafkaConsumer  # noqa: E402
from kpy_process import KpyProcess  # noqa: E402

from clients.group_util import (  # noqa: E402
    PARTITIONS,
    create_topic,
    group_log,
    produce,
    values,
)

TOPIC = "grouped-aiokafka"


class Member:
    """An AIOKafkaConsumer polling in its own task, recording what it gets and what it owns."""

    def __init__(self, bootstrap: str, group: str) -> None:
        self.consumer = AIOKafkaConsumer(
            TOPIC,
            bootstrap_servers=bootstrap,
            group_id=group,
            auto_offset_reset="earliest",
            session_timeout_ms=6000,
            heartbeat_interval_ms=500,
            max_poll_interval_ms=20000,
            enable_auto_commit=True,
            auto_commit_interval_ms=200,
        )
        self.values: list[bytes] = []
        self.owned: frozenset[int] = frozenset()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self.consumer.start()
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while True:
            batches = await self.consumer.getmany(timeout_ms=100)
            for records in batches.values():
                self.values.extend(r.value for r in records if r.value is not None)
            self.owned = frozenset(tp.partition for tp in self.consumer.assignment())

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self.consumer.stop()  # commits what was consumed, then leaves the group


async def wait_until(
    check: Callable[[], bool], what: str, explain: Callable[[], str], timeout: float = 60
) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}\n{explain()}"
        await asyncio.sleep(0.1)


async def split_and_take_over(kpy: KpyProcess) -> None:
    members = [Member(kpy.bootstrap, "aio-g1") for _ in range(3)]
    explain = lambda: f"{[sorted(m.owned) for m in members]}\n{group_log(kpy)}"  # noqa: E731
    try:
        await asyncio.gather(*(m.start() for m in members))
        await wait_until(
            lambda: (
                sorted(len(m.owned) for m in members) == [2, 2, 2]
                and frozenset().union(*(m.owned for m in members)) == set(range(PARTITIONS))
            ),
            "three members with two partitions each",
            explain,
        )
        leaving = members.pop()
        await leaving.close()
        await wait_until(
            lambda: (
                sorted(len(m.owned) for m in members) == [3, 3]
                and frozenset().union(*(m.owned for m in members)) == set(range(PARTITIONS))
            ),
            "two members with three partitions each",
            explain,
        )
        await asyncio.to_thread(produce, kpy.bootstrap, TOPIC, 600, 600)
        seen = lambda: set().union(*(set(m.values) for m in [*members, leaving]))  # noqa: E731
        await wait_until(lambda: len(seen()) == 1200, "every message consumed", explain)
        assert seen() == values(0, 1200)
    finally:
        for m in members:
            await m.close()


def test_members_split_partitions_and_take_over(kpy: KpyProcess) -> None:
    create_topic(kpy.bootstrap, TOPIC)
    produce(kpy.bootstrap, TOPIC, 0, 600)
    asyncio.run(split_and_take_over(kpy))
