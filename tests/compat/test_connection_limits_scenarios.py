"""Connection limits, checked the same way against kpy (default) and against Apache Kafka
(``--compat-broker=kafka``), each started with the limit under test: per-IP overrides,
a listener's max.connections, socket.request.max.bytes (and a bad size after a good request)
and connections.max.idle.ms.

Kafka runs as one node whose controller listener is on the same address, and its own
connections to it count against per-IP limits there; the per-IP case therefore limits another
loopback address (127.0.0.2), which only the test connects from.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest
from kio.schema.api_versions.v3.request import ApiVersionsRequest
from kio.schema.errors import ErrorCode
from kpy_process import KpyProcess
from rawclient import RawClient
from test_connection_limits import api_versions, api_versions_frame, no_answer

from compat import kafka_broker
from compat.conftest import broker_choice
from compat.kafka_broker import KafkaBroker

Start = Callable[[dict[str, str]], KpyProcess | KafkaBroker]


@pytest.fixture
def start(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Start]:
    """Start the broker under test with ``overrides``; stopped at the end."""
    kind, version = broker_choice(request.config)
    started: list[KpyProcess | KafkaBroker] = []

    def make(overrides: dict[str, str]) -> KpyProcess | KafkaBroker:
        broker: KpyProcess | KafkaBroker
        if kind == "kafka":
            assert version is not None
            why = kafka_broker.missing(version)
            if why is not None:
                pytest.skip(why)
            broker = KafkaBroker(tmp_path / "kafka", version, overrides)
        else:
            broker = KpyProcess(tmp_path / "data", overrides)
        started.append(broker)
        return broker.start()

    yield make
    for broker in started:
        broker.stop()


def test_per_ip_override(start: Start) -> None:
    broker = start({"max.connections.per.ip.overrides": "127.0.0.2:1"})
    with ExitStack() as stack:
        first = stack.enter_context(RawClient(broker.bootstrap, source="127.0.0.2"))
        assert api_versions(first) == ErrorCode.none
        with RawClient(broker.bootstrap, source="127.0.0.2") as second:
            assert second.is_closed_by_peer()
        with RawClient(broker.bootstrap) as other:  # 127.0.0.1: no limit
            assert api_versions(other) == ErrorCode.none


def test_listener_max_connections_holds_new_connections_back(start: Start) -> None:
    broker = start({"listener.name.plaintext.max.connections": "2"})
    with ExitStack() as stack:
        held = [stack.enter_context(RawClient(broker.bootstrap)) for _ in range(2)]
        for c in held:
            assert api_versions(c) == ErrorCode.none
        waiting = stack.enter_context(RawClient(broker.bootstrap))
        waiting.send(ApiVersionsRequest(client_software_name="raw", client_software_version="1"))
        assert no_answer(waiting, 2.0)
        held[0].close()
        (corr,) = struct.unpack(">i", waiting.recv_frame()[:4])
        assert corr == waiting.correlation_id


def test_socket_request_max_bytes(start: Start) -> None:
    # Not smaller: Kafka's own requests to its controller listener obey it too.
    broker = start({"socket.request.max.bytes": "30000"})
    with RawClient(broker.bootstrap) as c:
        c.send_bytes(api_versions_frame(c, 30000))
        (corr,) = struct.unpack(">i", c.recv_frame()[:4])
        assert corr == c.correlation_id
    with RawClient(broker.bootstrap) as c:
        c.send_bytes(struct.pack(">i", 30001))  # the size alone
        assert c.is_closed_by_peer()


def test_idle_connection_is_closed(start: Start) -> None:
    broker = start({"connections.max.idle.ms": "2000"})
    with RawClient(broker.bootstrap) as c:
        assert api_versions(c) == ErrorCode.none
        assert c.is_closed_by_peer(timeout=10)


def test_the_request_before_a_bad_size_is_answered(start: Start) -> None:
    broker = start({})
    with RawClient(broker.bootstrap) as c:
        c.send_bytes(c.frame(18, 0, b"") + struct.pack(">i", -1))
        (corr,) = struct.unpack(">i", c.recv_frame()[:4])
        assert corr == c.correlation_id
        assert c.is_closed_by_peer()
