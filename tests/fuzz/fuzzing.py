"""What the fuzz targets share: their budget, their invariant, their inputs and their counts.

Budget: ``KPY_FUZZ`` picks a profile. Unset (CI and a plain ``pytest``), each target tries a few
hundred inputs, all targets together well under a minute on two cores, with no example database
(a run's findings are its own). ``KPY_FUZZ=long`` multiplies every target's examples (by
``KPY_FUZZ_SCALE``, default 200) and keeps an example database under .hypothesis/fuzz, so that a
failure found once is tried first on every later run until it is fixed.

Invariant (``decodes``): one call of a decoder on one input returns, or raises one of the
protocol's own errors (what the server turns into an error code or a closed connection), and the
peak of what it allocates (tracemalloc, which sees Python's allocators and every bytes object a
codec returns) stays within ``MEMORY_FACTOR`` times the input's size plus ``MEMORY_SLACK``: no
allocation sized by what the bytes claim rather than what they hold.

Counts: every input a target tries is counted, and the counts are printed at the end of the
session (tests/fuzz/conftest.py): the long run's report comes from them.
"""

from __future__ import annotations

import collections
import os
import struct
import tracemalloc
from collections.abc import Callable
from typing import Any, TypeVar

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.database import DirectoryBasedExampleDatabase

from kpy.protocol.wire import uvarint

LONG = os.environ.get("KPY_FUZZ", "") == "long"
SCALE = int(os.environ.get("KPY_FUZZ_SCALE", "200")) if LONG else 1

# A decoded request holds each entry of an array as an object of some tens of bytes where the
# frame spent as little as one byte on it: 64 bytes per input byte covers that; the slack covers
# the fixed costs (a decompressed piece: 256 KiB, or one zstd step of at most 65 blocks of
# 128 KiB).
MEMORY_FACTOR = 64
MEMORY_SLACK = 12 * 1024 * 1024

COUNTS: collections.Counter[str] = collections.Counter()
PEAKS: dict[str, int] = {}  # the largest peak (bytes) one input of each target took

T = TypeVar("T")


def budget(examples: int) -> settings:
    """The hypothesis settings of a target that tries ``examples`` inputs in CI."""
    return settings(
        max_examples=examples * SCALE,
        deadline=None,
        database=DirectoryBasedExampleDatabase(".hypothesis/fuzz") if LONG else None,
        suppress_health_check=[
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
            HealthCheck.filter_too_much,
            HealthCheck.large_base_example,
        ],
        print_blob=True,
    )


class MemoryExceeded(AssertionError):
    pass


def decodes(
    target: str,
    fn: Callable[[], T],
    size: int,
    errors: tuple[type[BaseException], ...],
    *,
    slack: int = MEMORY_SLACK,
) -> T | BaseException:
    """Run ``fn`` (a decoder on an input of ``size`` bytes) under the invariant; its result, or
    the protocol error it raised. Any other exception propagates: a finding."""
    COUNTS[target] += 1
    started = not tracemalloc.is_tracing()
    if started:
        tracemalloc.start()
    tracemalloc.reset_peak()
    before = tracemalloc.get_traced_memory()[0]
    result: T | BaseException
    try:
        result = fn()
    except errors as e:
        result = e
    finally:
        peak = tracemalloc.get_traced_memory()[1] - before
        if started:
            tracemalloc.stop()
    PEAKS[target] = max(PEAKS.get(target, 0), peak)
    bound = MEMORY_FACTOR * size + slack
    if peak > bound:
        raise MemoryExceeded(f"{target}: {peak} bytes at the peak for {size} bytes of input")
    return result


# --- Mutations ---------------------------------------------------------------------------------

# Values that lengths, counts and sizes are replaced with: the edges of each width, as big-endian
# integers of 1, 2, 4 and 8 bytes, and unsigned varints (compact lengths, tags).
_EDGES = [0, 1, 0x7F, 0x80, 0xFF, 0x7FFF, 0x8000, 0xFFFF, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF]
INTERESTING = (
    [bytes([v & 0xFF]) for v in (0, 1, 0x7F, 0x80, 0xFF)]
    + [struct.pack(">H", v & 0xFFFF) for v in _EDGES]
    + [struct.pack(">I", v & 0xFFFFFFFF) for v in _EDGES]
    + [struct.pack(">Q", v) for v in (0x7FFFFFFFFFFFFFFF, 0x8000000000000000, 2**64 - 1)]
    + [b"\xff\xff\xff\xff\x0f", b"\x80\x80\x80\x80\x80\x01", b"\xff\xff\xff\x7f", b"\x00"]
)


@st.composite
def tagged_section(draw: st.DrawFn) -> bytes:
    """A tagged-field section with tags no schema names (or any), sizes honest or not."""
    count = draw(st.integers(0, 3))
    out = bytearray(uvarint(count))
    for _ in range(count):
        out += uvarint(draw(st.one_of(st.integers(0, 10), st.integers(0, 2**31))))
        data = draw(st.binary(max_size=12))
        size = draw(st.one_of(st.just(len(data)), st.integers(0, 2**32)))
        out += uvarint(size) + data
    return bytes(out)


@st.composite
def mutated(draw: st.DrawFn, data: bytes, *, tagged: bool = False) -> bytes:
    """``data`` with one to four mutations: bytes flipped, cut short, extended, spliced, a
    length or count replaced with an edge value (huge, negative, null), or (``tagged``) a
    tagged-field section inserted where one may or may not be."""
    out = bytearray(data)
    for _ in range(draw(st.integers(1, 4))):
        kinds = ["flip", "truncate", "extend", "edge", "delete", "insert", "duplicate"]
        if tagged:
            kinds.append("tagged")
        kind = draw(st.sampled_from(kinds))
        at = draw(st.integers(0, len(out)))
        if kind == "flip" and out:
            at = min(at, len(out) - 1)
            out[at] ^= draw(st.integers(1, 255))
        elif kind == "truncate":
            del out[at:]
        elif kind == "extend":
            out += draw(st.binary(min_size=1, max_size=32))
        elif kind == "edge":
            value = draw(st.sampled_from(INTERESTING))
            out[at : at + len(value)] = value
        elif kind == "delete":
            del out[at : at + draw(st.integers(1, 8))]
        elif kind == "insert":
            out[at:at] = draw(st.binary(min_size=1, max_size=8))
        elif kind == "duplicate" and out:
            start = draw(st.integers(0, len(out) - 1))
            out[at:at] = out[start : start + draw(st.integers(1, 64))]
        elif kind == "tagged":
            if out and draw(st.booleans()):
                out[-1:] = draw(tagged_section())  # the body's own (last) tagged section
            else:
                out[at:at] = draw(tagged_section())
    return bytes(out)


def call(fn: Callable[..., T], *args: Any) -> Callable[[], T]:
    return lambda: fn(*args)


# --- Record batches (v2) and message sets (v0/v1) ---------------------------------------------


def record_errors() -> tuple[type[BaseException], ...]:
    """What the record codecs raise for bad bytes: the errors the produce handler answers with
    INVALID_RECORD, CORRUPT_MESSAGE, INVALID_TIMESTAMP or UNSUPPORTED_COMPRESSION_TYPE."""
    from kpy.protocol import compression
    from kpy.protocol import legacy_records as lr
    from kpy.protocol import records as rb

    return (
        rb.InvalidRecordBatch,
        rb.CorruptRecordBatch,
        compression.DecompressionError,
        lr.InvalidTimestamp,
        lr.UnsupportedCompression,
    )


_small = st.one_of(st.none(), st.binary(max_size=24))
_headers = st.lists(
    st.tuples(st.text(max_size=6), st.one_of(st.none(), st.binary(max_size=6))), max_size=2
).map(tuple)


@st.composite
def batch_fields(draw: st.DrawFn) -> dict[str, Any]:
    return {
        "codec": draw(st.sampled_from([0, 0, 1, 2, 3, 4])),
        "attributes": draw(st.sampled_from([0, 0, 0x08, 0x10, 0x20, 0x30, 0x18])),
        "producer_id": draw(st.sampled_from([-1, 0, 1000, 2**63 - 1])),
        "producer_epoch": draw(st.sampled_from([-1, 0, 5, 32767])),
        "base_sequence": draw(st.sampled_from([-1, 0, 2**31 - 1])),
        "base_offset": draw(st.sampled_from([0, 0, 7, 2**62])),
        "base_timestamp": draw(st.sampled_from([0, 1_700_000_000_000, -1])),
    }


def build_v2_batch(records: list[tuple[Any, Any, Any]], fields: dict[str, Any]) -> bytes:
    """A v2 batch as a producer writes it: records at deltas 0, 1, 2..., the fields above, the
    CRC right."""
    from kpy.protocol import records as rb

    base_ts = fields["base_timestamp"]
    recs = [
        rb.Record(fields["base_offset"] + i, base_ts + i, k, v, h)
        for i, (k, v, h) in enumerate(records)
    ]
    batch = bytearray(
        rb.encode_batch(recs, base_offset=fields["base_offset"], codec=fields["codec"])
    )
    attributes = fields["codec"] | fields["attributes"]
    struct.pack_into(">h", batch, rb.ATTRIBUTES_OFFSET, attributes)
    struct.pack_into(
        ">qhi",
        batch,
        43,
        fields["producer_id"],
        fields["producer_epoch"],
        fields["base_sequence"],
    )
    fix_crc(batch)
    return bytes(batch)


def fix_crc(batch: bytearray) -> None:
    """Recompute the CRC-32C of the batch at the start of ``batch`` (as far as its bytes go),
    so that a mutation behind it reaches the checks that follow the CRC's."""
    from kpy.protocol.crc import crc32c

    if len(batch) >= 21:
        struct.pack_into(">I", batch, 17, crc32c(bytes(batch[21:])))


@st.composite
def v2_batches(draw: st.DrawFn) -> bytes:
    records = draw(st.lists(st.tuples(_small, _small, _headers), min_size=1, max_size=6))
    return build_v2_batch(records, draw(batch_fields()))


@st.composite
def mutated_v2_batches(draw: st.DrawFn) -> bytes:
    """A valid batch, then mutated: in its header (its CRC fixed or not), in its payload, or in
    its length."""
    batch = bytearray(draw(v2_batches()))
    where = draw(st.sampled_from(["any", "header", "payload", "length", "count", "none"]))
    if where == "header":
        at = draw(st.integers(21, 60))
        value = draw(st.sampled_from(INTERESTING))
        batch[at : at + len(value)] = value
    elif where == "payload":
        batch[61:] = draw(mutated(bytes(batch[61:])))
    elif where == "length":
        struct.pack_into(">i", batch, 8, draw(st.sampled_from([0, 48, 49, 2**31 - 1, -1])))
    elif where == "count":
        struct.pack_into(">i", batch, 57, draw(st.sampled_from([0, 2, 100, 2**31 - 1, -1])))
    elif where == "any":
        batch = bytearray(draw(mutated(bytes(batch))))
    if len(batch) >= 12 and draw(st.booleans()):
        struct.pack_into(">i", batch, 8, len(batch) - 12)  # the length told true again
    if draw(st.booleans()):
        fix_crc(batch)
    return bytes(batch)


@st.composite
def message_sets(draw: st.DrawFn) -> bytes:
    """v0/v1 message sets: plain messages, a compressed wrapper around them, or wrappers nested
    (which Kafka refuses), as the clients of that era wrote them."""
    from kpy.protocol import legacy_records as lr

    magic = draw(st.integers(0, 1))
    records = [
        (i, draw(st.sampled_from([-1, 0, 1_700_000_000_000])), k, v)
        for i, (k, v) in enumerate(
            draw(st.lists(st.tuples(_small, _small), min_size=1, max_size=5))
        )
    ]
    codec = draw(st.sampled_from([0, 1, 2, 3]))
    out = lr.encode_message_set(records, magic=magic, codec=codec)
    for _ in range(draw(st.integers(0, 2))):  # wrap the set again: nested compression
        from kpy.protocol import compression

        outer = draw(st.sampled_from([1, 2, 3]))
        out = lr.encode_message(
            0, magic, outer, -1, None, compression.compress(outer, out, magic=magic)
        )
    return out


@st.composite
def mutated_message_sets(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(message_sets()))
    if draw(st.booleans()):
        data = bytearray(draw(mutated(bytes(data))))
        if len(data) >= 17 and draw(st.booleans()):  # the first message's CRC-32 right again
            import zlib

            size = struct.unpack_from(">i", data, 8)[0]
            end = min(len(data), 12 + max(size, 4))
            struct.pack_into(">I", data, 12, zlib.crc32(bytes(data[16:end])))
    return bytes(data)


def records_field() -> st.SearchStrategy[bytes]:
    """What a request's records field holds: v2 batches, message sets, either damaged, or any
    bytes."""
    return st.one_of(
        v2_batches(),
        mutated_v2_batches(),
        message_sets(),
        mutated_message_sets(),
        st.binary(max_size=80),
    )
