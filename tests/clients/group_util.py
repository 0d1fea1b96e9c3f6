"""Helpers shared by the consumer group tests: a topic with numbered messages, and waiting."""

from __future__ import annotations

import asyncio
import sys
import threading
import time
import traceback
from collections.abc import Callable
from typing import Any

from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, NewTopic
from kpy_process import KpyProcess

PARTITIONS = 6


def create_topic(bootstrap: str, topic: str, partitions: int = PARTITIONS) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(topic, partitions, 1)])[topic].result(10)


def produce(
    bootstrap: str, topic: str, start: int, count: int, partitions: int = PARTITIONS
) -> None:
    """Values b"start" .. b"start+count-1", value i to partition i % partitions."""
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
    for i in range(start, start + count):
        p.produce(topic, value=b"%d" % i, partition=i % partitions)
    assert p.flush(30) == 0


def values(start: int, stop: int) -> set[bytes]:
    return {b"%d" % i for i in range(start, stop)}


def group_consumer(bootstrap: str, group: str, topic: str) -> Consumer:
    """A confluent-kafka member of ``group`` subscribed to ``topic``: from the earliest offset
    where the group committed none, committing only when told to."""
    c = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": group,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "session.timeout.ms": 6000,
            "heartbeat.interval.ms": 500,
        }
    )
    c.subscribe([topic])
    return c


def consume(c: Consumer, count: int) -> list[tuple[int, int, bytes]]:
    """(partition, offset, value) of the next ``count`` messages."""
    got = []
    while len(got) < count:
        msg = c.poll(10)
        assert msg is not None, f"stalled after {len(got)} message(s)"
        assert msg.error() is None, msg.error()
        got.append((msg.partition(), msg.offset(), msg.value()))
    return got


def wait_until(
    check: Callable[[], bool],
    what: str,
    timeout: float = 60,
    explain: Callable[[], str] = lambda: "",
) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}\n{explain()}"
        time.sleep(0.1)


def group_log(kpy: KpyProcess) -> str:
    """The broker's group coordinator log lines, to explain a failed wait."""
    return "".join(line for line in kpy.log_text().splitlines(True) if "kpy.groups" in line)


class ThreadMember:
    """A group member whose client lives on its own thread (none of the clients is thread-safe):
    it polls, records the values it gets and the partitions it owns, and closes the client on
    that thread. Subclasses open (``_open``), poll (``_poll``) and close (``_close``) a client."""

    def __init__(self, bootstrap: str, group: str, topics: list[str], **extra: Any) -> None:
        self.bootstrap, self.group, self.topics, self.extra = bootstrap, group, topics, extra
        self.values: list[bytes] = []
        self.owned: frozenset[int] = frozenset()
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._main, daemon=True)
        self._thread.start()

    def _main(self) -> None:
        try:
            self._run()
        except BaseException as e:  # re-raised by close()
            self.error = e
        finally:
            self._closed.set()

    def _run(self) -> None:
        client = self._open()
        try:
            while not self._stop.is_set():
                self._poll(client)
        finally:
            self._close(client)

    def _open(self) -> Any:
        raise NotImplementedError

    def _poll(self, client: Any) -> None:
        raise NotImplementedError

    def _close(self, client: Any) -> None:
        client.close()

    def stack(self) -> str:
        """Where the client's thread is now: to explain a member that stopped making progress."""
        frame = sys._current_frames().get(self._thread.ident or -1)
        return "".join(traceback.format_stack(frame)) if frame is not None else "(not running)"

    def close(self) -> None:
        self._stop.set()
        assert self._closed.wait(30), "consumer did not close"
        if self.error is not None:
            raise self.error


COMMON = dict(session_timeout_ms=6000, heartbeat_interval_ms=500, max_poll_interval_ms=20000)


class ConfluentMember(ThreadMember):
    """Also records its rebalance callbacks in ``events``: ("assign" or "revoke", partitions)."""

    def __init__(self, bootstrap: str, group: str, topics: list[str], **extra: Any) -> None:
        self.events: list[tuple[str, frozenset[int]]] = []
        self.errors: list[str] = []
        self.member_id = ""
        super().__init__(bootstrap, group, topics, **extra)

    def _open(self) -> Any:
        from confluent_kafka import Consumer

        config: dict[str, Any] = {
            "bootstrap.servers": self.bootstrap,
            "group.id": self.group,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": True,
            "auto.commit.interval.ms": 200,
        }
        if self.extra.get("group.protocol") != "consumer":
            # Classic protocol timings; with KIP-848 the broker sets them, and librdkafka
            # refuses them in its configuration.
            config.update(
                {
                    "session.timeout.ms": 6000,
                    "heartbeat.interval.ms": 500,
                    "max.poll.interval.ms": 20000,
                }
            )
        consumer = Consumer({**config, **self.extra})
        consumer.subscribe(
            self.topics,
            on_assign=lambda c, tps: self.events.append(("assign", parts(tps))),
            on_revoke=lambda c, tps: self.events.append(("revoke", parts(tps))),
        )
        return consumer

    def _poll(self, client: Any) -> None:
        msg = client.poll(0.1)
        if msg is not None:
            if msg.error() is None:
                self.values.append(msg.value())
            else:
                self.errors.append(str(msg.error()))
        self.owned = frozenset(tp.partition for tp in client.assignment())
        self.member_id = client.memberid() or ""


def parts(tps: Any) -> frozenset[int]:
    return frozenset(tp.partition for tp in tps)


class KafkaPythonMember(ThreadMember):
    """Knows its topics' partitions before it first joins: kafka-python (3.0.12) can lose a
    rejoin that metadata started. Its ConsumerCoordinator.need_rejoin() answers True for a leader
    whose assignment was made on older metadata (assignment snapshot != metadata snapshot) without
    setting rejoin_needed, and ignores a join still in flight (the Java client's
    rejoinNeededOrPending() does both). The leader's _perform_assignment takes the new snapshot
    before its SyncGroup is answered, so when poll(timeout_ms=100) gives up waiting on the
    JoinGroup (held by the coordinator until the others rejoin), the next poll() no longer calls
    ensure_active_group(): the SyncGroup answer is never handled, heartbeats stay disabled, the
    member keeps no partitions and its session expires. A leader that first joins before its
    metadata names the topic assigns nothing, and then takes that path; against Kafka as well."""

    def _open(self) -> Any:
        from kafka import KafkaConsumer

        consumer = KafkaConsumer(
            bootstrap_servers=self.bootstrap,
            group_id=self.group,
            auto_offset_reset="earliest",
            enable_auto_commit=True,
            auto_commit_interval_ms=200,
            **{**COMMON, **self.extra},
        )
        consumer.subscribe(self.topics)
        # topics() fetches metadata now, which also updates the coordinator's snapshot.
        wait_until(lambda: set(self.topics) <= consumer.topics(), f"metadata of {self.topics}", 30)
        return consumer

    def _poll(self, client: Any) -> None:
        for records in client.poll(timeout_ms=100).values():
            self.values.extend(r.value for r in records)
        self.owned = frozenset(tp.partition for tp in client.assignment())


class AiokafkaMember(ThreadMember):
    """aiokafka on an event loop of its own thread."""

    def _run(self) -> None:
        asyncio.run(self._arun())

    async def _arun(self) -> None:
        from aiokafka import AIOKafkaConsumer

        consumer = AIOKafkaConsumer(
            *self.topics,
            bootstrap_servers=self.bootstrap,
            group_id=self.group,
            auto_offset_reset="earliest",
            enable_auto_commit=True,
            auto_commit_interval_ms=200,
            **{**COMMON, **self.extra},
        )
        await consumer.start()
        try:
            while not self._stop.is_set():
                batches = await consumer.getmany(timeout_ms=100)
                for records in batches.values():
                    self.values.extend(r.value for r in records if r.value is not None)
                self.owned = frozenset(tp.partition for tp in consumer.assignment())
        finally:
            await consumer.stop()
