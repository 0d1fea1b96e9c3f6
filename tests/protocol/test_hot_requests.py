"""The hand-written Produce, Fetch and ApiVersions decoders read, for every version, what kio
reads, and refuse (ProtocolError) what kio refuses; the ApiVersions encoder writes kio's bytes."""

from __future__ import annotations

import io
import struct
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from kio.schema.errors import ErrorCode
from kio.serial import entity_writer

from kpy.handlers.api_versions import encode
from kpy.protocol.hot_requests import (
    ApiVersionsRequest,
    FetchPartition,
    FetchRequest,
    FetchTopic,
    ForgottenTopic,
    PartitionProduceData,
    ProduceRequest,
    TopicProduceData,
    decode_api_versions,
    decode_fetch,
    decode_produce,
)
from kpy.protocol.messages import (
    ProtocolError,
    _safe_reader,
    make,
    request_type,
    response_module,
)

PRODUCE, FETCH, API_VERSIONS = 0, 1, 18
PRODUCE_VERSIONS = range(0, 12)
FETCH_VERSIONS = range(0, 17)
API_VERSIONS_VERSIONS = range(0, 5)

names = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=0, max_size=12)
partitions = st.lists(
    st.tuples(st.integers(-(2**31), 2**31 - 1), st.one_of(st.none(), st.binary(max_size=40))),
    max_size=4,
)
produce_requests = st.builds(
    ProduceRequest,
    transactional_id=st.one_of(st.none(), names),
    acks=st.integers(-(2**15), 2**15 - 1),
    timeout_ms=st.integers(-(2**31), 2**31 - 1),
    topic_data=st.lists(
        st.builds(
            TopicProduceData,
            name=names,
            partition_data=partitions.map(lambda ps: tuple(PartitionProduceData(*p) for p in ps)),
        ),
        max_size=3,
    ).map(tuple),
)


def _kio_bytes(version: int, req: ProduceRequest) -> bytes:
    """``req`` as kio (or kpy's legacy types, v0-v2) writes Produce ``version``."""
    import datetime

    cls = request_type(PRODUCE, version)
    mod = __import__(cls.__module__, fromlist=["TopicProduceData"])
    topics = tuple(
        make(
            mod.TopicProduceData,
            name=t.name,
            partition_data=tuple(
                make(mod.PartitionProduceData, index=p.index, records=p.records)
                for p in t.partition_data
            ),
        )
        for t in req.topic_data
    )
    kio_req = make(
        cls,
        transactional_id=req.transactional_id,
        acks=req.acks,
        timeout=datetime.timedelta(milliseconds=req.timeout_ms),
        timeout_ms=req.timeout_ms,
        topic_data=topics,
    )
    out = io.BytesIO()
    entity_writer(cls)(out, kio_req)
    return out.getvalue()


def _as_produce(kio_req: Any, version: int) -> ProduceRequest:
    timeout = kio_req.timeout
    timeout_ms = timeout if isinstance(timeout, int) else round(timeout.total_seconds() * 1000)
    return ProduceRequest(
        getattr(kio_req, "transactional_id", None),
        kio_req.acks,
        timeout_ms,
        tuple(
            TopicProduceData(
                t.name, tuple(PartitionProduceData(p.index, p.records) for p in t.partition_data)
            )
            for t in kio_req.topic_data
        ),
    )


def _kio_read(api_key: int, version: int, body: bytes) -> Any:
    return _safe_reader(request_type(api_key, version))(body, 0)[0]


@pytest.mark.parametrize("version", PRODUCE_VERSIONS)
@given(req=produce_requests)
@settings(max_examples=60, deadline=None)
def test_produce_reads_what_kio_writes(version: int, req: ProduceRequest) -> None:
    if version < 3:
        req = req._replace(transactional_id=None)
    body = _kio_bytes(version, req)
    assert decode_produce(body, 0, version) == req
    assert _as_produce(_kio_read(PRODUCE, version, body), version) == req


def _agree(key: int, version: int, body: bytes) -> None:
    """The hand decoder and kio read ``body`` alike, or both refuse it."""
    decode, as_kio = {PRODUCE: (decode_produce, _as_produce), FETCH: (decode_fetch, _as_fetch)}[key]
    try:
        expected: Any = as_kio(_kio_read(key, version, body), version)
    except Exception:
        expected = ProtocolError
    try:
        got: Any = decode(body, 0, version)
    except ProtocolError:
        got = ProtocolError
    assert got == expected


@pytest.mark.parametrize("version", PRODUCE_VERSIONS)
@given(body=st.binary(max_size=120))
@settings(max_examples=300, deadline=None)
def test_produce_agrees_with_kio_on_any_bytes(version: int, body: bytes) -> None:
    _agree(PRODUCE, version, body)


@pytest.mark.parametrize("version", PRODUCE_VERSIONS)
@given(req=produce_requests, data=st.data())
@settings(max_examples=300, deadline=None)
def test_produce_agrees_with_kio_on_damaged_requests(
    version: int, req: ProduceRequest, data: st.DataObject
) -> None:
    """A valid request with bytes overwritten or cut off: the damage lands in every field."""
    if version < 3:
        req = req._replace(transactional_id=None)
    body = bytearray(_kio_bytes(version, req))
    for _ in range(data.draw(st.integers(1, 3))):
        at = data.draw(st.integers(0, len(body) - 1))
        body[at] = data.draw(st.sampled_from([0x00, 0x01, 0x7F, 0x80, 0xFE, 0xFF, body[at] ^ 1]))
    if data.draw(st.booleans()):
        del body[data.draw(st.integers(0, len(body))) :]
    _agree(PRODUCE, version, bytes(body))


@pytest.mark.parametrize("version", API_VERSIONS_VERSIONS)
def test_api_versions_request_reads_what_kio_writes(version: int) -> None:
    cls = request_type(API_VERSIONS, version)
    out = io.BytesIO()
    entity_writer(cls)(
        out,
        make(cls, client_software_name="librdkafka", client_software_version="2.6.1"),
    )
    got = decode_api_versions(out.getvalue(), 0, version)
    if version >= 3:
        assert got == ApiVersionsRequest("librdkafka", "2.6.1")
    else:
        assert got == ApiVersionsRequest("", "")


@pytest.mark.parametrize("version", API_VERSIONS_VERSIONS)
@given(body=st.binary(max_size=60))
@settings(max_examples=200, deadline=None)
def test_api_versions_request_agrees_with_kio_on_any_bytes(version: int, body: bytes) -> None:
    try:
        kio_req = _kio_read(API_VERSIONS, version, body)
        expected: Any = ApiVersionsRequest(
            getattr(kio_req, "client_software_name", ""),
            getattr(kio_req, "client_software_version", ""),
        )
    except Exception:
        expected = ProtocolError
    try:
        got: Any = decode_api_versions(body, 0, version)
    except ProtocolError:
        got = ProtocolError
    assert got == expected


@pytest.mark.parametrize("version", API_VERSIONS_VERSIONS)
@pytest.mark.parametrize(
    "error, ranges",
    [
        (ErrorCode.none, [(0, 0, 11), (1, 0, 16), (18, 0, 4), (75, 0, 0)]),
        (ErrorCode.invalid_request, []),
        (ErrorCode.unsupported_version, [(i, 0, i % 7) for i in range(200)]),
    ],
)
def test_api_versions_response_matches_kio(
    version: int, error: ErrorCode, ranges: list[tuple[int, int, int]]
) -> None:
    mod = response_module(API_VERSIONS, version)
    cls = mod.ApiVersionsResponse
    kio_resp = make(
        cls,
        error_code=error,
        api_keys=tuple(
            make(mod.ApiVersion, api_key=k, min_version=lo, max_version=hi) for k, lo, hi in ranges
        ),
        throttle_time=0,
        supported_features=(),
        finalized_features_epoch=-1,
        finalized_features=(),
        zk_migration_ready=False,
    )
    out = io.BytesIO()
    entity_writer(cls)(out, kio_resp)
    assert encode(version, error, ranges) == out.getvalue()


def test_unknown_tagged_fields_are_skipped() -> None:
    body = struct.pack(">B", 6) + b"kcat1" + struct.pack(">B", 2) + b"1" + b"\x01\x07\x02ab"
    assert decode_api_versions(body, 0, 3) == ApiVersionsRequest("kcat1", "1")


i32s = st.integers(-(2**31), 2**31 - 1)
i64s = st.integers(-(2**63), 2**63 - 1)
topic_ids = st.one_of(st.none(), st.uuids().filter(lambda u: u.int != 0))
fetch_requests = st.builds(
    FetchRequest,
    replica_id=i32s,
    max_wait_ms=i32s,
    min_bytes=i32s,
    max_bytes=i32s,
    isolation_level=st.integers(0, 1),
    session_id=i32s,
    session_epoch=i32s,
    topics=st.lists(
        st.builds(
            FetchTopic,
            topic=names,
            topic_id=topic_ids,
            partitions=st.lists(
                st.builds(FetchPartition, i32s, i32s, i64s, i32s, i64s, i32s), max_size=3
            ).map(tuple),
        ),
        max_size=3,
    ).map(tuple),
    forgotten_topics_data=st.lists(
        st.builds(
            ForgottenTopic,
            topic=names,
            topic_id=topic_ids,
            partitions=st.lists(i32s, max_size=3).map(tuple),
        ),
        max_size=2,
    ).map(tuple),
    rack_id=names,
)


def _for_version(req: FetchRequest, version: int) -> FetchRequest:
    """``req`` with the fields ``version`` lacks at Kafka's defaults."""
    by_id = version >= 13

    def topic(t: Any) -> Any:
        return t._replace(topic=None) if by_id else t._replace(topic_id=None)

    return req._replace(
        replica_id=req.replica_id if version <= 14 else -1,
        max_bytes=req.max_bytes if version >= 3 else 0x7FFFFFFF,
        isolation_level=req.isolation_level if version >= 4 else 0,
        session_id=req.session_id if version >= 7 else 0,
        session_epoch=req.session_epoch if version >= 7 else -1,
        topics=tuple(
            topic(t)._replace(
                partitions=tuple(
                    p._replace(
                        current_leader_epoch=p.current_leader_epoch if version >= 9 else -1,
                        last_fetched_epoch=p.last_fetched_epoch if version >= 12 else -1,
                        log_start_offset=p.log_start_offset if version >= 5 else -1,
                    )
                    for p in t.partitions
                )
            )
            for t in req.topics
        ),
        forgotten_topics_data=tuple(topic(t) for t in req.forgotten_topics_data)
        if version >= 7
        else (),
        rack_id=req.rack_id if version >= 11 else "",
    )


def _kio_fetch_bytes(version: int, req: FetchRequest) -> bytes:
    import datetime

    cls = request_type(FETCH, version)
    mod = __import__(cls.__module__, fromlist=["FetchTopic"])
    kio_req = make(
        cls,
        replica_id=req.replica_id,
        max_wait=datetime.timedelta(milliseconds=req.max_wait_ms),
        min_bytes=req.min_bytes,
        max_bytes=req.max_bytes,
        isolation_level=req.isolation_level,
        session_id=req.session_id,
        session_epoch=req.session_epoch,
        topics=tuple(
            make(
                mod.FetchTopic,
                topic=t.topic,
                topic_id=t.topic_id,
                partitions=tuple(make(mod.FetchPartition, **p._asdict()) for p in t.partitions),
            )
            for t in req.topics
        ),
        forgotten_topics_data=tuple(
            make(mod.ForgottenTopic, topic=t.topic, topic_id=t.topic_id, partitions=t.partitions)
            for t in req.forgotten_topics_data
        ),
        rack_id=req.rack_id,
    )
    out = io.BytesIO()
    entity_writer(cls)(out, kio_req)
    return out.getvalue()


def _as_fetch(kio_req: Any, version: int) -> FetchRequest:
    wait = kio_req.max_wait
    wait_ms = wait if isinstance(wait, int) else round(wait.total_seconds() * 1000)

    def part(p: Any) -> FetchPartition:
        return FetchPartition(
            p.partition,
            getattr(p, "current_leader_epoch", -1),
            p.fetch_offset,
            getattr(p, "last_fetched_epoch", -1),
            getattr(p, "log_start_offset", -1),
            p.partition_max_bytes,
        )

    return FetchRequest(
        getattr(kio_req, "replica_id", -1),
        wait_ms,
        kio_req.min_bytes,
        getattr(kio_req, "max_bytes", 0x7FFFFFFF),
        int(getattr(kio_req, "isolation_level", 0)),
        getattr(kio_req, "session_id", 0),
        getattr(kio_req, "session_epoch", -1),
        tuple(
            FetchTopic(
                getattr(t, "topic", None),
                getattr(t, "topic_id", None),
                tuple(part(p) for p in t.partitions),
            )
            for t in kio_req.topics
        ),
        tuple(
            ForgottenTopic(
                getattr(t, "topic", None), getattr(t, "topic_id", None), tuple(t.partitions)
            )
            for t in getattr(kio_req, "forgotten_topics_data", ())
        ),
        getattr(kio_req, "rack_id", ""),
    )


@pytest.mark.parametrize("version", FETCH_VERSIONS)
@given(req=fetch_requests)
@settings(max_examples=40, deadline=None)
def test_fetch_reads_what_kio_writes(version: int, req: FetchRequest) -> None:
    req = _for_version(req, version)
    body = _kio_fetch_bytes(version, req)
    assert decode_fetch(body, 0, version) == req
    assert _as_fetch(_kio_read(FETCH, version, body), version) == req


@pytest.mark.parametrize("version", FETCH_VERSIONS)
@given(req=fetch_requests, data=st.data())
@settings(max_examples=150, deadline=None)
def test_fetch_agrees_with_kio_on_damaged_requests(
    version: int, req: FetchRequest, data: st.DataObject
) -> None:
    body = bytearray(_kio_fetch_bytes(version, _for_version(req, version)))
    for _ in range(data.draw(st.integers(1, 3))):
        at = data.draw(st.integers(0, len(body) - 1))
        body[at] = data.draw(st.sampled_from([0x00, 0x01, 0x7F, 0x80, 0xFE, 0xFF, body[at] ^ 1]))
    if data.draw(st.booleans()):
        del body[data.draw(st.integers(0, len(body))) :]
    _agree(FETCH, version, bytes(body))
