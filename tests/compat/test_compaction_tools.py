"""The stock kafka-dump-log accepts what kpy's log cleaner wrote: every batch valid with
--deep-iteration (batches thinned to fewer records than their offset range, recompressed with
gzip, an idempotent producer's id and sequences kept), the indexes sane with --index-sanity-check,
and only each key's latest value left below the active segment."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
from kpy_process import KpyProcess

from compat.tools import Tools

confluent_kafka = pytest.importorskip("confluent_kafka")

from confluent_kafka import Producer  # noqa: E402
from confluent_kafka.admin import AdminClient, NewTopic  # noqa: E402

TOPIC = "compacted"
KEYS = 50
CONFIGS = {
    "cleanup.policy": "compact",
    "internal.segment.bytes": "8192",
    "min.cleanable.dirty.ratio": "0.01",
    "delete.retention.ms": "3600000",
    "file.delete.delay.ms": "0",
}


def fill(bootstrap: str) -> None:
    """2,000 gzip-compressed updates over KEYS keys from an idempotent producer, every tenth a
    tombstone."""
    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "enable.idempotence": True,
            "compression.type": "gzip",
            "linger.ms": 5,
            "batch.size": 2048,
        }
    )
    for i in range(2000):
        key = f"key-{i % KEYS:02d}"
        value = None if i % 10 == 3 else f"value-{i:05d}"
        producer.produce(TOPIC, key=key.encode(), value=None if value is None else value.encode())
        producer.poll(0)
    assert producer.flush(30) == 0


def log_files(part: Path) -> list[Path]:
    return sorted(part.glob("*.log"))


def test_dump_log_accepts_cleaned_segments(broker: KpyProcess, tools: Tools) -> None:
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    admin.create_topics([NewTopic(TOPIC, 1, 1, config=CONFIGS)])[TOPIC].result(10)
    fill(broker.bootstrap)
    part = broker.data_dir / f"{TOPIC}-0"
    written = sum(p.stat().st_size for p in log_files(part))

    # The cleaner looks every log.cleaner.backoff.ms (15 s by default); it checkpoints the
    # first dirty offset once done.
    checkpoint = broker.data_dir / "cleaner-offset-checkpoint"
    deadline = time.monotonic() + 90
    while not (
        checkpoint.exists() and re.search(rf"^{TOPIC} 0 [1-9]", checkpoint.read_text(), re.M)
    ):
        assert time.monotonic() < deadline, "the log was never cleaned"
        time.sleep(0.5)
    files = log_files(part)
    assert sum(p.stat().st_size for p in files) < written

    dump = tools.ok("kafka-dump-log", "--files", ",".join(str(f) for f in files),
                    "--deep-iteration", "--print-data-log")  # fmt: skip
    assert "isvalid: false" not in dump and "isvalid: true" in dump
    assert "compresscodec: gzip" in dump
    assert "producerId: -1 " not in dump and "baseSequence: -1 " not in dump
    # Below the active segment, each key once, with its last value there (record i, at offset
    # i, has key i % KEYS and is a tombstone when i % 10 == 3).
    active_base = int(files[-1].name.split(".")[0])
    below = dump.split(f"Dumping {files[-1]}")[0]
    seen: dict[str, str | None] = {}
    # A tombstone has no "payload:" (DumpLogSegments prints none for a null value).
    for key, payload in re.findall(r"key: (\S+)(?: payload: (\S+))?", below):
        assert key not in seen, key
        seen[key] = payload or None
    expected: dict[str, str | None] = {}
    for i in range(active_base):
        expected[f"key-{i % KEYS:02d}"] = None if i % 10 == 3 else f"value-{i:05d}"
    assert seen == expected
    assert any(v is None for v in seen.values())  # tombstones stay: delete.retention.ms is 1 h
    # The indexes of every segment pass Kafka's checks.
    indexes = [str(p) for p in sorted(part.glob("*.index")) + sorted(part.glob("*.timeindex"))]
    checked = tools.ok("kafka-dump-log", "--files", ",".join(indexes), "--index-sanity-check")
    assert "is not sane" not in checked and "Mismatches" not in checked, checked
