"""OffsetStore against a real LogManager in tmp_path, and the OffsetCommit / OffsetFetch /
OffsetDelete handlers driven directly with kio requests (a stand-in answers the membership
questions the group coordinator answers in the broker)."""

from __future__ import annotations

import asyncio
import datetime
import importlib
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

import pytest
from kio.schema.errors import ErrorCode
from kio.schema.offset_commit.v2 import request as oc2
from kio.schema.offset_commit.v6 import request as oc6
from kio.schema.offset_commit.v8 import request as oc8
from kio.schema.offset_commit.v9 import request as oc9
from kio.schema.offset_delete.v0 import request as od0
from kio.schema.offset_fetch.v1 import request as of1
from kio.schema.offset_fetch.v2 import request as of2
from kio.schema.offset_fetch.v5 import request as of5
from kio.schema.offset_fetch.v8 import request as of8
from kio.schema.offset_fetch.v9 import request as of9
from kio.static.primitive import i32, i64

from kpy.acl import NO_AUTHORIZER
from kpy.coordinator.offsets import (
    OFFSETS_TOPIC,
    OffsetAndMetadata,
    OffsetStore,
    decode_offset_key,
    decode_offset_value,
    encode_offset_key,
    encode_offset_value,
    java_string_hash,
    partition_for,
)
from kpy.handlers.registry import REGISTRY
from kpy.protocol.messages import RequestHeader, encode_response
from kpy.protocol.records import build_batch, decode_records, iter_headers, validate_batches
from kpy.storage.log_manager import LogManager
from kpy.storage.producer_state import AppendOrigin

T0 = 1_700_000_000_000
PARTS = 3


def oam(offset: int, epoch: int = -1, metadata: str = "", ts: int = T0) -> OffsetAndMetadata:
    return OffsetAndMetadata(offset, epoch, metadata, ts)


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def logs(data_dir: Path) -> Iterator[LogManager]:
    manager = LogManager.open(data_dir, now_ms=T0)
    manager.create_topic("t", 4, now_ms=T0)
    manager.create_topic("u", 2, now_ms=T0)
    try:
        yield manager
    finally:
        manager.close()


def reopen(data_dir: Path) -> tuple[LogManager, OffsetStore]:
    manager = LogManager.open(data_dir, now_ms=T0)
    return manager, OffsetStore.open(manager, PARTS, now_ms=T0)


def all_records(manager: LogManager, partition: int) -> list[tuple[bytes | None, bytes | None]]:
    lg = manager.get_log(OFFSETS_TOPIC, partition)
    assert lg is not None
    data = lg.read(lg.log_start_offset, 1 << 24)
    out = []
    for pos, header in iter_headers(data):
        out += [(r.key, r.value) for r in decode_records(data[pos : pos + header.size])]
    return out


# --- Kafka's formats -------------------------------------------------------------------------


def test_key_bytes_are_kafkas_offset_commit_key_v1() -> None:
    expected = (
        b"\x00\x01"  # record type / key version 1
        + b"\x00\x05group"
        + b"\x00\x05topic"
        + b"\x00\x00\x00\x07"
    )
    assert encode_offset_key("group", "topic", 7) == expected
    assert decode_offset_key(expected) == ("group", "topic", 7)


def test_value_bytes_are_kafkas_offset_commit_value_v3() -> None:
    value = OffsetAndMetadata(offset=42, leader_epoch=5, metadata="hé", commit_timestamp_ms=T0)
    expected = (
        b"\x00\x03"  # value version 3
        + b"\x00\x00\x00\x00\x00\x00\x00\x2a"  # offset 42
        + b"\x00\x00\x00\x05"  # leader epoch 5
        + b"\x00\x03h\xc3\xa9"  # metadata, UTF-8 with an int16 byte length
        + struct.pack(">q", T0)  # commit timestamp
    )
    assert encode_offset_value(value) == expected
    assert decode_offset_value(expected) == value


def test_older_and_flexible_values_decode_as_kafka_wrote_them() -> None:
    v0 = b"\x00\x00" + struct.pack(">q", 9) + b"\x00\x01m" + struct.pack(">q", T0)
    v1 = b"\x00\x01" + struct.pack(">q", 9) + b"\x00\x01m" + struct.pack(">qq", T0, T0 + 5)
    v4 = (
        b"\x00\x04"
        + struct.pack(">qi", 9, 3)
        + b"\x02m"  # compact string: length + 1
        + struct.pack(">q", T0)
        + b"\x01\x07\x02ab"  # one unknown tagged field (tag 7, 2 bytes)
    )
    assert decode_offset_value(v0) == oam(9, -1, "m")
    assert decode_offset_value(v1) == oam(9, -1, "m")
    assert decode_offset_value(v4) == oam(9, 3, "m")
    assert decode_offset_key(b"\x00\x02\x00\x01g") is None  # GroupMetadataKey: not an offset


def test_group_partition_is_kafkas_utils_abs_of_string_hash_code() -> None:
    assert java_string_hash("hello") == 99162322
    assert java_string_hash("\U0001f600") == 0xD83D * 31 + 0xDE00  # UTF-16 surrogates
    # Integer.MIN_VALUE: Utils.abs maps it to 0.
    assert java_string_hash("polygenelubricants") == -(2**31)
    assert partition_for("polygenelubricants", 50) == 0
    # A negative hash takes its absolute value (not the low 31 bits).
    assert java_string_hash("my-group") == -1906497762
    assert partition_for("my-group", 50) == 1906497762 % 50


# --- The store --------------------------------------------------------------------------------


def test_open_creates_the_compacted_topic(logs: LogManager) -> None:
    store = OffsetStore.open(logs, now_ms=T0)
    info = logs.topic(OFFSETS_TOPIC)
    assert info is not None and info.partitions == 50 == store.partitions
    assert info.configs["cleanup.policy"] == "compact"
    assert info.configs["segment.bytes"] == "104857600"
    assert logs.topic_config(OFFSETS_TOPIC).segment_bytes == 104857600


def test_open_without_create_leaves_the_topic_to_the_first_need(logs: LogManager) -> None:
    store = OffsetStore.open(logs, PARTS, now_ms=T0, create=False)
    assert logs.topic(OFFSETS_TOPIC) is None and not store.topic_exists
    assert store.partitions == PARTS and store.fetch("g", None) == {}
    store.create_topic(T0)
    info = logs.topic(OFFSETS_TOPIC)
    assert info is not None and info.partitions == PARTS and store.topic_exists
    store.create_topic(T0)  # once there, left alone
    store.commit("g", {("t", 0): oam(3)}, now_ms=T0)
    assert store.fetch("g", None) == {("t", 0): oam(3)}


def test_commit_writes_kafka_records_to_the_groups_partition(logs: LogManager) -> None:
    store = OffsetStore.open(logs, PARTS, now_ms=T0)
    store.commit("g1", {("t", 0): oam(10, 0, "a"), ("t", 1): oam(20)}, now_ms=T0)
    p = partition_for("g1", PARTS)
    assert all_records(logs, p) == [
        (encode_offset_key("g1", "t", 0), encode_offset_value(oam(10, 0, "a"))),
        (encode_offset_key("g1", "t", 1), encode_offset_value(oam(20))),
    ]
    for other in set(range(PARTS)) - {p}:
        assert all_records(logs, other) == []
    lg = logs.get_log(OFFSETS_TOPIC, p)
    assert lg is not None
    header = next(iter_headers(lg.read(0, 1 << 20)))[1]
    assert (header.producer_id, header.compression, header.max_timestamp) == (-1, 0, T0)


def test_commit_fetch_and_queries(logs: LogManager) -> None:
    store = OffsetStore.open(logs, PARTS, now_ms=T0)
    assert store.fetch("g") == {} and not store.has_offsets("g") and store.groups() == set()
    store.commit("g", {("t", 0): oam(1), ("t", 1): oam(2), ("u", 0): oam(3)})
    store.commit("g", {("t", 0): oam(5, 2, "x")})
    store.commit("h", {("t", 0): oam(7)})
    assert store.fetch("g") == {("t", 0): oam(5, 2, "x"), ("t", 1): oam(2), ("u", 0): oam(3)}
    assert store.fetch("g", [("t", 1), ("t", 3), ("nope", 0)]) == {("t", 1): oam(2)}
    assert store.fetch("h", None) == {("t", 0): oam(7)}
    assert store.groups() == {"g", "h"}
    assert store.has_offsets("h") and not store.has_offsets("x")


def test_clean_reopen_replays_everything_with_tombstones(data_dir: Path, logs: LogManager) -> None:
    store = OffsetStore.open(logs, PARTS, now_ms=T0)
    store.commit("g", {("t", 0): oam(1), ("t", 1): oam(2), ("u", 1): oam(3)})
    store.commit("g", {("t", 0): oam(4, 1, "meta")})
    store.commit("h", {("t", 2): oam(9)})
    store.commit("gone", {("t", 3): oam(8)})
    assert store.delete_offsets("g", [("t", 1), ("t", 2)]) == 1
    assert store.delete_group("gone") == 1
    assert store.delete_group("gone") == 0  # nothing left: no tombstone written
    logs.close()

    manager, again = reopen(data_dir)
    try:
        assert again.fetch("g") == {("t", 0): oam(4, 1, "meta"), ("u", 1): oam(3)}
        assert again.fetch("h") == {("t", 2): oam(9)}
        assert again.groups() == {"g", "h"}
    finally:
        manager.close()


def test_replay_after_a_crash_keeps_what_was_appended(data_dir: Path, logs: LogManager) -> None:
    store = OffsetStore.open(logs, PARTS, now_ms=T0)
    for i in range(20):
        store.commit(f"g{i % 4}", {("t", i % 4): oam(i)})
    store.delete_offsets("g0", [("t", 0)])
    expected = {g: store.fetch(g) for g in store.groups()}
    logs.abandon()  # as SIGKILL leaves the files: no close, no checkpoint, no marker

    manager, again = reopen(data_dir)
    try:
        assert not manager.had_clean_shutdown
        assert {g: again.fetch(g) for g in again.groups()} == expected
        assert "g0" not in again.groups()
    finally:
        manager.close()


def test_delete_topic_tombstones_every_groups_offsets(data_dir: Path, logs: LogManager) -> None:
    store = OffsetStore.open(logs, PARTS, now_ms=T0)
    store.commit("a", {("t", 0): oam(1), ("u", 0): oam(2)})
    store.commit("b", {("t", 1): oam(3)})
    assert store.delete_topic("t") == 2
    assert store.fetch("a") == {("u", 0): oam(2)} and store.groups() == {"a"}
    logs.close()
    manager, again = reopen(data_dir)
    try:
        assert again.fetch("a") == {("u", 0): oam(2)} and again.groups() == {"a"}
    finally:
        manager.close()


def test_expire_only_old_offsets_of_empty_groups(data_dir: Path, logs: LogManager) -> None:
    store = OffsetStore.open(logs, PARTS, now_ms=T0)
    day = 86_400_000
    store.commit("idle", {("t", 0): oam(1, ts=T0), ("t", 1): oam(2, ts=T0 + 5 * day)})
    store.commit("busy", {("t", 0): oam(3, ts=T0)})
    expired = store.expire(T0 + 7 * day, 7 * day, lambda g: g == "idle")
    assert expired == 1
    assert store.fetch("idle") == {("t", 1): oam(2, ts=T0 + 5 * day)}
    assert store.fetch("busy") == {("t", 0): oam(3, ts=T0)}
    logs.close()
    manager, again = reopen(data_dir)
    try:
        assert again.fetch("idle") == {("t", 1): oam(2, ts=T0 + 5 * day)}
    finally:
        manager.close()


def test_replay_reads_kafka_written_records_and_skips_others(
    data_dir: Path, logs: LogManager
) -> None:
    store = OffsetStore.open(logs, PARTS, now_ms=T0)
    p = partition_for("k", PARTS)
    v4 = b"\x00\x04" + struct.pack(">qi", 77, 2) + b"\x02z" + struct.pack(">q", T0) + b"\x00"
    records: list[tuple[bytes | None, bytes | None]] = [
        (b"\x00\x02\x00\x01k", b"\x00\x03anything"),  # group metadata: not offsets
        (b"\x00\x00" + encode_offset_key("k", "t", 0)[2:], v4),  # key v0, value v4
        (encode_offset_key("k", "t", 1), b"\x00\x03\x00"),  # truncated value: skipped
        (None, b"keyless"),
    ]
    buf = bytearray(build_batch(records, timestamp=T0))
    lg = logs.get_log(OFFSETS_TOPIC, p)
    assert lg is not None
    lg.append(buf, validate_batches(buf), now_ms=T0, origin=AppendOrigin.COORDINATOR)
    store.commit("k", {("t", 2): oam(5)})
    logs.close()
    manager, again = reopen(data_dir)
    try:
        assert again.fetch("k") == {("t", 0): oam(77, 2, "z"), ("t", 2): oam(5)}
    finally:
        manager.close()


def test_existing_topic_keeps_its_partition_count(data_dir: Path, logs: LogManager) -> None:
    store = OffsetStore.open(logs, PARTS, now_ms=T0)
    store.commit("g", {("t", 0): oam(1)})
    logs.close()
    manager = LogManager.open(data_dir, now_ms=T0)
    try:
        again = OffsetStore.open(manager, 50, now_ms=T0)
        assert again.partitions == PARTS
        assert again.fetch("g") == {("t", 0): oam(1)}
    finally:
        manager.close()


def test_large_commit_splits_into_batches_under_max_message_bytes(logs: LogManager) -> None:
    store = OffsetStore.open(logs, PARTS, now_ms=T0)
    big = {("t", i): oam(i, metadata="m" * 4000) for i in range(600)}  # ~2.4 MB of records
    store.commit("g", big)
    lg = logs.get_log(OFFSETS_TOPIC, partition_for("g", PARTS))
    assert lg is not None
    headers = [h for _, h in iter_headers(lg.read(0, 1 << 26))]
    assert len(headers) > 1
    assert all(h.size <= lg.config.max_message_bytes for h in headers)
    assert sum(h.records_count for h in headers) == 600
    assert store.fetch("g") == big


# --- The handlers ---------------------------------------------------------------------------


@dataclass
class StandInGroups:
    """Answers the membership questions as kpy.coordinator.group.GroupCoordinator does."""

    states: dict[str, str] = field(default_factory=dict)
    verdict: ErrorCode = ErrorCode.none
    subscriptions: dict[str, set[str] | None] = field(default_factory=dict)
    calls: list[tuple[str, str, int, str | None]] = field(default_factory=list)

    def validate_offset_commit(
        self, group_id: str, member_id: str, generation_id: int, group_instance_id: str | None
    ) -> ErrorCode:
        self.calls.append((group_id, member_id, generation_id, group_instance_id))
        return self.verdict

    def group_state(self, group_id: str) -> str | None:
        return self.states.get(group_id)

    def is_empty(self, group_id: str) -> bool:
        return self.states.get(group_id, "Empty") == "Empty"

    def subscribed_topics(self, group_id: str) -> set[str] | None:
        return self.subscriptions.get(group_id, set())


@pytest.fixture(scope="module")
def handlers() -> SimpleNamespace:
    """The handler modules (importing one registers its handler)."""
    return SimpleNamespace(
        commit=importlib.import_module("kpy.handlers.offset_commit"),
        fetch=importlib.import_module("kpy.handlers.offset_fetch"),
        delete=importlib.import_module("kpy.handlers.offset_delete"),
    )


@dataclass
class Harness:
    logs: LogManager
    offsets: OffsetStore
    groups: StandInGroups
    handlers: SimpleNamespace

    def call(self, mod: ModuleType, request: Any) -> Any:
        version = request.__version__

        async def ensure_offsets_topic() -> bool:  # Broker's, without its lock and thread
            self.offsets.create_topic()
            return True

        broker = SimpleNamespace(
            logs=self.logs,
            offsets=self.offsets,
            groups=self.groups,
            ensure_offsets_topic=ensure_offsets_topic,
            config=SimpleNamespace(get_int={"offset.metadata.max.bytes": 4096}.__getitem__),
            authorizer=NO_AUTHORIZER,
        )
        header = RequestHeader(request.__api_key__, version, 1, "test", 0)
        ctx = SimpleNamespace(broker=broker, header=header, version=version)
        response = asyncio.run(mod.handle(ctx, request))
        encode_response(header, response)  # every field the version needs is there
        return response


@pytest.fixture
def h(logs: LogManager, handlers: SimpleNamespace) -> Harness:
    return Harness(logs, OffsetStore.open(logs, PARTS, now_ms=T0), StandInGroups(), handlers)


def commit9(
    group: str, parts: dict[tuple[str, int], tuple[int, int, str | None]], **kw: Any
) -> Any:
    topics: dict[str, list[Any]] = {}
    for (topic, p), (offset, epoch, meta) in parts.items():
        topics.setdefault(topic, []).append(
            oc9.OffsetCommitRequestPartition(
                partition_index=i32(p),
                committed_offset=i64(offset),
                committed_leader_epoch=i32(epoch),
                committed_metadata=meta,
            )
        )
    return oc9.OffsetCommitRequest(
        group_id=group,
        generation_id_or_member_epoch=i32(kw.get("generation", -1)),
        member_id=kw.get("member_id", ""),
        group_instance_id=kw.get("instance"),
        topics=tuple(
            oc9.OffsetCommitRequestTopic(name=t, partitions=tuple(ps)) for t, ps in topics.items()
        ),
    )


def errors_of(response: Any) -> dict[tuple[str, int], ErrorCode]:
    return {
        (t.name, p.partition_index): p.error_code for t in response.topics for p in t.partitions
    }


def fetched(topics: Any) -> dict[tuple[str, int], tuple[int, int, str | None, ErrorCode]]:
    return {
        (t.name, p.partition_index): (
            p.committed_offset,
            getattr(p, "committed_leader_epoch", None),
            p.metadata,
            p.error_code,
        )
        for t in topics
        for p in t.partitions
    }


def fetch8(group: str, topics: dict[str, list[int]] | None) -> Any:
    req_topics = None
    if topics is not None:
        req_topics = tuple(
            of8.OffsetFetchRequestTopics(name=t, partition_indexes=tuple(i32(p) for p in ps))
            for t, ps in topics.items()
        )
    return of8.OffsetFetchRequest(
        groups=(of8.OffsetFetchRequestGroup(group_id=group, topics=req_topics),),
        require_stable=True,
    )


def test_simple_consumer_commit_then_fetch(h: Harness) -> None:
    resp = h.call(
        h.handlers.commit,
        commit9("g", {("t", 0): (10, 3, "m"), ("t", 1): (20, -1, None), ("nope", 0): (1, -1, "")}),
    )
    assert errors_of(resp) == {
        ("t", 0): ErrorCode.none,
        ("t", 1): ErrorCode.none,
        ("nope", 0): ErrorCode.unknown_topic_or_partition,
    }
    stored = h.offsets.fetch("g")
    assert {tp: (v.offset, v.leader_epoch, v.metadata) for tp, v in stored.items()} == {
        ("t", 0): (10, 3, "m"),
        ("t", 1): (20, -1, ""),
    }
    assert all(v.commit_timestamp_ms > T0 for v in stored.values())

    resp = h.call(h.handlers.fetch, fetch8("g", {"t": [0, 1, 2], "nope": [5]}))
    (group,) = resp.groups
    assert group.group_id == "g" and group.error_code == ErrorCode.none
    assert fetched(group.topics) == {
        ("t", 0): (10, 3, "m", ErrorCode.none),
        ("t", 1): (20, -1, "", ErrorCode.none),
        ("t", 2): (-1, -1, "", ErrorCode.none),
        ("nope", 5): (-1, -1, "", ErrorCode.none),
    }
    resp = h.call(h.handlers.fetch, fetch8("g", None))
    assert fetched(resp.groups[0].topics) == {
        ("t", 0): (10, 3, "m", ErrorCode.none),
        ("t", 1): (20, -1, "", ErrorCode.none),
    }


def test_commit_group_errors_apply_to_every_existing_partition(h: Harness) -> None:
    h.groups.states["g"] = "Stable"
    h.groups.verdict = ErrorCode.illegal_generation
    req = commit9(
        "g", {("t", 0): (1, -1, ""), ("x", 0): (1, -1, "")}, generation=4, member_id="m-1"
    )
    assert errors_of(h.call(h.handlers.commit, req)) == {
        ("t", 0): ErrorCode.illegal_generation,
        ("x", 0): ErrorCode.unknown_topic_or_partition,
    }
    assert h.groups.calls == [("g", "m-1", 4, None)]
    assert not h.offsets.has_offsets("g")


def test_commit_to_an_unknown_group_with_a_generation(h: Harness) -> None:
    req = commit9("g", {("t", 0): (1, -1, "")}, generation=3, member_id="m")
    assert errors_of(h.call(h.handlers.commit, req)) == {("t", 0): ErrorCode.group_id_not_found}
    v8 = oc8.OffsetCommitRequest(
        group_id="g",
        generation_id_or_member_epoch=i32(3),
        member_id="m",
        group_instance_id=None,
        topics=(
            oc8.OffsetCommitRequestTopic(
                name="t",
                partitions=(
                    oc8.OffsetCommitRequestPartition(
                        partition_index=i32(0),
                        committed_offset=i64(1),
                        committed_leader_epoch=i32(-1),
                        committed_metadata="",
                    ),
                ),
            ),
        ),
    )
    assert errors_of(h.call(h.handlers.commit, v8)) == {("t", 0): ErrorCode.illegal_generation}
    # A group that exists only through its offsets is an Empty group without members.
    h.offsets.commit("g", {("t", 1): oam(1)})
    assert errors_of(h.call(h.handlers.commit, req)) == {("t", 0): ErrorCode.unknown_member_id}
    assert h.groups.calls == []


def test_commit_metadata_limit_counts_utf16_units(h: Harness) -> None:
    ok = "\U0001f600" * 2048  # 4096 UTF-16 units
    too_long = ok + "x"
    resp = h.call(
        h.handlers.commit, commit9("g", {("t", 0): (1, -1, ok), ("t", 1): (2, -1, too_long)})
    )
    assert errors_of(resp) == {
        ("t", 0): ErrorCode.none,
        ("t", 1): ErrorCode.offset_metadata_too_large,
    }
    assert set(h.offsets.fetch("g")) == {("t", 0)}


def test_commit_v2_and_v6_fields(h: Harness) -> None:
    v2 = oc2.OffsetCommitRequest(
        group_id="old",
        generation_id_or_member_epoch=i32(-1),
        member_id="",
        retention_time=datetime.timedelta(milliseconds=-1),
        topics=(
            oc2.OffsetCommitRequestTopic(
                name="t",
                partitions=(
                    oc2.OffsetCommitRequestPartition(
                        partition_index=i32(0), committed_offset=i64(5), committed_metadata="a"
                    ),
                ),
            ),
        ),
    )
    assert errors_of(h.call(h.handlers.commit, v2)) == {("t", 0): ErrorCode.none}
    v6 = oc6.OffsetCommitRequest(
        group_id="old",
        generation_id_or_member_epoch=i32(-1),
        member_id="",
        topics=(
            oc6.OffsetCommitRequestTopic(
                name="u",
                partitions=(
                    oc6.OffsetCommitRequestPartition(
                        partition_index=i32(1),
                        committed_offset=i64(6),
                        committed_leader_epoch=i32(0),
                        committed_metadata=None,
                    ),
                ),
            ),
        ),
    )
    assert errors_of(h.call(h.handlers.commit, v6)) == {("u", 1): ErrorCode.none}
    stored = h.offsets.fetch("old")
    assert (stored[("t", 0)].leader_epoch, stored[("t", 0)].metadata) == (-1, "a")
    assert (stored[("u", 1)].leader_epoch, stored[("u", 1)].metadata) == (0, "")

    # v1 fetch: no top-level error, no leader epoch; v2 asks for everything with null topics.
    v1 = of1.OffsetFetchRequest(
        group_id="old",
        topics=(of1.OffsetFetchRequestTopic(name="t", partition_indexes=(i32(0), i32(1))),),
    )
    assert fetched(h.call(h.handlers.fetch, v1).topics) == {
        ("t", 0): (5, None, "a", ErrorCode.none),
        ("t", 1): (-1, None, "", ErrorCode.none),
    }
    resp = h.call(h.handlers.fetch, of2.OffsetFetchRequest(group_id="old", topics=None))
    assert resp.error_code == ErrorCode.none
    assert fetched(resp.topics) == {
        ("t", 0): (5, None, "a", ErrorCode.none),
        ("u", 1): (6, None, "", ErrorCode.none),
    }
    resp = h.call(h.handlers.fetch, of5.OffsetFetchRequest(group_id="old", topics=None))
    assert fetched(resp.topics)[("u", 1)] == (6, 0, "", ErrorCode.none)


def test_fetch_v9_batches_groups(h: Harness) -> None:
    h.offsets.commit("a", {("t", 0): oam(1, 0, "x")})
    h.offsets.commit("b", {("u", 1): oam(2)})
    req = of9.OffsetFetchRequest(
        groups=(
            of9.OffsetFetchRequestGroup(
                group_id="a",
                member_id=None,
                member_epoch=i32(-1),
                topics=(of9.OffsetFetchRequestTopics(name="t", partition_indexes=(i32(0),)),),
            ),
            of9.OffsetFetchRequestGroup(
                group_id="b", member_id=None, member_epoch=i32(-1), topics=None
            ),
            of9.OffsetFetchRequestGroup(
                group_id="none", member_id=None, member_epoch=i32(-1), topics=None
            ),
        ),
        require_stable=False,
    )
    a, b, none = h.call(h.handlers.fetch, req).groups
    assert fetched(a.topics) == {("t", 0): (1, 0, "x", ErrorCode.none)}
    assert fetched(b.topics) == {("u", 1): (2, -1, "", ErrorCode.none)}
    assert none.group_id == "none" and none.topics == () and none.error_code == ErrorCode.none


def test_fetch_error_response_shapes(h: Harness) -> None:
    v1 = of1.OffsetFetchRequest(
        group_id="g", topics=(of1.OffsetFetchRequestTopic(name="t", partition_indexes=(i32(3),)),)
    )
    header = RequestHeader(9, 1, 1, "test", 0)
    ctx = SimpleNamespace(header=header, version=1)
    resp = h.handlers.fetch._error_response(ctx, v1, ErrorCode.coordinator_not_available)
    encode_response(header, resp)
    assert fetched(resp.topics) == {("t", 3): (-1, None, "", ErrorCode.coordinator_not_available)}
    header = RequestHeader(9, 8, 1, "test", 0)
    ctx = SimpleNamespace(header=header, version=8)
    resp = h.handlers.fetch._error_response(ctx, fetch8("g", None), ErrorCode.unknown_server_error)
    encode_response(header, resp)
    assert [(g.group_id, g.error_code, g.topics) for g in resp.groups] == [
        ("g", ErrorCode.unknown_server_error, ())
    ]


def delete_req(group: str, parts: list[tuple[str, int]]) -> Any:
    topics: dict[str, list[int]] = {}
    for t, p in parts:
        topics.setdefault(t, []).append(p)
    return od0.OffsetDeleteRequest(
        group_id=group,
        topics=tuple(
            od0.OffsetDeleteRequestTopic(
                name=t,
                partitions=tuple(
                    od0.OffsetDeleteRequestPartition(partition_index=i32(p)) for p in ps
                ),
            )
            for t, ps in topics.items()
        ),
    )


def test_offset_delete(h: Harness) -> None:
    resp = h.call(h.handlers.delete, delete_req("", [("t", 0)]))
    assert (resp.error_code, resp.topics) == (ErrorCode.invalid_group_id, ())
    resp = h.call(h.handlers.delete, delete_req("g", [("t", 0)]))
    assert (resp.error_code, resp.topics) == (ErrorCode.group_id_not_found, ())

    h.offsets.commit("g", {("t", 0): oam(1), ("t", 1): oam(2), ("u", 0): oam(3)})
    resp = h.call(h.handlers.delete, delete_req("g", [("t", 0), ("t", 9), ("x", 0), ("t", 2)]))
    assert resp.error_code == ErrorCode.none
    assert errors_of(resp) == {
        ("t", 0): ErrorCode.none,
        ("t", 2): ErrorCode.none,  # nothing committed there: NONE, no tombstone
        ("t", 9): ErrorCode.unknown_topic_or_partition,
        ("x", 0): ErrorCode.unknown_topic_or_partition,
    }
    assert set(h.offsets.fetch("g")) == {("t", 1), ("u", 0)}

    h.groups.states["g"] = "Stable"
    h.groups.subscriptions["g"] = {"t"}
    resp = h.call(h.handlers.delete, delete_req("g", [("t", 1), ("x", 0)]))
    assert errors_of(resp) == {
        ("t", 1): ErrorCode.group_subscribed_to_topic,
        ("x", 0): ErrorCode.unknown_topic_or_partition,
    }
    # Members whose subscriptions cannot be read: the whole request is NON_EMPTY_GROUP.
    h.groups.subscriptions["g"] = None
    resp = h.call(h.handlers.delete, delete_req("g", [("t", 1)]))
    assert (resp.error_code, resp.topics) == (ErrorCode.non_empty_group, ())
    h.groups.subscriptions["g"] = {"u"}
    h.groups.states["g"] = "Empty"
    resp = h.call(h.handlers.delete, delete_req("g", [("t", 1)]))
    assert errors_of(resp) == {("t", 1): ErrorCode.none}
    assert set(h.offsets.fetch("g")) == {("u", 0)}
    h.groups.states["g"] = "Dead"
    resp = h.call(h.handlers.delete, delete_req("g", [("u", 0)]))
    assert resp.error_code == ErrorCode.group_id_not_found
    assert set(h.offsets.fetch("g")) == {("u", 0)}


def test_commit_storage_failure_answers_not_coordinator(
    h: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    def fail(*args: Any, **kwargs: Any) -> None:
        raise OSError("disk gone")

    monkeypatch.setattr(h.offsets, "_append", fail)
    resp = h.call(h.handlers.commit, commit9("g", {("t", 0): (1, -1, "")}))
    assert errors_of(resp) == {("t", 0): ErrorCode.not_coordinator}
    assert not h.offsets.has_offsets("g")


def test_handlers_register_their_versions(handlers: SimpleNamespace) -> None:
    served = {
        k: (REGISTRY[k].name, REGISTRY[k].min_version, REGISTRY[k].max_version) for k in (8, 9, 47)
    }
    assert served == {
        8: ("OffsetCommit", 0, 9),
        9: ("OffsetFetch", 0, 9),
        47: ("OffsetDelete", 0, 0),
    }
    assert all(REGISTRY[k].error_response is not None for k in served)


# --- Transactional commits -------------------------------------------------------------------


def _marker(manager: LogManager, group: str, producer_id: int, epoch: int, commit: bool) -> None:
    """An end-transaction marker for ``producer_id`` in the group's partition, as the
    transaction coordinator writes it (a control batch, key: version 0 and type 1 commit / 0
    abort; value: version 0 and the coordinator epoch)."""
    lg = manager.get_log(OFFSETS_TOPIC, partition_for(group, PARTS))
    assert lg is not None
    batch = bytearray(
        build_batch(
            [(struct.pack(">hh", 0, int(commit)), struct.pack(">hi", 0, 0))],
            timestamp=T0,
            producer_id=producer_id,
            producer_epoch=epoch,
            attributes=0x30,  # transactional | control
        )
    )
    lg.append(batch, validate_batches(batch), now_ms=T0, origin=AppendOrigin.COORDINATOR)


def test_transactional_commit_waits_for_its_marker(data_dir: Path, logs: LogManager) -> None:
    store = OffsetStore.open(logs, PARTS, now_ms=T0)
    store.commit("g", {("t", 0): oam(5)}, now_ms=T0)
    store.commit_transactional("g", {("t", 0): oam(9), ("t", 1): oam(3)}, 77, 0, now_ms=T0)
    assert store.fetch("g") == {("t", 0): oam(5)}
    assert store.has_pending("g", ("t", 0)) and store.has_pending("g", ("t", 1))
    assert not store.has_pending("g", ("t", 2)) and not store.has_pending("h", ("t", 0))
    # A crash before the marker: replay keeps them pending.
    logs.close()
    manager, store = reopen(data_dir)
    try:
        assert store.fetch("g") == {("t", 0): oam(5)}
        assert store.has_pending("g", ("t", 1))
        _marker(manager, "g", 77, 0, commit=True)
        store.complete_transaction(partition_for("g", PARTS), 77, True)
        assert store.fetch("g") == {("t", 0): oam(9), ("t", 1): oam(3)}
        assert not store.has_pending("g", ("t", 0))
        # Aborted ones never show, also after a replay.
        store.commit_transactional("g", {("t", 0): oam(100)}, 78, 0, now_ms=T0)
        _marker(manager, "g", 78, 0, commit=False)
        store.complete_transaction(partition_for("g", PARTS), 78, False)
        assert store.fetch("g")[("t", 0)] == oam(9)
    finally:
        manager.close()
    manager, store = reopen(data_dir)
    try:
        assert store.fetch("g") == {("t", 0): oam(9), ("t", 1): oam(3)}
        assert not store.has_pending("g", ("t", 0))
    finally:
        manager.close()


def test_later_plain_commit_wins_over_an_earlier_transactional_one(
    data_dir: Path, logs: LogManager
) -> None:
    """Kafka's rule (OffsetMetadataManager.replayEndTransactionMarker): the commit written
    last wins, whenever the transaction ends."""
    store = OffsetStore.open(logs, PARTS, now_ms=T0)
    store.commit_transactional("g", {("t", 0): oam(9)}, 77, 0, now_ms=T0)
    store.commit("g", {("t", 0): oam(20)}, now_ms=T0)
    _marker(logs, "g", 77, 0, commit=True)
    store.complete_transaction(partition_for("g", PARTS), 77, True)
    assert store.fetch("g") == {("t", 0): oam(20)}
    logs.close()
    manager, store = reopen(data_dir)
    try:
        assert store.fetch("g") == {("t", 0): oam(20)}
    finally:
        manager.close()


def test_tombstone_drops_pending_transactional_offsets(logs: LogManager) -> None:
    store = OffsetStore.open(logs, PARTS, now_ms=T0)
    store.commit("g", {("t", 0): oam(1)}, now_ms=T0)
    store.commit_transactional("g", {("t", 0): oam(9)}, 77, 0, now_ms=T0)
    store.delete_offsets("g", [("t", 0)], now_ms=T0)
    assert not store.has_pending("g", ("t", 0))
    store.complete_transaction(partition_for("g", PARTS), 77, True)
    assert store.fetch("g") == {}
