"""Transactions in the log (log.py, producer_state.py, txn_index.py, cleaner.py), on disk and in
memory: markers, the last stable offset, Kafka's .txnindex (its bytes, its rebuild after a
crash), read_committed reads, marker fencing, and the cleaner's transaction rules."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest
from storage_helpers import Opened, append_to, file_size, request, truncate_file

from kpy.protocol.records import (
    TRANSACTIONAL_MASK,
    build_batch,
    build_control_batch,
    decode_records,
    iter_headers,
    validate_batches,
)
from kpy.storage.cleaner import clean_log
from kpy.storage.errors import InvalidProducerEpoch, TransactionCoordinatorFenced
from kpy.storage.fs import FileSystem
from kpy.storage.log import Log, LogConfig
from kpy.storage.producer_state import ControlMarker
from kpy.storage.txn_index import AbortedTxn, TransactionIndex, decode_entries

P1, P2 = 7001, 7002
NOW = 1_700_000_000_000


def txn(log: Log, pid: int, seq: int, *values: bytes, key: bytes = b"k", epoch: int = 0) -> int:
    """A transactional batch of ``values``; its first offset."""
    batch = build_batch(
        [(key, v) for v in values],
        producer_id=pid,
        producer_epoch=epoch,
        base_sequence=seq,
        attributes=TRANSACTIONAL_MASK,
        timestamp=NOW,
    )
    return log.append(*request(batch), now_ms=NOW).base_offset


def plain(log: Log, value: bytes, key: bytes = b"k") -> int:
    return log.append(*request(build_batch([(key, value)], timestamp=NOW)), now_ms=NOW).base_offset


def end(log: Log, pid: int, commit: bool, epoch: int = 0, coordinator_epoch: int = 0) -> int:
    return log.append_marker(
        pid, epoch, commit=commit, coordinator_epoch=coordinator_epoch, now_ms=NOW
    )


def values(data: bytes) -> list[bytes | None]:
    out: list[bytes | None] = []
    for pos, header in iter_headers(data):
        if not header.is_control:
            out += [r.value for r in decode_records(data[pos : pos + header.size])]
    return out


def small_segments(**props: str) -> LogConfig:
    return LogConfig.from_properties({"internal.segment.bytes": "300", **props})


def test_control_batch_is_kafkas_end_transaction_marker() -> None:
    batch = build_control_batch(P1, 3, commit=True, coordinator_epoch=9, timestamp=NOW)
    (header,) = validate_batches(batch)
    assert header.is_control and header.is_transactional
    assert (header.producer_id, header.producer_epoch, header.base_sequence) == (P1, 3, -1)
    (record,) = decode_records(bytes(batch))
    assert record.key == struct.pack(">hh", 0, 1)  # version 0, type COMMIT
    assert record.value == struct.pack(">hi", 0, 9)  # version 0, coordinator epoch
    marker = ControlMarker.decode(record.key, record.value)
    assert (marker.abort, marker.coordinator_epoch) == (False, 9)
    abort = build_control_batch(P1, 3, commit=False, coordinator_epoch=0, timestamp=NOW)
    (record,) = decode_records(bytes(abort))
    assert ControlMarker.decode(record.key, record.value).abort


def test_txnindex_bytes_are_kafkas_aborted_txn_entries(
    fs: FileSystem, tmp_path: Path, opened: Opened
) -> None:
    log = opened(Log.open(tmp_path, fs=fs))
    plain(log, b"a")
    first = txn(log, P1, 0, b"x", b"y")
    marker = end(log, P1, commit=False)
    path = tmp_path / "00000000000000000000.txnindex"
    assert fs.read_bytes(path) == struct.pack(">hqqqq", 0, P1, first, marker, marker + 1)
    assert len(fs.read_bytes(path)) == 34
    # A commit indexes nothing; a second abort appends.
    txn(log, P2, 0, b"z")
    end(log, P2, commit=True)
    first = txn(log, P1, 2, b"w")
    marker = end(log, P1, commit=False)
    assert decode_entries(fs.read_bytes(path))[-1] == AbortedTxn(P1, first, marker, marker + 1)
    assert len(fs.read_bytes(path)) == 68


def test_no_txnindex_file_without_aborts(fs: FileSystem, tmp_path: Path, opened: Opened) -> None:
    log = opened(Log.open(tmp_path, fs=fs))
    txn(log, P1, 0, b"x")
    end(log, P1, commit=True)
    assert not fs.names_ending(tmp_path, ".txnindex")


def test_last_stable_offset_and_read_committed(
    fs: FileSystem, tmp_path: Path, opened: Opened
) -> None:
    log = opened(Log.open(tmp_path, fs=fs))
    plain(log, b"a")  # 0
    assert log.last_stable_offset == 1
    first1 = txn(log, P1, 0, b"p1-0", b"p1-1")  # 1-2
    plain(log, b"b")  # 3
    first2 = txn(log, P2, 0, b"p2-0")  # 4
    assert log.last_stable_offset == first1 == 1
    assert values(log.read(0, 1 << 20, max_offset=log.last_stable_offset)) == [b"a"]
    assert log.read(1, 1 << 20, max_offset=1) == b""
    marker1 = end(log, P1, commit=False)  # 5: P2 still holds the LSO
    assert log.last_stable_offset == first2 == 4
    assert values(log.read(0, 1 << 20, max_offset=4)) == [b"a", b"p1-0", b"p1-1", b"b"]
    assert log.aborted_transactions(0, 4) == [AbortedTxn(P1, first1, marker1, first2)]
    marker2 = end(log, P2, commit=True)  # 6
    assert log.last_stable_offset == log.log_end_offset == marker2 + 1
    assert log.aborted_transactions(0, 7) == [AbortedTxn(P1, 1, 5, 4)]
    assert log.aborted_transactions(6, 7) == []  # after the marker
    assert log.aborted_transactions(0, 1) == []  # before the transaction
    # min_one never lets a batch past max_offset through.
    assert log.read(0, 1, max_offset=1) == log.read(0, 1)
    assert values(log.read(0, 1, max_offset=1)) == [b"a"]


def test_read_committed_across_segments(fs: FileSystem, tmp_path: Path, opened: Opened) -> None:
    log = opened(Log.open(tmp_path, small_segments(), fs=fs))
    for i in range(6):
        plain(log, b"v%d" % i + b"." * 60)
    first = txn(log, P1, 0, b"open" + b"." * 60)
    for i in range(6):
        plain(log, b"w%d" % i + b"." * 60)
    assert len(log.segments) > 2
    got = values(log.read(0, 1 << 20, max_offset=log.last_stable_offset))
    assert len(got) == first == 6
    # From a later segment than the LSO's: nothing.
    assert log.read(first + 3, 1 << 20, max_offset=first) == b""


def test_marker_fencing(fs: FileSystem, tmp_path: Path, opened: Opened) -> None:
    log = opened(Log.open(tmp_path, fs=fs))
    txn(log, P1, 0, b"x", epoch=3)
    end_before = log.log_end_offset
    with pytest.raises(InvalidProducerEpoch):
        end(log, P1, commit=True, epoch=2)
    end(log, P1, commit=True, epoch=3, coordinator_epoch=5)
    txn(log, P1, 1, b"y", epoch=3)
    with pytest.raises(TransactionCoordinatorFenced):
        end(log, P1, commit=True, epoch=3, coordinator_epoch=4)
    assert log.log_end_offset == end_before + 2  # the refused markers wrote nothing
    # A newer epoch ends (and fences) the transaction.
    end(log, P1, commit=False, epoch=4, coordinator_epoch=5)
    assert log.last_stable_offset == log.log_end_offset
    with pytest.raises(InvalidProducerEpoch):
        txn(log, P1, 0, b"zombie", epoch=3)


def test_marker_without_open_transaction_completes_nothing(
    fs: FileSystem, tmp_path: Path, opened: Opened
) -> None:
    log = opened(Log.open(tmp_path, fs=fs))
    end(log, P1, commit=False)
    assert log.aborted_transactions(0, 10) == []
    assert log.last_stable_offset == log.log_end_offset == 1


def test_open_transactions_and_indexes_survive_a_clean_restart(
    fs: FileSystem, tmp_path: Path, opened: Opened
) -> None:
    log = Log.open(tmp_path, small_segments(), fs=fs)
    first = txn(log, P1, 0, b"aborted")
    marker = end(log, P1, commit=False)
    open_first = txn(log, P2, 0, b"open")
    for i in range(5):
        plain(log, b"x%d" % i + b"." * 60)
    log.close()
    again = opened(Log.open(tmp_path, small_segments(), clean_shutdown=True, fs=fs))
    assert again.last_stable_offset == open_first
    assert again.aborted_transactions(0, 100) == [AbortedTxn(P1, first, marker, marker + 1)]


@pytest.mark.parametrize("cut", ["none", "marker"])
def test_unclean_restart_rebuilds_the_txnindex(
    fs: FileSystem, tmp_path: Path, opened: Opened, cut: str
) -> None:
    log = Log.open(tmp_path, fs=fs)
    plain(log, b"a")
    first = txn(log, P1, 0, b"x", b"y")
    marker = end(log, P1, commit=False)
    log.abandon()  # a crash: nothing flushed, the index not trusted
    path = tmp_path / "00000000000000000000.log"
    txn_path = tmp_path / "00000000000000000000.txnindex"
    if cut == "marker":
        truncate_file(fs, path, file_size(fs, path) - 10)  # the marker is torn
    else:
        fs.unlink(txn_path)  # lost with the page cache
    again = opened(Log.open(tmp_path, recovery_point=0, clean_shutdown=False, fs=fs))
    if cut == "marker":
        # The transaction is open again: its marker never made it.
        assert again.log_end_offset == marker
        assert again.last_stable_offset == first
        assert again.aborted_transactions(0, 10) == []
        assert not fs.exists(txn_path)
    else:
        assert again.aborted_transactions(0, 10) == [AbortedTxn(P1, first, marker, marker + 1)]
        assert decode_entries(fs.read_bytes(txn_path)) == [
            AbortedTxn(P1, first, marker, marker + 1)
        ]


def test_unclean_restart_rebuild_starts_from_a_snapshot(
    fs: FileSystem, tmp_path: Path, opened: Opened
) -> None:
    """The transaction began in a segment below the recovery point; its abort marker is in the
    recovered one: the rebuilt entry still has the transaction's first offset."""
    config = small_segments()
    log = Log.open(tmp_path, config, fs=fs)
    first = txn(log, P1, 0, b"t" + b"." * 60)
    for i in range(6):
        plain(log, b"p%d" % i + b"." * 60)
    log.flush()
    recovery_point = log.log_end_offset
    marker = end(log, P1, commit=False)
    assert log.segments[-1].base_offset > first
    log.abandon()
    for name in fs.names_ending(tmp_path, ".txnindex"):
        fs.unlink(tmp_path / name)
    again = opened(
        Log.open(tmp_path, config, recovery_point=recovery_point, clean_shutdown=False, fs=fs)
    )
    assert again.aborted_transactions(0, 100) == [AbortedTxn(P1, first, marker, marker + 1)]


def test_damaged_txnindex_is_rebuilt(fs: FileSystem, tmp_path: Path, opened: Opened) -> None:
    log = Log.open(tmp_path, fs=fs)
    first = txn(log, P1, 0, b"x")
    marker = end(log, P1, commit=False)
    log.close()
    txn_path = tmp_path / "00000000000000000000.txnindex"
    fs.unlink(txn_path)
    append_to(fs, txn_path, struct.pack(">hqqqq", 7, 1, 2, 3, 4))  # an unknown version
    again = opened(Log.open(tmp_path, clean_shutdown=True, fs=fs))
    assert again.aborted_transactions(0, 10) == [AbortedTxn(P1, first, marker, marker + 1)]


def test_torn_txnindex_entry_is_ignored(fs: FileSystem, tmp_path: Path) -> None:
    path = tmp_path / "00000000000000000000.txnindex"
    append_to(fs, path, AbortedTxn(1, 2, 3, 4).encode() + b"\x00\x00\x00")
    assert TransactionIndex(path, fs).entries == (AbortedTxn(1, 2, 3, 4),)


def test_retention_deletes_the_txnindex_with_its_segment(
    fs: FileSystem, tmp_path: Path, opened: Opened
) -> None:
    log = opened(Log.open(tmp_path, small_segments(), fs=fs))
    txn(log, P1, 0, b"x")
    end(log, P1, commit=False)
    for i in range(8):
        plain(log, b"p%d" % i + b"." * 60)
    assert fs.names_ending(tmp_path, ".txnindex") == ["00000000000000000000.txnindex"]
    log.advance_start(log.segments[1].base_offset)
    log.delete_segments_below_start(NOW).delete_files()
    assert not fs.names_ending(tmp_path, ".txnindex")


def compact() -> LogConfig:
    return LogConfig.from_properties(
        {
            "cleanup.policy": "compact",
            "internal.segment.bytes": "400",
            "min.cleanable.dirty.ratio": "0.01",
        }
    )


def latest(log: Log) -> dict[bytes, bytes | None]:
    """The value a read_committed reader ends with per key: aborted records skipped."""
    aborted = log.aborted_transactions(0, log.log_end_offset)
    out: dict[bytes, bytes | None] = {}
    data = log.read(0, 1 << 24, max_offset=log.last_stable_offset)
    for pos, header in iter_headers(data):
        if header.is_control:
            continue
        if header.is_transactional and any(
            t.producer_id == header.producer_id
            and t.first_offset <= header.base_offset <= t.last_offset
            for t in aborted
        ):
            continue
        for r in decode_records(data[pos : pos + header.size]):
            assert r.key is not None
            out[r.key] = r.value
    return out


def test_cleaner_drops_aborted_records_and_keeps_committed_values(
    fs: FileSystem, tmp_path: Path, opened: Opened
) -> None:
    log = opened(Log.open(tmp_path, compact(), fs=fs))
    plain(log, b"committed-1", key=b"a")
    txn(log, P1, 0, b"aborted-1", key=b"a")
    end(log, P1, commit=False)
    txn(log, P2, 0, b"committed-2", key=b"b")
    end(log, P2, commit=True)
    for i in range(12):
        plain(log, b"filler" + b"." * 40, key=b"f%d" % i)
    assert latest(log)[b"a"] == b"committed-1"
    clean_log(log, None, NOW)
    # The aborted value is gone, and did not make the committed one go either.
    kept = values(log.read(0, 1 << 24))
    assert b"aborted-1" not in kept and b"committed-1" in kept
    assert latest(log) == {b"a": b"committed-1", b"b": b"committed-2"} | {
        b"f%d" % i: b"filler" + b"." * 40 for i in range(12)
    }
    # Markers stay, and so does the index entry (carried into the rewritten segment).
    assert log.aborted_transactions(0, log.log_end_offset)


def test_cleaner_stops_at_an_open_transaction(
    fs: FileSystem, tmp_path: Path, opened: Opened
) -> None:
    log = opened(Log.open(tmp_path, compact(), fs=fs))
    for i in range(8):
        plain(log, b"old%d" % i + b"." * 40, key=b"k")
    first = txn(log, P1, 0, b"open", key=b"k")
    for i in range(8):
        plain(log, b"new%d" % i + b"." * 40, key=b"k")
    assert len(log.segments) > 3
    first_dirty, _ = clean_log(log, None, NOW)
    assert first_dirty <= first
    kept = values(log.read(0, 1 << 24))
    # Nothing at or past the open transaction was touched.
    assert kept[-9:] == [b"open"] + [b"new%d" % i + b"." * 40 for i in range(8)]
