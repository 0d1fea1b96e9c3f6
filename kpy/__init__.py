"""kpy: a single-node Kafka broker in Python that speaks the real Kafka protocol."""

__version__ = "0.1.0"
