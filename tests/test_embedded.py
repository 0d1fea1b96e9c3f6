"""kpy.Broker, the broker inside a test run: both modes, with real clients over real sockets."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import tempfile
import threading
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

import kpy


def produce(bootstrap: str, topic: str, values: list[bytes]) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all"})
    for value in values:
        producer.produce(topic, value)
    assert producer.flush(30) == 0


def consume_all(bootstrap: str, topic: str, count: int) -> list[bytes]:
    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": "embedded", "enable.auto.commit": False}
    )
    consumer.assign([TopicPartition(topic, 0, 0)])
    out: list[bytes] = []
    try:
        for _ in range(300):
            if len(out) >= count:
                break
            msg = consumer.poll(0.1)
            if msg is not None and msg.error() is None:
                out.append(msg.value())
    finally:
        consumer.close()
    return out


@pytest.mark.parametrize("mode", ["thread", "subprocess"])
def test_round_trip_and_restart_keep_the_data(mode: str) -> None:
    with kpy.Broker(mode=mode) as broker:  # type: ignore[arg-type]
        assert broker.running
        data_dir = broker.data_dir
        assert data_dir is not None and data_dir.is_dir()
        produce(broker.bootstrap_servers, "orders", [b"a", b"b", b"c"])
        port = broker.port
        broker.restart()
        assert broker.port == port  # the clients' bootstrap address stays valid
        assert consume_all(broker.bootstrap_servers, "orders", 3) == [b"a", b"b", b"c"]
        assert (data_dir / "orders-0" / "00000000000000000000.log").stat().st_size > 0
    assert not broker.running
    assert not data_dir.exists()  # the temporary directory went with the broker


def test_a_given_data_dir_is_kept_and_reused(tmp_path: Path) -> None:
    with kpy.Broker(data_dir=tmp_path / "d") as broker:
        produce(broker.bootstrap_servers, "kept", [b"x"])
    assert (tmp_path / "d" / "kept-0").is_dir()
    with kpy.Broker(data_dir=tmp_path / "d") as broker:
        assert consume_all(broker.bootstrap_servers, "kept", 1) == [b"x"]


def test_kill_and_restart_recover_acknowledged_records() -> None:
    broker = kpy.Broker(mode="subprocess").start()
    try:
        produce(broker.bootstrap_servers, "crash", [b"%d" % i for i in range(100)])
        broker.kill()
        assert not broker.running
        broker.restart()
        got = consume_all(broker.bootstrap_servers, "crash", 100)
        assert got == [b"%d" % i for i in range(100)]
    finally:
        broker.stop()


def test_a_port_in_use_is_an_error_and_leaves_nothing_behind() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        broker = kpy.Broker(port=port)
        with pytest.raises(kpy.BrokerError):
            broker.start()
        assert not broker.running
        assert broker.data_dir is None  # the temporary directory made for it is gone


def test_placement_settings_in_config_are_refused() -> None:
    with pytest.raises(ValueError, match="listeners"):
        kpy.Broker(config={"listeners": "PLAINTEXT://127.0.0.1:9092"})


def test_in_memory_with_a_data_dir_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="in_memory"):
        kpy.Broker(in_memory=True, data_dir=tmp_path)


def test_bootstrap_servers_of_a_stopped_broker_is_an_error() -> None:
    broker = kpy.Broker()
    with pytest.raises(kpy.BrokerError):
        _ = broker.bootstrap_servers


def test_async_with_from_asyncio_code() -> None:
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

    async def main() -> list[bytes]:
        async with kpy.Broker() as broker:
            producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap_servers)
            await producer.start()
            try:
                for value in (b"1", b"2"):
                    await producer.send_and_wait("aio", value)
            finally:
                await producer.stop()
            consumer = AIOKafkaConsumer(
                "aio", bootstrap_servers=broker.bootstrap_servers, auto_offset_reset="earliest"
            )
            await consumer.start()
            try:
                got = []
                async for msg in consumer:
                    got.append(msg.value)
                    if len(got) == 2:
                        return got
            finally:
                await consumer.stop()
        return []

    assert asyncio.run(main()) == [b"1", b"2"]


def _open_descriptors() -> dict[str, str]:
    out = {}
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):  # the descriptor listdir itself used, closed now
            out[fd] = os.readlink(f"/proc/self/fd/{fd}")
    return out


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="counts descriptors in /proc")
def test_fifty_brokers_in_a_row_leak_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Threads, descriptors (files and sockets) and temporary directories are as before."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # kpy.Broker's temp dirs land here
    # One broker first: what importing kpy and the first start leave for good (modules, the
    # file limit) is not a leak.
    with kpy.Broker() as broker:
        produce(broker.bootstrap_servers, "warm", [b"w"])
    threads = {t.ident for t in threading.enumerate()}
    descriptors = _open_descriptors()
    for i in range(50):
        with kpy.Broker() as broker:
            assert broker.data_dir is not None and broker.data_dir.parent == tmp_path
            if i % 10 == 0:  # a client connection and a topic now and then
                produce(broker.bootstrap_servers, f"t{i}", [b"v"])
    assert {t.ident for t in threading.enumerate()} == threads, threading.enumerate()
    after = _open_descriptors()
    leaked = {fd: target for fd, target in after.items() if descriptors.get(fd) != target}
    assert not leaked, leaked
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("mode", ["thread", "subprocess"])
def test_in_memory_writes_no_file(
    mode: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # where ./kpy-data would appear
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # and a temporary directory
    with kpy.Broker(in_memory=True, mode=mode) as broker:  # type: ignore[arg-type]
        assert broker.data_dir is None
        produce(broker.bootstrap_servers, "ephemeral", [b"m1", b"m2"])
        assert consume_all(broker.bootstrap_servers, "ephemeral", 2) == [b"m1", b"m2"]
    assert list(tmp_path.iterdir()) == []


def test_a_start_that_outlasts_start_timeout_is_cancelled(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    threads = {t.ident for t in threading.enumerate()}
    broker = kpy.Broker(start_timeout=0.0)  # not even a broker starts that fast
    with pytest.raises(kpy.BrokerError, match="not ready after 0 s"):
        broker.start()
    assert not broker.running
    assert {t.ident for t in threading.enumerate()} == threads  # its loop thread ended
    assert list(tmp_path.iterdir()) == []
    with kpy.Broker() as again:  # and the next one starts as usual
        produce(again.bootstrap_servers, "after", [b"x"])
