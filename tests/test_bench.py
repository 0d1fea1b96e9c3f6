"""A smoke run of the benchmark (bench/): ``python -m bench --quick --brokers kpy``.

It runs the workloads of issue 6's items 1-4 (modules produce, consume, latency, startup; the
scale workloads have their own smoke test, tests/test_bench_scale.py) at the quick sizes against
a real kpy, with the stock Kafka perf tools and confluent-kafka, and checks that each row was
measured and the three result files were written. It asserts nothing about speed: the benchmark
judges nothing.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LIBS = ROOT / "compat-tests" / "target" / "kafka-4.1.0" / "libs"

PRODUCE = [
    f"produce {size} acks={acks} ({client})"
    for client in ("kafka-producer-perf-test", "confluent-kafka")
    for size in ("100 B", "1 KB")
    for acks in ("1", "all")
] + ["produce 1 KB transactions of 100 ms (kafka-producer-perf-test)"]
CONSUME = [
    f"consume {size} ({client})"
    for client in ("kafka-consumer-perf-test", "confluent-kafka")
    for size in ("100 B", "1 KB")
]
LATENCY = [f"latency {s} (kafka-e2e-latency)" for s in ("avg", "p50", "p99", "p99.9")] + [
    f"latency {s} (confluent-kafka ping-pong)" for s in ("p50", "p99", "p99.9")
]
STARTUP = [
    "start-up to first acknowledged produce",
    "resident memory idle, one topic",
    "resident memory peak under produce load",
    "start-up to ready (ApiVersions + Metadata): embedded kpy.Broker / server process",
]
EXPECTED = (
    [(row, "msg/s") for row in PRODUCE]
    + [(row, unit) for row in CONSUME for unit in ("msg/s", "MB/s")]
    + [(row, "ms") for row in LATENCY]
    + list(zip(STARTUP, ("s", "MiB", "MiB", "s"), strict=True))
)


@pytest.mark.skipif(not LIBS.is_dir(), reason=f"no Kafka 4.1.0 jars in {LIBS} (fetch-jars)")
@pytest.mark.skipif(shutil.which("java") is None, reason="no java for the Kafka perf tools")
def test_quick_run_against_kpy_measures_every_row(tmp_path: Path) -> None:
    out = tmp_path / "results"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench",
            "--quick",
            "--brokers",
            "kpy",
            "--only",
            "produce,consume,latency,startup",
            "--out",
            str(out),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=280,
    )
    assert done.returncode == 0, done.stderr[-4000:]

    results = json.loads((out / "results.json").read_text())
    assert results["errors"] == []
    assert results["scale"]["name"] == "quick"
    assert results["brokers"] == ["kpy"]
    assert results["machine"]["cpu_count"] >= 1
    figures = {(m["row"], m["unit"]): m for m in results["measurements"]}
    assert sorted(figures) == sorted(EXPECTED)
    for key, m in figures.items():
        assert m["broker"] == "kpy"
        if m["detail"].get("resolution_ms"):
            # kafka-e2e-latency truncates its percentiles to whole ms: 0 means under 1 ms.
            assert m["value"] >= 0, key
        else:
            assert m["value"] > 0, key

    table = (out / "results.md").read_text()
    for row, _unit in EXPECTED:
        assert f"| {row} |" in table
    assert (out / "results.png").read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
