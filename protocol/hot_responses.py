"""The Produce and Fetch responses, encoded by hand: the two answers a busy broker sends most.

kio builds a frozen dataclass per partition and topic, checks every field's type on the way in,
and writes through a generic per-field writer; for a produce acknowledgement that is most of the
broker's time per request, and for a fetch it copies the records several times over (into the
dataclass, into a growing buffer, out of it). Here each response is written straight from plain
values, in the layouts of Kafka's ProduceResponse.json (v0-v11, flexible from v9) and
FetchResponse.json (v0-v16, flexible from v12), and the fetched records are not copied at all:
``encode_fetch`` returns the response as a list of buffers, the records among them as they came
from the log, which ``messages.encode_response`` joins once behind the response header.

Tagged fields are written as kio writes them: only those that differ from their defaults. Of
the Produce v10+ and Fetch v12+ tagged fields kpy sets only Fetch's diverging epoch (tag 0);
CurrentLeader, SnapshotId and NodeEndpoints keep their defaults (one broker leads everything,
kpy never answers NOT_LEADER_OR_FOLLOWER), so they are never written. The bytes equal kio's for
the same values (tests/protocol/test_hot_responses.py checks every version against kio).
"""

from __future__ import annotations

import struct
import uuid
from collections.abc import Sequence
from typing import NamedTuple

from kpy.protocol.messages import EncodedBody
from kpy.protocol.wire import uvarint

PRODUCE_FLEXIBLE = 9
FETCH_FLEXIBLE = 12

_I16 = struct.Struct(">h")
_I32 = struct.Struct(">i")
# index, error_code, base_offset, log_append_time_ms, log_start_offset
_PRODUCE_PARTITION = struct.Struct(">ihqqq")
# partition_index, error_code, high_watermark, last_stable_offset, log_start_offset
_FETCH_PARTITION = struct.Struct(">ihqqq")
_DIVERGING = struct.Struct(">BBiqB")  # tag 0, size 13, epoch, end_offset, no tagged fields
_ABORTED = struct.Struct(">qq")  # AbortedTransaction: producer id, first offset


class ProducePartition(NamedTuple):
    """One partition's answer to a Produce (NamedTuples: one is built per partition)."""

    partition_index: int
    error_code: int
    base_offset: int = -1
    log_append_time_ms: int = -1
    log_start_offset: int = -1
    record_errors: tuple[tuple[int, str | None], ...] = ()
    error_message: str | None = None


class FetchPartition(NamedTuple):
    """One partition's answer to a Fetch; ``records`` goes out as it is (not copied)."""

    partition_index: int
    error_code: int
    high_watermark: int
    last_stable_offset: int
    log_start_offset: int
    records: bytes | bytearray | memoryview
    # (producer id, first offset) of each aborted transaction the records overlap, for
    # read_committed fetches; None (null) for read_uncommitted.
    aborted_transactions: Sequence[tuple[int, int]] | None
    diverging_epoch: tuple[int, int] | None = None  # (epoch, end offset)


def _array_length(n: int, flexible: bool) -> bytes:
    return uvarint(n + 1) if flexible else _I32.pack(n)


def _string(value: str, flexible: bool) -> bytes:
    data = value.encode("utf-8")
    return (uvarint(len(data) + 1) if flexible else _I16.pack(len(data))) + data


def _nullable_string(value: str | None, flexible: bool) -> bytes:
    if value is None:
        return b"\x00" if flexible else b"\xff\xff"
    return _string(value, flexible)


def encode_produce(
    version: int, topics: Sequence[tuple[str, Sequence[ProducePartition]]]
) -> EncodedBody:
    """A ProduceResponse body (throttle time 0) for ``topics``: (name, partitions) in order."""
    flexible = version >= PRODUCE_FLEXIBLE
    out = bytearray(_array_length(len(topics), flexible))
    for name, partitions in topics:
        out += _string(name, flexible)
        out += _array_length(len(partitions), flexible)
        for p in partitions:
            fixed = _PRODUCE_PARTITION.pack(
                p.partition_index,
                p.error_code,
                p.base_offset,
                p.log_append_time_ms,
                p.log_start_offset,
            )
            # base_offset ends at byte 14, log_append_time_ms (v2+) at 22, log_start_offset (v5+)
            out += fixed if version >= 5 else fixed[:22] if version >= 2 else fixed[:14]
            if version >= 8:
                out += _array_length(len(p.record_errors), flexible)
                for batch_index, message in p.record_errors:
                    out += _I32.pack(batch_index)
                    out += _nullable_string(message, flexible)
                    if flexible:
                        out.append(0)
                out += _nullable_string(p.error_message, flexible)
            if flexible:
                out.append(0)
        if flexible:
            out.append(0)
    if version >= 1:
        out += b"\x00\x00\x00\x00"  # throttle_time_ms
    if flexible:
        out.append(0)
    return EncodedBody([out])


def encode_fetch(
    version: int,
    error_code: int,
    topics: Sequence[tuple[str | uuid.UUID | None, Sequence[FetchPartition]]],
) -> EncodedBody:
    """A FetchResponse body (throttle time 0, session id 0) for ``topics``: (name, or topic id
    from v13, and partitions) in order. Each partition's records are a buffer of their own in
    the result."""
    flexible = version >= FETCH_FLEXIBLE
    parts: list[bytes | bytearray | memoryview] = []
    head = bytearray()
    if version >= 1:
        head += b"\x00\x00\x00\x00"  # throttle_time_ms
    if version >= 7:
        head += _I16.pack(error_code)
        head += b"\x00\x00\x00\x00"  # session_id
    head += _array_length(len(topics), flexible)
    for key, partitions in topics:
        if isinstance(key, uuid.UUID):
            head += key.bytes
        elif key is None:  # v13+: the zero UUID (which decodes as None) names no topic
            head += bytes(16)
        else:
            head += _string(key, flexible)
        head += _array_length(len(partitions), flexible)
        for p in partitions:
            fixed = _FETCH_PARTITION.pack(
                p.partition_index,
                p.error_code,
                p.high_watermark,
                p.last_stable_offset,
                p.log_start_offset,
            )
            # high_watermark ends at byte 14, last_stable_offset (v4+) at 22, log start (v5+)
            head += fixed if version >= 5 else fixed[:22] if version >= 4 else fixed[:14]
            if version >= 4:
                aborted = p.aborted_transactions
                if aborted is None:
                    head += b"\x00" if flexible else b"\xff\xff\xff\xff"
                else:
                    head += _array_length(len(aborted), flexible)
                    for producer_id, first_offset in aborted:
                        head += _ABORTED.pack(producer_id, first_offset)
                        if flexible:
                            head.append(0)  # no tagged fields
            if version >= 11:
                head += b"\xff\xff\xff\xff"  # preferred_read_replica: none
            size = len(p.records)
            head += uvarint(size + 1) if flexible else _I32.pack(size)
            if size:
                parts.append(bytes(head))
                parts.append(p.records)
                head = bytearray()
            if flexible:
                if p.diverging_epoch is None:
                    head.append(0)
                else:
                    head.append(1)  # one tagged field: DivergingEpoch
                    head += _DIVERGING.pack(0, 13, p.diverging_epoch[0], p.diverging_epoch[1], 0)
        if flexible:
            head.append(0)
    if flexible:
        head.append(0)
    parts.append(bytes(head))
    return EncodedBody(parts)
