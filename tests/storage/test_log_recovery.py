from __future__ import annotations

from pathlib import Path

from storage_helpers import (
    Opened,
    append_to,
    create_file,
    offsets_in,
    request,
    truncate_file,
    write_at,
)

from kpy.protocol.records import build_batch
from kpy.storage.fs import FileSystem
from kpy.storage.log import Log, LogConfig

CONFIG = LogConfig(segment_bytes=600, index_interval_bytes=100)


def fill(log: Log, batches: int, records: int = 2) -> list[tuple[int, int, int]]:
    """Append batches; return (base offset, last offset, size) of each."""
    out = []
    for i in range(batches):
        buf, headers = request(build_batch([(b"k", b"value-%d" % i)] * records, timestamp=i))
        result = log.append(buf, headers, now_ms=0)
        out.append((result.base_offset, result.last_offset, headers[0].size))
    return out


def test_torn_tail_is_truncated_to_the_last_whole_batch(
    fs: FileSystem, tmp_path: Path, opened: Opened
) -> None:
    log = opened(Log.open(tmp_path, CONFIG, fs=fs))
    written = fill(log, 20)
    active = log.active_segment
    last_base, _, last_size = written[-1]
    log.abandon()  # crash: no close; the last batch reaches disk only in part
    truncate_file(fs, active.log_path, active.size - last_size // 2)
    again = opened(
        Log.open(tmp_path, CONFIG, recovery_point=log.recovery_point, clean_shutdown=False, fs=fs)
    )
    assert again.log_end_offset == last_base
    assert again.truncated_bytes == last_size - last_size // 2
    assert again.recovered_segments >= 1
    assert offsets_in(again.read(0, 1 << 20, min_one=True))[0] == (0, 1)
    again.append(*request(build_batch([(None, b"after")])), now_ms=0)
    assert again.log_end_offset == last_base + 1


def test_corrupt_batch_in_old_segment_truncates_there_and_drops_later_segments(
    fs: FileSystem,
    tmp_path: Path,
    opened: Opened,
) -> None:
    log = opened(Log.open(tmp_path, CONFIG, fs=fs))
    fill(log, 30)
    assert len(log.segments) >= 3
    victim = log.segments[1]
    byte = fs.read_bytes(victim.log_path)[80]  # inside the first batch's records
    write_at(fs, victim.log_path, 80, bytes([byte ^ 0x01]))
    later = [s.log_path for s in log.segments[2:]]
    log.abandon()  # crash
    again = opened(Log.open(tmp_path, CONFIG, recovery_point=0, clean_shutdown=False, fs=fs))
    assert len(again.segments) == 2
    assert again.log_end_offset == victim.base_offset
    assert again.deleted_segments == len(later)
    assert not any(fs.exists(p) for p in later)


def test_recovery_starts_at_recovery_point_segment(
    fs: FileSystem, tmp_path: Path, opened: Opened
) -> None:
    log = opened(Log.open(tmp_path, CONFIG, fs=fs))
    fill(log, 30)
    log.flush()
    n = len(log.segments)
    log.abandon()  # crash
    again = opened(
        Log.open(tmp_path, CONFIG, recovery_point=log.log_end_offset, clean_shutdown=False, fs=fs)
    )
    assert again.recovered_segments == 1  # only the active segment
    again.abandon()  # crash again
    again2 = opened(Log.open(tmp_path, CONFIG, recovery_point=0, clean_shutdown=False, fs=fs))
    assert again2.recovered_segments == n
    assert again2.log_end_offset == log.log_end_offset


def test_missing_index_is_rebuilt_byte_for_byte(
    fs: FileSystem, tmp_path: Path, opened: Opened
) -> None:
    log = opened(Log.open(tmp_path, CONFIG, fs=fs))
    fill(log, 30)
    log.close()
    segment = log.segments[0]
    original = fs.read_bytes(segment.index_path)
    original_time = fs.read_bytes(segment.time_index_path)
    assert original
    fs.unlink(segment.index_path)
    again = opened(
        Log.open(tmp_path, CONFIG, recovery_point=log.log_end_offset, clean_shutdown=True, fs=fs)
    )
    assert again.rebuilt_indexes == 1
    assert again.recovered_segments == 0
    again.close()
    assert fs.read_bytes(segment.index_path) == original
    assert fs.read_bytes(segment.time_index_path) == original_time


def test_corrupt_index_is_rebuilt(fs: FileSystem, tmp_path: Path, opened: Opened) -> None:
    log = opened(Log.open(tmp_path, CONFIG, fs=fs))
    fill(log, 30)
    log.close()
    segment = log.segments[0]
    append_to(fs, segment.index_path, b"\x01\x02\x03")
    again = opened(
        Log.open(tmp_path, CONFIG, recovery_point=log.log_end_offset, clean_shutdown=True, fs=fs)
    )
    assert again.rebuilt_indexes == 1
    assert offsets_in(again.read(5, 1, min_one=True)) == [(4, 5)]


def test_clean_shutdown_does_no_recovery_work(
    fs: FileSystem, tmp_path: Path, opened: Opened
) -> None:
    log = opened(Log.open(tmp_path, CONFIG, fs=fs))
    fill(log, 30)
    end = log.log_end_offset
    log.close()
    again = opened(Log.open(tmp_path, CONFIG, recovery_point=end, clean_shutdown=True, fs=fs))
    assert (again.recovered_segments, again.rebuilt_indexes, again.truncated_bytes) == (0, 0, 0)
    assert again.producer_state.replayed_batches == 0
    assert again.producer_state.loaded_snapshot_offset == end
    assert again.log_end_offset == end
    assert again.recovery_point == end


def test_torn_tail_is_caught_even_with_a_clean_shutdown_claim(
    fs: FileSystem, tmp_path: Path, opened: Opened
) -> None:
    log = opened(Log.open(tmp_path, CONFIG, fs=fs))
    written = fill(log, 5)
    log.close()
    append_to(fs, log.active_segment.log_path, b"\x00" * 30)
    again = opened(Log.open(tmp_path, CONFIG, recovery_point=0, clean_shutdown=True, fs=fs))
    assert again.truncated_bytes == 30
    assert again.log_end_offset == written[-1][1] + 1


def test_stray_files_are_removed(fs: FileSystem, tmp_path: Path, opened: Opened) -> None:
    log = opened(Log.open(tmp_path, CONFIG, fs=fs))
    fill(log, 3)
    log.close()
    strays = [
        tmp_path / "00000000000000000000.log.cleaned",
        tmp_path / "00000000000000000000.log.swap",
        tmp_path / "00000000000000000000.log.deleted",
        tmp_path / "00000000000000000099.index",  # index without a log
    ]
    for p in strays:
        create_file(fs, p, b"junk")
    opened(Log.open(tmp_path, CONFIG, recovery_point=0, clean_shutdown=True, fs=fs))
    assert not any(fs.exists(p) for p in strays)
