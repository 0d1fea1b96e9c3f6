"""Publish orders (confluent-kafka) and total them per customer (kafka-python)."""

from __future__ import annotations

import json
from collections import Counter

from confluent_kafka import Producer
from kafka import KafkaConsumer


def publish(bootstrap: str, topic: str, orders: list[dict[str, object]]) -> None:
    """One record per order, keyed by customer so a customer's orders stay in order."""
    failed: list[object] = []
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True})
    for order in orders:
        producer.produce(
            topic,
            json.dumps(order).encode(),
            key=str(order["customer"]).encode(),
            on_delivery=lambda err, msg: failed.append(err) if err else None,
        )
    if producer.flush(30) or failed:
        raise RuntimeError(f"orders not delivered: {failed}")


def totals(bootstrap: str, topic: str, group: str, expected: int) -> Counter[str]:
    """Read ``expected`` orders as consumer group ``group``, commit, and sum per customer."""
    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=group,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        consumer_timeout_ms=20000,
    )
    out: Counter[str] = Counter()
    seen = 0
    try:
        for message in consumer:
            order = json.loads(message.value)
            out[order["customer"]] += order["amount"]
            seen += 1
            if seen == expected:
                break
        consumer.commit()
    finally:
        consumer.close()
    return out
