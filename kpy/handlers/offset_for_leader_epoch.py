"""OffsetForLeaderEpoch (key 23), v2-v4: where a leader epoch ends (KIP-101, KIP-320).

Consumers ask it to validate their position after a leader change or a seek with an epoch
(KIP-320): the epoch of the last record they consumed, and the leader epoch they believe
current. As Kafka's Partition.lastOffsetForLeaderEpoch, with kpy's epochs (leader_epoch.py):

- current_leader_epoch -1 means "no belief"; an older one is FENCED_LEADER_EPOCH, a newer
  one UNKNOWN_LEADER_EPOCH.
- leader_epoch equal to the current epoch ends at the log end offset; an older one (below any
  epoch the leader knows) answers that epoch with the log start offset; -1 or a newer epoch is
  unknown, answered with no error and epoch and end offset -1.
- A partition kpy does not have is UNKNOWN_TOPIC_OR_PARTITION.

replica_id (v3+) names a follower or -1 for a consumer; Kafka answers both from the leader's
cache alike, and so does kpy, the leader of everything.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from kio.schema.errors import ErrorCode

from kpy.handlers.registry import error_response, handles
from kpy.leader_epoch import UNDEFINED_EPOCH, UNDEFINED_EPOCH_OFFSET, check_current, end_offset_for
from kpy.protocol.messages import make, response_module

if TYPE_CHECKING:
    from kpy.broker import RequestContext

KEY = 23
NO_EPOCH = -1  # current_leader_epoch when the client has no view of the leader's epoch

Answer = tuple[ErrorCode, int, int]  # error, leader epoch, end offset


@handles(KEY)
async def handle(ctx: RequestContext, request: Any) -> Any:
    def answer(topic: str, p: Any) -> Answer:
        log = ctx.broker.logs.get_log(topic, p.partition)
        if log is None:
            return ErrorCode.unknown_topic_or_partition, UNDEFINED_EPOCH, UNDEFINED_EPOCH_OFFSET
        current = None if p.current_leader_epoch == NO_EPOCH else p.current_leader_epoch
        error = check_current(current)
        if error is not ErrorCode.none:
            return error, UNDEFINED_EPOCH, UNDEFINED_EPOCH_OFFSET
        epoch, end = end_offset_for(p.leader_epoch, log.log_start_offset, log.log_end_offset)
        return ErrorCode.none, epoch, end

    return _response(ctx, request, answer)


@error_response(KEY)
def _error_response(ctx: RequestContext, request: Any, error: ErrorCode) -> Any:
    return _response(
        ctx, request, lambda topic, p: (error, UNDEFINED_EPOCH, UNDEFINED_EPOCH_OFFSET)
    )


def _response(ctx: RequestContext, request: Any, answer: Callable[[str, Any], Answer]) -> Any:
    mod = response_module(KEY, ctx.version)
    topics = []
    for topic in request.topics:
        partitions = []
        for p in topic.partitions:
            error, epoch, end = answer(topic.topic, p)
            partitions.append(
                make(
                    mod.EpochEndOffset,
                    error_code=error,
                    partition=p.partition,
                    leader_epoch=epoch,
                    end_offset=end,
                )
            )
        topics.append(
            make(mod.OffsetForLeaderTopicResult, topic=topic.topic, partitions=tuple(partitions))
        )
    return make(mod.OffsetForLeaderEpochResponse, throttle_time=0, topics=tuple(topics))
