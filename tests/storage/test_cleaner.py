"""The log cleaner (cleaner.py): the offset map, the dirty ratio and the compaction lags, the
latest value per key kept at its offset, tombstones kept while dirty and for
delete.retention.ms after, compressed batches recompressed with their codec, an idempotent
producer's last batch kept (empty) so its state survives a reopen, and a crash after each step
of a group's swap leaving a log that opens with every key's latest value."""

from __future__ import annotations

import random
import time
from pathlib import Path

import pytest
from storage_helpers import Opened, request

from kpy.protocol import compression
from kpy.protocol.records import Record, build_batch, decode_records, encode_batch, read_header
from kpy.storage.cleaner import (
    HALT_STEPS,
    Cleaner,
    CleanerHalted,
    OffsetMap,
    clean_log,
    cleanable_range,
    needs_cleaning,
    producer_last_offsets,
)
from kpy.storage.fs import FileSystem
from kpy.storage.log import Log, LogConfig
from kpy.storage.segment import CLEANED_SUFFIX, SWAP_SUFFIX

NOW = int(time.time() * 1000)


def compact_config(**props: str) -> LogConfig:
    base = {
        "cleanup.policy": "compact",
        "internal.segment.bytes": "1000",
        "min.cleanable.dirty.ratio": "0.01",
        "index.interval.bytes": "100",
    }
    return LogConfig.from_properties({**base, **props})


def put(log: Log, key: bytes | None, value: bytes | None, *, timestamp: int = NOW) -> int:
    """Append one record; its offset."""
    return log.append(
        *request(build_batch([(key, value)], timestamp=timestamp)), now_ms=0
    ).base_offset


def contents(log: Log) -> list[tuple[int, bytes | None, bytes | None]]:
    """(offset, key, value) of every record, in order."""
    out = []
    for segment in log.segments:
        for pos, header in segment.iter_batches(0):
            for r in decode_records(segment.read_at(pos, header.size)):
                out.append((r.offset, r.key, r.value))
    return out


def latest_of(records: list[tuple[int, bytes | None, bytes | None]]) -> dict[bytes, bytes | None]:
    seen: dict[bytes, bytes | None] = {}
    for _, key, value in records:
        assert key is not None
        seen[key] = value
    return seen


def fill(log: Log, updates: int, keys: int, seed: int = 1) -> dict[bytes, int]:
    """Random updates; returns key -> offset of its latest value."""
    rng = random.Random(seed)
    latest: dict[bytes, int] = {}
    for i in range(updates):
        key = b"k%03d" % rng.randrange(keys)
        latest[key] = put(log, key, b"v%05d" % i)
    return latest


# --- 1. The offset map and the cleanable range ---


def test_offset_map_keeps_the_last_offset_put() -> None:
    offsets = OffsetMap()
    offsets.put(b"a", 3)
    offsets.put(b"b", 4)
    offsets.put(b"a", 7)
    assert offsets.get(b"a") == 7 and offsets.get(b"b") == 4 and offsets.get(b"c") == -1
    assert len(offsets) == 2 and offsets.latest_offset == 7


def test_dirty_ratio_excludes_the_active_segment(
    fs: FileSystem, tmp_path: Path, opened: Opened
) -> None:
    log = opened(Log.open(tmp_path, compact_config(), fs=fs))
    fill(log, 60, 5)
    segments = log.segments
    assert len(segments) > 3
    cleanable = cleanable_range(log, None, NOW)
    inactive = sum(s.size for s in segments[:-1])
    assert cleanable.first_dirty == 0
    assert cleanable.first_uncleanable == segments[-1].base_offset
    assert (cleanable.clean_bytes, cleanable.dirty_bytes) == (0, inactive)
    assert cleanable.dirty_ratio == 1.0
    # Checkpointed half way: the segments below are clean.
    middle = segments[2].base_offset
    half = cleanable_range(log, middle, NOW)
    clean = sum(s.size for s in segments[:2])
    assert (half.clean_bytes, half.dirty_bytes) == (clean, inactive - clean)
    # A checkpoint past the log end resets to the log start (Kafka's cleanableOffsets).
    assert cleanable_range(log, log.log_end_offset + 5, NOW).first_dirty == 0


def test_min_cleanable_ratio_and_compaction_lags(
    fs: FileSystem, tmp_path: Path, opened: Opened
) -> None:
    log = opened(Log.open(tmp_path, compact_config(**{"min.cleanable.dirty.ratio": "0.9"}), fs=fs))
    fill(log, 60, 5)
    segments = log.segments
    last_inactive = segments[-2]
    assert needs_cleaning(log.config, cleanable_range(log, None, NOW), NOW)
    # Clean half: the ratio falls below 0.9.
    half = cleanable_range(log, segments[len(segments) // 2].base_offset, NOW)
    assert half.dirty_ratio < 0.9
    assert not needs_cleaning(log.config, half, NOW)
    # max.compaction.lag.ms: the first dirty batch is older than it, so clean all the same.
    overdue = LogConfig.from_properties({"max.compaction.lag.ms": "1"}, log.config)
    assert needs_cleaning(overdue, half, NOW + 10)
    # min.compaction.lag.ms: records younger than it are not cleanable yet.
    log.config = LogConfig.from_properties({"min.compaction.lag.ms": "60000"}, log.config)
    young = cleanable_range(log, None, NOW)
    assert young.first_uncleanable == 0 and young.dirty_bytes == 0
    assert not needs_cleaning(log.config, young, NOW)
    old = cleanable_range(log, None, NOW + 120_000)
    assert old.first_uncleanable == segments[-1].base_offset
    assert last_inactive in log.segments


# --- 2. Cleaning ---


def test_latest_value_per_key_kept_at_its_offset(
    fs: FileSystem, tmp_path: Path, opened: Opened
) -> None:
    log = opened(Log.open(tmp_path, compact_config(), fs=fs))
    latest = fill(log, 300, 10)
    before = contents(log)
    end = log.log_end_offset
    active_base = log.active_segment.base_offset
    first_dirty, stats = clean_log(log, None, NOW)
    assert first_dirty == active_base
    after = contents(log)
    assert latest_of(after) == latest_of(before)
    # Below the active segment: one record per key, the last one there.
    last_below = {k: o for o, k, _ in before if o < active_base}
    below = [(o, k) for o, k, _ in after if o < active_base]
    assert sorted(below) == sorted((o, k) for k, o in last_below.items())
    assert stats.records_kept == len(below)
    assert log.log_end_offset == end
    assert not [n for n in fs.listdir(tmp_path) if n.endswith((".cleaned", ".swap"))]
    assert not fs.names_ending(tmp_path, ".deleted")
    # Appends, reads by offset and a reopen after a crash all still work.
    put(log, b"k000", b"after")
    got = log.read(latest[b"k005"], 1 << 20)
    assert got is not None
    log.abandon()
    reopened = opened(Log.open(tmp_path, compact_config(), clean_shutdown=False, fs=fs))
    assert reopened.truncated_bytes == 0
    assert latest_of(contents(reopened))[b"k000"] == b"after"
    # A second pass cleans the rest and merges the small clean segments.
    count = len(reopened.segments)
    put(reopened, b"k001", b"x" * 900)  # rolls: the earlier active segment becomes cleanable
    clean_log(reopened, first_dirty, NOW)
    assert len(reopened.segments) < count
    assert latest_of(contents(reopened))[b"k001"] == b"x" * 900


def test_keyless_records_are_dropped(fs: FileSystem, tmp_path: Path, opened: Opened) -> None:
    log = opened(Log.open(tmp_path, compact_config(), fs=fs))
    put(log, None, b"no key")  # written by a client of an older kpy, or before compact was set
    fill(log, 60, 3)
    clean_log(log, None, NOW)
    assert all(key is not None for _, key, _ in contents(log))


def test_tombstones_stay_while_dirty_and_for_delete_retention(
    fs: FileSystem, tmp_path: Path, opened: Opened
) -> None:
    log = opened(Log.open(tmp_path, compact_config(**{"delete.retention.ms": "60000"}), fs=fs))
    fill(log, 40, 4)
    put(log, b"k001", None)
    fill(log, 40, 1, seed=3)  # k000 only: rolls past the tombstone
    first_dirty, _ = clean_log(log, None, NOW)
    assert (b"k001", None) in [(k, v) for _, k, v in contents(log)]  # dirty: kept
    # Clean again a minute later (some new dirty bytes to clean): still kept, since the
    # segment holding it was cleaned just now.
    fill(log, 40, 1, seed=4)
    first_dirty, _ = clean_log(log, first_dirty, NOW + 1000)
    assert (b"k001", None) in [(k, v) for _, k, v in contents(log)]
    # delete.retention.ms after that cleaning: gone.
    fill(log, 40, 1, seed=5)
    clean_log(log, first_dirty, int(time.time() * 1000) + 61_000)
    records = contents(log)
    assert b"k001" not in latest_of(records)
    assert latest_of(records)[b"k002"] is not None


@pytest.mark.parametrize(
    "codec", [compression.GZIP, compression.SNAPPY, compression.LZ4, compression.ZSTD]
)
def test_compressed_batches_are_recompressed_with_their_codec(
    fs: FileSystem, tmp_path: Path, opened: Opened, codec: int
) -> None:
    log = opened(Log.open(tmp_path, compact_config(**{"internal.segment.bytes": "3000"}), fs=fs))
    for round_ in range(12):
        records = [
            Record(i, NOW + i, b"k%d" % (i % 4), b"r%d-%d" % (round_, i), ()) for i in range(8)
        ]
        log.append(*request(encode_batch(records, base_offset=0, codec=codec)), now_ms=0)
    before = latest_of(contents(log))
    clean_log(log, None, NOW)
    assert latest_of(contents(log)) == before
    for segment in log.segments[:-1]:
        for _, header in segment.iter_batches(0):
            assert header.compression == codec
            assert header.records_count < header.last_offset_delta + 1  # thinned, offsets kept


def test_idempotent_producer_state_survives_cleaning(
    fs: FileSystem, tmp_path: Path, opened: Opened
) -> None:
    log = opened(Log.open(tmp_path, compact_config(), fs=fs))
    pid, epoch = 42, 3
    for seq in range(30):
        batch = build_batch(
            [(b"same", b"value-%02d" % seq)],
            timestamp=NOW,
            producer_id=pid,
            producer_epoch=epoch,
            base_sequence=seq,
        )
        log.append(*request(batch), now_ms=0)
    fill(log, 40, 1)  # another key rolls past the producer's batches and supersedes none
    fill(log, 20, 1, seed=9)
    put(log, b"same", b"newest")  # supersedes every record of the producer
    fill(log, 40, 1, seed=10)
    last_offset = producer_last_offsets(log)[pid]
    clean_log(log, None, NOW)
    # The producer's last batch stays, empty, at its offset; its earlier batches are gone.
    kept = [
        header
        for segment in log.segments
        for _, header in segment.iter_batches(0)
        if header.producer_id == pid
    ]
    assert [(h.last_offset, h.records_count, h.base_sequence, h.producer_epoch) for h in kept] == [
        (last_offset, 0, 29, epoch)
    ]
    # After a crash and a replay from the start (no snapshots), the producer's state is back.
    log.abandon()
    for snapshot in fs.names_ending(tmp_path, ".snapshot"):
        fs.unlink(tmp_path / snapshot)
    reopened = opened(Log.open(tmp_path, compact_config(), clean_shutdown=False, fs=fs))
    entry = reopened.producer_state.last_entry(pid)
    assert entry is not None and entry.producer_epoch == epoch and entry.last_seq == 29
    # So the next batch in sequence is accepted and a repeat of the last one is a duplicate.
    nxt = build_batch([(b"same", b"30")], producer_id=pid, producer_epoch=epoch, base_sequence=30)
    assert not reopened.append(*request(nxt), now_ms=0).duplicate
    assert reopened.append(*request(nxt), now_ms=0).duplicate


# --- 3. Crashes ---


def _halted_clean(log: Log, step: str) -> None:
    """Clean the first group and stop after ``step``, as a crash there would."""
    cleaner = Cleaner(log, cleanable_range(log, None, NOW), NOW, producer_last_offsets(log))
    cleaner.halt_after = step
    cleaner.build_offset_map()
    group = cleaner.groups()[0]
    with pytest.raises(CleanerHalted) as halted:
        cleaner.clean_group(group)
    halted.value.segment.abandon()


@pytest.mark.parametrize("step", [*HALT_STEPS, "index-renamed", "log-renamed"])
def test_crash_after_each_step_leaves_a_valid_log(
    fs: FileSystem, tmp_path: Path, opened: Opened, step: str
) -> None:
    config = compact_config(**{"internal.segment.bytes": "3000"})
    log = opened(Log.open(tmp_path, config, fs=fs))
    fill(log, 200, 8)
    expected = latest_of(contents(log))
    end = log.log_end_offset
    first_base = log.segments[0].base_offset
    _halted_clean(log, "deleted" if step.endswith("renamed") else step)
    stem = f"{first_base:020d}"
    if step == "index-renamed":  # the index files renamed in, the .log not yet
        for suffix in (".index", ".timeindex"):
            fs.rename(tmp_path / (stem + suffix + SWAP_SUFFIX), tmp_path / (stem + suffix))
    if step == "log-renamed":  # the .log renamed in, then the crash (indexes still .swap)
        fs.rename(tmp_path / (stem + ".log" + SWAP_SUFFIX), tmp_path / (stem + ".log"))
    log.abandon()
    reopened = opened(Log.open(tmp_path, config, clean_shutdown=False, fs=fs))
    assert reopened.truncated_bytes == 0
    assert reopened.log_end_offset == end
    assert latest_of(contents(reopened)) == expected
    offsets = [o for o, _, _ in contents(reopened)]
    assert offsets == sorted(set(offsets))  # no segment overlaps another
    left = [n for n in fs.listdir(tmp_path) if n.endswith((CLEANED_SUFFIX, SWAP_SUFFIX))]
    assert left == []
    # The half-done group completes (or is redone) by the next cleaning.
    clean_log(reopened, None, NOW)
    assert latest_of(contents(reopened)) == expected
    for segment in reopened.segments:
        for pos, header in segment.iter_batches(0):
            assert read_header(segment.read_at(pos, header.size)).crc == header.crc
