"""Steps the transaction scenarios share: make topics, open transactional producers, read a topic
to its end as a read_committed or read_uncommitted consumer, ask for the end offsets.

"The end" is what the broker says it is, never a pause: ListOffsets(latest) at the consumer's
isolation level gives the high watermark (read_uncommitted) or the last stable offset
(read_committed); the consumer reads until librdkafka reports the end of every partition
(enable.partition.eof) at or past that offset. A read_committed fetch stops at the last stable
offset, so a read_committed consumer that reports its end there has seen all it ever will of what
lies below it, and nothing above it.

Every wait is bounded by WAIT seconds.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Mapping, Sequence

from confluent_kafka import (
    Consumer,
    IsolationLevel,
    KafkaError,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient, NewTopic, OffsetSpec

# The longest any step waits for the broker.
WAIT = 30.0

READ_COMMITTED = "read_committed"
READ_UNCOMMITTED = "read_uncommitted"

# What ListOffsets may answer while a restarted broker catches up with the metadata.
AFTER_RESTART = {
    KafkaError.UNKNOWN_LEADER_EPOCH,
    KafkaError.NOT_LEADER_FOR_PARTITION,
    KafkaError.LEADER_NOT_AVAILABLE,
}

# One partition's records as read: (offset, value) in the order the consumer got them.
Records = list[tuple[int, bytes]]


def create_topics(bootstrap: str, *topics: str, partitions: int = 1) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    new = [NewTopic(t, num_partitions=partitions, replication_factor=1) for t in topics]
    for future in admin.create_topics(new, operation_timeout=WAIT).values():
        future.result()
    # Created is not yet served: wait until every partition answers ListOffsets (a raw Produce
    # sent too early gets NOT_LEADER_OR_FOLLOWER).
    for topic in topics:
        end_offsets(bootstrap, topic, partitions, READ_UNCOMMITTED)


def txn_producer(bootstrap: str, transactional_id: str, **config: str | int) -> Producer:
    """A confluent-kafka producer with ``transactional_id``, after init_transactions."""
    producer = Producer(
        {"bootstrap.servers": bootstrap, "transactional.id": transactional_id, **config}
    )
    producer.init_transactions(WAIT)
    return producer


def plain_producer(bootstrap: str) -> Producer:
    """An idempotent, non-transactional confluent-kafka producer (acks=all)."""
    return Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True})


def send(producer: Producer, topic: str, values: Sequence[bytes], partition: int = 0) -> None:
    """Produce ``values`` to one partition and wait until all are acknowledged."""
    for value in values:
        producer.produce(topic, value, partition=partition)
    left = producer.flush(WAIT)
    assert left == 0, f"{left} records not acknowledged"


def end_offsets(bootstrap: str, topic: str, partitions: int, isolation: str) -> list[int]:
    """ListOffsets(latest) per partition at ``isolation``: the high watermark or, for
    read_committed, the last stable offset. Asked again on a retriable error (a broker that has
    just restarted answers UNKNOWN_LEADER_EPOCH until it has caught up with the metadata)."""
    level = (
        IsolationLevel.READ_COMMITTED if isolation == READ_COMMITTED
        else IsolationLevel.READ_UNCOMMITTED
    )  # fmt: skip
    admin = AdminClient({"bootstrap.servers": bootstrap})
    wanted = {TopicPartition(topic, p): OffsetSpec.latest() for p in range(partitions)}
    deadline = time.monotonic() + WAIT
    while True:
        futures = admin.list_offsets(wanted, isolation_level=level, request_timeout=WAIT)
        try:
            found = {tp.partition: future.result().offset for tp, future in futures.items()}
            return [found[p] for p in range(partitions)]
        except KafkaException as e:
            err = e.args[0]
            retry = err.retriable() or err.code() in AFTER_RESTART
            if not retry or time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def reader(bootstrap: str, isolation: str, **config: str | int | bool) -> Consumer:
    """A consumer at ``isolation`` that reports the end of each partition, commits nothing."""
    return Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"reader-{uuid.uuid4()}",
            "isolation.level": isolation,
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            "auto.offset.reset": "earliest",
            **config,
        }
    )


def read_until(
    consumer: Consumer,
    topic: str,
    ends: Sequence[int],
    got: dict[int, Records] | None = None,
    keys: dict[int, list[bytes | None]] | None = None,
) -> dict[int, Records]:
    """Poll ``consumer`` (assigned to ``topic``) until every partition p reports its end at or
    past ``ends[p]``; the records it got, per partition, added to ``got`` (and their keys to
    ``keys``, when given, in the same order)."""
    found = got if got is not None else {p: [] for p in range(len(ends))}

    def take(msg: Message) -> None:
        found[msg.partition()].append((msg.offset(), msg.value()))
        if keys is not None:
            keys.setdefault(msg.partition(), []).append(msg.key())

    poll_to_ends(consumer, {topic: ends}, take)
    return found


def poll_to_ends(
    consumer: Consumer,
    until: Mapping[str, Sequence[int]],
    take: Callable[[Message], None],
    wait: float = WAIT,
) -> None:
    """Poll ``consumer`` (assigned or subscribed) until every partition p of every topic reports
    its end at or past ``until[topic][p]``, passing each record it gets to ``take``; ``wait``
    seconds at most."""
    at_end: dict[tuple[str, int], int] = {}
    deadline = time.monotonic() + wait
    while any(at_end.get((t, p), -1) < e for t, es in until.items() for p, e in enumerate(es)):
        assert time.monotonic() < deadline, (
            f"ends {dict(at_end)} not reached {dict(until)} in {wait} s"
        )
        msg = consumer.poll(0.5)
        if msg is None:
            continue
        err = msg.error()
        if err is not None:
            if err.code() == KafkaError._PARTITION_EOF:
                at_end[(msg.topic(), msg.partition())] = msg.offset()
                continue
            raise KafkaException(err)
        at_end.pop((msg.topic(), msg.partition()), None)
        take(msg)


def read_all(bootstrap: str, topic: str, partitions: int, isolation: str) -> dict[int, Records]:
    """Everything a fresh consumer at ``isolation`` reads of ``topic`` from the start to the end
    offsets ListOffsets gives at that isolation level."""
    ends = end_offsets(bootstrap, topic, partitions, isolation)
    consumer = reader(bootstrap, isolation)
    try:
        consumer.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
        return read_until(consumer, topic, ends)
    finally:
        consumer.close()


def read_all_keyed(
    bootstrap: str, topic: str, partitions: int, isolation: str
) -> dict[int, list[tuple[bytes | None, bytes]]]:
    """As read_all, the records as (key, value)."""
    ends = end_offsets(bootstrap, topic, partitions, isolation)
    consumer = reader(bootstrap, isolation)
    keys: dict[int, list[bytes | None]] = {p: [] for p in range(partitions)}
    try:
        consumer.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
        got = read_until(consumer, topic, ends, keys=keys)
    finally:
        consumer.close()
    return {p: list(zip(keys[p], vals, strict=True)) for p, vals in values(got).items()}


def values(records: dict[int, Records]) -> dict[int, list[bytes]]:
    return {p: [value for _, value in recs] for p, recs in records.items()}
