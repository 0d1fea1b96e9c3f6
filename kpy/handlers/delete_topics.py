"""DeleteTopics (key 20), v1-v6 (v6 names topics by name or by id).

The topic disappears from metadata at once; its partition directories are renamed and removed
off the event loop. Waiting fetches for it end at their deadline with UNKNOWN_TOPIC_OR_PARTITION.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from kio.schema.errors import ErrorCode

from kpy.handlers.registry import handles
from kpy.protocol.messages import make, response_module

if TYPE_CHECKING:
    from kpy.broker import RequestContext

KEY = 20


@handles(KEY, "DeleteTopics", 1, 6)
async def handle(ctx: RequestContext, request: Any) -> Any:
    broker = ctx.broker
    mod = response_module(KEY, ctx.version)
    if ctx.version >= 6:
        wanted = [(t.name, t.topic_id) for t in request.topics]
    else:
        wanted = [(name, None) for name in request.topic_names]
    results = []
    for name, topic_id in wanted:
        if name is None and topic_id is not None:
            info = broker.logs.topic_by_id(topic_id)
            if info is None:
                results.append(_result(mod, None, topic_id, ErrorCode.unknown_topic_id))
                continue
            name = info.name
        info = broker.logs.topic(name) if name else None
        if info is None:
            results.append(_result(mod, name, topic_id, ErrorCode.unknown_topic_or_partition))
            continue
        await broker.delete_topic(info.name)
        results.append(_result(mod, info.name, info.topic_id, ErrorCode.none))
    return make(mod.DeleteTopicsResponse, throttle_time=0, responses=tuple(results))


def _result(mod: Any, name: str | None, topic_id: Any, error: ErrorCode) -> Any:
    return make(
        mod.DeletableTopicResult,
        name=name,
        topic_id=topic_id,
        error_code=error,
        error_message=None,
    )
