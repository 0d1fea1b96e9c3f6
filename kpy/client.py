"""A minimal blocking Kafka client for kpy's own tools: ``kpy wait`` (is a broker ready?) and the
pytest plugin's topic fixture (create and delete a topic). It works against any Kafka broker.

Requests go out at the highest version both this client (kio's schemas) and the broker (its
ApiVersions answer) know; responses are read with the same bounded decoders the broker uses for
requests. Written by hand on a plain socket: the client libraries bring threads, retries and
start-up cost to checks that shell scripts run in a loop, and none of them is a dependency of
the broker.
"""

from __future__ import annotations

import io
import socket
import struct
import sys
import time
from dataclasses import dataclass
from typing import Any

API_VERSIONS, METADATA, CREATE_TOPICS, DELETE_TOPICS = 18, 3, 19, 20
_HEADER = struct.Struct(">hhih")  # request header v1: api_key, version, correlation id, client id
_CLIENT_ID = b"kpy"
_MAX_ANSWER = 64 << 20


class NotReady(Exception):
    """The broker did not answer as a ready broker does; the message says what it did."""


class RequestFailed(Exception):
    """The broker answered a request with an error code (``code``)."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class Ready:
    bootstrap: str
    brokers: int  # in the Metadata answer
    cluster_id: str | None


def split_address(bootstrap: str) -> tuple[str, int]:
    host, sep, port = bootstrap.strip().rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"expected HOST:PORT, not {bootstrap!r}")
    return host.strip("[]") or "127.0.0.1", int(port)


class Connection:
    """One connection to one broker; ``call`` sends a request built for the agreed version."""

    def __init__(self, bootstrap: str, timeout: float = 5.0) -> None:
        self.bootstrap = bootstrap
        host, port = split_address(bootstrap)
        self._sock = socket.create_connection((host, port), timeout=timeout)
        self._sock.settimeout(timeout)
        self._correlation = 0
        try:
            self.versions = self._api_versions()
        except BaseException:
            self._sock.close()
            raise

    def close(self) -> None:
        self._sock.close()

    def __enter__(self) -> Connection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def version(self, api_key: int) -> int:
        """The highest version of ``api_key`` both sides know (NotReady if none)."""
        from kpy.protocol.messages import request_type

        if api_key not in self.versions:
            raise NotReady(f"the broker does not serve API {api_key}")
        low, high = self.versions[api_key]
        version = high
        while version >= low and request_type(api_key, version) is None:
            version -= 1
        if version < low:
            raise NotReady(f"no version of API {api_key} in common (broker: v{low}-v{high})")
        return version

    def call(self, api_key: int, **fields: Any) -> Any:
        """Send ``api_key``'s request with ``fields`` (the ones its version lacks are dropped;
        nested entities are given as dicts) and return the decoded response."""
        from kio.serial import entity_writer

        from kpy.protocol.messages import decode_response, is_flexible, request_type
        from kpy.protocol.wire import ProtocolError

        version = self.version(api_key)
        cls = request_type(api_key, version)
        body = io.BytesIO()
        entity_writer(cls)(body, _build(cls, fields))
        head = self._head(api_key, version)
        if is_flexible(api_key, version):
            head += b"\0"
        frame = self._exchange(head + body.getvalue())
        try:
            return decode_response(api_key, version, frame)
        except ProtocolError as e:
            raise NotReady(f"an answer that does not parse: {e}") from e

    # --- Inside ---------------------------------------------------------------------------

    def _head(self, api_key: int, version: int) -> bytes:
        self._correlation += 1
        return _HEADER.pack(api_key, version, self._correlation, len(_CLIENT_ID)) + _CLIENT_ID

    def _exchange(self, payload: bytes) -> bytes:
        self._sock.sendall(struct.pack(">i", len(payload)) + payload)
        (size,) = struct.unpack(">i", self._recv_exact(4))
        if size < 4 or size > _MAX_ANSWER:
            raise NotReady(f"an answer of {size} bytes")
        frame = self._recv_exact(size)
        if struct.unpack_from(">i", frame)[0] != self._correlation:
            raise NotReady("an answer to another request")
        return frame

    def _recv_exact(self, n: int) -> bytes:
        out = bytearray()
        while len(out) < n:
            chunk = self._sock.recv(n - len(out))
            if not chunk:
                raise NotReady("connection closed by the broker")
            out += chunk
        return bytes(out)

    def _api_versions(self) -> dict[int, tuple[int, int]]:
        """ApiVersions v0, which every broker answers, by hand (kio's schemas not needed)."""
        frame = self._exchange(self._head(API_VERSIONS, 0))
        try:
            error, count = struct.unpack_from(">hi", frame, 4)
            if error:
                raise NotReady(f"ApiVersions error code {error}")
            if count < 0 or 10 + 6 * count > len(frame):
                raise NotReady("an ApiVersions answer that does not parse")
            ranges = {}
            for i in range(count):
                key, low, high = struct.unpack_from(">hhh", frame, 10 + 6 * i)
                ranges[key] = (low, high)
        except struct.error as e:
            raise NotReady(f"an ApiVersions answer that does not parse: {e}") from e
        return ranges


def _build(cls: Any, fields: dict[str, Any]) -> Any:
    """``cls`` from ``fields``: nested entities from dicts (tuples of dicts), with the entity
    types of ``cls``'s own version."""
    import dataclasses
    import typing

    from kpy.protocol.messages import make

    module = sys.modules[cls.__module__]
    hints = typing.get_type_hints(cls, vars(module))
    values = {}
    for name, value in fields.items():
        hint = hints.get(name)
        if hint is None:
            continue
        if isinstance(value, list | tuple) and value and isinstance(value[0], dict):
            item = _entity_type(hint)
            value = tuple(_build(item, v) for v in value)
        elif isinstance(value, dict):
            value = _build(_entity_type(hint), value)
        values[name] = value
    assert dataclasses.is_dataclass(cls)
    return make(cls, **values)


def _entity_type(hint: Any) -> Any:
    import dataclasses
    import typing

    for arg in typing.get_args(hint) or (hint,):
        if dataclasses.is_dataclass(arg):
            return arg
        found = _entity_type(arg) if typing.get_args(arg) else None
        if found is not None:
            return found
    return None


def probe(bootstrap: str, timeout: float = 5.0) -> Ready:
    """Ask one broker once whether it serves: ApiVersions, then Metadata listing a broker.
    NotReady (or OSError, ValueError) if not."""
    with Connection(bootstrap, timeout) as conn:
        # No topics asked for (a broker may hold thousands); v0 reads an empty list as all.
        response = conn.call(
            METADATA,
            topics=(),
            allow_auto_topic_creation=False,
            include_cluster_authorized_operations=False,
            include_topic_authorized_operations=False,
        )
    if getattr(response, "error_code", 0):
        raise NotReady(f"Metadata error code {int(response.error_code)}")
    if not response.brokers:
        raise NotReady("Metadata lists no broker yet")
    return Ready(bootstrap, len(response.brokers), getattr(response, "cluster_id", None))


def wait(bootstraps: list[str], timeout: float, interval: float = 0.1) -> Ready:
    """Probe each address in turn until one is ready or ``timeout`` seconds have passed
    (TimeoutError, with the last answer in its message)."""
    deadline = time.monotonic() + timeout
    last = "no attempt made"
    while True:
        for bootstrap in bootstraps:
            left = deadline - time.monotonic()
            try:
                return probe(bootstrap, timeout=max(min(left, 5.0), 0.05))
            except (OSError, NotReady) as e:
                last = f"{bootstrap}: {e}"
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"no broker ready within {timeout:g} s (last: {last})")
        time.sleep(min(interval, left))


def create_topic(
    bootstrap: str,
    name: str,
    partitions: int = 1,
    configs: dict[str, str] | None = None,
    timeout: float = 30.0,
) -> None:
    """Create a topic and wait until Metadata shows a leader for each partition (Kafka makes
    topics asynchronously: CreateTopics answers before every broker knows of it)."""
    with Connection(bootstrap, timeout) as conn:
        response = conn.call(
            CREATE_TOPICS,
            topics=[
                {
                    "name": name,
                    "num_partitions": partitions,
                    "replication_factor": -1,
                    "assignments": (),
                    "configs": [{"name": k, "value": v} for k, v in (configs or {}).items()],
                }
            ],
            timeout=int(timeout * 1000),
            validate_only=False,
        )
        (result,) = response.topics
        if int(result.error_code):
            raise RequestFailed(
                f"CreateTopics {name}: error code {int(result.error_code)} "
                f"({getattr(result, 'error_message', None)})",
                int(result.error_code),
            )
        deadline = time.monotonic() + timeout
        while True:
            meta = conn.call(
                METADATA,
                topics=[{"name": name, "topic_id": None}],
                allow_auto_topic_creation=False,
                include_cluster_authorized_operations=False,
                include_topic_authorized_operations=False,
            )
            (topic,) = meta.topics
            partitions_ready = len(topic.partitions) == partitions and all(
                p.leader_id >= 0 and not int(p.error_code) for p in topic.partitions
            )
            if not int(topic.error_code) and partitions_ready:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"topic {name} has no leader after {timeout:g} s")
            time.sleep(0.02)


def delete_topic(bootstrap: str, name: str, timeout: float = 30.0) -> None:
    """Delete a topic and wait until Metadata no longer lists it; one already gone is no
    error."""
    deadline = time.monotonic() + timeout
    with Connection(bootstrap, timeout) as conn:
        response = conn.call(
            DELETE_TOPICS,
            topics=[{"name": name, "topic_id": None}],
            topic_names=(name,),
            timeout=int(timeout * 1000),
        )
        (result,) = response.responses
        code = int(result.error_code)
        if code not in (0, 3):  # 3: UNKNOWN_TOPIC_OR_PARTITION
            raise RequestFailed(f"DeleteTopics {name}: error code {code}", code)
        # Kafka applies a deletion after answering: wait until Metadata no longer knows it.
        while True:
            meta = conn.call(
                METADATA,
                topics=[{"name": name, "topic_id": None}],
                allow_auto_topic_creation=False,
                include_cluster_authorized_operations=False,
                include_topic_authorized_operations=False,
            )
            if all(int(t.error_code) == 3 for t in meta.topics):
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"topic {name} still listed {timeout:g} s after its deletion")
            time.sleep(0.02)
