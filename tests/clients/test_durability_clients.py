"""Flush policy and durability modes against a real kpy and confluent-kafka producers.

flush.messages and flush.ms (topic configs, or the broker's log.flush.interval.messages) are
observed through Kafka's own recovery-point-offset-checkpoint: the recovery point follows the
log end without any segment rolling, where by default it stays at the active segment's base.

kpy.flush.before.ack is shown with a simulated power cut: kpy runs with its fsync journal
(kpy.test.durability.journal), four producers write with acks=all, kpy is SIGKILLed mid-stream,
and kpy.storage.durability.cut_power drops whatever no fsync covered, as a power cut would.
With the mode every acknowledged record is there after the restart; without it (the page cache
holds acknowledged records) the same cut loses some, which shows the simulation bites."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

confluent_kafka = pytest.importorskip("confluent_kafka")

from confluent_kafka import Consumer, Producer, TopicPartition  # noqa: E402
from confluent_kafka.admin import AdminClient, NewTopic  # noqa: E402
from kpy_process import KpyProcess  # noqa: E402

from kpy.storage.durability import cut_power  # noqa: E402
from kpy.storage.log_manager import (  # noqa: E402
    RECOVERY_POINT_CHECKPOINT,
    read_offset_checkpoint,
)

DEADLINE = 60.0
CHECKPOINT_OFTEN = {"log.flush.offset.checkpoint.interval.ms": "200"}


def wait_for(what: str, check: Callable[[], bool]) -> None:
    end = time.monotonic() + DEADLINE
    while not check():
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def create(bootstrap: str, topic: str, configs: dict[str, str] | None = None) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    new = NewTopic(topic, num_partitions=1, replication_factor=1, config=configs or {})
    admin.create_topics([new])[topic].result(10)


def fill(bootstrap: str, topic: str, count: int) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all"})
    errors: list[Any] = []
    for i in range(count):
        producer.produce(
            topic, value=b"v%d" % i, on_delivery=lambda e, _: errors.append(e) if e else None
        )
    assert producer.flush(30) == 0 and not errors


def recovery_points(broker: KpyProcess) -> dict[tuple[str, int], int]:
    return read_offset_checkpoint(broker.data_dir / RECOVERY_POINT_CHECKPOINT)


# --- flush.messages and flush.ms ---


def test_flush_messages_moves_the_recovery_point(kpy_factory: Any) -> None:
    broker = kpy_factory(CHECKPOINT_OFTEN)
    create(broker.bootstrap, "every-record", {"flush.messages": "1"})
    create(broker.bootstrap, "page-cache")
    fill(broker.bootstrap, "every-record", 50)
    fill(broker.bootstrap, "page-cache", 50)
    wait_for(
        "the flushed recovery point in the checkpoint",
        lambda: recovery_points(broker).get(("every-record", 0)) == 50,
    )
    # Written in the same checkpoint: the other topic's records were never fsynced.
    assert recovery_points(broker)[("page-cache", 0)] == 0


def test_broker_flush_interval_messages_is_the_topic_default(kpy_factory: Any) -> None:
    broker = kpy_factory({**CHECKPOINT_OFTEN, "log.flush.interval.messages": "10"})
    create(broker.bootstrap, "t")
    fill(broker.bootstrap, "t", 5)  # under 10: no flush yet
    fill(broker.bootstrap, "t", 5)
    wait_for("a recovery point at 10", lambda: recovery_points(broker).get(("t", 0)) == 10)


def test_flush_ms_flushes_from_the_periodic_check(kpy_factory: Any) -> None:
    broker = kpy_factory(
        {
            **CHECKPOINT_OFTEN,
            "log.flush.scheduler.interval.ms": "100",
            "log.initial.task.delay.ms": "0",
        }
    )
    create(broker.bootstrap, "timed", {"flush.ms": "300"})
    create(broker.bootstrap, "untimed", {"flush.ms": "9223372036854775807"})
    fill(broker.bootstrap, "timed", 20)
    fill(broker.bootstrap, "untimed", 20)
    wait_for("flush.ms to flush", lambda: recovery_points(broker).get(("timed", 0)) == 20)
    assert recovery_points(broker)[("untimed", 0)] == 0


# --- kpy.flush.before.ack and a power cut ---


class Producers:
    """``count`` producer threads (acks=all) sending distinct values until stopped; collects
    the (offset, value) of every acknowledged record."""

    def __init__(self, bootstrap: str, topic: str, count: int) -> None:
        self.acked: dict[int, bytes] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._run, args=(bootstrap, topic, n), daemon=True)
            for n in range(count)
        ]

    def _report(self, err: Any, msg: Any) -> None:
        if err is None:
            with self._lock:
                self.acked[msg.offset()] = msg.value()

    def _run(self, bootstrap: str, topic: str, n: int) -> None:
        producer = Producer(
            {
                "bootstrap.servers": bootstrap,
                "acks": "all",
                "linger.ms": 2,
                "message.timeout.ms": 5000,
            }
        )
        i = 0
        while not self._stop.is_set():
            value = b"p%d-%06d-" % (n, i) + b"x" * 200
            with contextlib.suppress(BufferError):
                producer.produce(topic, value=value, partition=0, on_delivery=self._report)
            producer.poll(0.001)
            i += 1
        producer.flush(10)

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(30)

    def count(self) -> int:
        with self._lock:
            return len(self.acked)


def read_all(bootstrap: str, topic: str) -> dict[int, bytes]:
    """Every record from the log start on, by offset: until the log end, or until nothing more
    comes for a few seconds (a cut can leave segments that are empty below the log end)."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "reader"})
    try:
        start, end = consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)
        consumer.assign([TopicPartition(topic, 0, start)])
        got: dict[int, bytes] = {}
        position = start
        idle_until = time.monotonic() + 5
        while position < end and time.monotonic() < idle_until:
            msg = consumer.poll(0.5)
            if msg is not None:
                assert msg.error() is None, msg.error()
                got[msg.offset()] = msg.value()
                position = msg.offset() + 1
                idle_until = time.monotonic() + 5
        return got
    finally:
        consumer.close()


@pytest.mark.parametrize("before_ack", [True, False], ids=["flush-before-ack", "page-cache"])
def test_a_power_cut(kpy_factory: Any, tmp_path: Path, before_ack: bool) -> None:
    journal = tmp_path / "fsync-journal"
    broker = kpy_factory(
        {
            "kpy.test.durability.journal": str(journal),
            "kpy.flush.before.ack": "true" if before_ack else "false",
        }
    )
    topic = "durable"
    create(broker.bootstrap, topic, {"internal.segment.bytes": str(256 * 1024)})
    producers = Producers(broker.bootstrap, topic, 4)
    producers.start()
    try:
        wait_for("acknowledged records", lambda: producers.count() >= 3000)
        broker.kill()  # mid-stream: requests are in flight
    finally:
        producers.stop()
    acked = dict(producers.acked)
    assert len(list((broker.data_dir / f"{topic}-0").glob("*.log"))) > 1  # it rolled

    report = cut_power(broker.data_dir, journal)
    broker.start()
    got = read_all(broker.bootstrap, topic)
    lost = sorted(offset for offset, value in acked.items() if got.get(offset) != value)
    if before_ack:
        assert not lost, f"{len(lost)} acknowledged records lost, from offset {lost[0]}"
    else:
        assert report.removed or report.truncated
        assert lost  # the page cache held acknowledged records, and the cut took them
