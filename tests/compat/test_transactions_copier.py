"""Exactly-once consume-transform-produce under crashes: ``txn_copier.py`` (confluent-kafka,
send_offsets_to_transaction) copies a topic while the test SIGKILLs it at random points and starts
it again, checked the same against kpy and against Apache Kafka (``--compat-broker=kafka``).

The copier commits its output and its consumer group's offsets in one transaction, so however
often it dies, the committed output holds every committed input record exactly once, in the input's
order per partition, and the group's committed offsets end at the input's end. The kill points come
from a seeded random generator; the seed is printed (run with KPY_TXN_SEED=<seed> to repeat it).
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

from confluent_kafka import ConsumerGroupState, ConsumerGroupTopicPartitions, TopicPartition
from confluent_kafka.admin import AdminClient

from compat.steps import Broker
from compat.txn_steps import (
    READ_COMMITTED,
    WAIT,
    create_topics,
    end_offsets,
    read_all,
    send,
    txn_producer,
    values,
)

COPIER = Path(__file__).with_name("txn_copier.py")
PARTITIONS = 3
RECORDS = 2000
KILLS = 4


def start_copier(bootstrap: str, log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, str(COPIER), bootstrap, "numbers", "copies", "copiers", "copier-txn"],
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def wait_for_commits(proc: subprocess.Popen[bytes], log: Path, count: int) -> None:
    """Until the copier has committed ``count`` transactions in this run, or has exited."""
    deadline = time.monotonic() + WAIT
    while log.read_text(errors="replace").count("committed ") < count and proc.poll() is None:
        assert time.monotonic() < deadline, log.read_text(errors="replace")
        time.sleep(0.02)


def group_offsets(bootstrap: str) -> list[int]:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    request = ConsumerGroupTopicPartitions(
        "copiers", [TopicPartition("numbers", p) for p in range(PARTITIONS)]
    )
    result = admin.list_consumer_group_offsets([request], request_timeout=WAIT)["copiers"].result()
    return [tp.offset for tp in sorted(result.topic_partitions, key=lambda tp: tp.partition)]


def wait_group_empty(bootstrap: str) -> None:
    """The last copier's static member stays until its session times out (6 s): wait for that,
    so that the group can be deleted after the test."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    deadline = time.monotonic() + WAIT
    while True:
        group = admin.describe_consumer_groups(["copiers"], request_timeout=WAIT)["copiers"]
        if group.result().state == ConsumerGroupState.EMPTY:
            return
        assert time.monotonic() < deadline, f"group still {group.result().state}"
        time.sleep(0.5)


def test_copier_survives_kills_exactly_once(broker: Broker, tmp_path: Path) -> None:
    """Committed output = committed input, exactly once and in order per partition, after the
    copier was SIGKILLed at random points (mid-transaction among them) and restarted; the input
    has aborted transactions too, which the read_committed copier must never copy; the group's
    committed offsets are the input's end offsets (its LSOs, past the last markers)."""
    seed = int(os.environ.get("KPY_TXN_SEED", random.randrange(1 << 32)))
    print(f"KPY_TXN_SEED={seed}")
    rng = random.Random(seed)
    b = broker.bootstrap
    create_topics(b, "numbers", "copies", partitions=PARTITIONS)

    # The input: 2000 numbered records in committed transactions of 100, each followed by an
    # aborted one whose records must never be copied.
    feeder = txn_producer(b, "numbers-feeder")
    for start in range(0, RECORDS, 100):
        feeder.begin_transaction()
        for p in range(PARTITIONS):
            send(feeder, "numbers", [b"%d" % i for i in range(start, start + 100) if i % 3 == p], p)
        feeder.commit_transaction(WAIT)
        feeder.begin_transaction()
        send(feeder, "numbers", [b"aborted-%d" % start], start // 100 % PARTITIONS)
        feeder.abort_transaction(WAIT)
    wanted = {p: [b"copy-%d" % i for i in range(p, RECORDS, 3)] for p in range(PARTITIONS)}
    input_ends = end_offsets(b, "numbers", PARTITIONS, READ_COMMITTED)

    for run in range(KILLS):
        log = tmp_path / f"copier{run}.out"
        proc = start_copier(b, log)
        try:
            wait_for_commits(proc, log, rng.randint(1, 20))
            time.sleep(rng.uniform(0.0, 0.2))
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
        print(f"run {run}: {log.read_text(errors='replace').splitlines()[-1:]}")

    log = tmp_path / "copier-last.out"
    proc = start_copier(b, log)
    try:
        code = proc.wait(120)
    finally:
        proc.kill()
        proc.wait()
    out = log.read_text(errors="replace")
    assert code == 0, out
    assert out.splitlines()[-1] == "done", out

    assert values(read_all(b, "copies", PARTITIONS, READ_COMMITTED)) == wanted
    assert group_offsets(b) == input_ends
    wait_group_empty(b)
