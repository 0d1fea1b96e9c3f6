"""Consume-transform-produce, exactly once, with confluent-kafka: the process that
test_transactions_copier.py kills and restarts.

    python txn_copier.py BOOTSTRAP INPUT OUTPUT GROUP TRANSACTIONAL_ID [BATCH]

It reads INPUT as a member of consumer group GROUP (read_committed, no auto-commit; static
membership, group.instance.id = TRANSACTIONAL_ID, so that a restarted copier takes its
predecessor's place at once instead of waiting for the dead member's session to time out), and
for every input record writes ``copy-<value>`` to the same partition of OUTPUT. Each poll of up to
BATCH records is one transaction, which also commits the consumer's positions as the group's
offsets (send_offsets_to_transaction); at the end, when the positions have moved past the last
transaction markers, one more transaction commits just those offsets. It stops, exit status 0,
once every input partition has reached the end offset INPUT had when it started (its LSO) and
those positions are committed; it prints ``committed <n>`` after each transaction (n records so
far in this run) and ``done`` at the end.

A copier killed at any point leaves an open transaction, which the next one's init_transactions
(same transactional id) aborts, offsets and output together: that is what makes the copy exact.
One copier runs at a time: it does not handle partitions moving to another member.
"""

from __future__ import annotations

import sys
import time

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition

WAIT = 30.0


def main(argv: list[str]) -> int:
    bootstrap, input_topic, output_topic, group, txn_id = argv[:5]
    batch = int(argv[5]) if len(argv) > 5 else 10
    producer = Producer({"bootstrap.servers": bootstrap, "transactional.id": txn_id})
    # First: this aborts what a killed predecessor left open, its offsets with it.
    producer.init_transactions(WAIT)
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": group,
            "group.instance.id": txn_id,
            "session.timeout.ms": 6000,
            "isolation.level": "read_committed",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "enable.partition.eof": True,
        }
    )
    metadata = consumer.list_topics(input_topic, timeout=WAIT).topics[input_topic]
    partitions = sorted(metadata.partitions)
    ends = {
        p: consumer.get_watermark_offsets(TopicPartition(input_topic, p), WAIT, cached=False)[1]
        for p in partitions
    }
    consumer.subscribe([input_topic])
    # Per partition: the end offset this run has been told it is at (the end-of-partition event),
    # and the offset last committed for the group in this run.
    reached = dict.fromkeys(partitions, -1)
    committed: dict[int, int] = {}
    copied = 0
    deadline = time.monotonic() + 120
    while True:
        if time.monotonic() > deadline:
            print(f"gave up at {reached}, ends {ends}", flush=True)
            return 1
        records = []
        for record in consumer.consume(batch, 0.5):
            err = record.error()
            if err is None:
                records.append(record)
            elif err.code() == KafkaError._PARTITION_EOF:
                reached[record.partition()] = record.offset()
            else:
                raise KafkaException(err)
        # The position is past the last record handed over and past any control records
        # (transaction markers) after it: that is what the group commits.
        positions = {
            tp.partition: tp.offset for tp in consumer.position(consumer.assignment())
            if tp.offset >= 0
        }  # fmt: skip
        at_end = all(reached[p] >= ends[p] for p in partitions)
        if not records:
            if not at_end:
                continue
            if positions == committed:
                break
            # Only the offsets moved (past markers at the end): a transaction of offsets only.
        producer.begin_transaction()
        for record in records:
            producer.produce(
                output_topic,
                b"copy-" + record.value(),
                key=record.key(),
                partition=record.partition(),
            )
        offsets = [TopicPartition(input_topic, p, o) for p, o in sorted(positions.items())]
        producer.send_offsets_to_transaction(offsets, consumer.consumer_group_metadata(), WAIT)
        producer.commit_transaction(WAIT)
        committed = positions
        copied += len(records)
        print(f"committed {copied}", flush=True)
    consumer.close()
    print("done", flush=True)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except KafkaException as e:
        err: KafkaError = e.args[0]
        print(f"error {err.name()}: {err.str()}", flush=True)
        sys.exit(2)
