"""The hand-written Produce and Fetch encoders write, for every version, the bytes kio writes."""

from __future__ import annotations

import datetime
import uuid
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from kio.schema.errors import ErrorCode

from kpy.protocol.hot_responses import (
    FetchPartition,
    ProducePartition,
    encode_fetch,
    encode_produce,
)
from kpy.protocol.messages import RequestHeader, encode_response, make, response_module

PRODUCE, FETCH = 0, 1


def _kio_produce(version: int, topics: list[tuple[str, list[ProducePartition]]]) -> Any:
    mod = response_module(PRODUCE, version)
    out = []
    for name, partitions in topics:
        parts = []
        for p in partitions:
            errors = ()
            if hasattr(mod, "BatchIndexAndErrorMessage"):
                errors = tuple(
                    mod.BatchIndexAndErrorMessage(batch_index=i, batch_index_error_message=m)
                    for i, m in p.record_errors
                )
            append_time = None
            if p.log_append_time_ms >= 0:
                append_time = datetime.datetime.fromtimestamp(
                    p.log_append_time_ms / 1000, tz=datetime.UTC
                )
            parts.append(
                make(
                    mod.PartitionProduceResponse,
                    index=p.partition_index,
                    error_code=ErrorCode(p.error_code),
                    base_offset=p.base_offset,
                    log_append_time=append_time,
                    log_start_offset=p.log_start_offset,
                    record_errors=errors,
                    error_message=p.error_message,
                )
            )
        out.append(make(mod.TopicProduceResponse, name=name, partition_responses=tuple(parts)))
    return make(mod.ProduceResponse, responses=tuple(out), throttle_time=0)


def _kio_fetch(version: int, error: int, topics: list[tuple[Any, list[FetchPartition]]]) -> Any:
    mod = response_module(FETCH, version)
    out = []
    for key, partitions in topics:
        parts = []
        for p in partitions:
            extra = {}
            if p.diverging_epoch is not None:
                extra["diverging_epoch"] = make(
                    mod.EpochEndOffset, epoch=p.diverging_epoch[0], end_offset=p.diverging_epoch[1]
                )
            parts.append(
                make(
                    mod.PartitionData,
                    partition_index=p.partition_index,
                    error_code=ErrorCode(p.error_code),
                    high_watermark=p.high_watermark,
                    last_stable_offset=p.last_stable_offset,
                    log_start_offset=p.log_start_offset,
                    aborted_transactions=None
                    if p.aborted_transactions is None or version < 4
                    else tuple(
                        make(mod.AbortedTransaction, producer_id=pid, first_offset=first)
                        for pid, first in p.aborted_transactions
                    ),
                    preferred_read_replica=-1,
                    records=bytes(p.records),
                    **extra,
                )
            )
        field = "topic_id" if version >= 13 else "topic"
        out.append(make(mod.FetchableTopicResponse, partitions=tuple(parts), **{field: key}))
    return make(
        mod.FetchResponse,
        throttle_time=0,
        error_code=ErrorCode(error),
        session_id=0,
        responses=tuple(out),
    )


def _header(key: int, version: int) -> RequestHeader:
    return RequestHeader(key, version, 12345, "c", 0)


PRODUCE_CASES = [
    [("t", [ProducePartition(0, 0, base_offset=42, log_start_offset=0)])],
    [
        (
            "topic-é",
            [
                ProducePartition(3, 0, 7, log_append_time_ms=1_700_000_000_123, log_start_offset=5),
                ProducePartition(
                    1, 87, record_errors=((0, "no key"), (2, None)), error_message="x"
                ),
            ],
        ),
        ("other", [ProducePartition(0, 3), ProducePartition(1, 10, error_message="too big")]),
    ],
    [],
]


@pytest.mark.parametrize("version", range(12))
@pytest.mark.parametrize("case", range(len(PRODUCE_CASES)))
def test_produce_response_matches_kio(version: int, case: int) -> None:
    topics = PRODUCE_CASES[case]
    header = _header(PRODUCE, version)
    expected = encode_response(header, _kio_produce(version, topics))
    assert encode_response(header, encode_produce(version, topics)) == expected


TOPIC_ID = uuid.UUID("6ba7b810-9dad-11d1-80b4-00c04fd430c8")


def _fetch_cases(version: int) -> list[tuple[int, list[tuple[Any, list[FetchPartition]]]]]:
    def key(name: str) -> Any:
        return TOPIC_ID if version >= 13 else name

    return [
        (0, [(key("t"), [FetchPartition(0, 0, 10, 10, 0, b"\x01" * 300, None)])]),
        (
            0,
            [
                (
                    key("topic-é"),
                    [
                        FetchPartition(0, 0, 5, 5, 0, b"", ()),
                        FetchPartition(1, 1, -1, -1, -1, b"", None),
                        FetchPartition(
                            2, 0, 9, 4, 2, memoryview(b"abcdef")[1:4], ((7, 1), (2**62, 3)), (3, 7)
                        ),
                    ],
                ),
                (key("u"), []),
            ],
        ),
        (58, []),
    ]


@pytest.mark.parametrize("version", range(17))
def test_fetch_response_matches_kio(version: int) -> None:
    for error, topics in _fetch_cases(version):
        if version < 12:  # no diverging epochs before v12
            topics = [(k, [p._replace(diverging_epoch=None) for p in parts]) for k, parts in topics]
        header = _header(FETCH, version)
        expected = encode_response(header, _kio_fetch(version, error, topics))
        assert encode_response(header, encode_fetch(version, error, topics)) == expected


@given(
    version=st.integers(0, 11),
    name=st.text(min_size=1, max_size=200),
    offsets=st.tuples(st.integers(-1, 2**63 - 1), st.integers(-1, 2**40), st.integers(-1, 2**40)),
    message=st.none() | st.text(max_size=300),
    errors=st.lists(st.tuples(st.integers(0, 2**31 - 1), st.none() | st.text()), max_size=3),
)
def test_produce_response_matches_kio_for_any_values(
    version: int,
    name: str,
    offsets: tuple[int, int, int],
    message: str | None,
    errors: list[tuple[int, str | None]],
) -> None:
    base, append_time, start = offsets
    part = ProducePartition(2**31 - 1, 87, base, append_time, start, tuple(errors), message)
    topics = [(name, [part])]
    header = _header(PRODUCE, version)
    expected = encode_response(header, _kio_produce(version, topics))
    assert encode_response(header, encode_produce(version, topics)) == expected
