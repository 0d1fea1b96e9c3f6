"""kpy's pytest plugin (entry point ``pytest11``): a real Kafka broker for a test suite.

Fixtures:
    kafka_broker         the session's broker (a kpy.Broker, started on first use)
    kafka_bootstrap      its ``host:port``, for bootstrap.servers
    kafka_topic          a new topic with a unique name, made for the test and deleted after it;
                         ``@pytest.mark.kafka_topic(partitions=3, config={...})`` shapes it
    kafka_broker_fresh   a broker of the test's own, for tests that need one nobody else touched

Options:
    --kafka-bootstrap HOST:PORT   use that broker (Apache Kafka, say) instead of starting kpy:
                                  the same tests, proven against the real thing. Tests asking
                                  for kafka_broker_fresh are skipped then (nothing can be
                                  started fresh there).
    --kafka-wait S                how long to wait for that broker to answer (30 s)
    --kpy-mode thread|subprocess  how kpy runs (kpy.Broker's mode; thread by default)
    --kpy-in-memory               keep the brokers' data in memory instead of a temporary
                                  directory

Nothing starts unless a test asks for one of these fixtures.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest


class ExternalBroker:
    """A broker this plugin did not start (``--kafka-bootstrap``)."""

    def __init__(self, bootstrap_servers: str) -> None:
        self.bootstrap_servers = bootstrap_servers

    def __repr__(self) -> str:
        return f"<external Kafka broker {self.bootstrap_servers}>"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("kpy", "a Kafka broker for the tests (kpy)")
    group.addoption(
        "--kafka-bootstrap",
        metavar="HOST:PORT",
        default=None,
        help="run the Kafka fixtures against this broker instead of starting kpy",
    )
    group.addoption(
        "--kafka-wait",
        metavar="S",
        type=float,
        default=30.0,
        help="seconds to wait for the --kafka-bootstrap broker to answer (30)",
    )
    group.addoption(
        "--kpy-mode",
        choices=("thread", "subprocess"),
        default="thread",
        help="run kpy in a thread of the test process (default) or as a subprocess",
    )
    group.addoption(
        "--kpy-in-memory",
        action="store_true",
        default=False,
        help="keep kpy's data in memory instead of a temporary directory",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "kafka_topic(partitions=1, config=None): the shape of the test's kafka_topic",
    )


def _start(config: pytest.Config) -> Any:
    import kpy

    return kpy.Broker(
        mode=config.getoption("--kpy-mode"), in_memory=config.getoption("--kpy-in-memory")
    ).start()


@pytest.fixture(scope="session")
def kafka_broker(pytestconfig: pytest.Config) -> Iterator[Any]:
    """The session's broker: kpy, or the one --kafka-bootstrap names."""
    external = pytestconfig.getoption("--kafka-bootstrap")
    if external:
        from kpy import client

        client.wait([external], timeout=pytestconfig.getoption("--kafka-wait"))
        yield ExternalBroker(external)
        return
    broker = _start(pytestconfig)
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture(scope="session")
def kafka_bootstrap(kafka_broker: Any) -> str:
    """``host:port`` of the session's broker."""
    return str(kafka_broker.bootstrap_servers)


@pytest.fixture
def kafka_broker_fresh(pytestconfig: pytest.Config) -> Iterator[Any]:
    """A broker for this test alone, stopped (and its data removed) after it."""
    if pytestconfig.getoption("--kafka-bootstrap"):
        pytest.skip("needs a broker of its own, and --kafka-bootstrap names a shared one")
    broker = _start(pytestconfig)
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture
def kafka_topic(request: pytest.FixtureRequest, kafka_bootstrap: str) -> Iterator[str]:
    """A topic made for this test (a unique name; shape from the kafka_topic marker), deleted
    after it."""
    from kpy import client

    marker = request.node.get_closest_marker("kafka_topic")
    options: dict[str, Any] = dict(marker.kwargs) if marker else {}
    unknown = set(options) - {"partitions", "config"}
    if unknown:
        raise pytest.UsageError(f"kafka_topic marker: unknown options {sorted(unknown)}")
    stem = "".join(c if c.isalnum() or c in "._-" else "-" for c in request.node.name)[:180]
    name = f"{stem}-{uuid.uuid4().hex[:8]}"
    client.create_topic(
        kafka_bootstrap, name, int(options.get("partitions", 1)), options.get("config")
    )
    try:
        yield name
    finally:
        client.delete_topic(kafka_bootstrap, name)
