"""Connection limits against a real kpy over real sockets: socket.request.max.bytes,
max.connections (broker-wide and per listener), max.connections.per.ip and its overrides, their
validation and dynamic changes, and connections.max.idle.ms.

The behaviour is Kafka's (core/src/main/scala/kafka/network/SocketServer.scala,
ConnectionQuotas): a connection past its address's limit is accepted and closed at once; past
the broker's or the listener's limit none is accepted (the kernel completes the handshake, no
request is answered) until a connection closes. Tests that wait for an answer that must not
come give it a second: they check that kpy does not answer, not how fast it is.
"""

from __future__ import annotations

import socket
import struct
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest
from confluent_kafka import KafkaError, KafkaException, Producer
from confluent_kafka.admin import AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource
from kio.schema.api_versions.v3.request import ApiVersionsRequest
from kio.schema.errors import ErrorCode
from kpy_process import KpyProcess
from rawclient import RawClient

from kpy.config import BrokerConfig, ConfigError
from kpy.protocol.wire import uvarint

Factory = Callable[..., KpyProcess]


def api_versions(client: RawClient) -> ErrorCode:
    resp = client.request(
        ApiVersionsRequest(client_software_name="raw", client_software_version="1")
    )
    return ErrorCode(resp.error_code)


def served(bootstrap: str) -> bool:
    with RawClient(bootstrap) as c:
        return api_versions(c) == ErrorCode.none


def no_answer(client: RawClient, wait: float = 1.0) -> bool:
    """True if nothing arrives on ``client`` within ``wait`` seconds (the connection is not
    being served), False if bytes or the end of the stream arrive."""
    client.sock.settimeout(wait)
    try:
        client.sock.recv(1, socket.MSG_PEEK)
    except TimeoutError:
        return True
    finally:
        client.sock.settimeout(10)
    return False


@pytest.fixture
def stack() -> Iterator[ExitStack]:
    with ExitStack() as s:
        yield s


# --- socket.request.max.bytes ---------------------------------------------------------------


def api_versions_frame(client: RawClient, frame_size: int) -> bytes:
    """An ApiVersions v3 frame whose size field says ``frame_size`` (the client software name
    is padded to make it so)."""
    fixed = len(client.frame(18, 3, b"\x021\x00")) - 4  # header, version "1", no tagged fields
    client.correlation_id -= 1
    length = frame_size - fixed - 1
    while length + len(uvarint(length + 1)) + fixed > frame_size:
        length -= 1
    body = uvarint(length + 1) + b"a" * length + b"\x021\x00"
    frame = client.frame(18, 3, body)
    assert struct.unpack(">i", frame[:4])[0] == frame_size
    return frame


def test_a_frame_of_socket_request_max_bytes_is_served(kpy_factory: Factory) -> None:
    broker = kpy_factory({"socket.request.max.bytes": "100"})
    with RawClient(broker.bootstrap) as c:
        c.send_bytes(api_versions_frame(c, 100))
        (corr,) = struct.unpack(">i", c.recv_frame()[:4])
        assert corr == c.correlation_id


def test_a_size_over_socket_request_max_bytes_closes_before_the_body(
    kpy_factory: Factory,
) -> None:
    """Kafka reads the 4-byte size and closes the connection if it is too large, without
    waiting for (or making room for) the body."""
    broker = kpy_factory({"socket.request.max.bytes": "100"})
    with RawClient(broker.bootstrap) as c:
        c.send_bytes(struct.pack(">i", 101))
        assert c.is_closed_by_peer()
    assert served(broker.bootstrap)


def test_an_empty_frame_closes_the_connection(kpy: KpyProcess) -> None:
    """Size 0 is a size Kafka reads (an empty receive), but no request header parses from it."""
    with RawClient(kpy.bootstrap) as c:
        c.send_bytes(struct.pack(">i", 0))
        assert c.is_closed_by_peer()
    assert served(kpy.bootstrap)


def test_responses_before_a_bad_size_are_sent_first(kpy: KpyProcess) -> None:
    with RawClient(kpy.bootstrap) as c:
        good = c.frame(18, 0, b"")
        c.send_bytes(good + struct.pack(">i", -1))
        assert struct.unpack(">i", c.recv_frame()[:4])[0] == c.correlation_id
        assert c.is_closed_by_peer()


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_declared_sizes_allocate_nothing(kpy: KpyProcess, stack: ExitStack) -> None:
    """Thirty clients declare frames of just under 100 MiB and stall: kpy holds what they
    sent, not what they declared, and goes on serving others."""
    assert kpy.proc is not None
    before = rss_kib(kpy.proc.pid)
    for _ in range(30):
        c = stack.enter_context(RawClient(kpy.bootstrap))
        c.send_bytes(struct.pack(">i", 100 * 1024 * 1024 - 10) + b"\x00" * 1000)
    assert served(kpy.bootstrap)
    grown_mib = (rss_kib(kpy.proc.pid) - before) / 1024
    assert grown_mib < 64, f"kpy grew by {grown_mib:.0f} MiB for 30 stalled frames"


# --- max.connections.per.ip -----------------------------------------------------------------


def test_a_connection_past_the_per_ip_limit_is_closed_at_once(
    kpy_factory: Factory, stack: ExitStack
) -> None:
    broker = kpy_factory({"max.connections.per.ip": "3"})
    held = [stack.enter_context(RawClient(broker.bootstrap)) for _ in range(3)]
    for c in held:
        assert api_versions(c) == ErrorCode.none
    with RawClient(broker.bootstrap) as extra:
        assert extra.is_closed_by_peer()
    held.pop().close()
    time.sleep(0.2)  # the broker sees the close
    assert served(broker.bootstrap)


def test_per_ip_overrides(kpy_factory: Factory, stack: ExitStack) -> None:
    """max.connections.per.ip 0 with an override: only the named address may connect, up to
    its own limit."""
    broker = kpy_factory(
        {"max.connections.per.ip": "0", "max.connections.per.ip.overrides": "127.0.0.1:2"}
    )
    held = [stack.enter_context(RawClient(broker.bootstrap)) for _ in range(2)]
    for c in held:
        assert api_versions(c) == ErrorCode.none
    with RawClient(broker.bootstrap) as third:
        assert third.is_closed_by_peer()
    with RawClient(broker.bootstrap, source="127.0.0.2") as other:
        assert other.is_closed_by_peer()


def test_per_ip_override_by_host_name(kpy_factory: Factory, stack: ExitStack) -> None:
    broker = kpy_factory({"max.connections.per.ip.overrides": "localhost:1"})
    first = stack.enter_context(RawClient(broker.bootstrap))
    assert api_versions(first) == ErrorCode.none
    with RawClient(broker.bootstrap) as second:
        assert second.is_closed_by_peer()
    with RawClient(broker.bootstrap, source="127.0.0.2") as other:  # the default: unlimited
        assert api_versions(other) == ErrorCode.none


@pytest.mark.clients
def test_a_client_at_the_per_ip_limit_delivers_once_a_slot_frees(
    kpy_factory: Factory, stack: ExitStack
) -> None:
    broker = kpy_factory({"max.connections.per.ip": "2"})
    held = [stack.enter_context(RawClient(broker.bootstrap)) for _ in range(2)]
    for c in held:
        assert api_versions(c) == ErrorCode.none
    delivered: list[bytes] = []
    producer = Producer(
        {
            "bootstrap.servers": broker.bootstrap,
            "acks": "all",
            "reconnect.backoff.max.ms": 500,
        }
    )
    producer.produce(
        "per-ip",
        b"v",
        on_delivery=lambda err, msg: delivered.append(msg.value()) if not err else None,
    )
    assert producer.flush(2) == 1  # every connection it opens is closed at once
    for c in held:
        c.close()
    assert producer.flush(30) == 0
    assert delivered == [b"v"]


# --- max.connections ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "overrides",
    [{"max.connections": "3"}, {"listener.name.plaintext.max.connections": "3"}],
    ids=["broker", "listener"],
)
def test_past_max_connections_nothing_is_accepted_until_one_closes(
    kpy_factory: Factory, stack: ExitStack, overrides: dict[str, str]
) -> None:
    broker = kpy_factory(overrides)
    held = [stack.enter_context(RawClient(broker.bootstrap)) for _ in range(3)]
    for c in held:
        assert api_versions(c) == ErrorCode.none
    waiting = stack.enter_context(RawClient(broker.bootstrap))  # in the listen backlog
    waiting.send(ApiVersionsRequest(client_software_name="raw", client_software_version="1"))
    assert no_answer(waiting)
    held[0].close()
    (corr,) = struct.unpack(">i", waiting.recv_frame()[:4])
    assert corr == waiting.correlation_id


# --- validation and dynamic changes ---------------------------------------------------------


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"max.connections.per.ip": "0"}, "can be set to zero only if"),
        ({"max.connections.per.ip": "-1"}, "max.connections.per.ip must be at least 0"),
        ({"max.connections": "-5"}, "max.connections must be at least 0"),
        ({"max.connections.per.ip.overrides": "127.0.0.1"}, "Error parsing"),
        ({"max.connections.per.ip.overrides": "a/b:3"}, "contains invalid addresses : a/b"),
        ({"max.connections.per.ip.overrides": "h:x"}, "Error parsing"),
        ({"queued.max.request.bytes": "1000"}, "must be larger or equal to"),
        ({"fetch.max.bytes": "1000"}, "fetch.max.bytes must be at least 1024"),
        ({"listener.name.plaintext.max.connections": "-1"}, "at least 0"),
    ],
)
def test_invalid_settings_are_refused(settings: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        BrokerConfig.load(overrides=settings)


def test_valid_settings() -> None:
    cfg = BrokerConfig.load(
        overrides={
            "max.connections.per.ip": "0",
            "max.connections.per.ip.overrides": "127.0.0.1:5, localhost : 7,::1:2",
            "queued.max.request.bytes": "-1",
        }
    )
    assert cfg.max_connections_per_ip_overrides == {"127.0.0.1": 5, "localhost": 7, "::1": 2}
    assert cfg.queued_max_request_bytes == -1
    assert BrokerConfig.load().queued_max_request_bytes == 100 * 1024 * 1024
    raised = BrokerConfig.load(overrides={"socket.request.max.bytes": str(200 << 20)})
    assert raised.queued_max_request_bytes == 200 << 20


def test_kpy_refuses_to_start_with_an_invalid_limit(tmp_path: Path) -> None:
    proc = KpyProcess(tmp_path / "data", {"max.connections.per.ip": "0"})
    with pytest.raises(RuntimeError, match="can be set to zero only if"):
        proc.start()


def alter_broker(bootstrap: str, **settings: str) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    resource = ConfigResource(
        ConfigResource.Type.BROKER,
        "1",
        incremental_configs=[
            ConfigEntry(k.replace("_", "."), v, incremental_operation=AlterConfigOpType.SET)
            for k, v in settings.items()
        ],
    )
    for future in admin.incremental_alter_configs([resource]).values():
        future.result(timeout=10)


@pytest.mark.clients
def test_per_ip_limit_changes_at_run_time(kpy: KpyProcess, stack: ExitStack) -> None:
    alter_broker(kpy.bootstrap, max_connections_per_ip="2")
    held = [stack.enter_context(RawClient(kpy.bootstrap)) for _ in range(2)]
    for c in held:
        assert api_versions(c) == ErrorCode.none
    with RawClient(kpy.bootstrap) as third:
        assert third.is_closed_by_peer()
    for c in held:  # the admin client needs connections of its own
        c.close()
    alter_broker(kpy.bootstrap, max_connections_per_ip="3")
    held = [stack.enter_context(RawClient(kpy.bootstrap)) for _ in range(3)]
    for c in held:
        assert api_versions(c) == ErrorCode.none
    with RawClient(kpy.bootstrap) as fourth:
        assert fourth.is_closed_by_peer()


@pytest.mark.clients
def test_an_invalid_dynamic_limit_is_refused(kpy: KpyProcess) -> None:
    with pytest.raises(KafkaException) as e:
        alter_broker(kpy.bootstrap, max_connections_per_ip="0")
    assert e.value.args[0].code() == KafkaError.INVALID_REQUEST
    assert "can be set to zero only if" in e.value.args[0].str()
    with pytest.raises(KafkaException) as e:
        alter_broker(kpy.bootstrap, max_connections="-1")
    assert e.value.args[0].code() == KafkaError.INVALID_REQUEST
    assert served(kpy.bootstrap)


# --- connections.max.idle.ms ----------------------------------------------------------------


def test_an_idle_connection_is_closed(kpy_factory: Factory) -> None:
    broker = kpy_factory({"connections.max.idle.ms": "1000"})
    with RawClient(broker.bootstrap) as idle, RawClient(broker.bootstrap) as busy:
        assert api_versions(idle) == ErrorCode.none
        deadline = time.monotonic() + 2.5
        while time.monotonic() < deadline:  # a request every 200 ms keeps it open
            assert api_versions(busy) == ErrorCode.none
            time.sleep(0.2)
        assert idle.is_closed_by_peer()
        assert api_versions(busy) == ErrorCode.none


def test_idle_reaping_is_off_when_negative(kpy_factory: Factory) -> None:
    broker = kpy_factory({"connections.max.idle.ms": "-1"})
    with RawClient(broker.bootstrap) as c:
        assert api_versions(c) == ErrorCode.none
        assert no_answer(c, 2.0)  # not closed: nothing arrives
        assert api_versions(c) == ErrorCode.none


@pytest.mark.clients
def test_a_producer_goes_on_after_its_connection_was_reaped(kpy_factory: Factory) -> None:
    broker = kpy_factory({"connections.max.idle.ms": "1000"})
    producer = Producer({"bootstrap.servers": broker.bootstrap, "acks": "all"})
    delivered: list[bytes] = []

    def on_delivery(err: KafkaError | None, msg: object) -> None:
        assert err is None, err
        delivered.append(msg.value())  # type: ignore[attr-defined]

    producer.produce("reaped", b"before", on_delivery=on_delivery)
    assert producer.flush(10) == 0
    time.sleep(2.5)  # idle past connections.max.idle.ms: kpy closes its connections
    producer.produce("reaped", b"after", on_delivery=on_delivery)
    assert producer.flush(30) == 0
    assert delivered == [b"before", b"after"]
