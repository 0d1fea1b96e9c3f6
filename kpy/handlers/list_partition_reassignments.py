"""ListPartitionReassignments (key 46), v0: the partition reassignments in progress.

A single broker never moves a replica, so none is ever in progress. As Kafka's controller
(ReplicationControlManager.listPartitionReassignments) answers, a null topic list asks for
every reassignment, and topics or partitions that do not exist are left out without an error:
the answer is always an empty list with no error. DESCRIBE on the cluster is needed (kpy.acl):
CLUSTER_AUTHORIZATION_FAILED.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from kio.schema.errors import ErrorCode

from kpy.acl import AclOperation
from kpy.handlers.registry import error_response, handles
from kpy.protocol.messages import make, response_module

if TYPE_CHECKING:
    from kpy.broker import RequestContext

KEY = 46


@handles(KEY)
async def handle(ctx: RequestContext, request: Any) -> Any:
    if not ctx.broker.authorizer.authorize_cluster(ctx, AclOperation.DESCRIBE):
        return _error_response(ctx, request, ErrorCode.cluster_authorization_failed)
    return _response(ctx, ErrorCode.none)


@error_response(KEY)
def _error_response(ctx: RequestContext, request: Any, error: ErrorCode) -> Any:
    return _response(ctx, error)


def _response(ctx: RequestContext, error: ErrorCode) -> Any:
    mod = response_module(KEY, ctx.version)
    return make(
        mod.ListPartitionReassignmentsResponse,
        throttle_time=0,
        error_code=error,
        error_message=None,
        topics=(),
    )
