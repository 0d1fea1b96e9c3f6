"""Produce throughput against a fresh kpy: confluent-kafka sends N messages of SIZE bytes.

    python scripts/bench_produce.py [--count 200000] [--size 100] [--codec lz4]

Starts kpy on a temporary directory, produces, and prints messages/s and MB/s (the best of
--runs runs). For before/after comparisons on one machine; numbers vary with load.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from confluent_kafka import Producer  # noqa: E402
from kpy_process import KpyProcess  # noqa: E402


def run(bootstrap: str, topic: str, count: int, size: int, codec: str) -> float:
    producer = Producer({"bootstrap.servers": bootstrap, "compression.type": codec, "linger.ms": 5})
    payload = bytes(range(256)) * (size // 256 + 1)
    value = payload[:size]
    start = time.perf_counter()
    for i in range(count):
        while True:
            try:
                producer.produce(topic, value=value, key=str(i % 1000).encode())
                break
            except BufferError:
                producer.poll(0.01)
        if i % 10000 == 0:
            producer.poll(0)
    if producer.flush(60) != 0:
        raise SystemExit("messages left undelivered")
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=200_000)
    parser.add_argument("--size", type=int, default=100)
    parser.add_argument("--codec", default="lz4")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        broker = KpyProcess(Path(tmp)).start()
        try:
            best = min(
                run(broker.bootstrap, f"bench{i}", args.count, args.size, args.codec)
                for i in range(args.runs)
            )
        finally:
            broker.stop()
    print(
        f"{args.count} x {args.size} B {args.codec}: {args.count / best:,.0f} msg/s, "
        f"{args.count * args.size / best / 1e6:.1f} MB/s (best of {args.runs})"
    )


if __name__ == "__main__":
    main()
