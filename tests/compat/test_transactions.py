"""Kafka transactions (exactly-once) with confluent-kafka (librdkafka): commit and abort, the last
stable offset, fencing and the transaction timeout, checked the same against kpy and against
Apache Kafka (``--compat-broker=kafka``).

What these pin down, each as exact offsets and values:

- A transaction's records are visible to read_committed consumers once it commits and never once
  it aborts; read_uncommitted consumers see both. Every transaction ends with one control record
  (the COMMIT or ABORT marker) in each partition it wrote to, which takes an offset and is never
  handed to the application.
- An open transaction holds the last stable offset (LSO) at its first offset: read_committed
  fetches stop there, and ListOffsets(latest) at read_committed answers it, until the
  transaction ends.
- init_transactions by a second producer with the same transactional.id aborts the first's open
  transaction (the marker is written before it returns) and fences the first producer.
- The coordinator aborts a transaction that outlives its transaction.timeout.ms and bumps the
  producer's epoch, which fences the producer too.

The consumers and the ends they read to are in ``txn_steps``; nothing here waits a fixed time.
"""

from __future__ import annotations

import time

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

from compat.steps import Broker
from compat.txn_steps import (
    READ_COMMITTED,
    READ_UNCOMMITTED,
    WAIT,
    create_topics,
    end_offsets,
    plain_producer,
    read_all,
    read_until,
    reader,
    send,
    txn_producer,
    values,
)


def assert_fenced(error: KafkaException) -> None:
    """librdkafka's verdict on a fenced transactional producer: fatal _FENCED (-144)."""
    err = error.args[0]
    assert err.code() == KafkaError._FENCED, err
    assert err.fatal() and not err.retriable() and not err.txn_requires_abort(), err


def test_commit_and_abort_alternating(broker: Broker) -> None:
    """20 transactions over 3 partitions, every other one aborted: read_committed gets exactly the
    committed records, read_uncommitted all of them, each partition in order. Each transaction
    writes 2 records to each partition and its marker takes the next offset, so transaction i
    owns offsets 3i, 3i+1 (records) and 3i+2 (marker) in every partition."""
    b = broker.bootstrap
    create_topics(b, "alternating", partitions=3)
    producer = txn_producer(b, "alternating-txn")
    for i in range(20):
        producer.begin_transaction()
        for p in range(3):
            send(producer, "alternating", [f"t{i}-p{p}-r{r}".encode() for r in range(2)], p)
        if i % 2 == 0:
            producer.commit_transaction(WAIT)
        else:
            producer.abort_transaction(WAIT)

    assert end_offsets(b, "alternating", 3, READ_UNCOMMITTED) == [60, 60, 60]
    assert end_offsets(b, "alternating", 3, READ_COMMITTED) == [60, 60, 60]

    def expected(txns: range) -> dict[int, list[tuple[int, bytes]]]:
        return {
            p: [(3 * i + r, f"t{i}-p{p}-r{r}".encode()) for i in txns for r in range(2)]
            for p in range(3)
        }

    assert read_all(b, "alternating", 3, READ_COMMITTED) == expected(range(0, 20, 2))
    assert read_all(b, "alternating", 3, READ_UNCOMMITTED) == expected(range(20))


def test_open_transaction_holds_the_last_stable_offset(broker: Broker) -> None:
    """While a transaction is open, read_committed consumers get the records before its first
    offset and stop there (the LSO), even though non-transactional records follow it;
    ListOffsets at read_committed answers the LSO, at read_uncommitted the high watermark. Once it
    commits, they get the rest in offset order."""
    b = broker.bootstrap
    create_topics(b, "held")
    plain = plain_producer(b)
    send(plain, "held", [b"before0", b"before1"])  # offsets 0, 1
    producer = txn_producer(b, "held-txn")
    producer.begin_transaction()
    send(producer, "held", [b"txn0", b"txn1"])  # 2, 3: the transaction starts at 2
    send(plain, "held", [b"after0", b"after1"])  # 4, 5

    assert end_offsets(b, "held", 1, READ_COMMITTED) == [2]
    assert end_offsets(b, "held", 1, READ_UNCOMMITTED) == [6]
    # librdkafka's own ListOffsets (query_watermark_offsets) asks at the handle's isolation level.
    for isolation, high in ((READ_COMMITTED, 2), (READ_UNCOMMITTED, 6)):
        probe = reader(b, isolation)
        try:
            got = probe.get_watermark_offsets(TopicPartition("held", 0), timeout=WAIT, cached=False)
            assert got == (0, high), isolation
        finally:
            probe.close()

    assert values(read_all(b, "held", 1, READ_UNCOMMITTED)) == {
        0: [b"before0", b"before1", b"txn0", b"txn1", b"after0", b"after1"]
    }

    committed = reader(b, READ_COMMITTED)
    try:
        committed.assign([TopicPartition("held", 0, 0)])
        # The fetch ends at the LSO: the consumer reports its end at 2, with only what precedes.
        got = read_until(committed, "held", [2])
        assert got == {0: [(0, b"before0"), (1, b"before1")]}

        producer.commit_transaction(WAIT)  # the marker goes to offset 6
        assert end_offsets(b, "held", 1, READ_COMMITTED) == [7]
        got = read_until(committed, "held", [7], got)
        assert got == {
            0: [(0, b"before0"), (1, b"before1"), (2, b"txn0"), (3, b"txn1"),
                (4, b"after0"), (5, b"after1")]
        }  # fmt: skip
    finally:
        committed.close()


def test_second_producer_fences_the_first(broker: Broker) -> None:
    """init_transactions with a transactional.id whose transaction is open aborts that transaction
    (its marker is in the log when init_transactions returns) and fences the old producer: its
    next produce is refused (INVALID_PRODUCER_EPOCH) and its commit fails with librdkafka's fatal
    _FENCED. The old transaction's records are never visible to read_committed."""
    b = broker.bootstrap
    create_topics(b, "fence")
    first = txn_producer(b, "fence-txn")
    first.begin_transaction()
    send(first, "fence", [b"first0", b"first1"])  # offsets 0, 1
    assert end_offsets(b, "fence", 1, READ_COMMITTED) == [0]

    second = txn_producer(b, "fence-txn")
    # The first's transaction was aborted: its marker is at 2, nothing is open.
    assert end_offsets(b, "fence", 1, READ_COMMITTED) == [3]
    assert end_offsets(b, "fence", 1, READ_UNCOMMITTED) == [3]

    first.produce("fence", b"first-late", partition=0)
    with pytest.raises(KafkaException) as caught:
        first.commit_transaction(WAIT)
    assert_fenced(caught.value)

    second.begin_transaction()
    send(second, "fence", [b"second0"])  # offset 3, its marker 4
    second.commit_transaction(WAIT)

    assert read_all(b, "fence", 1, READ_COMMITTED) == {0: [(3, b"second0")]}
    assert read_all(b, "fence", 1, READ_UNCOMMITTED) == {
        0: [(0, b"first0"), (1, b"first1"), (3, b"second0")]
    }


def test_transaction_timeout_aborts_and_fences(broker: Broker) -> None:
    """A transaction left open past transaction.timeout.ms is aborted by the coordinator on its
    own: the LSO moves past it (its marker follows the records written meanwhile), its records
    never become visible, what came after it does. The coordinator bumped the producer's epoch
    for the abort, so the producer's commit fails as fenced (fatal _FENCED)."""
    b = broker.bootstrap
    create_topics(b, "expire")
    producer = txn_producer(b, "expire-txn", **{"transaction.timeout.ms": 2000})
    producer.begin_transaction()
    send(producer, "expire", [b"lost0", b"lost1"])  # offsets 0, 1
    send(plain_producer(b), "expire", [b"kept"])  # offset 2
    assert end_offsets(b, "expire", 1, READ_COMMITTED) == [0]

    # Kafka looks for expired transactions every
    # transaction.abort.timed.out.transaction.cleanup.interval.ms (10 s by default).
    deadline = time.monotonic() + WAIT
    while (lso := end_offsets(b, "expire", 1, READ_COMMITTED)) == [0]:
        assert time.monotonic() < deadline, "the timed-out transaction was not aborted"
        time.sleep(0.2)
    assert lso == [4]  # the abort marker at 3
    assert end_offsets(b, "expire", 1, READ_UNCOMMITTED) == [4]
    assert read_all(b, "expire", 1, READ_COMMITTED) == {0: [(2, b"kept")]}
    assert read_all(b, "expire", 1, READ_UNCOMMITTED) == {
        0: [(0, b"lost0"), (1, b"lost1"), (2, b"kept")]
    }

    with pytest.raises(KafkaException) as caught:
        producer.commit_transaction(WAIT)
    assert_fenced(caught.value)


def test_transaction_timeout_above_the_broker_maximum(broker: Broker) -> None:
    """transaction.timeout.ms above the broker's transaction.max.timeout.ms (900000 by default)
    is refused by InitProducerId with INVALID_TRANSACTION_TIMEOUT (50), fatal for librdkafka;
    the maximum itself is accepted."""
    b = broker.bootstrap
    txn_producer(b, "max-timeout-txn", **{"transaction.timeout.ms": 900000})
    with pytest.raises(KafkaException) as caught:
        txn_producer(b, "over-timeout-txn", **{"transaction.timeout.ms": 900001})
    err = caught.value.args[0]
    assert err.code() == KafkaError.INVALID_TRANSACTION_TIMEOUT and err.fatal(), err


def test_read_committed_consumer_group_skips_aborted(broker: Broker) -> None:
    """A subscribed read_committed consumer in a group gets the committed transactions only, and
    the offsets it commits are past the markers: the group's committed offset is the LSO."""
    b = broker.bootstrap
    create_topics(b, "grouped")
    producer = txn_producer(b, "grouped-txn")
    for i, commit in enumerate([True, False, True]):
        producer.begin_transaction()
        send(producer, "grouped", [f"g{i}-{r}".encode() for r in range(3)])
        (producer.commit_transaction if commit else producer.abort_transaction)(WAIT)
    # g0: 0-2, marker 3; g1: 4-6 aborted, marker 7; g2: 8-10, marker 11.
    assert end_offsets(b, "grouped", 1, READ_COMMITTED) == [12]

    consumer = Consumer(
        {
            "bootstrap.servers": b,
            "group.id": "grouped-readers",
            "isolation.level": READ_COMMITTED,
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            "auto.offset.reset": "earliest",
        }
    )
    try:
        consumer.subscribe(["grouped"])
        got = read_until(consumer, "grouped", [12])
        assert values(got) == {0: [b"g0-0", b"g0-1", b"g0-2", b"g2-0", b"g2-1", b"g2-2"]}
        assert [offset for offset, _ in got[0]] == [0, 1, 2, 8, 9, 10]
        # The position is past the last marker, and that is what the group commits.
        assert consumer.position([TopicPartition("grouped", 0)])[0].offset == 12
        consumer.commit(asynchronous=False)
        committed = consumer.committed([TopicPartition("grouped", 0)], timeout=WAIT)
        assert committed[0].offset == 12
    finally:
        consumer.close()
