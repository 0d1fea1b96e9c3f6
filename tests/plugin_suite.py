"""A user's test suite written against kpy's pytest plugin fixtures, run by the plugin tests
(tests/test_pytest_plugin.py against kpy, tests/compat/test_pytest_plugin_kafka.py against
Apache Kafka with --kafka-bootstrap). Its tests use confluent-kafka and kafka-python."""

SUITE = '''
import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, ConfigResource
from kafka import KafkaConsumer, KafkaProducer

SEEN = {}


def round_trip(bootstrap, topic, values, partition=0):
    errors = []
    producer = Producer({"bootstrap.servers": bootstrap})
    for v in values:
        # Keyed: a compacted topic refuses records without a key.
        producer.produce(
            topic, v, key=v, partition=partition, on_delivery=lambda e, m: errors.append(e)
        )
    assert producer.flush(30) == 0
    assert errors == [None] * len(values)
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": topic})
    consumer.assign([TopicPartition(topic, partition, 0)])
    got = []
    for _ in range(300):
        msg = consumer.poll(0.1)
        if msg is not None and msg.error() is None:
            got.append(msg.value())
        if len(got) == len(values):
            break
    consumer.close()
    return got


def test_confluent_round_trip(kafka_bootstrap, kafka_topic):
    SEEN["first"] = kafka_topic
    assert round_trip(kafka_bootstrap, kafka_topic, [b"a", b"b"]) == [b"a", b"b"]


def test_the_topic_of_a_finished_test_is_gone(kafka_bootstrap, kafka_topic):
    topics = AdminClient({"bootstrap.servers": kafka_bootstrap}).list_topics(timeout=10).topics
    assert kafka_topic in topics
    assert SEEN["first"] not in topics


@pytest.mark.kafka_topic(partitions=3, config={"cleanup.policy": "compact"})
def test_the_marker_shapes_the_topic(kafka_bootstrap, kafka_topic):
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    assert len(admin.list_topics(kafka_topic, timeout=10).topics[kafka_topic].partitions) == 3
    resource = ConfigResource(ConfigResource.Type.TOPIC, kafka_topic)
    configs = admin.describe_configs([resource])[resource].result(timeout=10)
    assert configs["cleanup.policy"].value == "compact"
    assert round_trip(kafka_bootstrap, kafka_topic, [b"k"], partition=2) == [b"k"]


def test_kafka_python_with_a_group(kafka_bootstrap, kafka_topic):
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap)
    for i in range(5):
        producer.send(kafka_topic, b"%d" % i)
    producer.flush()
    producer.close()
    consumer = KafkaConsumer(
        kafka_topic,
        bootstrap_servers=kafka_bootstrap,
        group_id="plugin-group",
        auto_offset_reset="earliest",
        consumer_timeout_ms=15000,
    )
    got = []
    for msg in consumer:
        got.append(msg.value)
        if len(got) == 5:
            break
    consumer.commit()
    consumer.close()
    assert got == [b"0", b"1", b"2", b"3", b"4"]


def test_a_fresh_broker_has_no_topics_of_others(kafka_broker_fresh, kafka_bootstrap):
    assert kafka_broker_fresh.bootstrap_servers != kafka_bootstrap
    admin = AdminClient({"bootstrap.servers": kafka_broker_fresh.bootstrap_servers})
    topics = admin.list_topics(timeout=10).topics
    assert not [t for t in topics if not t.startswith("__")]


def test_leave_a_mark(kafka_bootstrap):
    """What the outer test reads back, to know which broker the suite ran against."""
    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    producer.produce("plugin-suite-mark", b"was here")
    assert producer.flush(30) == 0
'''
