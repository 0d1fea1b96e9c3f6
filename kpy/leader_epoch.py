"""Leader epochs on a single broker, with the answers Kafka's leader gives about them.

kpy's one broker leads every partition from the moment the partition exists, at LEADER_EPOCH,
which never changes: Metadata, DescribeTopicPartitions and ListOffsets report it, Produce and
the offsets coordinator stamp it into every batch they append. Kafka's leader records the epoch
it starts leading at in its LeaderEpochFileCache with the log end offset at that time (and
moves the entry up to the log start offset when the log is trimmed from the front), so kpy's
epoch cache is always the single entry (LEADER_EPOCH, log start offset).

``check_current`` is Partition.checkCurrentLeaderEpoch (a client's view of the epoch against the
leader's); ``end_offset_for`` is LeaderEpochFileCache.endOffsetFor over that one entry, as
OffsetForLeaderEpoch and Fetch's last_fetched_epoch check use it.
"""

from __future__ import annotations

from kio.schema.errors import ErrorCode

LEADER_EPOCH = 0
UNDEFINED_EPOCH = -1
UNDEFINED_EPOCH_OFFSET = -1


def check_current(current: int | None) -> ErrorCode:
    """The error for a request that believes the leader epoch is ``current`` (None: no belief).

    An older epoch is FENCED_LEADER_EPOCH (the client is behind), a newer one
    UNKNOWN_LEADER_EPOCH (the broker would be behind, were there another leader).
    """
    if current is None or current == LEADER_EPOCH:
        return ErrorCode.none
    if current < LEADER_EPOCH:
        return ErrorCode.fenced_leader_epoch
    return ErrorCode.unknown_leader_epoch


def end_offset_for(requested: int, log_start_offset: int, log_end_offset: int) -> tuple[int, int]:
    """(epoch, end offset) for ``requested``, as LeaderEpochFileCache.endOffsetFor answers.

    The current epoch ends at the log end offset (it is still being written to). An older epoch
    than any the cache knows gets the start offset of the first known epoch, under the requested
    epoch; an undefined (-1) or newer epoch is unknown: (-1, -1).
    """
    if requested == UNDEFINED_EPOCH:
        return UNDEFINED_EPOCH, UNDEFINED_EPOCH_OFFSET
    if requested == LEADER_EPOCH:
        return LEADER_EPOCH, log_end_offset
    if requested > LEADER_EPOCH:
        return UNDEFINED_EPOCH, UNDEFINED_EPOCH_OFFSET
    return requested, log_start_offset
