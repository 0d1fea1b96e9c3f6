"""Log compaction against real clients: a compacted topic fed 100,000 updates over 1,000 keys
(with tombstones) converges to the latest value per key, read back from the beginning by
confluent-kafka; tombstones go after delete.retention.ms; SIGKILLs at random moments during
cleaning lose no key's latest value and leave a log that opens; keyless records are refused
with INVALID_RECORD.

Every wait polls for the expected state until a deadline; nothing asserts how long it took."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from pathlib import Path

import pytest

confluent_kafka = pytest.importorskip("confluent_kafka")

from confluent_kafka import Consumer, KafkaError, Message, Producer  # noqa: E402
from confluent_kafka.admin import AdminClient, NewTopic  # noqa: E402
from kpy_process import KpyProcess  # noqa: E402

DEADLINE = 120.0
# The cleaner and retention look every 100 ms from the start.
FAST_CLEANER = {
    "log.cleaner.backoff.ms": "100",
    "log.retention.check.interval.ms": "100",
    "log.initial.task.delay.ms": "0",
}
COMPACTED = {
    "cleanup.policy": "compact",
    "internal.segment.bytes": "65536",
    "min.cleanable.dirty.ratio": "0.01",
    "file.delete.delay.ms": "0",
}
KEYS = 1000
FILLER = b"filler"
UPDATES = 100_000

Latest = dict[bytes, bytes | None]


def wait_for(what: str, check: Callable[[], bool], deadline: float = DEADLINE) -> None:
    end = time.monotonic() + deadline
    while not check():
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


def create(bootstrap: str, topic: str, configs: dict[str, str]) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    new = NewTopic(topic, num_partitions=1, replication_factor=1, config=configs)
    admin.create_topics([new])[topic].result(10)


def produce_updates(bootstrap: str, topic: str, updates: int, seed: int) -> Latest:
    """``updates`` records over KEYS keys, about one in twenty a tombstone; the latest per key."""
    rng = random.Random(seed)
    producer = Producer(
        {"bootstrap.servers": bootstrap, "linger.ms": 5, "batch.size": 16384, "acks": "all"}
    )
    latest: Latest = {}
    failed: list[KafkaError] = []
    for i in range(updates):
        key = b"key-%04d" % rng.randrange(KEYS)
        value = None if rng.random() < 0.05 else b"value-%06d" % i
        while True:
            try:
                producer.produce(
                    topic,
                    key=key,
                    value=value,
                    on_delivery=lambda err, _msg: failed.append(err) if err else None,
                )
                break
            except BufferError:
                producer.poll(0.1)
        latest[key] = value
    assert producer.flush(60) == 0
    assert failed == []
    return latest


def read_all(bootstrap: str, topic: str) -> list[tuple[bytes, bytes | None, int]]:
    """Every record from the beginning to the end: (key, value, offset)."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"reader-{time.monotonic_ns()}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
        }
    )
    consumer.subscribe([topic])
    out: list[tuple[bytes, bytes | None, int]] = []
    end = time.monotonic() + 60
    try:
        while time.monotonic() < end:
            msg = consumer.poll(1.0)
            if msg is None:
                continue
            if msg.error():
                if msg.error().code() == KafkaError._PARTITION_EOF:
                    return out
                raise AssertionError(msg.error())
            out.append((msg.key(), msg.value(), msg.offset()))
    finally:
        consumer.close()
    raise AssertionError("never reached the end of the partition")


def segment_files(data_dir: Path, topic: str) -> list[Path]:
    return sorted((data_dir / f"{topic}-0").glob("*.log"))


def converged(records: list[tuple[bytes, bytes | None, int]], latest: Latest) -> bool:
    """One record per key (the latest), tombstones included."""
    seen: dict[bytes, bytes | None] = {}
    for key, value, _ in records:
        if key in seen:
            return False
        seen[key] = value
    return seen == latest


def check_latest(records: list[tuple[bytes, bytes | None, int]], latest: Latest) -> None:
    """The last record read for each key is its latest value (a key whose latest is a
    tombstone may be gone altogether); offsets increase."""
    seen: dict[bytes, bytes | None] = {}
    offsets = [offset for _, _, offset in records]
    assert offsets == sorted(offsets)
    for key, value, _ in records:
        seen[key] = value
    for key, value in latest.items():
        if value is None:
            assert seen.get(key) is None, key
        else:
            assert seen.get(key) == value, key


def test_compacted_topic_converges_and_tombstones_go(
    kpy_factory: Callable[..., KpyProcess],
) -> None:
    broker = kpy_factory(FAST_CLEANER)
    topic = "compacted"
    # Tombstones stay 3 s after their segment was cleaned; nothing newer than 0 ms is exempt.
    create(broker.bootstrap, topic, {**COMPACTED, "delete.retention.ms": "3000"})
    latest = produce_updates(broker.bootstrap, topic, UPDATES, seed=7)
    live = {k for k, v in latest.items() if v is not None}
    assert len(live) < len(latest)  # some keys end in a tombstone

    # The active segment is never cleaned: more than a segment's worth of updates to one other
    # key rolls everything written so far out of it (and, later, gives the cleaner new dirty
    # bytes).
    def filler() -> None:
        producer = Producer(
            {"bootstrap.servers": broker.bootstrap, "linger.ms": 5, "batch.size": 16384}
        )
        failed: list[KafkaError] = []
        for i in range(5000):
            producer.produce(
                topic,
                key=FILLER,
                value=b"filler-%06d" % i,
                on_delivery=lambda err, _msg: failed.append(err) if err else None,
            )
        assert producer.flush(30) == 0
        assert failed == []

    def real(records: list[tuple[bytes, bytes | None, int]]) -> list[tuple[bytes, bytes | None]]:
        return [(key, value) for key, value, _ in records if key != FILLER]

    def compacted() -> bool:
        records = real(read_all(broker.bootstrap, topic))
        keys = [key for key, _ in records]
        return len(keys) == len(set(keys)) and all(latest[k] == v for k, v in records)

    filler()
    wait_for("compaction to the latest value per key", compacted)
    time.sleep(3)  # delete.retention.ms after the tombstones' segments were cleaned

    def tombstones_gone() -> bool:
        filler()  # cleaning needs dirty bytes
        return all(value is not None for _, value in real(read_all(broker.bootstrap, topic)))

    wait_for("tombstones to go after delete.retention.ms", tombstones_gone)
    records = read_all(broker.bootstrap, topic)
    assert sorted(real(records)) == sorted((k, v) for k, v in latest.items() if v is not None)
    # It survives a restart too, and the data directory holds far less than was written.
    broker.restart()
    check_latest(read_all(broker.bootstrap, topic), latest)
    size = sum(p.stat().st_size for p in segment_files(broker.data_dir, topic))
    assert size < 20 * 65536


def test_sigkill_during_cleaning_loses_no_latest_value(
    kpy_factory: Callable[..., KpyProcess],
) -> None:
    broker = kpy_factory(FAST_CLEANER)
    topic = "crashy"
    create(broker.bootstrap, topic, {**COMPACTED, "internal.segment.bytes": "16384"})
    latest: Latest = {}
    rng = random.Random(11)
    for round_ in range(4):
        latest.update(produce_updates(broker.bootstrap, topic, 10_000, seed=round_))
        time.sleep(rng.uniform(0.0, 1.5))  # somewhere in a cleaning pass, or between two
        broker.kill()
        broker.restart()
        records = read_all(broker.bootstrap, topic)
        check_latest(records, latest)
        assert "Traceback" not in broker.log_text()
    log_dir = broker.data_dir / f"{topic}-0"
    broker.stop()
    leftovers = [p.name for p in log_dir.iterdir() if p.name.endswith((".cleaned", ".swap"))]
    assert leftovers == []


def test_keyless_record_refused_on_compacted_topic(
    kpy_factory: Callable[..., KpyProcess],
) -> None:
    broker = kpy_factory(FAST_CLEANER)
    create(broker.bootstrap, "keyed", {"cleanup.policy": "compact"})
    create(broker.bootstrap, "plain", {})
    producer = Producer({"bootstrap.servers": broker.bootstrap, "retries": 0})
    errors: dict[tuple[str, bytes | None], KafkaError | None] = {}

    def report(err: KafkaError | None, msg: Message) -> None:
        errors[(msg.topic(), msg.key())] = err

    producer.produce("keyed", value=b"no key", on_delivery=report)
    producer.produce("plain", value=b"no key", on_delivery=report)
    producer.flush(30)
    # A batch is refused whole (as in Kafka), so the keyed record goes in a batch of its own.
    producer.produce("keyed", key=b"k", value=b"keyed", on_delivery=report)
    producer.flush(30)
    assert len(errors) == 3
    refused = errors[("keyed", None)]
    assert refused is not None and refused.code() == KafkaError.INVALID_RECORD
    assert errors[("plain", None)] is None and errors[("keyed", b"k")] is None
