"""TransactionCoordinator against a real LogManager in tmp_path: the state machine of a
transactional id, its durability in ``__transaction_state`` (Kafka's record format, byte for
byte), restarts, failed marker writes, timeouts and expiry.

The markers go through the coordinator's MarkerWriter seam: here a recorder, which can also
fail partitions on demand; the broker's writer (control batches in the partition logs) is
exercised by the client tests in tests/clients/test_transactions*.py."""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from kio.schema.errors import ErrorCode

from kpy.coordinator.offsets import partition_for
from kpy.coordinator.transaction import (
    MAX_EPOCH,
    TXN_TOPIC,
    TransactionCoordinator,
    TxnMetadata,
    TxnState,
    decode_key,
    decode_value,
    encode_key,
    encode_value,
)
from kpy.protocol.records import decode_records, iter_headers
from kpy.storage.log_manager import LogManager

T0 = 1_700_000_000_000
PARTS = 5
TP_A, TP_B = ("orders", 0), ("orders", 1)


@dataclass
class Markers:
    """Records what the coordinator asks the broker to write; fails what ``fail`` names."""

    written: list[tuple[int, int, bool, tuple[tuple[str, int], ...]]] = field(default_factory=list)
    fail: set[tuple[str, int]] = field(default_factory=set)

    def __call__(
        self, producer_id: int, epoch: int, commit: bool, partitions: frozenset[tuple[str, int]]
    ) -> set[tuple[str, int]]:
        ok = tuple(sorted(partitions - self.fail))
        if ok:
            self.written.append((producer_id, epoch, commit, ok))
        return set(partitions & self.fail)


class Env:
    def __init__(self, data: Path) -> None:
        self.data = data
        self.markers = Markers()
        self.logs = LogManager.open(data, {})
        self.coord = self._open()
        self.next_pid = 1000

    def _open(self) -> TransactionCoordinator:
        coord = TransactionCoordinator.open(self.logs, self.markers, partitions=PARTS)
        coord.create_topic()
        return coord

    def pid(self) -> int:
        self.next_pid += 1
        return self.next_pid

    def init(
        self, txn_id: str, now: int = T0, expected: tuple[int, int] | None = None
    ) -> tuple[ErrorCode, int, int]:
        new = self.pid() if self.coord.needs_producer_id(txn_id) else None
        r = self.coord.init_producer_id(txn_id, 60000, expected, new, now)
        return r.error, r.producer_id, r.producer_epoch

    def restart(self) -> None:
        self.logs.close()
        self.logs = LogManager.open(self.data, {})
        self.coord = self._open()

    def close(self) -> None:
        self.logs.close()

    def stored(self, txn_id: str) -> list[TxnMetadata | None]:
        """Every state written for ``txn_id``, in order, read back from the log."""
        log = self.logs.get_log(TXN_TOPIC, partition_for(txn_id, PARTS))
        assert log is not None
        out: list[TxnMetadata | None] = []
        data = log.read(0, 1 << 24)
        for pos, header in iter_headers(data):
            for rec in decode_records(memoryview(data)[pos : pos + header.size]):
                assert rec.key is not None
                if decode_key(rec.key) == txn_id:
                    out.append(None if rec.value is None else decode_value(txn_id, rec.value))
        return out


@pytest.fixture
def env(tmp_path: Path) -> Env:
    e = Env(tmp_path / "data")
    yield e  # type: ignore[misc]
    e.close()


def test_value_is_kafkas_version_0_layout() -> None:
    meta = TxnMetadata(
        "tx",
        producer_id=7,
        producer_epoch=3,
        timeout_ms=60000,
        state=TxnState.ONGOING,
        partitions=frozenset({("b", 2), ("a", 1), ("a", 0)}),
        start_ms=T0,
        last_update_ms=T0 + 5,
    )
    expected = (
        struct.pack(">hqhib", 0, 7, 3, 60000, 1)
        + struct.pack(">i", 2)  # two topics, sorted
        + struct.pack(">h", 1)
        + b"a"
        + struct.pack(">iii", 2, 0, 1)
        + struct.pack(">h", 1)
        + b"b"
        + struct.pack(">ii", 1, 2)
        + struct.pack(">qq", T0 + 5, T0)
    )
    assert encode_value(meta) == expected
    assert encode_key("tx") == struct.pack(">hh", 0, 2) + b"tx"
    assert decode_value("tx", expected) == meta
    # Empty writes null partitions.
    empty = meta.to(state=TxnState.EMPTY, partitions=frozenset(), start_ms=-1)
    assert encode_value(empty)[17:21] == struct.pack(">i", -1)
    assert decode_value("tx", encode_value(empty)) == empty


def test_reads_flexible_version_1_values() -> None:
    # Version 1: compact strings and arrays, tagged fields (0: previous producer id).
    value = (
        struct.pack(">hqhib", 1, 9, 0, 1000, 4)
        + bytes([2])  # one topic
        + bytes([2])
        + b"t"
        + bytes([2])  # one partition
        + struct.pack(">i", 3)
        + bytes([0])  # the topic's tagged fields
        + struct.pack(">qq", T0, T0 - 1)
        + bytes([2, 0, 8])  # two tagged fields: tag 0, 8 bytes
        + struct.pack(">q", 5)
        + bytes([2, 2])  # tag 2 (client transaction version), 2 bytes
        + struct.pack(">h", 0)
    )
    meta = decode_value("x", value)
    assert (meta.producer_id, meta.state, meta.partitions) == (
        9,
        TxnState.COMPLETE_COMMIT,
        {("t", 3)},
    )
    assert (meta.previous_producer_id, meta.last_update_ms, meta.start_ms) == (5, T0, T0 - 1)


def test_new_id_then_bumps(env: Env) -> None:
    error, pid, epoch = env.init("tx")
    assert (error, epoch) == (ErrorCode.none, 0)
    assert env.init("tx", T0 + 1) == (ErrorCode.none, pid, 1)
    states = env.stored("tx")
    assert [(m.producer_id, m.producer_epoch, m.state) for m in states if m] == [
        (pid, 0, TxnState.EMPTY),
        (pid, 1, TxnState.EMPTY),
    ]


def test_commit_writes_markers_and_both_states(env: Env) -> None:
    _, pid, epoch = env.init("tx")
    assert env.coord.add_partitions("tx", pid, epoch, [TP_A], T0 + 1) is ErrorCode.none
    assert env.coord.add_partitions("tx", pid, epoch, [TP_B, TP_A], T0 + 2) is ErrorCode.none
    ongoing = env.coord.describe("tx")
    assert ongoing is not None
    assert (ongoing.state, ongoing.partitions, ongoing.start_ms) == (
        TxnState.ONGOING,
        {TP_A, TP_B},
        T0 + 1,
    )
    assert env.coord.end_transaction("tx", pid, epoch, True, T0 + 3) is ErrorCode.none
    assert env.markers.written == [(pid, epoch, True, (TP_A, TP_B))]
    states = [m.state for m in env.stored("tx") if m]
    assert states[-2:] == [TxnState.PREPARE_COMMIT, TxnState.COMPLETE_COMMIT]
    done = env.coord.describe("tx")
    assert done is not None and (done.state, done.partitions) == (
        TxnState.COMPLETE_COMMIT,
        frozenset(),
    )
    # A retry of the same end is NONE; the other end contradicts the state.
    assert env.coord.end_transaction("tx", pid, epoch, True, T0 + 4) is ErrorCode.none
    assert env.coord.end_transaction("tx", pid, epoch, False, T0 + 4) is ErrorCode.invalid_txn_state
    assert len(env.markers.written) == 1
    # Nothing open: ending is INVALID_TXN_STATE once the id is Empty again.
    env.init("tx", T0 + 5)
    assert env.coord.end_transaction("tx", pid, epoch + 1, True, T0 + 6) is (
        ErrorCode.invalid_txn_state
    )


def test_producer_checks(env: Env) -> None:
    _, pid, epoch = env.init("tx")
    assert env.coord.add_partitions("nope", pid, epoch, [TP_A], T0) is (
        ErrorCode.invalid_producer_id_mapping
    )
    assert env.coord.add_partitions("tx", pid + 1, epoch, [TP_A], T0) is (
        ErrorCode.invalid_producer_id_mapping
    )
    assert env.coord.add_partitions("tx", pid, epoch + 1, [TP_A], T0) is ErrorCode.producer_fenced
    assert env.coord.end_transaction("tx", pid, epoch - 1, True, T0) is ErrorCode.producer_fenced


def test_second_producer_fences_the_first_and_aborts_its_transaction(env: Env) -> None:
    _, pid, epoch = env.init("tx")
    env.coord.add_partitions("tx", pid, epoch, [TP_A], T0 + 1)
    # The new producer's first try aborts the open transaction with a bumped epoch...
    assert env.init("tx", T0 + 2)[0] is ErrorCode.concurrent_transactions
    assert env.markers.written == [(pid, epoch + 1, False, (TP_A,))]
    fenced = env.coord.describe("tx")
    assert fenced is not None and fenced.state is TxnState.COMPLETE_ABORT
    # ...and its retry gets the epoch after that.
    assert env.init("tx", T0 + 3) == (ErrorCode.none, pid, epoch + 2)
    assert env.coord.add_partitions("tx", pid, epoch, [TP_A], T0 + 4) is ErrorCode.producer_fenced
    assert env.coord.end_transaction("tx", pid, epoch, True, T0 + 4) is ErrorCode.producer_fenced


def test_state_survives_a_restart(env: Env) -> None:
    _, pid, epoch = env.init("tx")
    env.coord.add_partitions("tx", pid, epoch, [TP_A, TP_B], T0 + 1)
    env.init("other")
    env.restart()
    meta = env.coord.describe("tx")
    assert meta is not None
    assert (meta.producer_id, meta.producer_epoch, meta.state, meta.partitions) == (
        pid,
        epoch,
        TxnState.ONGOING,
        {TP_A, TP_B},
    )
    assert env.coord.describe("other") is not None
    assert env.coord.end_transaction("tx", pid, epoch, False, T0 + 2) is ErrorCode.none
    assert env.markers.written == [(pid, epoch, False, (TP_A, TP_B))]


def test_failed_markers_keep_the_prepare_state_until_written(env: Env) -> None:
    _, pid, epoch = env.init("tx")
    env.coord.add_partitions("tx", pid, epoch, [TP_A, TP_B], T0 + 1)
    env.markers.fail = {TP_B}
    assert env.coord.end_transaction("tx", pid, epoch, True, T0 + 2) is ErrorCode.none
    assert env.markers.written == [(pid, epoch, True, (TP_A,))]
    meta = env.coord.describe("tx")
    assert meta is not None and meta.state is TxnState.PREPARE_COMMIT
    assert env.coord.end_transaction("tx", pid, epoch, True, T0 + 3) is (
        ErrorCode.concurrent_transactions
    )
    assert env.init("tx", T0 + 3)[0] is ErrorCode.concurrent_transactions
    env.coord.retry_markers(T0 + 4)  # still failing
    meta = env.coord.describe("tx")
    assert meta is not None and meta.state is TxnState.PREPARE_COMMIT
    env.markers.fail = set()
    env.coord.retry_markers(T0 + 5)
    assert env.markers.written[-1] == (pid, epoch, True, (TP_B,))  # only what was missing
    meta = env.coord.describe("tx")
    assert meta is not None and meta.state is TxnState.COMPLETE_COMMIT


def test_prepare_state_left_by_a_crash_is_completed_at_start(env: Env) -> None:
    _, pid, epoch = env.init("tx")
    env.coord.add_partitions("tx", pid, epoch, [TP_A], T0 + 1)
    env.markers.fail = {TP_A}
    env.coord.end_transaction("tx", pid, epoch, False, T0 + 2)
    env.markers.fail = set()
    env.restart()  # the broker calls complete_unfinished after opening
    assert env.coord.complete_unfinished(T0 + 3) == 1
    assert env.markers.written == [(pid, epoch, False, (TP_A,))]
    meta = env.coord.describe("tx")
    assert meta is not None and meta.state is TxnState.COMPLETE_ABORT
    assert [m.state for m in env.stored("tx") if m][-1] is TxnState.COMPLETE_ABORT


def test_timed_out_transaction_is_fenced_and_aborted(env: Env) -> None:
    _, pid, epoch = env.init("tx")
    env.coord.add_partitions("tx", pid, epoch, [TP_A], T0)
    assert env.coord.abort_timed_out(T0 + 60000) == 0  # not older than its timeout yet
    assert env.coord.abort_timed_out(T0 + 60001) == 1
    assert env.markers.written == [(pid, epoch + 1, False, (TP_A,))]
    assert env.coord.end_transaction("tx", pid, epoch, True, T0 + 60002) is (
        ErrorCode.producer_fenced
    )
    assert env.init("tx", T0 + 60003) == (ErrorCode.none, pid, epoch + 2)


def test_idle_ids_expire(env: Env) -> None:
    env.init("old", T0)
    _, pid, epoch = env.init("busy", T0)
    env.coord.add_partitions("busy", pid, epoch, [TP_A], T0)
    env.coord.id_expiration_ms = 1000
    assert env.coord.expire_transactional_ids(T0 + 999) == 0
    assert env.coord.expire_transactional_ids(T0 + 1000) == 1  # an open one never expires
    assert env.coord.describe("old") is None
    assert env.stored("old")[-1] is None  # a tombstone
    env.restart()
    assert env.coord.describe("old") is None
    assert env.coord.describe("busy") is not None


def test_exhausted_epoch_rotates_the_producer_id(env: Env) -> None:
    _, pid, _ = env.init("tx")
    meta = env.coord.txns["tx"]
    env.coord.txns["tx"] = meta.to(producer_epoch=MAX_EPOCH - 1)
    error, new_pid, epoch = env.init("tx", T0 + 1)
    assert (error, epoch) == (ErrorCode.none, 0)
    assert new_pid != pid
    assert env.coord.txns["tx"].previous_producer_id == pid


def test_kip_360_expected_producer(env: Env) -> None:
    _, pid, epoch = env.init("tx")
    # The current producer and epoch: bumped, the old epoch remembered.
    assert env.init("tx", T0 + 1, (pid, epoch)) == (ErrorCode.none, pid, epoch + 1)
    # A retry of that call (it sends the epoch it had): the same epoch again.
    assert env.init("tx", T0 + 2, (pid, epoch)) == (ErrorCode.none, pid, epoch + 1)
    # Another producer id, or a stale epoch: fenced.
    assert env.init("tx", T0 + 3, (pid + 50, 0))[0] is ErrorCode.producer_fenced
    assert env.init("tx", T0 + 3, (pid, 7))[0] is ErrorCode.producer_fenced


def test_list_and_verify(env: Env) -> None:
    _, pid, epoch = env.init("a")
    env.coord.add_partitions("a", pid, epoch, [TP_A], T0)
    env.init("b")
    found, unknown = env.coord.list_transactions(["Ongoing", "Nope"], [], -1, T0)
    assert [m.transactional_id for m in found] == ["a"]
    assert unknown == ["Nope"]
    found, _ = env.coord.list_transactions([], [pid], -1, T0)
    assert [m.transactional_id for m in found] == ["a"]
    assert len(env.coord.list_transactions([], [], -1, T0)[0]) == 2
    # Duration: running longer than the filter. As in Kafka, an id with no transaction (start
    # time -1) counts as running since the epoch, so it always passes a duration filter.
    assert [m.transactional_id for m in env.coord.list_transactions([], [], 10, T0 + 10)[0]] == [
        "b"
    ]
    assert sorted(
        m.transactional_id for m in env.coord.list_transactions([], [], 10, T0 + 11)[0]
    ) == [
        "a",
        "b",
    ]
    assert env.coord.verify("a", pid, epoch, [TP_A, TP_B]) == {
        TP_A: ErrorCode.none,
        TP_B: ErrorCode.transaction_abortable,
    }
    assert env.coord.verify("a", pid, epoch + 1, [TP_A]) == {TP_A: ErrorCode.producer_fenced}
    assert env.coord.verify("zz", pid, epoch, [TP_A]) == {
        TP_A: ErrorCode.invalid_producer_id_mapping
    }


def test_invalid_timeouts(env: Env) -> None:
    assert not env.coord.valid_timeout(0)
    assert env.coord.valid_timeout(900000)
    assert not env.coord.valid_timeout(900001)
