"""Produce (key 0), v0-v11.

v0-v2 carry message sets of format v0/v1 (kpy.protocol.legacy_records): they are converted to
one v2 batch before the append, as Kafka does when the log's format is v2
(LogValidator.convertAndAssignOffsetsNonCompressed and validateMessagesAndAssignOffsetsCompressed):
every CRC checked, compressed wrappers opened, offsets assigned by the log, v0 timestamps -1, the
wrapper's codec kept unless the topic's compression.type names another. Kafka does not check
the magic of v0-v2 requests, so a v2 batch in one takes the v3+ path.

v3+ batches stay bytes: the handler checks what Kafka checks before appending (exactly one v2
batch per partition, max.message.bytes, CRC-32C, header coherence), stamps the leader epoch, and
the log patches offsets and appends. Uncompressed records are not decoded. A compressed batch is
decompressed and its records walked, as Kafka's LogValidator does: a payload that does not
decode, or expands past kpy's bound (kpy.protocol.compression), is CORRUPT_MESSAGE; records that
do not match the header are INVALID_RECORD (where Kafka rewrites a batch whose offset deltas
are not 0, 1, 2..., kpy refuses it); a max timestamp that differs from the records' is
corrected, as Kafka sets it. Big payloads are decompressed on a worker thread.

A compacted topic (cleanup.policy with compact) refuses records without a key with
INVALID_RECORD, as Kafka's LogValidator.validateKey does: only its batches are decoded for that.

Authorization (kpy.acl), as KafkaApis: a request with transactional batches needs a
transactional id and WRITE on it (TRANSACTIONAL_ID_AUTHORIZATION_FAILED for the whole request
otherwise), and each topic needs WRITE (TOPIC_AUTHORIZATION_FAILED on its partitions, before
whether they exist is looked at). Idempotent producers need nothing more here: InitProducerId
checks IDEMPOTENT_WRITE.

Transactional batches (kpy.coordinator.transaction): the partition must be in the producer's
transaction unless the producer already has one open there at this epoch (KIP-890 part 1:
INVALID_TXN_STATE, from v11 TRANSACTION_ABORTABLE; a fenced producer gets
INVALID_PRODUCER_EPOCH; a coordinator that cannot tell yet, NOT_ENOUGH_REPLICAS, which every
producer retries). Control batches from clients are
INVALID_RECORD.

zstd needs v7 (UNSUPPORTED_COMPRESSION_TYPE below). acks 0, 1 and -1 are accepted; on one node
acks=-1 waits for nothing more than acks=1 (the flush policy decides durability). With acks=0
no response is sent, and an error closes the connection, as Kafka does, so the client learns of
it.

Durability: once a log holds flush.messages unflushed offsets, the response waits for an fsync,
as Kafka flushes inside the append; with kpy's own ``kpy.flush.before.ack=true`` every acks 1/-1
produce waits for one. Both go through the broker's GroupCommit (one fsync per log at a time,
answering every produce appended before it started, on a worker thread). A failed fsync answers
KAFKA_STORAGE_ERROR, and so does a failed write (a full disk: the write is undone and the
partition takes writes again once there is room).
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import anyio
from kio.schema.errors import ErrorCode

from kpy.acl import AclOperation, ResourceType
from kpy.handlers.registry import CloseConnection, error_response, handles
from kpy.protocol import compression
from kpy.protocol import legacy_records as lr
from kpy.protocol import records as rb
from kpy.protocol.compression import ZSTD
from kpy.protocol.hot_responses import ProducePartition, encode_produce
from kpy.protocol.messages import EncodedBody
from kpy.storage import errors as se
from kpy.storage.log import Log
from kpy.topics import is_internal

if TYPE_CHECKING:
    from kpy.broker import RequestContext

KEY = 0
logger = logging.getLogger(__name__)
# Payloads above this many (compressed) bytes are decompressed on a worker thread.
INLINE_DECODE_LIMIT = 128 * 1024
T = TypeVar("T")
Outcome = tuple[ErrorCode, Any, "str | None"]


@handles(KEY)
async def handle(ctx: RequestContext, request: Any) -> EncodedBody | None:
    now_ms = int(time.time() * 1000)
    transactional_id = getattr(request, "transactional_id", None)
    auth = ctx.broker.authorizer
    if (
        (transactional_id is None or auth.enabled)
        and ctx.version >= 3
        and any(
            _has_transactional_batch(part.records)
            for topic in request.topic_data
            for part in topic.partition_data
        )
        and (
            transactional_id is None
            or not auth.authorize(
                ctx, AclOperation.WRITE, ResourceType.TRANSACTIONAL_ID, transactional_id
            )
        )
    ):
        # KafkaApis: transactional records need a transactional id the client may use.
        denied = ErrorCode.transactional_id_authorization_failed
        return _respond(ctx, request, lambda topic, part: (denied, None, None))
    writable = None  # every topic, without an authorizer
    if auth.enabled:
        names = (topic.name for topic in request.topic_data)
        writable = auth.allowed(ctx, AclOperation.WRITE, ResourceType.TOPIC, names)
    outcomes = [
        await _append(
            ctx, topic.name, part.index, part.records, request.acks, now_ms, transactional_id
        )
        if writable is None or topic.name in writable
        else (ErrorCode.topic_authorization_failed, None, None)
        for topic in request.topic_data
        for part in topic.partition_data
    ]
    await _make_durable(ctx, request, outcomes)
    answers = iter(outcomes)  # _respond walks the partitions in the same order
    return _respond(ctx, request, lambda topic, part: next(answers))


async def _make_durable(
    ctx: RequestContext, request: Any, outcomes: list[tuple[ErrorCode, Any, str | None]]
) -> None:
    """Wait for the fsyncs the flush policy asks for before answering (see the module
    docstring); a partition whose fsync fails gets KAFKA_STORAGE_ERROR instead."""
    broker = ctx.broker
    before_ack = broker.flush_before_ack and request.acks != 0
    waits: list[tuple[int, Log, int]] = []
    parts = [(t.name, p.index) for t in request.topic_data for p in t.partition_data]
    for i, ((topic, partition), (error, result, _)) in enumerate(zip(parts, outcomes, strict=True)):
        if error is not ErrorCode.none or result is None:
            continue
        log = broker.logs.get_log(topic, partition)
        if log is not None and (before_ack or log.flush_due_by_messages()):
            waits.append((i, log, result.last_offset + 1))

    async def wait(i: int, log: Log, offset: int) -> None:
        try:
            await broker.group_commit.flushed(log, offset)
        except (OSError, se.KafkaStorageError) as e:
            logger.error("fsync of %s failed: %s", log.dir, e)
            outcomes[i] = (ErrorCode.kafka_storage_error, None, f"fsync failed: {e}")

    if len(waits) == 1:
        await wait(*waits[0])
    elif waits:
        async with anyio.create_task_group() as tg:
            for args in waits:
                tg.start_soon(wait, *args)


@error_response(KEY)
def _error_response(ctx: RequestContext, request: Any, error: ErrorCode) -> EncodedBody | None:
    # None for acks=0: the connection closes, as Kafka does.
    return _respond(ctx, request, lambda topic, part: (error, None, None))


def _respond(
    ctx: RequestContext,
    request: Any,
    append: Callable[[str, Any], Outcome],
) -> EncodedBody | None:
    acks = request.acks
    topics = []
    failed: list[str] = []
    for topic in request.topic_data:
        partitions = []
        for part in topic.partition_data:
            error, result, message = append(topic.name, part)
            if error is not ErrorCode.none:
                failed.append(f"{topic.name}-{part.index}: {error.name}")
            partitions.append(_partition_response(part.index, error, result, message))
        topics.append((topic.name, partitions))
    if acks == 0:
        if failed:
            raise CloseConnection("acks=0 produce failed: " + ", ".join(failed))
        return None
    return encode_produce(ctx.version, topics)


# Coordinator errors a producer before KIP-890 would not retry: Kafka answers these instead
# (ReplicaManager's postVerificationCallback), which every producer retries.
_RETRY_AS_NOT_ENOUGH_REPLICAS = frozenset(
    {
        ErrorCode.concurrent_transactions,
        ErrorCode.network_exception,
        ErrorCode.coordinator_load_in_progress,
        ErrorCode.coordinator_not_available,
        ErrorCode.not_coordinator,
    }
)


def _verify(
    ctx: RequestContext,
    transactional_id: str | None,
    header: rb.BatchHeader,
    tp: tuple[str, int],
) -> Outcome | None:
    """KIP-890 part 1: a transactional batch goes only to a partition of its transaction
    (Broker.verify_transactional_write); the error to answer, or None."""
    error = ctx.broker.verify_transactional_write(
        transactional_id,
        header.producer_id,
        header.producer_epoch,
        tp,
        generic_error=ctx.version >= 11,
    )
    if error is ErrorCode.none:
        return None
    if error is ErrorCode.invalid_txn_state:
        return error, None, "Partition was not added to the transaction"
    if error in _RETRY_AS_NOT_ENOUGH_REPLICAS:
        return (
            ErrorCode.not_enough_replicas,
            None,
            "Unable to verify the partition has been added to the transaction. "
            f"Underlying error: {error.name.upper()}",
        )
    return error, None, None


def _has_transactional_batch(records: bytes | None) -> bool:
    """Whether a partition's v2 records hold a transactional batch (only the first can: one
    batch per partition)."""
    return (
        records is not None
        and len(records) > rb.ATTRIBUTES_OFFSET + 1
        and records[rb.MAGIC_OFFSET] == 2
        and bool(records[rb.ATTRIBUTES_OFFSET + 1] & rb.TRANSACTIONAL_MASK)
    )


async def _append(
    ctx: RequestContext,
    topic: str,
    partition: int,
    records: bytes | None,
    acks: int,
    now_ms: int,
    transactional_id: str | None = None,
) -> Outcome:
    broker = ctx.broker
    log = broker.logs.get_log(topic, partition)
    if log is None:
        return ErrorCode.unknown_topic_or_partition, None, None
    if is_internal(topic):
        # Only the coordinators write there (ReplicaManager.appendRecords: internalTopicsAllowed).
        return ErrorCode.invalid_topic_exception, None, f"Cannot append to internal topic {topic}"
    if not records:
        return ErrorCode.invalid_record, None, None
    buf = bytearray(records)
    if ctx.version < 3 and lr.magic_of(buf) in (0, 1):
        if acks not in (-1, 0, 1):
            return ErrorCode.invalid_required_acks, None, None
        converted = await _up_convert(log, bytes(buf))
        if isinstance(converted, tuple):
            return converted
        buf = bytearray(converted)
        headers = rb.validate_batches(buf)
    else:
        checked = await _check_v2(ctx, log, buf, acks)
        if isinstance(checked, tuple):
            return checked
        headers = checked
    if "compact" in log.config.cleanup_policy.split(","):
        try:
            keyless = await _run(len(buf), _keyless_records, buf)
        except (rb.InvalidRecordBatch, compression.DecompressionError) as e:
            return ErrorCode.invalid_record, None, str(e)
        if keyless:
            return _key_errors(keyless, f"{topic}-{partition}")
    if broker.logs.get_log(topic, partition) is not log:  # deleted while a worker decoded
        return ErrorCode.unknown_topic_or_partition, None, None
    first = headers[0]
    if first.is_transactional:
        # No await from here to the append: nothing can end the transaction in between.
        refused = _verify(ctx, transactional_id, first, (topic, partition))
        if refused is not None:
            return refused
    try:
        result = log.append(buf, headers, now_ms=now_ms, leader_epoch=broker.leader_epoch)
    except se.InvalidProducerEpoch as e:
        return ErrorCode.invalid_producer_epoch, None, str(e)
    except se.OutOfOrderSequence as e:
        return ErrorCode.out_of_order_sequence_number, None, str(e)
    except se.DuplicateSequence as e:
        return ErrorCode.duplicate_sequence_number, None, str(e)
    except se.RecordTooLarge as e:
        return ErrorCode.message_too_large, None, str(e)
    except se.RecordBatchTooLarge as e:
        return ErrorCode.record_list_too_large, None, str(e)
    except rb.InvalidRecordBatch as e:
        return ErrorCode.invalid_record, None, str(e)
    except se.InvalidTxnState as e:
        return ErrorCode.invalid_txn_state, None, str(e)
    except (se.StorageError, OSError) as e:
        # A full disk or a failing device: the write was undone (or the log went offline).
        logger.warning("append to %s-%d failed: %s", topic, partition, e)
        return ErrorCode.kafka_storage_error, None, str(e)
    broker.waiters.notify(topic, partition)
    return ErrorCode.none, result, None


@dataclass(frozen=True, slots=True)
class RecordErrors:
    """The records a partition refused: (index in the request's records, message)."""

    errors: tuple[tuple[int, str], ...]


def _keyless_records(buf: bytearray) -> list[int]:
    """Kafka's LogValidator.validateKey: a compacted topic takes only keyed records, so its
    batches (and only its) are walked, as a stream (a batch of many small records once held
    each of them: 100 MB for half a MB of zstd). The indexes of the records without a key."""
    keyless: list[int] = []
    index = 0
    for pos, header in rb.iter_headers(buf):
        batch = memoryview(buf)[pos : pos + header.size]
        keyless += [
            index + i for i in rb.keyless_records(batch, compression.DEFAULT_DECOMPRESSED_LIMIT)
        ]
        index += header.records_count
    return keyless


def _key_errors(keyless: list[int], partition: str) -> Outcome:
    """INVALID_RECORD with one record error per keyless record, worded as Kafka's."""
    message = f"Compacted topic cannot accept message without key in topic partition {partition}."
    errors = tuple((i, message) for i in keyless)
    shown = ", ".join(f"RecordError(batchIndex={i}, message='{m}')" for i, m in errors[:3])
    return (
        ErrorCode.invalid_record,
        RecordErrors(errors),
        f"One or more records have been rejected due to {len(errors)} record errors in total, "
        f"and only showing the first three errors at most: [{shown}]",
    )


async def _check_v2(
    ctx: RequestContext, log: Log, buf: bytearray, acks: int
) -> Outcome | list[rb.BatchHeader]:
    """The headers of the one v2 batch in ``buf``, checked, or the error to answer."""
    # ProduceRequest.validateRecords, before anything else looks at the batch: at least one
    # whole v2 batch, and only one; zstd only from v7.
    shallow = list(rb.iter_headers(buf))
    if not shallow or buf[rb.MAGIC_OFFSET] != 2:
        return ErrorCode.invalid_record, None, None
    if shallow[0][1].compression == ZSTD and ctx.version < 7:
        return ErrorCode.unsupported_compression_type, None, None
    if len(shallow) > 1:
        return ErrorCode.invalid_record, None, None
    if acks not in (-1, 0, 1):
        return ErrorCode.invalid_required_acks, None, None
    # The log's checks: size, then CRC and header coherence (LogValidator).
    size = rb.batch_size_at(buf, 0)
    if size > log.config.max_message_bytes:
        return (
            ErrorCode.message_too_large,
            None,
            f"The record batch of {size} bytes exceeds max.message.bytes "
            f"({log.config.max_message_bytes})",
        )
    try:
        headers = rb.validate_batches(buf)
    except rb.CorruptRecordBatch as e:
        return ErrorCode.corrupt_message, None, str(e)
    except rb.InvalidRecordBatch as e:
        return ErrorCode.invalid_record, None, str(e)
    header = headers[0]
    if header.compression > ZSTD:
        return ErrorCode.unsupported_compression_type, None, None
    if header.is_control:
        return ErrorCode.invalid_record, None, "Clients are not allowed to write control records"
    if header.is_transactional and header.producer_id < 0:
        return ErrorCode.invalid_record, None, "a transactional batch needs a producer id"
    if header.compression:
        try:
            max_ts = await _run(
                header.size,
                rb.check_compressed_records,
                buf,
                compression.DEFAULT_DECOMPRESSED_LIMIT,
            )
        except compression.DecompressionError as e:
            return ErrorCode.corrupt_message, None, str(e)
        except rb.InvalidRecordBatch as e:
            return ErrorCode.invalid_record, None, str(e)
        if max_ts != header.max_timestamp and not header.is_log_append_time:
            rb.set_max_timestamp(buf, 0, header.size, max_ts)
            headers = [rb.read_header(buf, 0)]
    return headers


async def _up_convert(log: Log, data: bytes) -> Outcome | bytes:
    """The v2 batch a v0/v1 message set becomes, or the error to answer."""
    configured = log.config.other.get("compression.type", "producer")
    try:
        batch = await _run(
            len(data),
            functools.partial(
                lr.to_record_batch,
                data,
                log_append_time=log.config.log_append_time,
                target_codec=compression.BY_CONFIG_NAME.get(configured),
            ),
        )
    except lr.UnsupportedCompression as e:
        return ErrorCode.unsupported_compression_type, None, str(e)
    except lr.InvalidTimestamp as e:
        return ErrorCode.invalid_timestamp, None, str(e)
    except rb.CorruptRecordBatch as e:
        return ErrorCode.corrupt_message, None, str(e)
    except rb.InvalidRecordBatch as e:
        return ErrorCode.invalid_record, None, str(e)
    return batch


async def _run(size: int, fn: Callable[..., T], *args: Any) -> T:
    """``fn(*args)``, on a worker thread when ``size`` bytes make it slow."""
    if size > INLINE_DECODE_LIMIT:
        return await anyio.to_thread.run_sync(functools.partial(fn, *args))
    return fn(*args)


def _partition_response(
    index: int, error: ErrorCode, result: Any, message: str | None
) -> ProducePartition:
    if result is None or isinstance(result, RecordErrors):
        record_errors = result.errors if isinstance(result, RecordErrors) else ()
        return ProducePartition(
            index, error.value, record_errors=record_errors, error_message=message
        )
    return ProducePartition(
        index,
        ErrorCode.none.value,
        base_offset=result.base_offset,
        log_append_time_ms=result.log_append_time_ms,
        log_start_offset=result.log_start_offset,
    )
