"""When a handler fails unexpectedly, the broker answers as Kafka's handleError does: the API's
error response with UNKNOWN_SERVER_ERROR, or a closed connection where there is no response.

The failure is injected by swapping one registered handler for one that raises; the broker, its
storage and the codec are the real ones."""

from __future__ import annotations

import dataclasses
import datetime
import io
import struct
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from kio.schema.errors import ErrorCode
from kio.schema.fetch.v11 import request as fr
from kio.schema.produce.v9 import request as pr
from kio.serial import entity_reader, entity_writer

from kpy.broker import Broker
from kpy.config import BrokerConfig
from kpy.handlers.registry import APIS, REGISTRY, CloseConnection, loaded
from kpy.protocol.messages import request_type, response_type


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    b = Broker(BrokerConfig.load(None, {"log.dirs": str(tmp_path)}))
    yield b
    b.close()


@pytest.fixture
def failing(request: pytest.FixtureRequest) -> Iterator[None]:
    key: int = request.param
    loaded(REGISTRY[key])  # its module imported, so that its error responder is registered
    saved = REGISTRY[key]

    async def boom(ctx: Any, req: Any) -> Any:
        raise RuntimeError("injected")

    REGISTRY[key] = dataclasses.replace(saved, handler=boom)
    yield
    REGISTRY[key] = saved


def frame(request: Any) -> bytes:
    buf = io.BytesIO()
    entity_writer(type(request))(buf, request)
    header = struct.pack(">hhih", request.__api_key__, request.__version__, 9, 1) + b"t"
    if request.__flexible__:
        header += b"\x00"
    return header + buf.getvalue()


def decode(key: int, version: int, data: bytes, flexible: bool) -> Any:
    return entity_reader(response_type(key, version))(data, 4 + (1 if flexible else 0))[0]


@pytest.mark.parametrize("failing", [1], indirect=True)
def test_failed_fetch_answers_unknown_server_error(broker: Broker, failing: None) -> None:
    request = fr.FetchRequest(
        max_wait=datetime.timedelta(0),
        min_bytes=0,
        topics=(
            fr.FetchTopic(
                topic="t",
                partitions=(fr.FetchPartition(partition=0, fetch_offset=0, partition_max_bytes=1),),
            ),
        ),
        forgotten_topics_data=(),
    )
    out = anyio.run(broker.dispatch, frame(request), "test")
    assert out is not None
    response = decode(1, 11, out[4:], flexible=False)
    assert response.error_code == ErrorCode.unknown_server_error
    part = response.responses[0].partitions[0]
    assert part.error_code == ErrorCode.unknown_server_error and part.records == b""


@pytest.mark.parametrize("failing", [0], indirect=True)
def test_failed_acks_zero_produce_closes_the_connection(broker: Broker, failing: None) -> None:
    request = pr.ProduceRequest(
        acks=0,
        timeout=datetime.timedelta(seconds=1),
        topic_data=(
            pr.TopicProduceData(
                name="t", partition_data=(pr.PartitionProduceData(index=0, records=b""),)
            ),
        ),
    )
    with pytest.raises(CloseConnection):
        anyio.run(broker.dispatch, frame(request), "test")


def test_every_api_module_registers_its_handler() -> None:
    """Each module named in registry.APIS registers the handler of its key when imported, and
    every version the table serves has a request and a response schema."""
    for key, name, lo, hi, module in APIS:
        handler, _ = loaded(REGISTRY[key])
        assert handler.__module__ == f"kpy.handlers.{module}", name
        for version in range(lo, hi + 1):
            assert request_type(key, version) is not None, (name, version)
            assert response_type(key, version) is not None, (name, version)


def test_handler_modules_are_imported_on_first_use(tmp_path: Path) -> None:
    """Opening a broker imports no handler module; a request imports its API's module only.
    (A fresh interpreter: this one has imported every handler already.)"""
    script = f"""
import struct, sys, anyio
from kpy.broker import Broker
from kpy.config import BrokerConfig
broker = Broker(BrokerConfig.load(None, {{"log.dirs": {str(tmp_path)!r}}}))
print(sorted(m for m in sys.modules if m.startswith("kpy.handlers.")))
frame = struct.pack(">hhih", 18, 0, 7, 1) + b"t"  # ApiVersions v0, client id "t"
anyio.run(broker.dispatch, frame, "test")
print(sorted(m for m in sys.modules if m.startswith("kpy.handlers.")))
broker.close()
"""
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    opened, after_request = done.stdout.splitlines()
    assert opened == "['kpy.handlers.registry']"
    assert after_request == "['kpy.handlers.api_versions', 'kpy.handlers.registry']"
