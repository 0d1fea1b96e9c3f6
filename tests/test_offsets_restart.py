"""A confluent-kafka group's committed offsets survive the broker: after a clean restart
(SIGTERM) or a SIGKILL of kpy, a new consumer in the group resumes exactly where the group
committed, so the two consumers together read every message once."""

from __future__ import annotations

import pytest

pytest.importorskip("confluent_kafka")

from clients.group_util import PARTITIONS, consume, create_topic, group_consumer, produce, values
from confluent_kafka import TopicPartition
from kpy_process import KpyProcess

TOPIC = "resumed"
TOTAL = 600
FIRST = 250


@pytest.mark.parametrize("stop", ["restart", "sigkill"])
def test_a_group_resumes_at_its_committed_offsets(kpy: KpyProcess, stop: str) -> None:
    create_topic(kpy.bootstrap, TOPIC)
    produce(kpy.bootstrap, TOPIC, 0, TOTAL)
    group = f"resume-{stop}"

    first = group_consumer(kpy.bootstrap, group, TOPIC)
    before = consume(first, FIRST)
    first.commit(asynchronous=False)  # the position after each partition's last message
    wanted = [TopicPartition(TOPIC, p) for p in range(PARTITIONS)]
    committed = {tp.partition: tp.offset for tp in first.committed(wanted, timeout=10)}
    first.close()
    for p in range(PARTITIONS):
        last = [o for q, o, _ in before if q == p]
        assert committed[p] == (max(last) + 1 if last else -1001)  # -1001: none committed

    if stop == "restart":
        kpy.restart()
    else:
        kpy.kill()
        kpy.start()

    second = group_consumer(kpy.bootstrap, group, TOPIC)
    try:
        after = consume(second, TOTAL - FIRST)
        assert {tp.partition: tp.offset for tp in second.committed(wanted, timeout=10)} == (
            committed
        )
    finally:
        second.close()
    for p in range(PARTITIONS):
        offsets = [o for q, o, _ in after if q == p]
        if offsets:
            assert min(offsets) == max(committed[p], 0), f"partition {p}"
    assert sorted(v for _, _, v in before + after) == sorted(values(0, TOTAL))
