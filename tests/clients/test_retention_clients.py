"""Retention against real clients: old segments go by time and by size while a confluent-kafka
producer and consumer run; a consumer behind the log start gets OFFSET_OUT_OF_RANGE and its
auto.offset.reset decides (earliest, latest, error/none); retention changed at run time with
IncrementalAlterConfigs (topic and broker default) applies; file.delete.delay.ms delays the
unlink of the ``*.deleted`` files; the new log start survives a SIGKILL.

Every wait polls for the expected state until a deadline; nothing asserts how long it took."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

confluent_kafka = pytest.importorskip("confluent_kafka")
kafka = pytest.importorskip("kafka")

from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition  # noqa: E402
from confluent_kafka.admin import (  # noqa: E402
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    NewTopic,
)
from kafka import KafkaConsumer  # noqa: E402
from kafka import TopicPartition as KTopicPartition  # noqa: E402
from kafka.errors import OffsetOutOfRangeError  # noqa: E402
from kpy_process import KpyProcess  # noqa: E402

DEADLINE = 60.0
# A retention check every 200 ms from the start, instead of every 5 minutes after 30 s.
FAST_RETENTION = {"log.retention.check.interval.ms": "200", "log.initial.task.delay.ms": "0"}
SMALL_SEGMENTS = {"internal.segment.bytes": "2048", "file.delete.delay.ms": "0"}
# Batches well under a segment (a bigger one is refused with RECORD_LIST_TOO_LARGE).
SMALL_BATCHES = {"batch.size": 1024}


def wait_for(what: str, check: Callable[[], bool], deadline: float = DEADLINE) -> None:
    end = time.monotonic() + deadline
    while not check():
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def create(bootstrap: str, topic: str, configs: dict[str, str]) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    new = NewTopic(topic, num_partitions=1, replication_factor=1, config=configs)
    admin.create_topics([new])[topic].result(10)


def alter(bootstrap: str, resource: ConfigResource, configs: dict[str, str]) -> None:
    """IncrementalAlterConfigs: SET each of ``configs``."""
    for name, value in configs.items():
        resource.add_incremental_config(
            ConfigEntry(name, value, incremental_operation=AlterConfigOpType.SET)
        )
    admin = AdminClient({"bootstrap.servers": bootstrap})
    (future,) = admin.incremental_alter_configs([resource]).values()
    future.result(10)


def watermarks(bootstrap: str, topic: str) -> tuple[int, int]:
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "watermarks"})
    try:
        low, high = c.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)
        return int(low), int(high)
    finally:
        c.close()


def fill(bootstrap: str, topic: str, count: int) -> None:
    """``count`` records of about 100 bytes, every one acknowledged."""
    producer = Producer(SMALL_BATCHES | {"bootstrap.servers": bootstrap})
    errors: list[Any] = []
    for i in range(count):
        producer.produce(
            topic,
            value=b"v%d" % i + b"x" * 100,
            partition=0,
            on_delivery=lambda err, _: errors.append(err) if err else None,
        )
    assert producer.flush(30) == 0
    assert not errors, errors[:3]


def segment_files(data_dir: Path, topic: str, suffix: str) -> list[Path]:
    return sorted((data_dir / f"{topic}-0").glob(f"*{suffix}"))


class SteadyProducer:
    """A confluent-kafka producer on a thread, sending a record every few ms until stopped;
    remembers the offset of every acknowledged record."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.producer = Producer(SMALL_BATCHES | {"bootstrap.servers": bootstrap, "linger.ms": 5})
        self.topic = topic
        self.acked: dict[int, bytes] = {}
        self.errors: list[Any] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _report(self, err: Any, msg: Any) -> None:
        if err is not None:
            self.errors.append(err)
        else:
            self.acked[msg.offset()] = msg.value()

    def _run(self) -> None:
        i = 0
        while not self._stop.is_set():
            value = b"record-%06d-" % i + b"x" * 100
            self.producer.produce(self.topic, value=value, partition=0, on_delivery=self._report)
            self.producer.poll(0.005)
            i += 1
        self.producer.flush(30)

    def __enter__(self) -> SteadyProducer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(60)


@pytest.fixture
def broker(kpy_factory: Any) -> Iterator[KpyProcess]:
    yield kpy_factory(FAST_RETENTION)


def consume_live(bootstrap: str, topic: str, start_past: int) -> list[int]:
    """A group consumer reading from the beginning until the log start moved past
    ``start_past`` and it has read past the start; the offsets it read."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"live-{topic}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    tp = TopicPartition(topic, 0)
    offsets: list[int] = []
    start = 0
    try:
        consumer.subscribe([topic])
        end = time.monotonic() + DEADLINE
        next_check = 0.0
        while start <= start_past or not offsets or offsets[-1] < start:
            assert time.monotonic() < end, f"the live consumer timed out (start {start})"
            if time.monotonic() > next_check:
                start = consumer.get_watermark_offsets(tp, timeout=10, cached=False)[0]
                next_check = time.monotonic() + 0.5
            msg = consumer.poll(0.2)
            if msg is None:
                continue
            assert msg.error() is None, msg.error()
            offsets.append(msg.offset())
    finally:
        consumer.close()
    return offsets


def settled_start(bootstrap: str, topic: str) -> int:
    """The log start once retention moved it and two looks half a second apart agree."""
    end = time.monotonic() + DEADLINE
    while time.monotonic() < end:
        before = watermarks(bootstrap, topic)
        time.sleep(0.5)
        if before[0] > 0 and watermarks(bootstrap, topic) == before:
            return before[0]
    raise AssertionError("the log start did not settle")


def first_record(consumer: Consumer) -> Any:
    end = time.monotonic() + DEADLINE
    while time.monotonic() < end:
        msg = consumer.poll(0.2)
        if msg is not None:
            return msg
    raise AssertionError("no record")


def behind(bootstrap: str, topic: str, reset: str) -> Consumer:
    """A consumer positioned at offset 0, below the log start."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"behind-{reset}",
            "auto.offset.reset": reset,
            "enable.auto.commit": False,
        }
    )
    consumer.assign([TopicPartition(topic, 0, 0)])
    return consumer


def test_time_retention_while_producing_and_consuming(broker: KpyProcess) -> None:
    b = broker.bootstrap
    topic = "aged"
    create(b, topic, {"retention.ms": "3000", **SMALL_SEGMENTS})
    with SteadyProducer(b, topic) as producer:
        # The log start moves past records the live consumer has read, and it reads on.
        read = consume_live(b, topic, start_past=200)
        assert read == sorted(read) and len(set(read)) == len(read)
    assert not producer.errors
    # Freeze the log where it is: the newest records are well inside retention.ms.
    alter(b, ConfigResource(ConfigResource.Type.TOPIC, topic), {"retention.ms": "-1"})
    start, end = watermarks(b, topic)
    assert start > 0
    if start == end:  # everything expired before the freeze: give the readers one record
        extra = Producer({"bootstrap.servers": b})
        extra.produce(topic, value=b"one more", partition=0)
        assert extra.flush(10) == 0
        start, end = watermarks(b, topic)
        assert start < end
    first_kept = producer.acked.get(start, b"one more")

    # auto.offset.reset=earliest: OFFSET_OUT_OF_RANGE at 0, then from the log start.
    earliest = behind(b, topic, "earliest")
    try:
        msg = first_record(earliest)
        assert msg.error() is None and msg.offset() == start
        assert msg.value() == first_kept
    finally:
        earliest.close()

    # auto.offset.reset=error (librdkafka's "none"): the error reaches the application.
    erring = behind(b, topic, "error")
    try:
        msg = first_record(erring)
        assert msg.error() is not None
        assert msg.error().code() == KafkaError._AUTO_OFFSET_RESET
    finally:
        erring.close()

    # auto.offset.reset=latest: only records written after the reset.
    latest = behind(b, topic, "latest")
    late_producer = Producer({"bootstrap.servers": b})
    try:
        got = None
        deadline = time.monotonic() + DEADLINE
        while got is None and time.monotonic() < deadline:
            late_producer.produce(topic, value=b"after", partition=0)
            late_producer.flush(10)
            msg = latest.poll(0.5)
            if msg is not None:
                assert msg.error() is None, msg.error()
                got = msg
        assert got is not None and got.offset() >= end and got.value() == b"after"
    finally:
        latest.close()


def test_kafka_python_without_a_reset_policy_raises(broker: KpyProcess) -> None:
    b = broker.bootstrap
    topic = "aged-kp"
    create(b, topic, {"retention.ms": "1000", **SMALL_SEGMENTS})
    with SteadyProducer(b, topic):
        wait_for("the log start to move", lambda: watermarks(b, topic)[0] > 0)
    tp = KTopicPartition(topic, 0)
    consumer = KafkaConsumer(bootstrap_servers=b, group_id=None, auto_offset_reset="none")
    try:
        consumer.assign([tp])
        consumer.seek(tp, 0)
        with pytest.raises(OffsetOutOfRangeError):
            end = time.monotonic() + DEADLINE
            while time.monotonic() < end:
                consumer.poll(timeout_ms=500)
    finally:
        consumer.close()


def test_size_retention_keeps_the_log_near_retention_bytes(broker: KpyProcess) -> None:
    b = broker.bootstrap
    topic = "sized"
    limit = 16 * 1024
    create(b, topic, {"retention.bytes": str(limit), **SMALL_SEGMENTS})
    with SteadyProducer(b, topic) as producer:
        read = consume_live(b, topic, start_past=200)
        assert read == sorted(read)
    assert not producer.errors

    def on_disk() -> int:
        return sum(p.stat().st_size for p in segment_files(broker.data_dir, topic, ".log"))

    # Once the producer stopped, a check leaves the log at or above the limit and less than a
    # segment (2048 bytes, plus the batch that rolled it) over.
    wait_for("the log to shrink to the limit", lambda: on_disk() < limit + 2048 + 1024)
    assert on_disk() >= limit
    start, end = watermarks(b, topic)
    assert 0 < start < end
    reader = behind(b, topic, "earliest")
    try:
        msg = first_record(reader)
        assert msg.offset() == start and msg.value() == producer.acked[start]
    finally:
        reader.close()


def test_retention_changed_at_run_time_applies(broker: KpyProcess) -> None:
    b = broker.bootstrap
    create(b, "by-topic", {"internal.segment.bytes": "2048", "file.delete.delay.ms": "0"})
    create(b, "by-broker", {"internal.segment.bytes": "2048", "file.delete.delay.ms": "0"})
    for topic in ("by-topic", "by-broker"):
        fill(b, topic, 200)
    assert len(segment_files(broker.data_dir, "by-topic", ".log")) > 5
    time.sleep(0.5)  # a few retention checks under the default week: nothing moves
    assert watermarks(b, "by-topic") == (0, 200)

    # The topic's own setting, changed with IncrementalAlterConfigs.
    alter(b, ConfigResource(ConfigResource.Type.TOPIC, "by-topic"), {"retention.bytes": "4096"})
    wait_for("retention.bytes to apply", lambda: watermarks(b, "by-topic")[0] > 0)
    assert watermarks(b, "by-broker")[0] == 0  # the other topic keeps everything

    # The broker default (log.retention.ms) for topics without their own: everything has a
    # timestamp from just now, so 1 ms retention takes it all once a millisecond passes.
    alter(b, ConfigResource(ConfigResource.Type.BROKER, "1"), {"log.retention.ms": "1"})
    wait_for("log.retention.ms to apply", lambda: watermarks(b, "by-broker") == (200, 200))
    assert watermarks(b, "by-topic")[1] == 200


def test_deleted_files_wait_for_file_delete_delay(broker: KpyProcess) -> None:
    b = broker.bootstrap
    topic = "delayed"
    create(b, topic, {"internal.segment.bytes": "2048", "file.delete.delay.ms": "2000"})
    fill(b, topic, 100)
    alter(b, ConfigResource(ConfigResource.Type.TOPIC, topic), {"retention.bytes": "0"})
    wait_for("the rename", lambda: bool(segment_files(broker.data_dir, topic, ".log.deleted")))
    assert watermarks(b, topic) == (100, 100)  # gone for readers at once
    wait_for("the unlink", lambda: not segment_files(broker.data_dir, topic, ".deleted"))
    assert [p.name for p in segment_files(broker.data_dir, topic, ".log")] == [f"{100:020d}.log"]


def test_the_start_retention_moved_survives_a_sigkill(broker: KpyProcess) -> None:
    b = broker.bootstrap
    topic = "kept"
    create(b, topic, {"retention.bytes": "4096", **SMALL_SEGMENTS})
    fill(b, topic, 200)
    start = settled_start(b, topic)
    broker.kill()
    broker.start()
    assert watermarks(broker.bootstrap, topic) == (start, 200)
