"""TransactionCoordinator: transactional ids, their producer ids and epochs, and the two-phase
end of every transaction, kept as Kafka keeps them in the compacted ``__transaction_state``.

Kafka's TransactionCoordinator, TransactionMetadata and TransactionStateManager, for one broker.

States of a transactional id (Kafka's names, shown by DescribeTransactions and ListTransactions):

    (unknown) ──InitProducerId──────────────────────────▶ Empty (new producer id, epoch 0)
    Empty / CompleteCommit / CompleteAbort
              ──InitProducerId──────────────────────────▶ Empty (epoch + 1; a new producer id
                                                           once the epoch reaches 32766)
              ──AddPartitionsToTxn / AddOffsetsToTxn───▶ Ongoing (start time = now)
    Ongoing   ──AddPartitionsToTxn / AddOffsetsToTxn───▶ Ongoing (more partitions)
              ──EndTxn commit / abort───────────────────▶ PrepareCommit / PrepareAbort
              ──InitProducerId, or the timeout passed──▶ PrepareAbort with epoch + 1 (the
                                                           producer is fenced; InitProducerId
                                                           answers CONCURRENT_TRANSACTIONS and
                                                           the client retries)
    PrepareCommit / PrepareAbort
              ──markers written to every partition─────▶ CompleteCommit / CompleteAbort

Every transition is written (one record, key = the transactional id) to partition
``abs(javaHash(transactional id)) % transaction.state.log.num.partitions`` before it is
installed in memory; a failed write changes nothing and the request gets NOT_COORDINATOR, as
Kafka maps a storage error. Kafka then sends the markers to the partition leaders and answers
EndTxn without waiting for them; kpy leads every partition, so the markers (control batches,
Log.append_marker) are written on the spot, then the Complete state, and only then does EndTxn
answer: a consumer that reads after commit_transaction returned sees the transaction's records.
A marker that cannot be written (a full disk) leaves the transaction in its Prepare state; the
periodic task retries it, and meanwhile the id answers CONCURRENT_TRANSACTIONS, as in Kafka.
Markers go to partitions of ``__consumer_offsets`` too (AddOffsetsToTxn), where they make the
transaction's offset commits visible (OffsetStore.complete_transaction).

The record format is Kafka's (TransactionLogKey and TransactionLogValue, written at version 0,
what Kafka writes without transaction.version 1; nothing here is kpy's own), so that
kafka-dump-log --transaction-log-decoder reads it. Big-endian, strings int16-length UTF-8:

    key    int16 version (0), string transactional id
    value  int16 version (0), int64 producer id, int16 producer epoch, int32 timeout ms,
           int8 state (0 Empty .. 7 PrepareEpochFence),
           partitions: int32 count (-1: null, written for Empty), each string topic and
           int32 count + int32 partition ids,
           int64 last update ms, int64 start ms
           or null: a tombstone (the id expired).
    Version 1 (flexible: compact strings and arrays, tagged previous and next producer ids and
    client transaction version) is read too.

Transaction versions: kpy advertises no ``transaction.version`` feature, so clients use the
protocol before KIP-890 part 2 (EndTxn up to v4, AddPartitionsToTxn from the client up to v3,
TxnOffsetCommit up to v4, Produce up to v11): the epoch is bumped by InitProducerId and by
fencing, never by EndTxn. Kafka's server-side verification of KIP-890 part 1 is done (Produce
and TxnOffsetCommit of a partition not added to the transaction are refused: ``verify``).

At start (``open``): every partition of the topic is replayed, the last record per id winning.
An id left in PrepareCommit or PrepareAbort (a crash between the two writes) has its markers
written and its Complete state appended (``complete_unfinished``), as Kafka's coordinator does
when it loads a partition; an Ongoing one stays open until its producer ends it or it times
out. PrepareEpochFence is never written (Kafka keeps it in memory only).

Timeouts (``abort_timed_out``, every transaction.abort.timed.out.transaction.cleanup.interval.ms):
an Ongoing transaction older than its timeout is fenced and aborted. Expiry
(``expire_transactional_ids``, every transaction.remove.expired.transaction.cleanup.interval.ms):
an id in Empty or Complete* whose last update is transactional.id.expiration.ms old is
tombstoned and forgotten.

Threads: the event loop thread only. Every method is synchronous: between the checks, the
write and the installation of a transition nothing else runs, which is what Kafka's per-id
lock and pending state provide. The writes are page-cache appends (Log.append).
"""

from __future__ import annotations

import dataclasses
import enum
import logging
import struct
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from kio.schema.errors import ErrorCode

from kpy.coordinator.offsets import (
    CorruptOffsetRecord,
    RecordReader,
    decoded_batches,
    encode_string,
    partition_for,
)
from kpy.protocol.records import (
    build_batch,
    validate_batches,
)
from kpy.storage.errors import RecordBatchTooLarge, RecordTooLarge, StorageError
from kpy.storage.log import Log
from kpy.storage.log_manager import LogManager
from kpy.storage.producer_state import AppendOrigin

log = logging.getLogger("kpy.transactions")

TXN_TOPIC = "__transaction_state"
DEFAULT_PARTITIONS = 50  # transaction.state.log.num.partitions
DEFAULT_SEGMENT_BYTES = 104857600  # transaction.state.log.segment.bytes
TXN_TOPIC_CONFIGS = {"cleanup.policy": "compact", "compression.type": "uncompressed"}
NO_PRODUCER_ID = -1
NO_PRODUCER_EPOCH = -1
MAX_EPOCH = 32767  # Short.MaxValue

TopicPartition = tuple[str, int]


class TxnState(enum.IntEnum):
    """Kafka's TransactionState ids (written in the log) and names (shown by the admin APIs)."""

    EMPTY = 0
    ONGOING = 1
    PREPARE_COMMIT = 2
    PREPARE_ABORT = 3
    COMPLETE_COMMIT = 4
    COMPLETE_ABORT = 5
    DEAD = 6
    PREPARE_EPOCH_FENCE = 7

    @property
    def kafka_name(self) -> str:
        return _STATE_NAMES[self]


_STATE_NAMES = {
    TxnState.EMPTY: "Empty",
    TxnState.ONGOING: "Ongoing",
    TxnState.PREPARE_COMMIT: "PrepareCommit",
    TxnState.PREPARE_ABORT: "PrepareAbort",
    TxnState.COMPLETE_COMMIT: "CompleteCommit",
    TxnState.COMPLETE_ABORT: "CompleteAbort",
    TxnState.DEAD: "Dead",
    TxnState.PREPARE_EPOCH_FENCE: "PrepareEpochFence",
}
STATES_BY_NAME = {name: state for state, name in _STATE_NAMES.items()}
_COMPLETE = (TxnState.EMPTY, TxnState.COMPLETE_COMMIT, TxnState.COMPLETE_ABORT)
_PREPARE = (TxnState.PREPARE_COMMIT, TxnState.PREPARE_ABORT)


def epoch_exhausted(epoch: int) -> bool:
    """Kafka never hands out Short.MaxValue, so that a producer can always be fenced."""
    return epoch >= MAX_EPOCH - 1


@dataclass(frozen=True, slots=True)
class TxnMetadata:
    """One transactional id's state (Kafka's TransactionMetadata); replaced whole on every
    transition."""

    transactional_id: str
    producer_id: int
    producer_epoch: int = NO_PRODUCER_EPOCH
    timeout_ms: int = 60000
    state: TxnState = TxnState.EMPTY
    partitions: frozenset[TopicPartition] = frozenset()
    start_ms: int = -1  # when the transaction began (its first partition); -1 when none
    last_update_ms: int = -1
    # Not in the value at version 0: lost across a restart, as in Kafka without TV1.
    last_producer_epoch: int = NO_PRODUCER_EPOCH
    previous_producer_id: int = NO_PRODUCER_ID

    def to(self, **changes: object) -> TxnMetadata:
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]


# --- Record codec --------------------------------------------------------------------------

KEY_VERSION = 0
VALUE_VERSION = 0


def encode_key(transactional_id: str) -> bytes:
    return struct.pack(">h", KEY_VERSION) + encode_string(transactional_id)


def encode_value(meta: TxnMetadata) -> bytes:
    out = bytearray(
        struct.pack(
            ">hqhib",
            VALUE_VERSION,
            meta.producer_id,
            meta.producer_epoch,
            meta.timeout_ms,
            int(meta.state),
        )
    )
    if meta.state is TxnState.EMPTY:
        out += struct.pack(">i", -1)  # Kafka writes null partitions for Empty
    else:
        by_topic: dict[str, list[int]] = {}
        for topic, partition in sorted(meta.partitions):
            by_topic.setdefault(topic, []).append(partition)
        out += struct.pack(">i", len(by_topic))
        for topic, ids in by_topic.items():
            out += encode_string(topic) + struct.pack(f">i{len(ids)}i", len(ids), *ids)
    out += struct.pack(">qq", meta.last_update_ms, meta.start_ms)
    return bytes(out)


def decode_key(key: bytes) -> str | None:
    """The transactional id of a record key; None for a key version kpy does not know."""
    r = RecordReader(key)
    if r.unpack(">h") != KEY_VERSION:
        return None
    return r.string()


def decode_value(transactional_id: str, value: bytes) -> TxnMetadata:
    r = RecordReader(value)
    version = r.unpack(">h")
    if version not in (0, 1):
        raise CorruptOffsetRecord(f"unknown TransactionLogValue version {version}")
    flexible = version == 1
    producer_id = r.unpack(">q")
    epoch = r.unpack(">h")
    timeout_ms = r.unpack(">i")
    state_id = r.unpack(">b")
    try:
        state = TxnState(state_id)
    except ValueError:
        raise CorruptOffsetRecord(f"unknown transaction state {state_id}") from None
    count = r.uvarint() - 1 if flexible else r.unpack(">i")
    partitions: set[TopicPartition] = set()
    for _ in range(max(count, 0)):
        topic = r.compact_string() if flexible else r.string()
        n = r.uvarint() - 1 if flexible else r.unpack(">i")
        for _ in range(max(n, 0)):
            partitions.add((topic, r.unpack(">i")))
        if flexible:
            r.skip_tagged_fields()
    last_update_ms = r.unpack(">q")
    start_ms = r.unpack(">q")
    previous = NO_PRODUCER_ID
    if flexible:
        for _ in range(r.uvarint()):
            tag, size = r.uvarint(), r.uvarint()
            field = r.take(size)
            if tag == 0 and size == 8:
                previous = struct.unpack(">q", field)[0]
    return TxnMetadata(
        transactional_id,
        producer_id,
        epoch,
        timeout_ms,
        state,
        frozenset() if state is TxnState.EMPTY else frozenset(partitions),
        start_ms,
        last_update_ms,
        previous_producer_id=previous,
    )


# --- The coordinator -----------------------------------------------------------------------

# write_markers(producer id, epoch, commit, partitions) -> the partitions whose marker could
# not be written (to retry later). Given by the broker, which leads every partition.
MarkerWriter = Callable[[int, int, bool, frozenset[TopicPartition]], set[TopicPartition]]


@dataclass(frozen=True, slots=True)
class InitResult:
    error: ErrorCode
    producer_id: int = NO_PRODUCER_ID
    producer_epoch: int = NO_PRODUCER_EPOCH


class TransactionCoordinator:
    """Transactional ids and their transactions (see the module docstring)."""

    def __init__(
        self,
        logs: LogManager,
        write_markers: MarkerWriter,
        *,
        partitions: int = DEFAULT_PARTITIONS,
        segment_bytes: int = DEFAULT_SEGMENT_BYTES,
        max_timeout_ms: int = 900000,
        id_expiration_ms: int = 604800000,
        leader_epoch: int = 0,
    ) -> None:
        self.logs = logs
        self.write_markers = write_markers
        self.partitions = partitions
        self.segment_bytes = segment_bytes
        self.max_timeout_ms = max_timeout_ms
        self.id_expiration_ms = id_expiration_ms
        self.leader_epoch = leader_epoch
        self.txns: dict[str, TxnMetadata] = {}
        # Prepare* transactions with markers still to write: id -> the partitions left.
        self._unwritten: dict[str, frozenset[TopicPartition]] = {}

    @property
    def coordinator_epoch(self) -> int:
        """Kafka's coordinator epoch is the leader epoch of the id's state partition."""
        return self.leader_epoch

    # --- Opening ---------------------------------------------------------------------------

    @classmethod
    def open(
        cls, logs: LogManager, write_markers: MarkerWriter, **settings: int
    ) -> TransactionCoordinator:
        """Replay ``__transaction_state`` if it exists (the caller then runs
        ``complete_unfinished`` once the logs the markers go to are loaded)."""
        coordinator = cls(logs, write_markers, **settings)
        info = logs.topic(TXN_TOPIC)
        if info is None:
            return coordinator
        if info.partitions != coordinator.partitions:
            log.warning(
                "%s has %d partition(s), not the configured %d: keeping %d",
                TXN_TOPIC,
                info.partitions,
                coordinator.partitions,
                info.partitions,
            )
            coordinator.partitions = info.partitions
        for partition in range(info.partitions):
            coordinator._replay(partition)
        if coordinator.txns:
            log.info("loaded %d transactional id(s) from %s", len(coordinator.txns), TXN_TOPIC)
        return coordinator

    def _replay(self, partition: int) -> None:
        records = (
            r
            for header, batch in decoded_batches(self._log(partition))
            if not header.is_control
            for r in batch
        )
        for record in records:
            offset, key, value = record.offset, record.key, record.value
            try:
                txn_id = decode_key(key) if key is not None else None
                if txn_id is None:
                    continue
                if value is None:
                    self.txns.pop(txn_id, None)
                else:
                    self.txns[txn_id] = decode_value(txn_id, value)
            except CorruptOffsetRecord as e:
                log.warning(
                    "%s-%d: skipping record at offset %d: %s", TXN_TOPIC, partition, offset, e
                )

    @property
    def topic_exists(self) -> bool:
        return self.logs.topic(TXN_TOPIC) is not None

    def create_topic(self) -> None:
        """Create ``__transaction_state`` if it is not there (a worker thread may run it; the
        caller makes sure only one runs at a time)."""
        if self.topic_exists:
            return
        name = "segment.bytes" if self.segment_bytes >= 1048576 else "internal.segment.bytes"
        configs = {**TXN_TOPIC_CONFIGS, name: str(self.segment_bytes)}
        self.logs.create_topic(TXN_TOPIC, self.partitions, configs)
        log.info("created %s with %d partition(s)", TXN_TOPIC, self.partitions)

    def partition_for(self, transactional_id: str) -> int:
        return partition_for(transactional_id, self.partitions)

    def _log(self, partition: int) -> Log:
        partition_log = self.logs.get_log(TXN_TOPIC, partition)
        if partition_log is None:
            raise StorageError(f"{TXN_TOPIC}-{partition} does not exist")
        return partition_log

    # --- Writing a transition ---------------------------------------------------------------

    def _persist(self, meta: TxnMetadata | None, txn_id: str, now_ms: int) -> ErrorCode:
        """Append the new state (None: a tombstone) and install it; the error Kafka's
        TransactionStateManager.appendTransactionToLog answers when the append fails."""
        value = None if meta is None else encode_value(meta)
        batch = bytearray(build_batch([(encode_key(txn_id), value)], timestamp=now_ms))
        try:
            self._log(self.partition_for(txn_id)).append(
                batch,
                validate_batches(batch),
                now_ms=now_ms,
                leader_epoch=self.leader_epoch,
                origin=AppendOrigin.COORDINATOR,
            )
        except (RecordTooLarge, RecordBatchTooLarge):
            return ErrorCode.unknown_server_error
        except (StorageError, OSError) as e:
            log.warning("writing the state of transactional id %r failed: %s", txn_id, e)
            return ErrorCode.not_coordinator
        if meta is None:
            self.txns.pop(txn_id, None)
        else:
            self.txns[txn_id] = meta
        return ErrorCode.none

    # --- InitProducerId --------------------------------------------------------------------

    def needs_producer_id(self, transactional_id: str) -> bool:
        """Whether InitProducerId for this id may take a new producer id (the caller allocates
        one beforehand, on a worker thread: the allocation may fsync)."""
        meta = self.txns.get(transactional_id)
        return meta is None or epoch_exhausted(meta.producer_epoch)

    def valid_timeout(self, timeout_ms: int) -> bool:
        return 0 < timeout_ms <= self.max_timeout_ms

    def init_producer_id(
        self,
        transactional_id: str,
        timeout_ms: int,
        expected: tuple[int, int] | None,
        new_producer_id: int | None,
        now_ms: int,
    ) -> InitResult:
        """Kafka's handleInitProducerId for a transactional id (the caller checked the id is
        not empty and the timeout is valid). ``expected``: the producer id and epoch the client
        sent (KIP-360), None when it sent -1/-1. ``new_producer_id``: a fresh id, used when the
        id is new or its epochs are exhausted."""
        meta = self.txns.get(transactional_id)
        if meta is None:
            if new_producer_id is None:
                return InitResult(ErrorCode.concurrent_transactions)
            meta = TxnMetadata(transactional_id, new_producer_id, last_update_ms=now_ms)
        if transactional_id in self._unwritten or meta.state in _PREPARE:
            return InitResult(ErrorCode.concurrent_transactions)
        if expected is not None and not self._valid_expected(meta, expected):
            return InitResult(ErrorCode.producer_fenced)
        if meta.state is TxnState.ONGOING:
            # Fence the current producer and abort its transaction; the client retries and
            # then gets the epoch after that (Kafka's PrepareEpochFence path).
            error = self._fence_and_abort(meta, now_ms)
            if error is ErrorCode.none:
                error = ErrorCode.concurrent_transactions
            return InitResult(error)
        if meta.state not in _COMPLETE:
            return InitResult(ErrorCode.concurrent_transactions)
        if epoch_exhausted(meta.producer_epoch) and (
            expected is None or expected[1] == meta.producer_epoch
        ):
            if new_producer_id is None:
                return InitResult(ErrorCode.concurrent_transactions)
            new = meta.to(
                producer_id=new_producer_id,
                producer_epoch=0,
                last_producer_epoch=meta.producer_epoch if expected else NO_PRODUCER_EPOCH,
                previous_producer_id=meta.producer_id,
            )
        else:
            bumped = meta.producer_epoch + 1
            if expected is None:
                epoch, last = bumped, NO_PRODUCER_EPOCH
            elif meta.producer_epoch == NO_PRODUCER_EPOCH or expected[1] == meta.producer_epoch:
                epoch, last = bumped, meta.producer_epoch
            elif expected[1] == meta.last_producer_epoch:
                # A retry of a call that succeeded: the same epoch again.
                epoch, last = meta.producer_epoch, meta.last_producer_epoch
            else:
                return InitResult(ErrorCode.producer_fenced)
            new = meta.to(producer_epoch=epoch, last_producer_epoch=last)
        new = new.to(
            state=TxnState.EMPTY,
            timeout_ms=timeout_ms,
            partitions=frozenset(),
            start_ms=-1,
            last_update_ms=now_ms,
        )
        error = self._persist(new, transactional_id, now_ms)
        if error is not ErrorCode.none:
            return InitResult(error)
        log.info(
            "initialized transactional id %r with producer id %d and epoch %d",
            transactional_id,
            new.producer_id,
            new.producer_epoch,
        )
        return InitResult(ErrorCode.none, new.producer_id, new.producer_epoch)

    @staticmethod
    def _valid_expected(meta: TxnMetadata, expected: tuple[int, int]) -> bool:
        """Kafka's isValidProducerId: the client's producer id is the current one, or the
        previous one with an exhausted epoch (a retry after a rotation), or the metadata is
        brand new."""
        producer_id, epoch = expected
        return (
            meta.producer_epoch == NO_PRODUCER_EPOCH
            or producer_id == meta.producer_id
            or (producer_id == meta.previous_producer_id and epoch_exhausted(epoch))
        )

    # --- AddPartitionsToTxn, AddOffsetsToTxn ------------------------------------------------

    def _check_producer(
        self, transactional_id: str, producer_id: int, epoch: int
    ) -> tuple[ErrorCode, TxnMetadata | None]:
        meta = self.txns.get(transactional_id)
        if meta is None or meta.producer_id != producer_id:
            return ErrorCode.invalid_producer_id_mapping, None
        if meta.producer_epoch != epoch:
            return ErrorCode.producer_fenced, None
        if transactional_id in self._unwritten or meta.state in _PREPARE:
            return ErrorCode.concurrent_transactions, None
        return ErrorCode.none, meta

    def add_partitions(
        self,
        transactional_id: str,
        producer_id: int,
        epoch: int,
        partitions: Iterable[TopicPartition],
        now_ms: int,
    ) -> ErrorCode:
        """Kafka's handleAddPartitionsToTransaction: one error for every partition."""
        error, meta = self._check_producer(transactional_id, producer_id, epoch)
        if meta is None:
            return error
        wanted = frozenset(partitions)
        if meta.state is TxnState.ONGOING and wanted <= meta.partitions:
            return ErrorCode.none
        new = meta.to(
            state=TxnState.ONGOING,
            partitions=meta.partitions | wanted,
            start_ms=now_ms if meta.state in _COMPLETE else meta.start_ms,
            last_update_ms=now_ms,
        )
        return self._persist(new, transactional_id, now_ms)

    def verify(
        self,
        transactional_id: str,
        producer_id: int,
        epoch: int,
        partitions: Iterable[TopicPartition],
    ) -> dict[TopicPartition, ErrorCode]:
        """Kafka's handleVerifyPartitionsInTransaction (AddPartitionsToTxn v4+ verify_only,
        and a partition leader's check before a transactional write): TRANSACTION_ABORTABLE
        for a partition not in the transaction."""
        meta = self.txns.get(transactional_id)
        error = ErrorCode.none
        if meta is None or meta.producer_id != producer_id:
            error = ErrorCode.invalid_producer_id_mapping
        elif meta.producer_epoch != epoch:
            error = ErrorCode.producer_fenced
        elif meta.state in _PREPARE:
            error = ErrorCode.concurrent_transactions
        if meta is None or error is not ErrorCode.none:
            return {tp: error for tp in partitions}
        return {
            tp: ErrorCode.none if tp in meta.partitions else ErrorCode.transaction_abortable
            for tp in partitions
        }

    # --- EndTxn ----------------------------------------------------------------------------

    def end_transaction(
        self, transactional_id: str, producer_id: int, epoch: int, commit: bool, now_ms: int
    ) -> ErrorCode:
        """Kafka's handleEndTransaction (client transaction version 0/1)."""
        meta = self.txns.get(transactional_id)
        if meta is None or meta.producer_id != producer_id:
            return ErrorCode.invalid_producer_id_mapping
        if epoch != meta.producer_epoch:
            return ErrorCode.producer_fenced
        if transactional_id in self._unwritten:
            return ErrorCode.concurrent_transactions
        state = meta.state
        if state is TxnState.ONGOING:
            return self._prepare_and_complete(meta, commit, now_ms)
        if state is TxnState.COMPLETE_COMMIT:
            return ErrorCode.none if commit else ErrorCode.invalid_txn_state
        if state is TxnState.COMPLETE_ABORT:
            return ErrorCode.none if not commit else ErrorCode.invalid_txn_state
        if state is TxnState.PREPARE_COMMIT:
            return ErrorCode.concurrent_transactions if commit else ErrorCode.invalid_txn_state
        if state is TxnState.PREPARE_ABORT:
            return ErrorCode.concurrent_transactions if not commit else ErrorCode.invalid_txn_state
        return ErrorCode.invalid_txn_state  # Empty: nothing to end

    def _fence_and_abort(self, meta: TxnMetadata, now_ms: int) -> ErrorCode:
        """Bump the epoch (fencing the producer) and abort its transaction."""
        if meta.producer_epoch >= MAX_EPOCH:
            raise RuntimeError(f"cannot fence producer {meta.producer_id}: epoch overflow")
        fenced = meta.to(
            producer_epoch=meta.producer_epoch + 1, last_producer_epoch=NO_PRODUCER_EPOCH
        )
        return self._prepare_and_complete(fenced, False, now_ms)

    def _prepare_and_complete(self, meta: TxnMetadata, commit: bool, now_ms: int) -> ErrorCode:
        prepare = TxnState.PREPARE_COMMIT if commit else TxnState.PREPARE_ABORT
        prepared = meta.to(state=prepare, last_update_ms=now_ms)
        error = self._persist(prepared, meta.transactional_id, now_ms)
        if error is not ErrorCode.none:
            return error
        log.debug(
            "%s transaction of %r (producer %d, epoch %d) over %d partition(s)",
            "committing" if commit else "aborting",
            meta.transactional_id,
            meta.producer_id,
            prepared.producer_epoch,
            len(prepared.partitions),
        )
        self._write_markers(prepared, prepared.partitions, now_ms)
        return ErrorCode.none

    def _write_markers(
        self, meta: TxnMetadata, partitions: frozenset[TopicPartition], now_ms: int
    ) -> None:
        """Write the markers of a Prepare* transaction; once all are written, its Complete
        state. What fails is kept for ``retry_markers``."""
        commit = meta.state is TxnState.PREPARE_COMMIT
        failed = self.write_markers(meta.producer_id, meta.producer_epoch, commit, partitions)
        txn_id = meta.transactional_id
        if failed:
            self._unwritten[txn_id] = frozenset(failed)
            return
        self._unwritten.pop(txn_id, None)
        complete = meta.to(
            state=TxnState.COMPLETE_COMMIT if commit else TxnState.COMPLETE_ABORT,
            partitions=frozenset(),
            last_producer_epoch=meta.producer_epoch,
            last_update_ms=now_ms,
        )
        if self._persist(complete, txn_id, now_ms) is not ErrorCode.none:
            # The markers are in; the next retry writes the Complete state again (markers
            # written twice are harmless: a marker without an open transaction completes none).
            self._unwritten[txn_id] = frozenset()

    def complete_unfinished(self, now_ms: int) -> int:
        """Finish the transactions loaded in a Prepare state; how many there were."""
        unfinished = [m for m in self.txns.values() if m.state in _PREPARE]
        for meta in unfinished:
            log.info(
                "completing the %s of transactional id %r left unfinished",
                "commit" if meta.state is TxnState.PREPARE_COMMIT else "abort",
                meta.transactional_id,
            )
            self._write_markers(meta, meta.partitions, now_ms)
        return len(unfinished)

    def retry_markers(self, now_ms: int) -> None:
        for txn_id, partitions in list(self._unwritten.items()):
            meta = self.txns.get(txn_id)
            if meta is None or meta.state not in _PREPARE:
                self._unwritten.pop(txn_id, None)
                continue
            self._write_markers(meta, partitions, now_ms)

    # --- Periodic work ---------------------------------------------------------------------

    def abort_timed_out(self, now_ms: int) -> int:
        """Fence and abort every Ongoing transaction older than its timeout (Kafka's
        abortTimedOutTransactions); how many."""
        self.retry_markers(now_ms)
        expired = [
            m
            for m in self.txns.values()
            if m.state is TxnState.ONGOING
            and m.transactional_id not in self._unwritten
            and m.start_ms + m.timeout_ms < now_ms
        ]
        for meta in expired:
            log.info(
                "aborting the transaction of %r (producer %d): older than its timeout %d ms",
                meta.transactional_id,
                meta.producer_id,
                meta.timeout_ms,
            )
            self._fence_and_abort(meta, now_ms)
        return len(expired)

    def expire_transactional_ids(self, now_ms: int) -> int:
        """Tombstone ids idle for transactional.id.expiration.ms; how many."""
        idle = [
            m.transactional_id
            for m in self.txns.values()
            if m.state in _COMPLETE
            and m.transactional_id not in self._unwritten
            and m.last_update_ms + self.id_expiration_ms <= now_ms
        ]
        done = 0
        for txn_id in idle:
            if self._persist(None, txn_id, now_ms) is ErrorCode.none:
                done += 1
        if done:
            log.info("expired %d transactional id(s)", done)
        return done

    # --- Admin views -----------------------------------------------------------------------

    def describe(self, transactional_id: str) -> TxnMetadata | None:
        meta = self.txns.get(transactional_id)
        return None if meta is None or meta.state is TxnState.DEAD else meta

    def list_transactions(
        self,
        states: Iterable[str],
        producer_ids: Iterable[int],
        duration_ms: int,
        now_ms: int,
    ) -> tuple[list[TxnMetadata], list[str]]:
        """Kafka's listTransactionStates: (the matching ids, the state filters it does not
        know). A duration filter keeps transactions running longer than it."""
        wanted_states = list(states)
        unknown = [s for s in wanted_states if s not in STATES_BY_NAME]
        known = {STATES_BY_NAME[s] for s in wanted_states if s in STATES_BY_NAME}
        pids = set(producer_ids)
        found = [
            m
            for m in self.txns.values()
            if m.state is not TxnState.DEAD
            and (not pids or m.producer_id in pids)
            and (not wanted_states or m.state in known)
            and (duration_ms < 0 or now_ms - m.start_ms > duration_ms)
        ]
        return found, unknown


def fenced_error(error: ErrorCode, version: int, since: int) -> ErrorCode:
    """PRODUCER_FENCED as a request version knows it: versions before ``since`` (the one that
    added the code) get INVALID_PRODUCER_EPOCH, as Kafka's handlers answer."""
    if error is ErrorCode.producer_fenced and version < since:
        return ErrorCode.invalid_producer_epoch
    return error
