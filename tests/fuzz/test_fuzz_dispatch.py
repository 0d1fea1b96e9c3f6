"""Fuzzing dispatch: decoded requests with arbitrary field values run through a real broker.

One in-process Broker (kpy.broker.Broker on an in-memory store, its event loop in a thread, as
kpy.Broker's thread mode runs it) takes frames through ``Broker.dispatch``, the path every
connection's frames take. The requests are kio entities of every API key and version kpy serves,
built by hypothesis from the schema types, with names drawn mostly from topics, groups and
transactional ids that exist (so that the handlers get past "unknown topic"), records fields
holding valid, damaged or junk batches and message sets; some are then mutated as bytes.

The invariant: no handler raises. A handler exception becomes UNKNOWN_SERVER_ERROR (or a closed
connection) and a logged traceback; every such traceback is a finding. A ProtocolError (a frame
that does not decode) or a CloseConnection (Kafka's answer by closing) is not. A request still
waiting after a short while (a Fetch long poll, a JoinGroup waiting for its group) is cancelled,
as a closed connection cancels it. After each input the broker must still answer ApiVersions,
and after the test a Metadata request.
"""

from __future__ import annotations

import dataclasses
import datetime
import importlib
import logging
import shutil
import struct
import tempfile
import uuid
from collections.abc import Iterator
from typing import Any

import anyio
import anyio.from_thread
import pytest
from fuzzing import COUNTS, budget, mutated, records_field
from hypothesis import given
from hypothesis import strategies as st
from kio.schema.errors import ErrorCode
from kio.static.primitive import Records
from test_fuzz_requests import VERSIONS, encode, frame_of

from kpy.broker import Broker
from kpy.config import BrokerConfig
from kpy.handlers.registry import CloseConnection
from kpy.protocol.messages import ProtocolError, decode_response, request_type

st.register_type_strategy(Records, records_field().map(Records))

TOPICS = ["fuzz-a", "fuzz-b", "fuzz-compact"]
GROUPS = ["g1", "g2"]
NAME_FIELDS = {"name", "topic", "topic_name", "resource_name"}
GROUP_FIELDS = {"group_id", "key", "transactional_id", "group_ids"}
WAIT = 0.3  # seconds a request may wait before it is cancelled


class Tracebacks(logging.Handler):
    """Collects every log record that carries an exception: each is a finding."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info:
            self.records.append(record)


class Harness:
    def __init__(self) -> None:
        self.dir = tempfile.mkdtemp(prefix="kpy-fuzz-")
        config = BrokerConfig.load(
            None, {"log.dirs": self.dir, "kpy.storage.in.memory": "true", "num.partitions": "2"}
        )
        self._portal_cm = anyio.from_thread.start_blocking_portal("asyncio")
        self.portal = self._portal_cm.__enter__()
        self.broker = self.portal.call(anyio.to_thread.run_sync, Broker, config)
        self.tracebacks = Tracebacks()
        logging.getLogger("kpy").addHandler(self.tracebacks)
        self.ensure_topics()

    def ensure_topics(self) -> None:
        """The topics the targets name, again if a fuzzed DeleteTopics took one."""
        for topic in TOPICS:
            if self.broker.logs.topic(topic) is None:
                cfg = {"cleanup.policy": "compact"} if "compact" in topic else {}
                self.portal.call(self.broker.create_topic, topic, 2, 1, cfg)

    def dispatch(self, frame: bytes) -> bytes | str | None:
        async def bounded() -> bytes | str | None:
            with anyio.move_on_after(WAIT):
                try:
                    return await self.broker.dispatch(frame, "127.0.0.1:40000")
                except ProtocolError:
                    return "protocol error"
                except CloseConnection:
                    return "closed"
            return "waiting"

        return self.portal.call(bounded)

    def answer(self, key: int, version: int, body: bytes) -> Any:
        """Dispatch one request that must be answered without a logged traceback; the decoded
        response."""
        before = len(self.tracebacks.records)
        out = self.dispatch(frame_of(key, version, body))
        assert self.tracebacks.records[before:] == []
        assert isinstance(out, bytes), out
        return decode_response(key, version, out[4:])

    def close(self) -> None:
        logging.getLogger("kpy").removeHandler(self.tracebacks)
        self.broker.close()
        self._portal_cm.__exit__(None, None, None)
        shutil.rmtree(self.dir, ignore_errors=True)


_harness: Harness | None = None


def harness() -> Harness:
    global _harness
    if _harness is None:
        _harness = Harness()
    else:
        _harness.ensure_topics()
    return _harness


@pytest.fixture(scope="module", autouse=True)
def _close_harness() -> Iterator[None]:
    yield
    global _harness
    if _harness is not None:
        _harness.close()
        _harness = None


def api_versions_answers(h: Harness) -> bool:
    frame = struct.pack(">hhih", 18, 3, 99, 1) + b"x\x00" + b"\x05fuzz\x021\x00"
    out = h.dispatch(frame)
    if not isinstance(out, bytes):
        return False
    response = decode_response(18, 3, out[4:])  # past the size prefix
    return bool(response.error_code == 0)


def _bias(value: Any, draw: st.DrawFn) -> Any:
    """``value`` with its name-like fields pointing, mostly, at what exists."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        changes = {}
        for f in dataclasses.fields(value):
            current = getattr(value, f.name)
            if f.name in NAME_FIELDS and isinstance(current, str):
                changes[f.name] = draw(st.sampled_from([*TOPICS, current]))
            elif f.name in GROUP_FIELDS and isinstance(current, str):
                changes[f.name] = draw(st.sampled_from([*GROUPS, current]))
            elif f.name in GROUP_FIELDS and isinstance(current, tuple):
                changes[f.name] = tuple(draw(st.sampled_from([*GROUPS, c])) for c in current)
            else:
                changes[f.name] = _bias(current, draw)
        return dataclasses.replace(value, **changes)
    if isinstance(value, tuple):
        return tuple(_bias(v, draw) for v in value)
    return value


@st.composite
def request_frames(draw: st.DrawFn) -> tuple[int, bytes]:
    key, version = draw(st.sampled_from(VERSIONS))
    cls = request_type(key, version)
    request = _bias(draw(st.from_type(cls)), draw)
    frame = frame_of(key, version, encode(request))
    if draw(st.integers(0, 4)) == 0:
        frame = draw(mutated(frame, tagged=bool(cls.__flexible__)))
    return key, frame


@budget(250)
@given(st.lists(request_frames(), min_size=1, max_size=3))
def test_no_handler_raises_and_the_broker_still_answers(frames: list[tuple[int, bytes]]) -> None:
    h = harness()
    for key, frame in frames:
        COUNTS["dispatch"] += 1
        before = len(h.tracebacks.records)
        out = h.dispatch(frame)
        COUNTS[f"dispatch ({'answered' if isinstance(out, bytes) else out})"] += 1
        found = h.tracebacks.records[before:]
        assert not found, (
            f"API {key}: {found[0].getMessage()}\n"
            + logging.Formatter().formatException(found[0].exc_info)
        )  # type: ignore[arg-type]
    assert api_versions_answers(h)


def test_metadata_after_the_fuzzing() -> None:
    """Runs after the target (file order): the broker answers a whole Metadata request."""
    from kio.schema.metadata.v12.request import MetadataRequest

    h = harness()
    frame = frame_of(
        3,
        12,
        encode(
            MetadataRequest(
                topics=None,
                allow_auto_topic_creation=False,
                include_topic_authorized_operations=False,
            )
        ),
    )
    out = h.dispatch(frame)
    assert isinstance(out, bytes)
    response = decode_response(3, 12, out[4:])
    # The fuzzing may have deleted topics (DeleteTopics) and created others; what is there is
    # answered whole.
    assert [b.node_id for b in response.brokers] == [h.broker.node_id]
    assert all(t.error_code == ErrorCode.none and t.partitions for t in response.topics)


@pytest.mark.parametrize("version", [13, 16])
def test_fetch_of_the_zero_topic_id_answers_unknown_topic_id(version: int) -> None:
    """Regression (found by the dispatch target): Fetch v13+ naming the zero topic id, which
    the hand decoder reads as None, made encode_fetch raise, in the handler and again in its
    error response, so the connection closed with a logged traceback. Kafka answers
    UNKNOWN_TOPIC_ID for the partitions of a topic id it does not know, the zero one too."""
    body = bytearray(b"\xff\xff\xff\xff" if version <= 14 else b"")  # replica id
    body += struct.pack(">iiibii", 0, 0, 1 << 20, 0, 0, -1)  # wait, min, max, isolation, session
    body += b"\x02" + bytes(16)  # one topic: the zero uuid
    body += b"\x02" + struct.pack(">iiqiqi", 0, -1, 0, -1, -1, 1 << 20) + b"\x00"  # partition 0
    body += b"\x00"  # topic tagged fields
    body += b"\x01" + b"\x01" + b"\x00"  # no forgotten topics, rack id "", tagged fields
    response = harness().answer(1, version, bytes(body))
    [topic] = response.responses
    assert topic.partitions[0].error_code == ErrorCode.unknown_topic_id


@pytest.mark.parametrize("version", [10, 11])
@pytest.mark.parametrize("topic_id", [uuid.UUID(int=0), uuid.UUID(int=7)])
def test_metadata_v10_v11_refuse_null_names_and_topic_ids(
    version: int, topic_id: uuid.UUID
) -> None:
    """Regression (found by the dispatch target): Metadata v10-v11 with a null topic name
    answered that name as null, which those versions cannot encode, so the connection closed
    with a logged traceback. Kafka refuses null names and topic ids below v12
    (InvalidRequestException): INVALID_REQUEST for every topic, a null name answered as ""."""
    mod = importlib.import_module(f"kio.schema.metadata.v{version}.request")
    name = None if topic_id.int == 0 else "fuzz-a"
    request = mod.MetadataRequest(
        topics=(
            mod.MetadataRequestTopic(topic_id=topic_id, name=name),
            mod.MetadataRequestTopic(topic_id=uuid.UUID(int=0), name="fuzz-b"),
        ),
        allow_auto_topic_creation=False,
        include_topic_authorized_operations=False,
        **({"include_cluster_authorized_operations": False} if version == 10 else {}),
    )
    response = harness().answer(3, version, encode(request))
    assert [(t.name, t.error_code) for t in response.topics] == [
        (name or "", ErrorCode.invalid_request),
        ("fuzz-b", ErrorCode.invalid_request),
    ]


@pytest.mark.parametrize("partitions", [2**31 - 1, 10_000])
def test_create_topics_past_kafkas_batch_bound_is_a_policy_violation(partitions: int) -> None:
    """Regression (found by the long run of the dispatch target, which the kernel killed at
    23 GB): a CreateTopics asking for two billion partitions set about creating them. Kafka's
    controller writes at most 10,000 records for one request (a topic record, one per partition
    and per config) and fails a request past that whole: POLICY_VIOLATION."""
    from kio.schema.create_topics.v7 import request as ct

    def topic(name: str, n: int) -> Any:
        return ct.CreatableTopic(
            name=name, num_partitions=n, replication_factor=1, assignments=(), configs=()
        )

    request = ct.CreateTopicsRequest(
        topics=(topic("fuzz-big", partitions), topic("fuzz-small", 1)),
        timeout=datetime.timedelta(seconds=5),
        validate_only=False,
    )
    h = harness()
    out = h.dispatch(frame_of(19, 7, encode(request)))
    assert isinstance(out, bytes)
    response = decode_response(19, 7, out[4:])
    assert [(t.name, t.error_code, t.error_message) for t in response.topics] == [
        (name, ErrorCode.policy_violation, "Unable to perform excessively large batch operation.")
        for name in ("fuzz-big", "fuzz-small")
    ]
    assert h.broker.logs.topic("fuzz-big") is None and h.broker.logs.topic("fuzz-small") is None


def test_create_partitions_past_kafkas_batch_bound_is_a_policy_violation() -> None:
    """Regression, as above: CreatePartitions to two billion partitions grew the topic on the
    event loop until memory ran out."""
    from kio.schema.create_partitions.v3 import request as cp

    request = cp.CreatePartitionsRequest(
        topics=(cp.CreatePartitionsTopic(name="fuzz-a", count=2**31 - 1, assignments=None),),
        timeout=datetime.timedelta(seconds=5),
        validate_only=False,
    )
    h = harness()
    before = h.broker.logs.topic("fuzz-a")
    out = h.dispatch(frame_of(37, 3, encode(request)))
    assert isinstance(out, bytes)
    response = decode_response(37, 3, out[4:])
    assert [(r.name, r.error_code) for r in response.results] == [
        ("fuzz-a", ErrorCode.policy_violation)
    ]
    assert h.broker.logs.topic("fuzz-a") == before


@pytest.mark.parametrize(("max_bytes", "partition_max_bytes"), [(1 << 20, -1), (-1, 1 << 20)])
def test_fetch_of_a_negative_size_answers_unknown_server_error_for_the_partition(
    max_bytes: int, partition_max_bytes: int
) -> None:
    """Regression (found by the long run of the dispatch target): a Fetch whose max_bytes or
    partition_max_bytes is negative reached the segment read, which raised, so the whole
    response was UNKNOWN_SERVER_ERROR with a logged traceback. Kafka's LogSegment.read refuses
    a negative size too, and ReplicaManager answers UNKNOWN_SERVER_ERROR for that partition
    alone; the other partitions are served."""
    from kio.schema.fetch.v7 import request as fr
    from kio.schema.produce.v9 import request as pr

    from kpy.protocol import records as rb

    h = harness()
    topic = f"fuzz-negative-{partition_max_bytes}"
    h.portal.call(h.broker.create_topic, topic, 2, 1, {})
    batch = rb.build_batch([(b"k", b"v")])
    produce = pr.ProduceRequest(
        transactional_id=None,
        acks=1,
        timeout=datetime.timedelta(seconds=5),
        topic_data=(
            pr.TopicProduceData(
                name=topic,
                partition_data=tuple(
                    pr.PartitionProduceData(index=i, records=batch) for i in (0, 1)
                ),
            ),
        ),
    )
    assert isinstance(h.dispatch(frame_of(0, 9, encode(produce))), bytes)

    def part(index: int, size: int) -> Any:
        return fr.FetchPartition(
            partition=index, fetch_offset=0, log_start_offset=-1, partition_max_bytes=size
        )

    fetch = fr.FetchRequest(
        replica_id=-1,
        max_wait=datetime.timedelta(0),
        min_bytes=0,
        max_bytes=max_bytes,
        isolation_level=0,
        session_id=0,
        session_epoch=-1,
        topics=(
            fr.FetchTopic(topic=topic, partitions=(part(0, partition_max_bytes), part(1, 1 << 20))),
        ),
        forgotten_topics_data=(),
    )
    response = h.answer(1, 7, encode(fetch))
    assert response.error_code == ErrorCode.none
    errors = [p.error_code for p in response.responses[0].partitions]
    if max_bytes < 0:  # every partition's size is negative then
        assert errors == [ErrorCode.unknown_server_error] * 2
    else:
        assert errors == [ErrorCode.unknown_server_error, ErrorCode.none]
        served = rb.decode_records(response.responses[0].partitions[1].records)
        assert [(r.key, r.value) for r in served] == [(b"k", b"v")]
