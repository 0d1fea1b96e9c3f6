from __future__ import annotations

import struct
from pathlib import Path

import crc32c
import pytest
from storage_helpers import Opened, create_file, idempotent_batch, request

from kpy.protocol.records import InvalidRecordBatch, build_batch
from kpy.storage.errors import (
    CorruptSnapshot,
    DuplicateSequence,
    InvalidProducerEpoch,
    OutOfOrderSequence,
)
from kpy.storage.fs import FileSystem
from kpy.storage.log import Log, LogConfig
from kpy.storage.producer_state import (
    BatchMetadata,
    ProducerStateEntry,
    decode_snapshot,
    encode_snapshot,
)

PID = 4000


def append(log: Log, *batches: bytes, now_ms: int = 0):  # type: ignore[no-untyped-def]
    buf, headers = request(*batches)
    return log.append(buf, headers, now_ms=now_ms)


def test_duplicate_batch_is_answered_from_cache(
    fs: FileSystem, tmp_path: Path, opened: Opened
) -> None:
    log = opened(Log.open(tmp_path, fs=fs))
    first = append(log, idempotent_batch(PID, 0, 0, 3, timestamp=777))
    append(log, idempotent_batch(PID, 0, 3, 2))
    size = log.active_segment.size
    dup = append(log, idempotent_batch(PID, 0, 0, 3, timestamp=777))
    assert dup.duplicate
    assert (dup.base_offset, dup.last_offset) == (first.base_offset, first.last_offset)
    assert dup.log_append_time_ms == 777  # Kafka answers with the cached batch timestamp
    assert log.active_segment.size == size
    assert log.log_end_offset == 5


def test_only_the_last_five_batches_are_cached(
    fs: FileSystem, tmp_path: Path, opened: Opened
) -> None:
    log = opened(Log.open(tmp_path, fs=fs))
    for seq in range(6):
        append(log, idempotent_batch(PID, 0, seq))
    assert append(log, idempotent_batch(PID, 0, 1)).duplicate
    with pytest.raises(OutOfOrderSequence):
        append(log, idempotent_batch(PID, 0, 0))  # evicted: now just out of order


def test_out_of_order_sequence_writes_nothing(
    fs: FileSystem, tmp_path: Path, opened: Opened
) -> None:
    log = opened(Log.open(tmp_path, fs=fs))
    append(log, idempotent_batch(PID, 0, 0, 2))
    with pytest.raises(OutOfOrderSequence):
        append(log, idempotent_batch(PID, 0, 3))  # expected 2
    assert log.log_end_offset == 2
    append(log, idempotent_batch(PID, 0, 2))
    assert log.log_end_offset == 3


def test_fenced_epoch(fs: FileSystem, tmp_path: Path, opened: Opened) -> None:
    log = opened(Log.open(tmp_path, fs=fs))
    append(log, idempotent_batch(PID, 5, 0))
    with pytest.raises(InvalidProducerEpoch):
        append(log, idempotent_batch(PID, 4, 1))
    with pytest.raises(OutOfOrderSequence):
        append(log, idempotent_batch(PID, 6, 7))  # a new epoch must start at 0
    append(log, idempotent_batch(PID, 6, 0))
    with pytest.raises(InvalidProducerEpoch):
        append(log, idempotent_batch(PID, 5, 1))
    assert log.producer_state.producers[PID].producer_epoch == 6


def test_unknown_producer_accepts_any_sequence_and_wraps(
    fs: FileSystem, tmp_path: Path, opened: Opened
) -> None:
    log = opened(Log.open(tmp_path, fs=fs))
    append(log, idempotent_batch(PID, 0, 2**31 - 2, 2))  # last sequence 2**31-1
    append(log, idempotent_batch(PID, 0, 0))  # wraps to 0
    append(log, idempotent_batch(PID + 1, 0, 99))
    assert log.producer_state.producers[PID].last_seq == 0
    assert log.log_end_offset == 4


def test_non_idempotent_batches_skip_checks(fs: FileSystem, tmp_path: Path, opened: Opened) -> None:
    log = opened(Log.open(tmp_path, fs=fs))
    append(log, build_batch([(None, b"a")]))
    append(log, build_batch([(None, b"a")]))
    assert log.log_end_offset == 2
    assert log.producer_state.producers == {}


def test_whole_request_is_validated_before_writing(
    fs: FileSystem, tmp_path: Path, opened: Opened
) -> None:
    log = opened(Log.open(tmp_path, fs=fs))
    append(log, idempotent_batch(PID + 1, 3, 0))
    size = log.active_segment.size
    with pytest.raises(OutOfOrderSequence):
        append(
            log,
            idempotent_batch(PID, 0, 0),
            idempotent_batch(PID + 1, 3, 1),
            idempotent_batch(PID + 1, 3, 5),  # the third batch is out of order
        )
    assert log.log_end_offset == 1 and log.active_segment.size == size
    assert PID not in log.producer_state.producers
    assert log.producer_state.producers[PID + 1].last_seq == 0
    append(log, idempotent_batch(PID, 0, 0), idempotent_batch(PID, 0, 1))
    with pytest.raises(DuplicateSequence):
        append(log, idempotent_batch(PID, 0, 1), idempotent_batch(PID, 0, 2))
    assert log.log_end_offset == 3


def test_idempotent_batch_without_sequence_is_invalid(
    fs: FileSystem, tmp_path: Path, opened: Opened
) -> None:
    log = opened(Log.open(tmp_path, fs=fs))
    with pytest.raises(InvalidRecordBatch):
        append(log, idempotent_batch(PID, 0, -1))


def test_snapshot_layout_and_round_trip() -> None:
    entry = ProducerStateEntry(7, 3, 11, 1234, 50)
    entry.batches.append(BatchMetadata(last_seq=9, last_offset=100, offset_delta=4, timestamp=1234))
    empty = ProducerStateEntry(2)
    data = encode_snapshot([entry, empty])
    body = struct.pack(">i", 2)
    body += struct.pack(">qhiqiqiq", 2, -1, -1, -1, 0, -1, -1, -1)
    body += struct.pack(">qhiqiqiq", 7, 3, 9, 100, 4, 1234, 11, 50)
    assert data == struct.pack(">hI", 1, crc32c.crc32c(body)) + body
    decoded = {e.producer_id: e for e in decode_snapshot(data)}
    assert decoded[7].producer_epoch == 3
    assert decoded[7].current_txn_first_offset == 50
    assert list(decoded[7].batches) == [BatchMetadata(9, 100, 4, 1234)]
    assert decoded[7].batches[0].first_seq == 5
    assert decoded[2].is_empty


@pytest.mark.parametrize("flip", [0, 3, 9, 20])
def test_snapshot_damage_is_detected(flip: int) -> None:
    entry = ProducerStateEntry(7, 3)
    entry.batches.append(BatchMetadata(9, 100, 4, 1234))
    data = bytearray(encode_snapshot([entry]))
    data[flip] ^= 0x10
    with pytest.raises(CorruptSnapshot):
        decode_snapshot(bytes(data))


def test_clean_close_snapshot_restores_duplicate_detection(
    fs: FileSystem, tmp_path: Path, opened: Opened
) -> None:
    log = opened(Log.open(tmp_path, fs=fs))
    append(log, idempotent_batch(PID, 0, 0, 2))
    first = append(log, idempotent_batch(PID, 0, 2, 2))
    log.close()
    assert fs.exists(tmp_path / "00000000000000000004.snapshot")
    again = opened(Log.open(tmp_path, recovery_point=4, clean_shutdown=True, fs=fs))
    assert again.producer_state.loaded_snapshot_offset == 4
    assert again.producer_state.replayed_batches == 0
    dup = append(again, idempotent_batch(PID, 0, 2, 2))
    assert dup.duplicate and dup.base_offset == first.base_offset
    with pytest.raises(OutOfOrderSequence):
        append(again, idempotent_batch(PID, 0, 5))


def test_unclean_stop_rebuilds_from_roll_snapshot_and_log(
    fs: FileSystem, tmp_path: Path, opened: Opened
) -> None:
    config = LogConfig(segment_bytes=400)
    log = opened(Log.open(tmp_path, config, fs=fs))
    seq = 0
    while len(log.segments) < 3:
        append(log, idempotent_batch(PID, 0, seq, 2))
        seq += 2
    snapshots = log.snapshot_offsets()
    assert snapshots and snapshots[-1] == log.active_segment.base_offset
    extra = 1  # the batch that rolled the segment sits after the snapshot too
    for _ in range(2):
        append(log, idempotent_batch(PID, 0, seq, 2))
        seq += 2
        extra += 1
    log.abandon()  # crash: no close, no snapshot at the log end
    again = opened(Log.open(tmp_path, config, recovery_point=0, clean_shutdown=False, fs=fs))
    assert again.producer_state.loaded_snapshot_offset == snapshots[-1]
    assert again.producer_state.replayed_batches == extra
    assert again.producer_state.producers[PID].last_seq == seq - 1
    assert append(again, idempotent_batch(PID, 0, seq - 2, 2)).duplicate
    append(again, idempotent_batch(PID, 0, seq))


def test_snapshots_above_log_end_are_deleted(
    fs: FileSystem, tmp_path: Path, opened: Opened
) -> None:
    log = opened(Log.open(tmp_path, fs=fs))
    append(log, idempotent_batch(PID, 0, 0, 2))
    log.close()
    fake = tmp_path / "00000000000000000050.snapshot"
    create_file(fs, fake, fs.read_bytes(tmp_path / "00000000000000000002.snapshot"))
    again = opened(Log.open(tmp_path, recovery_point=2, clean_shutdown=True, fs=fs))
    assert not fs.exists(fake)
    assert again.producer_state.loaded_snapshot_offset == 2


def test_corrupt_snapshot_falls_back_to_log_scan(
    fs: FileSystem, tmp_path: Path, opened: Opened
) -> None:
    log = opened(Log.open(tmp_path, fs=fs))
    append(log, idempotent_batch(PID, 0, 0, 2))
    append(log, idempotent_batch(PID, 0, 2, 2))
    log.close()
    snap = tmp_path / "00000000000000000004.snapshot"
    create_file(fs, snap, fs.read_bytes(snap)[:-1] + b"\x00")
    again = opened(Log.open(tmp_path, recovery_point=4, clean_shutdown=True, fs=fs))
    assert not fs.exists(snap)
    assert again.producer_state.loaded_snapshot_offset is None
    assert again.producer_state.replayed_batches == 2
    assert append(again, idempotent_batch(PID, 0, 2, 2)).duplicate
