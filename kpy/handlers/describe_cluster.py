"""DescribeCluster (key 60), v0-v2: the cluster id, the controller and the brokers.

As Kafka's broker answers it (KafkaApis.handleDescribeCluster, AuthHelper.
computeDescribeClusterResponse): the one broker, with the advertised endpoint of the listener
the request came in on; the cluster id from meta.properties; the controller id is the broker's
own node id (kpy is its own controller). The request must ask for broker endpoints (type 1):
controller endpoints (2) are MISMATCHED_ENDPOINT_TYPE and any other type
UNSUPPORTED_ENDPOINT_TYPE, both INVALID_REQUEST at v0, which cannot name a type. The request itself
needs no permission; cluster authorized operations, when asked, are what the authorizer grants
(kpy.acl), 0 without DESCRIBE on the cluster, and every cluster operation without an authorizer, as
Kafka's AuthHelper.computeDescribeClusterResponse answers. The broker is never fenced, so
include_fenced_brokers (v2) changes nothing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from kio.schema.errors import ErrorCode

from kpy import authorized
from kpy.acl import CLUSTER_NAME, AclOperation, ResourceType
from kpy.handlers.registry import error_response, handles
from kpy.protocol.messages import make, response_module

if TYPE_CHECKING:
    from kpy.broker import RequestContext

KEY = 60
BROKER_ENDPOINTS, CONTROLLER_ENDPOINTS = 1, 2
ENDPOINT_TYPE_NAMES = {BROKER_ENDPOINTS: "BROKER", CONTROLLER_ENDPOINTS: "CONTROLLER"}


@handles(KEY)
async def handle(ctx: RequestContext, request: Any) -> Any:
    broker = ctx.broker
    wanted = getattr(request, "endpoint_type", BROKER_ENDPOINTS)
    if wanted != BROKER_ENDPOINTS:
        if wanted == CONTROLLER_ENDPOINTS:
            error = ErrorCode.mismatched_endpoint_type
            message = (
                "The request was sent to an endpoint of type BROKER, but we wanted an endpoint "
                f"of type {ENDPOINT_TYPE_NAMES[wanted]}"
            )
        else:
            error = ErrorCode.unsupported_endpoint_type
            message = f"Unsupported endpoint type {wanted}"
        return _error(ctx, ErrorCode.invalid_request if ctx.version == 0 else error, message)

    mod = response_module(KEY, ctx.version)
    lst = broker.advertised_listener(ctx)
    node = make(
        mod.DescribeClusterBroker,
        broker_id=broker.node_id,
        host=lst.host,
        port=lst.port,
        rack=None,
        is_fenced=False,
    )
    operations = authorized.NOT_REQUESTED
    if request.include_cluster_authorized_operations:
        auth = broker.authorizer
        operations = 0
        if auth.authorize_cluster(ctx, AclOperation.DESCRIBE):
            operations = auth.authorized_operations(ctx, ResourceType.CLUSTER, CLUSTER_NAME)
    return make(
        mod.DescribeClusterResponse,
        throttle_time=0,
        error_code=ErrorCode.none,
        error_message=None,
        endpoint_type=BROKER_ENDPOINTS,
        cluster_id=broker.cluster_id,
        controller_id=broker.node_id,
        brokers=(node,),
        cluster_authorized_operations=operations,
    )


@error_response(KEY)
def _error_response(ctx: RequestContext, request: Any, error: ErrorCode) -> Any:
    return _error(ctx, error, None)


def _error(ctx: RequestContext, error: ErrorCode, message: str | None) -> Any:
    """Kafka's error answer: the schema defaults around the error (an empty cluster id)."""
    mod = response_module(KEY, ctx.version)
    return make(
        mod.DescribeClusterResponse,
        throttle_time=0,
        error_code=error,
        error_message=message,
        endpoint_type=BROKER_ENDPOINTS,
        cluster_id="",
        controller_id=-1,
        brokers=(),
        cluster_authorized_operations=authorized.NOT_REQUESTED,
    )
