"""The messages every client test round-trips: 10,000 per client over 3 partitions, with keys,
values, headers and timestamps, null keys, empty and null values, and a few values near 1 MB."""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from typing import Any

COUNT = 10_000
PARTITIONS = 3
BIG = 1_000_000 - 2_000  # near 1 MB, under every client's default message size limit
# Timestamps an hour old, on the whole second. Older data would be gone mid-test: time-based
# retention (retention.ms, 7 days) deletes whole segments, the active one included, on its first
# pass log.initial.task.delay.ms (30 s) after start, as Kafka's does.
BASE_TS = (int(time.time()) - 3600) * 1000


@dataclass(frozen=True)
class Message:
    partition: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...]
    timestamp: int


def messages(count: int = COUNT, seed: int = 7, printable: bool = False) -> list[Message]:
    rng = random.Random(seed)
    out = []
    for i in range(count):
        kind = i % 50
        key: bytes | None = b"key-%d" % i
        value: bytes | None
        if kind == 1:
            key = None
        if kind == 2:
            value = b""
        elif kind == 3 and not printable:
            value = None
        elif i in (1234, 5678, 9012):
            value = bytes(rng.randrange(32, 127) for _ in range(64)) * (BIG // 64)
        elif printable:
            value = f"value-{i}-".encode() + bytes(rng.randrange(97, 123) for _ in range(i % 40))
        else:
            value = rng.randbytes(i % 300)
        headers: tuple[tuple[str, bytes], ...] = ()
        if kind % 5 == 4:
            headers = (("h1", b"one"), ("seq", str(i).encode()))
        out.append(Message(i % PARTITIONS, key, value, headers, BASE_TS + i * 7))
    return out


def by_partition(msgs: list[Message]) -> dict[int, list[Message]]:
    out: dict[int, list[Message]] = {p: [] for p in range(PARTITIONS)}
    for m in msgs:
        out[m.partition].append(m)
    return out


def assert_records_match(expected: list[Message], got: list[Any]) -> None:
    """Records of kafka-python or aiokafka (same attribute names) against what was sent."""
    assert len(got) == len(expected)
    for i, (want, rec) in enumerate(zip(expected, got, strict=True)):
        assert rec.offset == i
        assert rec.key == want.key
        assert rec.value == want.value
        assert tuple(rec.headers) == want.headers
        assert rec.timestamp == want.timestamp and rec.timestamp_type == 0  # CreateTime
