"""InitProducerId (key 22), v0-v5: producer ids for idempotent and transactional producers.

Without a transactional id Kafka hands out a fresh producer id with epoch 0 on every call, even
when the request names an existing id and epoch (KIP-360 bumps only apply to transactional ids);
kpy does the same. Ids are never reused, across restarts too (ProducerIdManager).

With a transactional id the transaction coordinator answers (kpy.coordinator.transaction): the
id's producer id with its epoch bumped, fencing older producers; an open transaction is aborted
first and the answer is CONCURRENT_TRANSACTIONS, which the client retries. Checks in Kafka's
order: a producer id without an epoch (or the reverse) or an empty transactional id is
INVALID_REQUEST, a timeout outside (0, transaction.max.timeout.ms] INVALID_TRANSACTION_TIMEOUT.
The first request for a transactional id creates ``__transaction_state`` if FindCoordinator did
not. PRODUCER_FENCED exists from v4; older versions get INVALID_PRODUCER_EPOCH.

Authorization (kpy.acl), before those checks, as KafkaApis: a transactional id needs WRITE on
it (TRANSACTIONAL_ID_AUTHORIZATION_FAILED); an idempotent producer needs IDEMPOTENT_WRITE on the
cluster or WRITE on some topic (Authorizer.authorizeByResourceType), else
CLUSTER_AUTHORIZATION_FAILED.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import anyio
from kio.schema.errors import ErrorCode

from kpy.acl import AclOperation, ResourceType
from kpy.coordinator.transaction import fenced_error
from kpy.handlers.registry import error_response, handles
from kpy.protocol.messages import make, response_module

if TYPE_CHECKING:
    from kpy.broker import RequestContext

KEY = 22


@handles(KEY)
async def handle(ctx: RequestContext, request: Any) -> Any:
    mod = response_module(KEY, ctx.version)
    pid, epoch = getattr(request, "producer_id", -1), getattr(request, "producer_epoch", -1)
    denied = _denied(ctx, request.transactional_id)
    if denied is not None:
        return _response(mod, denied)
    if (pid == -1) != (epoch == -1) or request.transactional_id == "":
        return _response(mod, ErrorCode.invalid_request)
    broker = ctx.broker
    txn_id = request.transactional_id
    if txn_id is None:
        async with broker.admin_lock:
            producer_id = await anyio.to_thread.run_sync(broker.producer_ids.generate)
        return _response(mod, ErrorCode.none, producer_id, 0)
    coordinator = broker.transactions
    timeout_ms = round(request.transaction_timeout.total_seconds() * 1000)
    if not coordinator.valid_timeout(timeout_ms):
        return _response(mod, ErrorCode.invalid_transaction_timeout)
    if not await broker.ensure_transaction_topic():
        return _response(mod, ErrorCode.coordinator_not_available)
    new_producer_id = None
    if coordinator.needs_producer_id(txn_id):
        async with broker.admin_lock:
            new_producer_id = await anyio.to_thread.run_sync(broker.producer_ids.generate)
    result = coordinator.init_producer_id(
        txn_id,
        timeout_ms,
        None if pid == -1 else (pid, epoch),
        new_producer_id,
        int(time.time() * 1000),
    )
    error = fenced_error(result.error, ctx.version, 4)
    return _response(mod, error, result.producer_id, result.producer_epoch)


def _denied(ctx: RequestContext, transactional_id: str | None) -> ErrorCode | None:
    auth = ctx.broker.authorizer
    if not auth.enabled:
        return None
    if transactional_id is not None:
        if auth.authorize(ctx, AclOperation.WRITE, ResourceType.TRANSACTIONAL_ID, transactional_id):
            return None
        return ErrorCode.transactional_id_authorization_failed
    if auth.authorize_cluster(
        ctx, AclOperation.IDEMPOTENT_WRITE, log_denied=False
    ) or auth.authorize_by_resource_type(ctx, AclOperation.WRITE, ResourceType.TOPIC):
        return None
    return ErrorCode.cluster_authorization_failed


@error_response(KEY)
def _error_response(ctx: RequestContext, request: Any, error: ErrorCode) -> Any:
    return _response(response_module(KEY, ctx.version), error)


def _response(mod: Any, error: ErrorCode, producer_id: int = -1, epoch: int = -1) -> Any:
    return make(
        mod.InitProducerIdResponse,
        throttle_time=0,
        error_code=error,
        producer_id=producer_id,
        producer_epoch=epoch,
    )
