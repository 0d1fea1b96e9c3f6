"""The log cleaner: compaction of logs whose cleanup.policy contains ``compact``.

Kafka's LogCleaner, Cleaner, LogCleanerManager and OffsetMap, for one broker:

- A log splits into a clean head (below the *first dirty offset*, kept in the data directory's
  ``cleaner-offset-checkpoint``), a dirty section, and an uncleanable tail: the active segment
  (never cleaned) and every segment from the first one holding a record newer than
  min.compaction.lag.ms. ``cleanable_range`` computes these; a log needs cleaning when its dirty
  ratio (dirty bytes over clean plus dirty bytes) reaches min.cleanable.dirty.ratio, or when the
  first dirty segment's first batch is older than max.compaction.lag.ms (``needs_cleaning``).
- ``OffsetMap`` maps each key of the dirty section to the highest offset holding it. Kafka's is
  a fixed-size hash table (log.cleaner.dedupe.buffer.size) that may cover only part of the
  dirty section; kpy's is a dict over the whole of it (memory: one entry per distinct key).
- Every segment from the log start to the end of the dirty section is then rewritten, in groups
  of consecutive segments that fit in one segment (segment.bytes, offsets within 2**31 of the
  first base offset; a group never mixes clean and dirty segments), keeping a record if its key
  maps to its own offset or to none above it. Keyless records go (Kafka counts them invalid).
  Tombstones (null values) stay while their segment is dirty and, once cleaned, for
  delete.retention.ms after the cleaned segment's modification time (which cleaning sets to
  the time a dirty segment was first cleaned, and keeps when already clean segments are
  merged); this is Kafka's older segment-time rule. Kafka 3.1+ writes a delete horizon into the
  batch header instead (attribute bit 6), which kpy does not: it would need every record's
  timestamp delta rewritten.
- Batches keep their base offset, last offset delta, base timestamp, attributes, producer id,
  epoch and base sequence: offsets stay (gaps appear), a compressed batch is recompressed with
  its codec, a batch whose records all stay is copied byte for byte. A batch whose records all
  go is dropped, unless it is the last batch of a producer the producer state knows: then an
  empty batch (header only) keeps that producer's epoch and sequence, as Kafka does.
- Transactions, as Kafka's cleaner: the dirty section ends at the log's first unstable offset
  (nothing of an open transaction, nor anything after it, is cleaned); the records of aborted
  transactions (found through the transaction indexes: a transactional batch of producer P at
  offset B is aborted when an aborted transaction of P spans B) are neither put in the offset
  map nor kept, so a key's latest committed value survives an aborted later one. Control
  batches (markers) are all kept, with their transaction index entries, which the rewritten
  segment carries over; Kafka drops a marker once no data of its transaction is left and the
  delete horizon passed, kpy never does (a marker costs one small batch).

Crash safety: a group's replacement is written as ``<base>.{log,index,timeindex}.cleaned`` and
fsynced, renamed to ``.swap`` (indexes first), the old segments renamed to ``.deleted``, the
swap files renamed to the plain names (indexes first); the directory is fsynced after each
step. Log.open completes or undoes whatever a crash interrupted (Log._finish_swaps), so every
state on disk is a valid log holding each key's latest value.

Threads: ``Cleaner.clean`` does the reading, rewriting and renaming on a worker thread while the
log keeps taking appends (only to its active segment, which is never cleaned) and serving reads
(through the descriptors of the segments it holds). The event loop sets ``Log.cleaning`` before
(so that retention and DeleteRecords delete no segment meanwhile), swaps each group in with
``Log.replace_segments`` after, and unlinks the ``.deleted`` files on a worker thread later.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from kpy.protocol.records import (
    BatchHeader,
    RawRecord,
    rebuild_batch,
    split_records,
)
from kpy.storage.config import LogConfig
from kpy.storage.log import Log
from kpy.storage.segment import CLEANED_SUFFIX, SWAP_SUFFIX, LogSegment

MAX_OFFSET_SPAN = 2**31 - 1  # offsets a segment holds relative to its base (int32 deltas)

__all__ = [
    "CleanableRange",
    "CleanedGroup",
    "Cleaner",
    "CleanerHalted",
    "OffsetMap",
    "clean_log",
    "cleanable_range",
    "needs_cleaning",
]


class CleanerHalted(Exception):
    """Raised by ``Cleaner.clean_group`` at its ``halt_after`` step: tests stop there, drop the
    log as a crash would and reopen it. ``segment`` is the replacement, still open."""

    def __init__(self, step: str, segment: LogSegment) -> None:
        super().__init__(step)
        self.segment = segment


HALT_STEPS = ("cleaned", "swap", "deleted")


class OffsetMap:
    """Key -> highest offset holding it, over the dirty section (Kafka's OffsetMap)."""

    def __init__(self) -> None:
        self._offsets: dict[bytes, int] = {}
        self.latest_offset = -1  # the last offset put (Kafka's latestOffset)

    def put(self, key: bytes, offset: int) -> None:
        self._offsets[key] = offset
        self.latest_offset = max(self.latest_offset, offset)

    def get(self, key: bytes) -> int:
        """The offset mapped to ``key``; -1 when none is."""
        return self._offsets.get(key, -1)

    def __len__(self) -> int:
        return len(self._offsets)


@dataclass(frozen=True, slots=True)
class CleanableRange:
    """Where a log's dirty section lies (Kafka's LogToClean and cleanableOffsets)."""

    first_dirty: int
    first_uncleanable: int
    clean_bytes: int
    dirty_bytes: int
    # The first dirty segment's first batch's timestamp (-1 when unknown or no dirty segment).
    first_dirty_timestamp: int = -1

    @property
    def dirty_ratio(self) -> float:
        total = self.clean_bytes + self.dirty_bytes
        return self.dirty_bytes / total if total else 0.0


def _following_bases(log: Log) -> Iterator[tuple[LogSegment, int]]:
    segments = log.segments
    for i, segment in enumerate(segments):
        upper = segments[i + 1].base_offset if i + 1 < len(segments) else log.log_end_offset
        yield segment, upper


def cleanable_range(log: Log, checkpoint: int | None, now_ms: int) -> CleanableRange:
    """The clean and dirty sections of ``log`` given its checkpointed first dirty offset
    (None: none checkpointed). A checkpoint below the log start or past the log end is reset to
    the log start, as Kafka's cleanableOffsets does."""
    start = log.log_start_offset
    first_dirty = checkpoint if checkpoint is not None else start
    if first_dirty < start or first_dirty > log.log_end_offset:
        first_dirty = start
    min_lag = int(log.config.other.get("min.compaction.lag.ms", "0"))
    segments = log.segments
    uncleanable = segments[-1].base_offset  # the active segment
    clean_bytes = dirty_bytes = 0
    first_dirty_ts = -1
    for segment, upper in _following_bases(log):
        if segment is segments[-1]:
            break
        if upper <= first_dirty:
            clean_bytes += segment.size
            continue
        if min_lag > 0 and segment.largest_timestamp() > now_ms - min_lag:
            uncleanable = segment.base_offset
            break
        if first_dirty_ts < 0 and segment.size:
            found = segment.find_batch(segment.base_offset)
            first_dirty_ts = found[1].max_timestamp if found is not None else -1
        dirty_bytes += segment.size
    unstable = log.producer_state.first_unstable_offset()
    if unstable is not None:
        uncleanable = min(uncleanable, unstable)
    if uncleanable < first_dirty:
        uncleanable = first_dirty
    return CleanableRange(first_dirty, uncleanable, clean_bytes, dirty_bytes, first_dirty_ts)


def needs_cleaning(config: LogConfig, cleanable: CleanableRange, now_ms: int) -> bool:
    """Kafka's LogCleanerManager.grabFilthiestCompactedLog test: some dirty bytes, and the
    dirty ratio at min.cleanable.dirty.ratio or the compaction lag past max.compaction.lag.ms."""
    if cleanable.dirty_bytes == 0:
        return False
    ratio = float(config.other.get("min.cleanable.dirty.ratio", "0.5"))
    max_lag = int(config.other.get("max.compaction.lag.ms", str(2**63 - 1)))
    overdue = 0 <= cleanable.first_dirty_timestamp < now_ms - max_lag
    return cleanable.dirty_ratio >= ratio or overdue


def is_compacted(config: LogConfig) -> bool:
    return "compact" in config.cleanup_policy.split(",")


@dataclass(slots=True)
class CleanedGroup:
    """One group's replacement, swapped in on disk by ``Cleaner.clean_group``; the event loop
    puts ``new`` in the log's place of ``old`` (Log.replace_segments)."""

    old: tuple[LogSegment, ...]
    new: LogSegment


@dataclass(slots=True)
class CleanerStats:
    records_read: int = 0
    records_kept: int = 0
    bytes_read: int = 0
    bytes_written: int = 0
    groups: int = 0


@dataclass
class Cleaner:
    """One cleaning of one log (Kafka's Cleaner.doClean), in steps the caller drives:
    ``build_offset_map`` and ``groups`` (worker thread), then per group ``clean_group``
    (worker thread) and Log.replace_segments (event loop)."""

    log: Log
    cleanable: CleanableRange
    now_ms: int
    # Last offset of each producer's last batch, taken on the event loop before starting.
    producer_last_offsets: dict[int, int] = field(default_factory=dict)
    stats: CleanerStats = field(default_factory=CleanerStats)
    offset_map: OffsetMap = field(default_factory=OffsetMap)
    # For crash tests: stop ``clean_group`` after this step (one of HALT_STEPS).
    halt_after: str | None = None

    # Aborted transactions of the section cleaned: producer id -> (first offset, marker
    # offset) spans; filled by ``build_offset_map``.
    aborted: dict[int, list[tuple[int, int]]] = field(default_factory=dict)

    def _is_aborted(self, header: BatchHeader) -> bool:
        """Whether a data batch belongs to an aborted transaction."""
        if not header.is_transactional:
            return False
        spans = self.aborted.get(header.producer_id)
        return spans is not None and any(
            first <= header.base_offset <= last for first, last in spans
        )

    def _step_done(self, step: str, new: LogSegment) -> None:
        if self.halt_after == step:
            raise CleanerHalted(step, new)

    def build_offset_map(self) -> None:
        """Map every key of the dirty section to its highest offset."""
        with self.log.reading():
            self._build_offset_map()

    def _build_offset_map(self) -> None:
        lo, hi = self.cleanable.first_dirty, self.cleanable.first_uncleanable
        for txn in self.log.aborted_transactions(self.log.log_start_offset, hi):
            self.aborted.setdefault(txn.producer_id, []).append((txn.first_offset, txn.last_offset))
        for segment, upper in _following_bases(self.log):
            if upper <= lo:
                continue
            if segment.base_offset >= hi:
                break
            for _, header, records in self._batches(segment):
                if header.is_control or self._is_aborted(header):
                    continue
                for record in records:
                    if lo <= record.offset < hi and record.key is not None:
                        self.offset_map.put(record.key, record.offset)

    def groups(self) -> list[tuple[LogSegment, ...]]:
        """The segments to rewrite (log start to the end of the dirty section) in groups that
        fit one segment (Kafka's groupSegmentsBySize); clean and dirty segments apart."""
        config = self.log.config
        groups: list[list[LogSegment]] = []
        current: list[LogSegment] = []
        size = 0
        dirty_side = False
        for segment, upper in _following_bases(self.log):
            if upper > self.cleanable.first_uncleanable or segment is self.log.active_segment:
                break
            dirty = upper > self.cleanable.first_dirty
            fits = (
                current
                and dirty == dirty_side
                and size + segment.size <= config.segment_bytes
                and upper - 1 - current[0].base_offset <= MAX_OFFSET_SPAN
            )
            if not fits:
                current = []
                groups.append(current)
                size = 0
                dirty_side = dirty
            current.append(segment)
            size += segment.size
        return [tuple(g) for g in groups if g]

    def clean_group(self, group: Sequence[LogSegment]) -> CleanedGroup:
        """Rewrite ``group`` into one segment and swap it in on disk (see the module docstring
        for the steps). Worker thread. If writing fails the ``.cleaned`` files are removed and
        the error raised; a failure after that leaves what Log.open completes. Raises LogClosed
        if the log was closed or deleted meanwhile."""
        with self.log.reading():
            return self._clean_group(group)

    def _clean_group(self, group: Sequence[LogSegment]) -> CleanedGroup:
        directory = self.log.dir
        fs = self.log.fs
        config = self.log.config
        base = group[0].base_offset
        dirty = any(
            upper > self.cleanable.first_dirty
            for segment, upper in _following_bases(self.log)
            if segment in group
        )
        retention_ms = int(config.other.get("delete.retention.ms", "86400000"))
        new = LogSegment(
            directory,
            base,
            index_interval_bytes=config.index_interval_bytes,
            max_index_size=config.segment_index_bytes,
            now_ms=self.now_ms,
            suffix=CLEANED_SUFFIX,
            fs=fs,
        )
        try:
            mtime_ms = self.now_ms if dirty else 0
            for segment in group:
                segment_mtime = segment.modified_ms()
                if not dirty:
                    mtime_ms = max(mtime_ms, segment_mtime)
                drop_tombstones = not dirty and segment_mtime <= self.now_ms - retention_ms
                self._rewrite(segment, new, drop_tombstones)
            new.finish()
            fs.utime(new.log_path, mtime_ms * 1_000_000)
            self._step_done("cleaned", new)
            new.rename_suffix(SWAP_SUFFIX)
            fs.fsync_dir(directory)
        except CleanerHalted:
            raise
        except BaseException:
            new.delete()
            raise
        self._step_done("swap", new)
        for segment in reversed(group):
            segment.mark_deleted()
        fs.fsync_dir(directory)
        self._step_done("deleted", new)
        new.rename_suffix("")
        fs.fsync_dir(directory)
        new.park_indexes()
        self.stats.groups += 1
        return CleanedGroup(tuple(group), new)

    def _rewrite(self, segment: LogSegment, new: LogSegment, drop_tombstones: bool) -> None:
        out = bytearray()
        for pos, header, records in self._batches(segment):
            self.stats.bytes_read += header.size
            if header.is_control:
                out += segment.read_at(pos, header.size)
                continue
            aborted = self._is_aborted(header)
            kept = [] if aborted else [r for r in records if self._keep(r, drop_tombstones)]
            self.stats.records_read += len(records)
            self.stats.records_kept += len(kept)
            if len(kept) == len(records) and records:
                out += segment.read_at(pos, header.size)
            elif kept:
                out += rebuild_batch(header, kept)
            elif (
                header.has_producer_id
                and self.producer_last_offsets.get(header.producer_id) == header.last_offset
            ):
                out += rebuild_batch(header, [])
            if len(out) >= 1 << 20:
                self.stats.bytes_written += len(out)
                new.append(out)
                out = bytearray()
        if out:
            self.stats.bytes_written += len(out)
            new.append(out)
        for txn in segment.txn_index.entries:  # every marker was kept: so are its entries
            new.txn_index.append(txn)

    def _keep(self, record: RawRecord, drop_tombstones: bool) -> bool:
        """Kafka's shouldRetainRecord."""
        if record.key is None:
            return False
        if self.offset_map.get(record.key) > record.offset:
            return False
        return not (record.is_tombstone and drop_tombstones)

    @staticmethod
    def _batches(segment: LogSegment) -> Iterator[tuple[int, BatchHeader, list[RawRecord]]]:
        """Each batch of ``segment``: its position, header and records (none for control)."""
        for pos, header in segment.iter_batches(0):
            records = [] if header.is_control else split_records(segment.read_at(pos, header.size))
            yield pos, header, records


def producer_last_offsets(log: Log) -> dict[int, int]:
    """Last offset of each known producer's last batch (event loop: the map changes on
    append)."""
    return {pid: e.last_data_offset for pid, e in log.producer_state.producers.items()}


def clean_log(log: Log, checkpoint: int | None, now_ms: int) -> tuple[int, CleanerStats]:
    """Clean ``log`` at once, every step on the calling thread (tests and tools; the broker
    runs the steps on their threads itself). Returns the new first dirty offset (for the
    checkpoint) and the statistics; the replaced segments' files are unlinked."""
    from kpy.storage.log import SegmentDeletion

    cleanable = cleanable_range(log, checkpoint, now_ms)
    cleaner = Cleaner(log, cleanable, now_ms, producer_last_offsets(log))
    log.cleaning = True
    try:
        cleaner.build_offset_map()
        for group in cleaner.groups():
            done = cleaner.clean_group(group)
            log.replace_segments(done.old, done.new)
            SegmentDeletion(log.fs, log.dir, done.old).delete_files()
    finally:
        log.cleaning = False
    return cleanable.first_uncleanable, cleaner.stats
