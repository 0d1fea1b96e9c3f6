"""CPU of LogSegment's hot paths, in-process: append, and the reads a Fetch makes.

    python scripts/bench_segment.py [--batches 20000] [--repeat 7] [--fs os|memory]

Appends --batches batches of 10 x 100-byte records to one segment, then reads: the batch
appended last (a consumer at the log end), 1 MB from offsets spread over the segment (a consumer
catching up), and 4 KB from the same offsets. Prints the best and the median of --repeat runs
per call. Numbers vary with the machine's load; compare runs back to back (PYTHONPATH=<another
tree laid out as installed> runs another version of kpy).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

from kpy.protocol.records import build_batch, set_base_offset
from kpy.storage.segment import LogSegment


def run(directory: Path, batches: int, kwargs: dict[str, Any]) -> dict[str, float]:
    template = build_batch([(None, b"x" * 100)] * 10, timestamp=1000)
    data = []
    for i in range(batches):
        batch = bytearray(template)
        set_base_offset(batch, 0, i * 10)
        data.append(batch)
    segment = LogSegment(directory, 0, **kwargs)
    try:
        out: dict[str, float] = {}
        started = time.perf_counter()
        for batch in data:
            segment.append(batch)
        out["append"] = (time.perf_counter() - started) / batches
        last = batches * 10 - 1
        started = time.perf_counter()
        for _ in range(batches):
            segment.read_to_end(last, 1 << 20)
        out["read at the end"] = (time.perf_counter() - started) / batches
        offsets = list(range(0, max(batches * 10 - 10_000, 1), max(batches * 10 // 2000, 1)))
        for label, size in (("read 1 MB", 1 << 20), ("read 4 KB", 4096)):
            started = time.perf_counter()
            for offset in offsets:
                segment.read_to_end(offset, size)
            out[label] = (time.perf_counter() - started) / len(offsets)
        return out
    finally:
        segment.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=20000)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--fs", choices=("os", "memory"), default="os")
    args = parser.parse_args()
    results: dict[str, list[float]] = {}
    for _ in range(args.repeat):
        with tempfile.TemporaryDirectory() as tmp:
            kwargs: dict[str, Any] = {}
            if args.fs == "memory":
                from kpy.storage.fs import MemoryFileSystem

                memory = MemoryFileSystem()
                memory.mkdir(tmp)
                kwargs["fs"] = memory
            for label, seconds in run(Path(tmp), args.batches, kwargs).items():
                results.setdefault(label, []).append(seconds)
    for label, runs in results.items():
        runs.sort()
        print(
            f"{label:16s} best {runs[0] * 1e6:8.2f} us, median {runs[len(runs) // 2] * 1e6:8.2f} us"
        )


if __name__ == "__main__":
    main()
