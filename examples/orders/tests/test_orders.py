from collections import Counter

import orders
import pytest
from confluent_kafka.admin import AdminClient

ORDERS = [
    {"customer": "ada", "amount": 3},
    {"customer": "bob", "amount": 5},
    {"customer": "ada", "amount": 4},
]


def test_totals_per_customer(kafka_bootstrap, kafka_topic):
    orders.publish(kafka_bootstrap, kafka_topic, ORDERS)
    assert orders.totals(kafka_bootstrap, kafka_topic, "billing", 3) == Counter(ada=7, bob=5)


@pytest.mark.kafka_topic(partitions=4)
def test_a_group_resumes_after_its_commit(kafka_bootstrap, kafka_topic):
    orders.publish(kafka_bootstrap, kafka_topic, ORDERS)
    assert sum(orders.totals(kafka_bootstrap, kafka_topic, "audit", 3).values()) == 12
    orders.publish(kafka_bootstrap, kafka_topic, [{"customer": "cy", "amount": 1}])
    assert orders.totals(kafka_bootstrap, kafka_topic, "audit", 1) == Counter(cy=1)


def test_on_a_broker_of_its_own(kafka_broker_fresh):
    bootstrap = kafka_broker_fresh.bootstrap_servers
    orders.publish(bootstrap, "orders", ORDERS)
    topics = AdminClient({"bootstrap.servers": bootstrap}).list_topics(timeout=10).topics
    assert [t for t in topics if not t.startswith("__")] == ["orders"]
