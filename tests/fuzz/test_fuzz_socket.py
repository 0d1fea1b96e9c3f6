"""Socket-level fuzz smoke: a running kpy (a subprocess, as users run it) is sent fuzzed frames on
real connections, and still serves a real producer and consumer afterwards, with no traceback in
its log.

Each input is one connection carrying a few frames: requests of every API key and version with
arbitrary field values, some mutated (test_fuzz_dispatch.request_frames), raw junk, and sizes
past socket.request.max.bytes or negative, cut at random points into the writes. The broker may
answer, answer with errors, or close the connection; it may not crash, hang the other
connections, or log an unexpected error.
"""

from __future__ import annotations

import socket
import struct
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from fuzzing import COUNTS, budget
from hypothesis import given
from hypothesis import strategies as st
from kpy_process import KpyProcess
from test_fuzz_dispatch import request_frames

MAX_REQUEST = 64 * 1024  # socket.request.max.bytes of the broker under test, to reach its edge


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KpyProcess]:
    data = tmp_path_factory.mktemp("fuzz-socket")
    proc = KpyProcess(
        Path(data) / "data",
        {"socket.request.max.bytes": str(MAX_REQUEST), "num.partitions": "2"},
    ).start()
    try:
        yield proc
    finally:
        proc.stop()


@st.composite
def connection_bytes(draw: st.DrawFn) -> bytes:
    out = bytearray()
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["request", "request", "junk", "size"]))
        if kind == "request":
            _, frame = draw(request_frames())
            out += struct.pack(">i", len(frame)) + frame
        elif kind == "junk":
            junk = draw(st.binary(max_size=64))
            out += struct.pack(">i", len(junk)) + junk
        else:
            size = draw(st.sampled_from([MAX_REQUEST, MAX_REQUEST + 1, -1, 2**31 - 1, 0]))
            out += struct.pack(">i", size) + draw(st.binary(max_size=16))
    return bytes(out)


@budget(40)
@given(connection_bytes(), st.lists(st.integers(1, 200), max_size=6))
def test_fuzzed_connections(broker: KpyProcess, stream: bytes, cuts: list[int]) -> None:
    COUNTS["socket_connections"] += 1
    with socket.create_connection(("127.0.0.1", broker.port), timeout=2) as sock:
        pos = 0
        try:
            for n in [*cuts, len(stream)]:
                sock.sendall(stream[pos : pos + n])
                pos += n
            sock.shutdown(socket.SHUT_WR)
            while sock.recv(65536):  # answers, until the broker closes
                pass
        except OSError:  # closed on us (ENOTCONN, ECONNRESET...), or a long poll still waiting
            pass
    assert broker.proc is not None and broker.proc.poll() is None


def test_the_broker_still_serves_a_real_producer_and_consumer(broker: KpyProcess) -> None:
    """Runs after the target (file order)."""
    from confluent_kafka import Consumer, Producer

    topic = f"after-fuzz-{uuid.uuid4().hex[:8]}"
    producer = Producer({"bootstrap.servers": broker.bootstrap, "enable.idempotence": True})
    for i in range(20):
        producer.produce(topic, key=b"k%d" % i, value=b"v%d" % i, partition=0)
    assert producer.flush(30) == 0
    consumer = Consumer(
        {
            "bootstrap.servers": broker.bootstrap,
            "group.id": "after-fuzz",
            "auto.offset.reset": "earliest",
        }
    )
    consumer.subscribe([topic])
    got = []
    try:
        for _ in range(60):
            msg = consumer.poll(1)
            if msg is not None and msg.error() is None:
                got.append(msg.value())
            if len(got) == 20:
                break
    finally:
        consumer.close()
    assert got == [b"v%d" % i for i in range(20)]
    log = "".join(broker.output)
    assert "Traceback" not in log, log[-3000:]
    assert "unexpected error" not in log
