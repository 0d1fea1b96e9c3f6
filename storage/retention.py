"""Retention: which of a log's oldest segments go, by Kafka's rules (UnifiedLog.deleteOldSegments).

Each rule is a predicate over a segment and the one after it (None for the active segment).
``Log.deletable_segments`` applies a predicate to the oldest segments in order and stops at the
first it refuses, so a kept segment keeps every later one; ``Log.delete_old_segments`` applies
the three rules in Kafka's order, each to what the previous one left:

1. Log start offset breach (any cleanup.policy): a segment whose successor starts at or below
   the log start holds nothing readable any more (DeleteRecords moved the start past it). The
   active segment has no successor, so this rule never takes it.
2. Size (cleanup.policy contains delete, retention.bytes >= 0): when the log (every segment on
   disk) is larger than retention.bytes, the oldest segments go for as long as the log stays at
   or above retention.bytes without each one. The log therefore stays up to one segment above
   the limit; retention.bytes=0 takes every non-empty segment.
3. Time (cleanup.policy contains delete, retention.ms >= 0): a segment goes when its largest
   timestamp (LogSegment.largest_timestamp: the largest record timestamp, or the file's
   modification time if no record has one) is more than retention.ms before now. Timestamps
   are CreateTime (as the producer wrote them) unless the topic uses LogAppendTime.

Rules 2 and 3 apply to the active segment too, as in Kafka: when every segment is to go, the
log first rolls to a new empty active segment at the log end offset (Log.delete_segments), so
an idle partition does not keep an old active segment past its retention, with no need for
segment.ms to roll it. An empty active segment is never deleted.
"""

from __future__ import annotations

from collections.abc import Callable

from kpy.storage.segment import LogSegment

# Decides whether a segment (given the one after it, None for the last) may be deleted.
SegmentPredicate = Callable[[LogSegment, LogSegment | None], bool]


def start_offset_breached(log_start_offset: int) -> SegmentPredicate:
    """Rule 1: the next segment starts at or below the log start."""

    def breached(_: LogSegment, following: LogSegment | None) -> bool:
        return following is not None and following.base_offset <= log_start_offset

    return breached


def size_breached(log_size: int, retention_bytes: int) -> SegmentPredicate | None:
    """Rule 2 for a log of ``log_size`` bytes, or None when it does not apply. Stateful: call
    it on the oldest segments in order (as ``deletable_segments`` does), once each."""
    if retention_bytes < 0 or log_size < retention_bytes:
        return None
    excess = log_size - retention_bytes

    def breached(segment: LogSegment, _: LogSegment | None) -> bool:
        nonlocal excess
        if excess - segment.size < 0:
            return False
        excess -= segment.size
        return True

    return breached


def time_breached(now_ms: int, retention_ms: int) -> SegmentPredicate | None:
    """Rule 3 at ``now_ms``, or None when it does not apply (retention.ms -1)."""
    if retention_ms < 0:
        return None

    def breached(segment: LogSegment, _: LogSegment | None) -> bool:
        return now_ms - segment.largest_timestamp() > retention_ms

    return breached
