"""Transactions across a broker crash: the broker under test is SIGKILLed and started again on
its data (kpy, and Apache Kafka with ``--compat-broker=kafka``; both fixtures can be killed and
restarted on the same data and port). Each test has a broker of its own (see the ``broker``
fixture here).

What must hold: a transaction whose commit_transaction returned before the crash is committed
after it (its records visible to read_committed); a transaction open at the crash is still open
after the restart (the coordinator's state and the partition's producer state are recovered
from the logs) and ends with an abort, by a new producer with the same transactional.id or by
the transaction timeout, so read_committed never sees its records; later transactions work.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from kpy_process import KpyProcess

from compat import kafka_broker
from compat.conftest import broker_choice
from compat.kafka_broker import DELETE_AT_ONCE, KafkaBroker
from compat.steps import Broker
from compat.txn_steps import (
    READ_COMMITTED,
    READ_UNCOMMITTED,
    WAIT,
    create_topics,
    end_offsets,
    read_all,
    send,
    txn_producer,
)


@pytest.fixture
def broker(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Broker]:
    """A broker of this test's own, also with --compat-broker=kafka: Kafka 4.1.0 restarted on a
    metadata log that has seen topics deleted (as the session's shared broker has, by its resets)
    can fail to start (NullPointerException in TopicDelta.replay, from
    TopicsDelta.maybeReplayClearElrRecord, while loading the metadata log)."""
    kind, version = broker_choice(request.config)
    if kind == "kpy":
        proc = KpyProcess(tmp_path / "data").start()
        try:
            yield proc
        finally:
            proc.stop()
        return
    assert version is not None
    why = kafka_broker.missing(version)
    if why is not None:
        pytest.skip(why)
    own = KafkaBroker(tmp_path / "kafka", version, DELETE_AT_ONCE).start()
    try:
        yield own
    finally:
        own.stop()


def crash(broker: Broker) -> None:
    """SIGKILL the broker and start it again on the same data and port."""
    broker.kill()
    broker.start()


def test_broker_kill_mid_transaction_then_new_producer(broker: Broker) -> None:
    """Committed then open at the crash: after the restart the LSO is still at the open
    transaction's first offset; a new producer with the transactional.id aborts it
    (init_transactions), then commits one of its own. Offsets: committed 0-1, COMMIT 2; open
    3-4; ABORT 5; new 6, COMMIT 7."""
    b = broker.bootstrap
    create_topics(b, "crashed")
    before = txn_producer(b, "crashed-txn")
    before.begin_transaction()
    send(before, "crashed", [b"committed0", b"committed1"])
    before.commit_transaction(WAIT)
    before.begin_transaction()
    send(before, "crashed", [b"open0", b"open1"])
    assert end_offsets(b, "crashed", 1, READ_COMMITTED) == [3]

    crash(broker)
    assert end_offsets(b, "crashed", 1, READ_COMMITTED) == [3]
    assert end_offsets(b, "crashed", 1, READ_UNCOMMITTED) == [5]

    after = txn_producer(b, "crashed-txn")
    assert end_offsets(b, "crashed", 1, READ_COMMITTED) == [6]
    after.begin_transaction()
    send(after, "crashed", [b"new0"])
    after.commit_transaction(WAIT)

    assert read_all(b, "crashed", 1, READ_COMMITTED) == {
        0: [(0, b"committed0"), (1, b"committed1"), (6, b"new0")]
    }
    assert read_all(b, "crashed", 1, READ_UNCOMMITTED) == {
        0: [(0, b"committed0"), (1, b"committed1"), (3, b"open0"), (4, b"open1"), (6, b"new0")]
    }


def test_broker_kill_mid_transaction_then_timeout(broker: Broker) -> None:
    """Open at the crash, and nobody comes back for it: the restarted coordinator aborts it once
    its transaction.timeout.ms (5 s) has passed, as it would have without the crash. Offsets:
    open 0-1, ABORT 2."""
    b = broker.bootstrap
    create_topics(b, "orphaned")
    producer = txn_producer(b, "orphaned-txn", **{"transaction.timeout.ms": 5000})
    producer.begin_transaction()
    send(producer, "orphaned", [b"orphan0", b"orphan1"])
    assert end_offsets(b, "orphaned", 1, READ_COMMITTED) == [0]
    # The producer stays idle from here on (kept, so that no clean-up of the client's ends the
    # transaction): only the coordinator can.

    crash(broker)
    deadline = time.monotonic() + WAIT
    while (lso := end_offsets(b, "orphaned", 1, READ_COMMITTED)) == [0]:
        assert time.monotonic() < deadline, "the open transaction was not aborted after restart"
        time.sleep(0.2)
    assert lso == [3]
    assert read_all(b, "orphaned", 1, READ_COMMITTED) == {0: []}

    later = txn_producer(b, "orphaned-txn")
    later.begin_transaction()
    send(later, "orphaned", [b"later"])  # offset 3, COMMIT 4
    later.commit_transaction(WAIT)
    assert read_all(b, "orphaned", 1, READ_COMMITTED) == {0: [(3, b"later")]}
    assert producer is not later
