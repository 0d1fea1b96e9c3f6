"""The sink: a "broker" that acknowledges every Produce without storing it, the limit of a client.

The issue's "limit" row runs the same producers against this server, so the table shows how close
each broker gets to what the client can push on this machine. It speaks just enough of the Kafka
protocol for the Java producer (kafka-producer-perf-test, idempotent by default, so it asks for a
producer id) and for librdkafka (confluent-kafka):

- ApiVersions v0-v4: the APIs below, plus Fetch and FindCoordinator, advertised only (see
  ADVERTISED); a newer request version gets Kafka's v0-layout UNSUPPORTED_VERSION answer, so that
  the client retries at a version both know.
- Metadata v0-v13: one broker, node 0 (this server), leading every partition with epoch 0. Any
  topic asked for exists: with the partitions a CreateTopics gave it, else ``--partitions``
  (default 1).
- CreateTopics v2-v7: remembers the partition count (so that a workload may create its topic as
  it does on a real broker); always succeeds, nothing else is kept.
- InitProducerId v0-v5: a fresh producer id with epoch 0 each time, as Kafka answers an
  idempotent producer (transactions are not supported: the next transactional request closes the
  connection).
- Produce v3-v11: every partition is acknowledged with error NONE and a base offset that
  advances by the number of records in its batches. Record bytes are neither decoded nor
  checked: the batch walk reads only each batch's length, magic and lastOffsetDelta. acks=0
  gets no response, as in Kafka.

Any other request (Fetch included), or an unsupported version, closes the connection (what Kafka
does with a request it cannot parse). Produce is parsed and answered by hand, straight from the
receive buffer, without kio: it is the only request on the hot path, and the sink must cost as
little per request as possible. The others, rare, go through kpy.protocol's codec.

    python -m bench.sink --port 9092 [--host 127.0.0.1] [--partitions 1]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import struct
import sys
import uuid
from collections.abc import Callable
from typing import Any

from kio.schema.errors import ErrorCode

from bench.core import ROOT, Broker
from kpy.protocol.messages import (
    decode_request,
    encode_response,
    make,
    parse_header,
    response_module,
)

PRODUCE, FETCH, METADATA, FIND_COORDINATOR = 0, 1, 3, 10
API_VERSIONS, CREATE_TOPICS, INIT_PRODUCER_ID = 18, 19, 22

# Versions served: (min, max) per API key.
VERSIONS = {
    PRODUCE: (3, 11),
    METADATA: (0, 13),
    CREATE_TOPICS: (2, 7),
    API_VERSIONS: (0, 4),
    INIT_PRODUCER_ID: (0, 5),
}
# Advertised, as kpy does, but not served. librdkafka derives its features from the versions a
# broker advertises: without Fetch v4 it writes message format v0/v1 instead of record batches
# (and without Fetch v10 no zstd, without FindCoordinator no lz4), so the sink would not see what
# a real broker sees.
ADVERTISED = {**VERSIONS, FETCH: (4, 16), FIND_COORDINATOR: (0, 6)}
# Versions from which each API uses the flexible encoding (compact strings, tagged fields).
FLEXIBLE_FROM = {PRODUCE: 9, METADATA: 9, CREATE_TOPICS: 5, API_VERSIONS: 3, INIT_PRODUCER_ID: 2}

NODE_ID = 0
CLUSTER_ID = "c2lua2JlbmNoc2lua2JlbmNo"

_I16 = struct.Struct(">h")
_I32 = struct.Struct(">i")
_HEADER = struct.Struct(">hhih")  # api_key, api_version, correlation_id, client_id length
# A record batch (magic 2): batchLength at byte 8, lastOffsetDelta at byte 23.
_BATCH_LENGTH = struct.Struct(">i")
_LAST_OFFSET_DELTA = struct.Struct(">i")
_BATCH_OVERHEAD = 12  # baseOffset and batchLength precede the batchLength bytes
_PARTITION_ACK = struct.Struct(">ihqq")  # index, error code, base offset, log append time
_LOG_START_OFFSET = struct.Struct(">q")


class Close(Exception):
    """The request is one the sink does not serve: close the connection."""


def _uvarint(buf: bytearray, pos: int) -> tuple[int, int]:
    shift = value = 0
    while True:
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7


def _write_uvarint(value: int) -> bytes:
    out = bytearray()
    while value >= 0x80:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _skip_tags(buf: bytearray, pos: int) -> int:
    count, pos = _uvarint(buf, pos)
    for _ in range(count):
        _, pos = _uvarint(buf, pos)
        size, pos = _uvarint(buf, pos)
        pos += size
    return pos


def count_records(buf: bytearray, pos: int, end: int) -> int:
    """Records in the batches between pos and end, from each batch header alone."""
    count = 0
    while end - pos >= 27:
        if buf[pos + 16] != 2:  # Produce v3+ carries record batches only, as Kafka requires
            raise Close(f"message format v{buf[pos + 16]} in a Produce v3+ request")
        count += _LAST_OFFSET_DELTA.unpack_from(buf, pos + 23)[0] + 1
        pos += _BATCH_OVERHEAD + _BATCH_LENGTH.unpack_from(buf, pos + 8)[0]
    return count


class Sink:
    """What the sink remembers: partition counts, the next offset of each partition, the next
    producer id. One per server, shared by its connections (one event loop: no locks)."""

    def __init__(self, port: int, default_partitions: int = 1) -> None:
        self.port = port
        self.default_partitions = default_partitions
        self.partitions: dict[str, int] = {}
        self.topic_ids: dict[str, uuid.UUID] = {}
        self.next_offsets: dict[tuple[bytes, int], int] = {}
        self.next_producer_id = 1000
        self._produce_tail = {v: self._produce_tail_for(v) for v in range(3, 12)}

    # --- the hot path: Produce, by hand -------------------------------------------------

    @staticmethod
    def _produce_tail_for(version: int) -> bytes:
        """The fields of a partition's response after the log append time, for one version:
        log start offset (v5+), no record errors and a null message (v8+), no tags (v9+)."""
        tail = b""
        if version >= 5:
            tail += _LOG_START_OFFSET.pack(0)
        if version >= 9:
            tail += b"\x01\x00\x00"  # empty compact array, null compact string, no tags
        elif version >= 8:
            tail += b"\x00\x00\x00\x00\xff\xff"  # empty array, null string
        return tail

    def produce(self, buf: bytearray, pos: int, end: int, version: int, cid: int) -> bytes | None:
        """Acknowledge a Produce request whose body starts at pos; None for acks=0."""
        flexible = version >= 9
        unpack_i32 = _I32.unpack_from
        # transactional_id (nullable string), acks, timeout.
        if flexible:
            n, pos = _uvarint(buf, pos)
            pos += max(n - 1, 0)
        else:
            pos += 2 + max(_I16.unpack_from(buf, pos)[0], 0)
        acks = _I16.unpack_from(buf, pos)[0]
        pos += 6
        tail = self._produce_tail[version]
        offsets = self.next_offsets
        out = [b""]  # the size and header go here
        if flexible:
            topics, pos = _uvarint(buf, pos)
            topics -= 1
            out.append(_write_uvarint(topics + 1))
        else:
            topics = unpack_i32(buf, pos)[0]
            pos += 4
            out.append(_I32.pack(topics))
        for _ in range(topics):
            # The name is echoed as it came: the response encodes it the same way.
            name_at = pos
            if flexible:
                n, pos = _uvarint(buf, pos)
                n -= 1
            else:
                n = _I16.unpack_from(buf, pos)[0]
                pos += 2
            name = bytes(buf[pos : pos + n])
            pos += n
            out.append(bytes(buf[name_at:pos]))
            if flexible:
                partitions, pos = _uvarint(buf, pos)
                partitions -= 1
                out.append(_write_uvarint(partitions + 1))
            else:
                partitions = unpack_i32(buf, pos)[0]
                pos += 4
                out.append(_I32.pack(partitions))
            for _ in range(partitions):
                index = unpack_i32(buf, pos)[0]
                pos += 4
                if flexible:
                    size, pos = _uvarint(buf, pos)
                    size -= 1
                else:
                    size = unpack_i32(buf, pos)[0]
                    pos += 4
                count = count_records(buf, pos, pos + size) if size > 0 else 0
                pos += max(size, 0)
                if flexible:
                    pos = _skip_tags(buf, pos)
                key = (name, index)
                base = offsets.get(key, 0)
                offsets[key] = base + count
                out.append(_PARTITION_ACK.pack(index, 0, base, -1))
                out.append(tail)
            if flexible:
                pos = _skip_tags(buf, pos)
                out.append(b"\x00")
        if acks == 0:
            return None
        out.append(b"\x00\x00\x00\x00\x00" if flexible else b"\x00\x00\x00\x00")  # throttle, tags
        header = _I32.pack(cid) + (b"\x00" if flexible else b"")
        size = len(header) + sum(map(len, out))
        out[0] = _I32.pack(size) + header
        return b"".join(out)

    # --- the rest, through kpy.protocol's codec -------------------------------------------

    def other(self, frame: bytes) -> bytes:
        header = parse_header(frame)
        key, version = header.api_key, header.api_version
        if key == API_VERSIONS and version > VERSIONS[API_VERSIONS][1]:
            return self._unsupported_api_versions(header.correlation_id)
        low, high = VERSIONS.get(key, (0, -1))
        if not low <= version <= high:
            raise Close(f"api {key} v{version} is not served")
        if key == API_VERSIONS:
            response = self._api_versions(version)
        else:
            handler: Callable[[int, Any], Any] = {
                METADATA: self._metadata,
                CREATE_TOPICS: self._create_topics,
                INIT_PRODUCER_ID: self._init_producer_id,
            }[key]
            response = handler(version, decode_request(header, frame))
        data: bytes = encode_response(header, response)
        return data

    @staticmethod
    def _unsupported_api_versions(cid: int) -> bytes:
        body = struct.pack(">ihi", cid, ErrorCode.unsupported_version, len(ADVERTISED))
        for key, (low, high) in sorted(ADVERTISED.items()):
            body += struct.pack(">hhh", key, low, high)
        return _I32.pack(len(body)) + body

    @staticmethod
    def _api_versions(version: int) -> Any:
        mod = response_module(API_VERSIONS, version)
        keys = tuple(
            make(mod.ApiVersion, api_key=key, min_version=low, max_version=high)
            for key, (low, high) in sorted(ADVERTISED.items())
        )
        return make(
            mod.ApiVersionsResponse,
            error_code=ErrorCode.none,
            api_keys=keys,
            throttle_time=0,
            supported_features=(),
            finalized_features_epoch=-1,
            finalized_features=(),
            zk_migration_ready=False,
        )

    def _topic(self, name: str, partitions: int | None = None) -> int:
        """The partition count of a topic, which exists as soon as it is named."""
        if partitions is not None and partitions > 0:
            self.partitions[name] = partitions
        if name not in self.topic_ids:
            self.topic_ids[name] = uuid.uuid4()
        return self.partitions.setdefault(name, self.default_partitions)

    def _metadata(self, version: int, request: Any) -> Any:
        mod = response_module(METADATA, version)
        if request.topics is None or (version == 0 and not request.topics):
            names = list(self.partitions)
        else:
            names = [t.name for t in request.topics]
        topics = []
        for name in names:
            if name is None:  # asked by topic id: the sink knows topics by name only
                raise Close("Metadata by topic id is not served")
            count = self._topic(name)
            partitions = tuple(
                make(
                    mod.MetadataResponsePartition,
                    error_code=ErrorCode.none,
                    partition_index=p,
                    leader_id=NODE_ID,
                    leader_epoch=0,
                    replica_nodes=(NODE_ID,),
                    isr_nodes=(NODE_ID,),
                    offline_replicas=(),
                )
                for p in range(count)
            )
            topics.append(
                make(
                    mod.MetadataResponseTopic,
                    error_code=ErrorCode.none,
                    name=name,
                    topic_id=self.topic_ids[name],
                    is_internal=False,
                    partitions=partitions,
                    topic_authorized_operations=-2147483648,
                )
            )
        broker = make(
            mod.MetadataResponseBroker, node_id=NODE_ID, host="127.0.0.1", port=self.port, rack=None
        )
        return make(
            mod.MetadataResponse,
            throttle_time=0,
            brokers=(broker,),
            cluster_id=CLUSTER_ID,
            controller_id=NODE_ID,
            topics=tuple(topics),
            cluster_authorized_operations=-2147483648,
            error_code=ErrorCode.none,
        )

    def _create_topics(self, version: int, request: Any) -> Any:
        mod = response_module(CREATE_TOPICS, version)
        results = []
        for t in request.topics:
            count = t.num_partitions if t.num_partitions > 0 else self.default_partitions
            if not request.validate_only:
                count = self._topic(t.name, count)
            results.append(
                make(
                    mod.CreatableTopicResult,
                    name=t.name,
                    topic_id=self.topic_ids.get(t.name),
                    error_code=ErrorCode.none,
                    error_message=None,
                    num_partitions=count,
                    replication_factor=1,
                    configs=(),
                )
            )
        return make(mod.CreateTopicsResponse, throttle_time=0, topics=tuple(results))

    def _init_producer_id(self, version: int, request: Any) -> Any:
        producer_id = self.next_producer_id
        self.next_producer_id += 1
        return make(
            response_module(INIT_PRODUCER_ID, version).InitProducerIdResponse,
            throttle_time=0,
            error_code=ErrorCode.none,
            producer_id=producer_id,
            producer_epoch=0,
        )


class SinkConnection(asyncio.Protocol):
    """One client connection: frames are answered in order; the answers to the frames of one
    read leave in one write."""

    def __init__(self, sink: Sink) -> None:
        self.sink = sink
        self.buf = bytearray()
        self.transport: Any = None  # uvloop's transports are not asyncio.Transport subclasses

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        buf = self.buf
        buf += data
        pos = 0
        available = len(buf)
        out: list[bytes] = []
        try:
            while available - pos >= 4:
                size = _I32.unpack_from(buf, pos)[0]
                start = pos + 4
                end = start + size
                if size < 0 or end > available:
                    if size < 0:
                        raise Close(f"invalid frame size {size}")
                    break
                response = self.respond(buf, start, end)
                if response is not None:
                    out.append(response)
                pos = end
        except Exception:
            # A request the sink does not serve, or one it cannot parse: close, as Kafka does.
            if out:
                self._write(out)
            self.transport.close()
            buf.clear()
            return
        if pos:
            del buf[:pos]
        if out:
            self._write(out)

    def respond(self, buf: bytearray, start: int, end: int) -> bytes | None:
        key, version, cid, client_len = _HEADER.unpack_from(buf, start)
        if key == PRODUCE:
            if not 3 <= version <= 11:
                raise Close(f"Produce v{version} is not served")
            pos = start + _HEADER.size + max(client_len, 0)
            if version >= 9:
                pos = _skip_tags(buf, pos)
            return self.sink.produce(buf, pos, end, version, cid)
        return self.sink.other(bytes(buf[start:end]))

    def _write(self, out: list[bytes]) -> None:
        self.transport.write(out[0] if len(out) == 1 else b"".join(out))


async def serve(host: str, port: int, partitions: int) -> None:
    sink = Sink(port, partitions)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: SinkConnection(sink), host, port, backlog=1024)
    async with server:
        await server.serve_forever()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.sink", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--partitions", type=int, default=1, help="partitions of unknown topics")
    args = parser.parse_args(argv)
    try:
        import uvloop
    except ImportError:  # the sink works on asyncio's own loop, only slower
        asyncio.run(serve(args.host, args.port, args.partitions))
    else:
        uvloop.run(serve(args.host, args.port, args.partitions))


class SinkBroker(Broker):
    """The sink as a broker under test (name "sink"). ``python -m bench.sink`` needs the
    repository root on the path, whatever the runner's working directory."""

    name = "sink"

    def command(self) -> list[str]:
        path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
        return [
            "env",
            f"PYTHONPATH={path}",
            sys.executable,
            "-m",
            "bench.sink",
            "--port",
            str(self.port),
        ]


if __name__ == "__main__":
    main()
