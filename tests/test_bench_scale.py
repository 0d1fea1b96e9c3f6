"""bench/workloads/scale.py at its --quick sizes against a real kpy: every workload completes and
reports its rows, the idle connections survive the producer, the group reads every record, and
the workloads leave no topic behind. A smoke run: no figure is judged."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from compat.tools import missing
from confluent_kafka.admin import AdminClient

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.core import Context, KpyBroker, Scale
from bench.workloads.scale import WORKLOADS

JAVA_VERSION = "4.1.0"


@pytest.mark.skipif(missing(JAVA_VERSION) is not None, reason=str(missing(JAVA_VERSION)))
def test_scale_workloads_run_quick_against_kpy(tmp_path: Path) -> None:
    scale = Scale.quick()
    broker = KpyBroker(tmp_path)
    broker.start()
    try:
        ctx = Context(broker, scale, tmp_path, lambda _line: None)
        results = {m.row: m for w in WORKLOADS for m in w.run(ctx)}
        left = [t for t in AdminClient({"bootstrap.servers": broker.bootstrap})
                .list_topics(timeout=10).topics if t.startswith("scale-")]  # fmt: skip
    finally:
        broker.stop()
    assert sorted(results) == [
        "20 idle connections + producer: broker RSS peak",
        "20 idle connections + producer: kafka-producer-perf-test 100 B acks=1",
        "50 partitions, small batches: confluent-kafka produce",
        "50 partitions, small batches: create topic",
        "consumer group of 4: subscribe until all read",
        "consumer group of 4: subscribe until stable",
    ]
    assert all(m.broker == "kpy" and m.value > 0 for m in results.values())
    idle = results["20 idle connections + producer: broker RSS peak"].detail
    assert idle["connections_answering_after"] == 20
    group = results["consumer group of 4: subscribe until all read"].detail
    assert [r["consumed"] for r in group["runs"]] == [scale.small_records] * scale.repeats
    assert left == []
