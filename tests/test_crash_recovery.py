"""SIGKILL in the middle of an acks=all produce loses nothing acknowledged; a clean restart does
no recovery work and loses nothing."""

from __future__ import annotations

import re
import threading
import time
from functools import partial
from pathlib import Path

import pytest

confluent_kafka = pytest.importorskip("confluent_kafka")

from confluent_kafka import Consumer, Producer, TopicPartition  # noqa: E402
from confluent_kafka.admin import AdminClient, NewTopic  # noqa: E402
from kpy_process import KpyProcess  # noqa: E402

TOPIC = "crash"
PARTITIONS = 3


def consume_all(bootstrap: str, partition: int) -> list[tuple[int, bytes, int]]:
    """(offset, value, timestamp) of every record in the partition."""
    c = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": "crash-check", "enable.auto.commit": False}
    )
    try:
        low, high = c.get_watermark_offsets(TopicPartition(TOPIC, partition), timeout=10)
        c.assign([TopicPartition(TOPIC, partition, low)])
        out = []
        while len(out) < high - low:
            msg = c.poll(10)
            assert msg is not None, f"stalled at {len(out)} of {high - low}"
            assert msg.error() is None, msg.error()
            out.append((msg.offset(), msg.value(), msg.timestamp()[1]))
        return out
    finally:
        c.close()


def record(into: list[int], err: object, msg: object) -> None:
    assert err is None, err
    into.append(msg.offset())  # type: ignore[attr-defined]


def recovered_segments(log_text: str) -> int:
    m = re.findall(r"recovered (\d+) segment", log_text)
    assert m, "the broker did not report its recovery work:\n" + log_text
    return int(m[-1])


def test_sigkill_mid_produce_keeps_every_acknowledged_message(tmp_path: Path) -> None:
    broker = KpyProcess(tmp_path / "data").start()
    try:
        admin = AdminClient({"bootstrap.servers": broker.bootstrap})
        admin.create_topics(
            [NewTopic(TOPIC, PARTITIONS, 1, config={"internal.segment.bytes": "200000"})]
        )[TOPIC].result(10)
        acked: dict[int, dict[int, bytes]] = {p: {} for p in range(PARTITIONS)}
        stop = threading.Event()

        def delivered(err: object, msg: object) -> None:
            if err is None:
                acked[msg.partition()][msg.offset()] = msg.value()  # type: ignore[attr-defined]

        producer = Producer(
            {
                "bootstrap.servers": broker.bootstrap,
                "acks": "all",
                "enable.idempotence": True,
                "linger.ms": 1,
                "message.timeout.ms": 3000,
            }
        )

        def run() -> None:
            i = 0
            while not stop.is_set():
                try:
                    producer.produce(
                        TOPIC, value=b"m-%08d" % i, partition=i % PARTITIONS, on_delivery=delivered
                    )
                    i += 1
                except BufferError:
                    pass
                producer.poll(0.0005 if i % 100 == 0 else 0)
            producer.flush(5)

        t = threading.Thread(target=run)
        t.start()
        deadline = time.monotonic() + 60
        while sum(len(a) for a in acked.values()) < 20_000 and time.monotonic() < deadline:
            time.sleep(0.01)
        broker.kill()
        stop.set()
        t.join(30)
        total = sum(len(a) for a in acked.values())
        assert total >= 20_000

        broker.start()
        assert recovered_segments(broker.log_text()) >= 1
        for p in range(PARTITIONS):
            records = consume_all(broker.bootstrap, p)
            offsets = [o for o, _, _ in records]
            assert offsets == list(range(len(records))), "offsets have a gap or a repeat"
            stored = {o: v for o, v, _ in records}
            for offset, value in acked[p].items():
                assert stored.get(offset) == value, f"acknowledged {p}/{offset} lost"
            # Offsets go on without gap after the restart.
            after = Producer({"bootstrap.servers": broker.bootstrap, "acks": "all"})
            got: list[int] = []
            after.produce(TOPIC, value=b"after", partition=p, on_delivery=partial(record, got))
            after.flush(10)
            assert got == [len(records)]
            # Fetch by time finds the first record at or after a stored timestamp.
            c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "t"})
            mid = records[len(records) // 2]
            found = c.offsets_for_times([TopicPartition(TOPIC, p, mid[2])], timeout=10)[0]
            first_at = next(o for o, _, ts in records if ts >= mid[2])
            assert found.offset == first_at
            c.close()
    finally:
        broker.stop()


def test_clean_restart_does_no_recovery_and_loses_nothing(tmp_path: Path) -> None:
    broker = KpyProcess(tmp_path / "data").start()
    try:
        p = Producer({"bootstrap.servers": broker.bootstrap, "acks": "all"})
        for i in range(1000):
            p.produce(TOPIC, value=b"v%d" % i, partition=0)
        assert p.flush(30) == 0
        assert broker.stop() == 0
        broker.start()
        assert recovered_segments(broker.log_text()) == 0
        records = consume_all(broker.bootstrap, 0)
        assert [v for _, v, _ in records] == [b"v%d" % i for i in range(1000)]
    finally:
        broker.stop()
