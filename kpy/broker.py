"""The broker: shared state behind the handlers, and request dispatch.

``Broker`` owns the LogManager, the producer id allocator, the wake-ups that end Fetch long
polls, and the logs' background work: retention (``delete_old_segments``, with the FileDeleter
for the unlinks) and the flush policy (``flush_dirty_logs`` and GroupCommit).
``Broker.dispatch`` turns one frame into the bytes of its response (or nothing, for acks=0
produces), and raises ProtocolError where Kafka closes the connection: a header that does not
parse, an unknown API key, a version outside the served range (except ApiVersions, which
answers), a body that does not parse.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
from kio.schema.errors import ErrorCode

from kpy import configs
from kpy.acl import StandardAuthorizer
from kpy.config import BrokerConfig, Listener
from kpy.coordinator.consumer_group import ConsumerGroupCoordinator
from kpy.coordinator.group import GroupCoordinator
from kpy.coordinator.offsets import OFFSETS_TOPIC, OffsetStore
from kpy.coordinator.transaction import TXN_TOPIC, TransactionCoordinator
from kpy.file_deleter import FileDeleter
from kpy.group_commit import GroupCommit
from kpy.handlers.registry import REGISTRY, CloseConnection, loaded
from kpy.leader_epoch import LEADER_EPOCH
from kpy.memory_pool import RequestPool, ResponseMemory
from kpy.producer_ids import ProducerIdManager
from kpy.protocol.messages import (
    API_VERSIONS_KEY,
    ProtocolError,
    RequestHeader,
    decode_request,
    encode_response,
    parse_header,
)
from kpy.quotas import QuotaStore
from kpy.scram import CredentialStore, parse_add_scram
from kpy.storage import cleaner, durability
from kpy.storage import errors as se
from kpy.storage.config import TOPIC_CONFIG_NAMES, LogConfig
from kpy.storage.fs import OS_FS, FileSystem, MemoryFileSystem
from kpy.storage.log import Log, SegmentDeletion
from kpy.storage.log_manager import (
    LogManager,
    TopicInfo,
    read_offset_checkpoint,
    write_offset_checkpoint,
)
from kpy.topics import collision_key, is_internal, name_error

log = logging.getLogger("kpy.broker")
ZERO_UUID = uuid.UUID(int=0)
CLEANER_CHECKPOINT = "cleaner-offset-checkpoint"  # Kafka's LogCleanerManager file
HIGH_WATERMARK = -1  # DeleteRecordsRequest.HIGH_WATERMARK: delete everything below it
ANONYMOUS = "User:ANONYMOUS"  # KafkaPrincipal.ANONYMOUS: an unauthenticated connection


@dataclass
class RequestContext:
    broker: Broker
    header: RequestHeader
    peer: str
    listener: str  # the name of the listener the connection came in on
    # Who sent the request, as Kafka's KafkaPrincipal.toString ("User:alice"): the SASL
    # authorization id, the TLS client certificate's mapped name, or User:ANONYMOUS.
    principal: str = ANONYMOUS

    @property
    def version(self) -> int:
        return self.header.api_version

    @property
    def client_host(self) -> str:
        """The client's IP address (ACLs' host field matches it)."""
        host = self.peer.rsplit(":", 1)[0]
        return host[1:-1] if host.startswith("[") else host


@dataclass(frozen=True)
class CreateResult:
    error: ErrorCode
    message: str | None
    info: TopicInfo | None = None  # the topic created, or as it would be (validate_only)


class PartitionWaiters:
    """Wakes Fetch long polls when a partition they wait on gets data.

    A waiting fetch registers one event under each of its partitions; an append sets and drops
    the events registered under its partition. Loop-only.
    """

    def __init__(self) -> None:
        self._waiters: dict[tuple[str, int], set[anyio.Event]] = {}

    def register(self, keys: list[tuple[str, int]], event: anyio.Event) -> None:
        for key in keys:
            self._waiters.setdefault(key, set()).add(event)

    def unregister(self, keys: list[tuple[str, int]], event: anyio.Event) -> None:
        for key in keys:
            events = self._waiters.get(key)
            if events is not None:
                events.discard(event)
                if not events:
                    del self._waiters[key]

    def notify(self, topic: str, partition: int) -> None:
        events = self._waiters.pop((topic, partition), None)
        if events:
            for event in events:
                event.set()


def _load_dynamic_configs(config: BrokerConfig, data_dir: Path, fs: FileSystem) -> None:
    """The broker settings changed at run time before; ignored (and logged) when they no longer
    apply, as Kafka drops invalid dynamic configs."""
    try:
        configs.load_dynamic(config, data_dir, fs)
        LogConfig.from_properties(config.topic_defaults())
    except (OSError, ValueError, se.InvalidConfig) as e:
        log.error("ignoring the dynamic broker configs in %s: %s", data_dir, e)
        config.dynamic, config.dynamic_default = {}, {}
        config.merge()


class Broker:
    def __init__(self, config: BrokerConfig) -> None:
        self.config = config
        self.node_id = config.node_id
        # Where log.dirs is: the disk, or memory (kpy.storage.in.memory), for every file the
        # broker and its logs keep there.
        self.fs: FileSystem = MemoryFileSystem() if config.in_memory else OS_FS
        data_dir = config.data_dir
        self.fs.mkdir(data_dir)
        _load_dynamic_configs(config, data_dir, self.fs)
        journal = config.get("kpy.test.durability.journal")
        if journal:  # test mode: record every fsync for the power-loss simulation
            durability.enable(journal)
            log.warning("test mode: fsyncs are journaled in %s", journal)
        self.logs = LogManager.open(
            data_dir, config.topic_defaults(), node_id=self.node_id, fs=self.fs
        )
        logs = self.logs.logs()
        if self.logs.had_clean_shutdown:
            how = "after a clean shutdown"
        elif logs:
            how = "after an unclean shutdown"
        else:
            how = "(new)"
        log.info(
            "loaded %d partition(s) from %s %s; recovered %d segment(s)",
            len(logs),
            "memory" if config.in_memory else data_dir,
            how,
            sum(lg.recovered_segments for lg in logs.values()),
        )
        # Who may do what (kpy.acl): NO_AUTHORIZER, allowing everything, unless
        # authorizer.class.name is set; its ACLs are kept in the data directory.
        self.authorizer = StandardAuthorizer.from_config(config, data_dir, self.fs)
        self.producer_ids = ProducerIdManager(data_dir, self.fs)
        self.scram = CredentialStore(data_dir, self.fs)
        self.quotas = QuotaStore(data_dir, self.fs)
        if config.scram_additions:
            self.scram.apply([], [parse_add_scram(item) for item in config.scram_additions])
        self.waiters = PartitionWaiters()
        self.group_commit = GroupCommit()
        self.file_deleter = FileDeleter()
        # The log cleaner's first dirty offset per partition (Kafka's cleaner checkpoint).
        self.cleaner_checkpoints = read_offset_checkpoint(
            self.logs.data_dir / CLEANER_CHECKPOINT, self.fs
        )
        # kpy's own durability mode: fsync before acknowledging a produce (acks 1 and -1).
        self.flush_before_ack = config.get_bool("kpy.flush.before.ack")
        self.offsets = OffsetStore.open(
            self.logs,
            config.get_int("offsets.topic.num.partitions"),
            segment_bytes=config.get_int("offsets.topic.segment.bytes"),
            leader_epoch=LEADER_EPOCH,
            create=False,  # made when a group first needs it, as Kafka does
        )
        self.groups = GroupCoordinator(
            min_session_timeout_ms=config.get_int("group.min.session.timeout.ms"),
            max_session_timeout_ms=config.get_int("group.max.session.timeout.ms"),
            initial_rebalance_delay_ms=config.get_int("group.initial.rebalance.delay.ms"),
            max_group_size=config.get_int("group.max.size"),
        )
        self.consumer_groups = ConsumerGroupCoordinator(
            partitions_of=lambda t: info.partitions if (info := self.logs.topic(t)) else None,
            topic_id_of=lambda t: info.topic_id if (info := self.logs.topic(t)) else None,
            topic_name_of=lambda i: info.name if (info := self.logs.topic_by_id(i)) else None,
            topic_names=lambda: [t.name for t in self.logs.topics()],
            classic=self.groups,
            heartbeat_interval_ms=config.get_int("group.consumer.heartbeat.interval.ms"),
            session_timeout_ms=config.get_int("group.consumer.session.timeout.ms"),
            max_group_size=config.get_int("group.consumer.max.size"),
        )
        self.transactions = TransactionCoordinator.open(
            self.logs,
            self.write_txn_markers,
            partitions=config.get_int("transaction.state.log.num.partitions"),
            segment_bytes=config.get_int("transaction.state.log.segment.bytes"),
            max_timeout_ms=config.get_int("transaction.max.timeout.ms"),
            id_expiration_ms=config.get_int("transactional.id.expiration.ms"),
            leader_epoch=LEADER_EPOCH,
        )
        # Transactions a crash left between their two writes: their markers go out now.
        self.transactions.complete_unfinished(int(time.time() * 1000))
        self.max_request_size = config.get_int("socket.request.max.bytes")
        # Memory bounds the connections and Fetch share (memory_pool.py).
        self.request_pool = RequestPool(config.queued_max_request_bytes)
        self.response_memory = ResponseMemory(config.get_int("kpy.queued.max.response.bytes"))
        self.fetch_max_bytes = config.get_int("fetch.max.bytes")
        self.started_ms = int(time.time() * 1000)
        # One broker leads every partition; its leader epoch never changes (leader_epoch.py).
        self.leader_epoch = LEADER_EPOCH
        self.admin_lock = anyio.Lock()
        self.bound_ports: dict[str, int] = {}  # listener name -> bound port (port 0 picks one)

    def advertised_listener(self, ctx: RequestContext) -> Listener:
        """The address clients of the connection's listener are told to use, as Kafka answers
        Metadata with the endpoints of the listener the request came in on."""
        advertised = self.config.advertised_listeners
        lst = next((a for a in advertised if a.name == ctx.listener), advertised[0])
        return Listener(lst.name, lst.host, lst.port or self.bound_ports.get(lst.name, 0))

    def describe_topic_configs(self, info: TopicInfo) -> list[configs.Entry]:
        """Every config of a topic (created, or as it would be) as DescribeConfigs shows it."""
        effective = LogConfig.from_properties(info.configs, base=self.logs.default_config)
        return configs.describe_topic(self.config, info.configs, effective.to_properties())

    async def create_topic(
        self,
        name: str,
        partitions: int,
        replication_factor: int,
        configs: dict[str, str | None],
        *,
        validate_only: bool = False,
    ) -> CreateResult:
        """Create a topic (or, with validate_only, check it) as Kafka's CreateTopics does."""
        problem = name_error(name)
        if problem is not None:
            return CreateResult(ErrorCode.invalid_topic_exception, problem)
        async with self.admin_lock:
            if self.logs.topic(name) is not None:
                return CreateResult(
                    ErrorCode.topic_already_exists, f"Topic '{name}' already exists."
                )
            key = collision_key(name)
            for other in self.logs.topics():
                if collision_key(other.name) == key:
                    return CreateResult(
                        ErrorCode.invalid_topic_exception,
                        f"Topic '{name}' collides with existing topic: {other.name}",
                    )
            nulls = sorted(k for k, v in configs.items() if v is None)
            if nulls:
                return CreateResult(
                    ErrorCode.invalid_config,
                    "Null value not supported for topic configs: " + ",".join(nulls),
                )
            for key_name in configs:
                if key_name not in TOPIC_CONFIG_NAMES:
                    return CreateResult(
                        ErrorCode.invalid_config, f"Unknown topic config name: {key_name}"
                    )
            clean = {k: v for k, v in configs.items() if v is not None}
            try:
                LogConfig.from_properties(clean, base=self.logs.default_config)
            except (ValueError, se.InvalidConfig) as e:
                return CreateResult(ErrorCode.invalid_config, str(e))
            if replication_factor == -1:
                replication_factor = self.config.get_int("default.replication.factor")
            if replication_factor <= 0:
                return CreateResult(
                    ErrorCode.invalid_replication_factor,
                    "Replication factor must be larger than 0, or -1 to use the default value.",
                )
            if partitions == -1:
                partitions = self.config.get_int("num.partitions")
            if partitions <= 0:
                return CreateResult(
                    ErrorCode.invalid_partitions,
                    "Number of partitions was set to an invalid non-positive value.",
                )
            if replication_factor > 1:
                return CreateResult(
                    ErrorCode.invalid_replication_factor,
                    f"Unable to replicate the partition {replication_factor} time(s): The target "
                    f"replication factor of {replication_factor} cannot be reached because only "
                    "1 broker(s) are registered.",
                )
            if validate_only:
                return CreateResult(
                    ErrorCode.none, None, TopicInfo(name, ZERO_UUID, partitions, clean)
                )
            info = await anyio.to_thread.run_sync(
                lambda: self.logs.create_topic(name, partitions, clean)
            )
        log.info("created topic %s with %d partition(s)", name, partitions)
        return CreateResult(ErrorCode.none, None, info)

    async def ensure_offsets_topic(self) -> bool:
        """Create ``__consumer_offsets`` if it is not there yet (Kafka creates it on the first
        FindCoordinator for a group); False when that failed (the caller answers
        COORDINATOR_NOT_AVAILABLE, as Kafka does until the topic is ready)."""
        if self.offsets.topic_exists:
            return True
        async with self.admin_lock:
            try:
                await anyio.to_thread.run_sync(self.offsets.create_topic)
            except (OSError, se.StorageError):
                log.exception("could not create %s", OFFSETS_TOPIC)
                return False
        return True

    async def ensure_transaction_topic(self) -> bool:
        """Create ``__transaction_state`` if it is not there yet (Kafka creates it on the first
        FindCoordinator for a transactional id); False when that failed."""
        if self.transactions.topic_exists:
            return True
        async with self.admin_lock:
            try:
                await anyio.to_thread.run_sync(self.transactions.create_topic)
            except (OSError, se.StorageError):
                log.exception("could not create %s", TXN_TOPIC)
                return False
        return True

    def write_txn_markers(
        self,
        producer_id: int,
        producer_epoch: int,
        commit: bool,
        partitions: frozenset[tuple[str, int]],
        coordinator_epoch: int | None = None,
    ) -> set[tuple[str, int]]:
        """Write a transaction marker to each partition (Kafka's WriteTxnMarkers, which the
        coordinator sends to the partitions' leaders: here, itself); the partitions whose
        marker could not be written, to try again later.

        A deleted partition needs no marker. A marker refused for its epochs (the producer or
        the coordinator moved on: Kafka's INVALID_PRODUCER_EPOCH, TRANSACTION_COORDINATOR_FENCED)
        is given up, as Kafka's coordinator gives up such a partition. On a partition of
        ``__consumer_offsets`` the marker also ends the transaction's offset commits there.
        Fetch long polls of each partition are woken: its last stable offset moved."""
        now_ms = int(time.time() * 1000)
        epoch = (
            self.transactions.coordinator_epoch if coordinator_epoch is None else coordinator_epoch
        )
        failed: set[tuple[str, int]] = set()
        for topic, partition in sorted(partitions):
            partition_log = self.logs.get_log(topic, partition)
            if partition_log is None:
                continue
            try:
                partition_log.append_marker(
                    producer_id,
                    producer_epoch,
                    commit=commit,
                    coordinator_epoch=epoch,
                    now_ms=now_ms,
                    leader_epoch=self.leader_epoch,
                )
            except (se.InvalidProducerEpoch, se.TransactionCoordinatorFenced) as e:
                log.warning(
                    "marker of producer %d to %s-%d refused: %s", producer_id, topic, partition, e
                )
                continue
            except (se.StorageError, OSError) as e:
                log.warning(
                    "marker of producer %d to %s-%d failed: %s", producer_id, topic, partition, e
                )
                failed.add((topic, partition))
                continue
            if topic == OFFSETS_TOPIC:
                self.offsets.complete_transaction(partition, producer_id, commit)
            self.waiters.notify(topic, partition)
        return failed

    def verify_transactional_write(
        self,
        transactional_id: str | None,
        producer_id: int,
        producer_epoch: int,
        tp: tuple[str, int],
        *,
        generic_error: bool,
    ) -> ErrorCode:
        """KIP-890's check before a transactional write to ``tp`` (Kafka's
        UnifiedLog.maybeStartTransactionVerification and AddPartitionsToTxnManager): none needed
        when the producer already has a transaction open there at this epoch; otherwise the
        coordinator must have the partition in the producer's transaction. The coordinator's
        PRODUCER_FENCED comes back as INVALID_PRODUCER_EPOCH (what producers expect from a
        write), and TRANSACTION_ABORTABLE as INVALID_TXN_STATE for requests older than the
        code (``generic_error`` false). transaction.partition.verification.enable=false turns it
        off."""
        if transactional_id is None or not self.config.get_bool(
            "transaction.partition.verification.enable"
        ):
            return ErrorCode.none
        partition_log = self.logs.get_log(*tp)
        if partition_log is not None:
            entry = partition_log.producer_state.last_entry(producer_id)
            if (
                entry is not None
                and entry.current_txn_first_offset is not None
                and entry.producer_epoch == producer_epoch
            ):
                return ErrorCode.none
        error = self.transactions.verify(transactional_id, producer_id, producer_epoch, [tp])[tp]
        if error is ErrorCode.producer_fenced:
            return ErrorCode.invalid_producer_epoch
        if error is ErrorCode.transaction_abortable and not generic_error:
            return ErrorCode.invalid_txn_state
        return error

    async def delete_topic(self, name: str) -> bool:
        """Delete a topic; False when it is not there (another request deleted it first).

        On the event loop thread, so that no produce or fetch on the loop meets a log half
        deleted; the files are renamed away and unlinked, which does not wait on the disk.
        """
        async with self.admin_lock:
            if self.logs.topic(name) is None:
                return False
            self.logs.delete_topic(name)
            self.offsets.delete_topic(name)
        log.info("deleted topic %s", name)
        return True

    async def delete_records(
        self, offsets: Mapping[tuple[str, int], int]
    ) -> dict[tuple[str, int], tuple[ErrorCode, int]]:
        """Move log start offsets up (DeleteRecords): (error, low watermark) per partition.

        Kafka's ReplicaManager.deleteRecordsOnLocalLog and Partition.deleteRecordsOnLeader:
        internal topics are refused (INVALID_TOPIC_EXCEPTION), so are topics whose
        cleanup.policy lacks delete (POLICY_VIOLATION); offset -1 means the high watermark, any
        other negative offset or one past the high watermark is OFFSET_OUT_OF_RANGE; an offset
        at or below the log start changes nothing. The low watermark is the log start after the
        call (one replica: nothing to wait for). The new starts are checkpointed before the
        segments below them are deleted, so a crash in between keeps them; under the admin
        lock, as the periodic checkpoint is.
        """
        results: dict[tuple[str, int], tuple[ErrorCode, int]] = {}
        async with self.admin_lock:
            moved: list[tuple[tuple[str, int], Log]] = []
            for tp, offset in offsets.items():
                outcome = self._advance_log_start(tp, offset)
                if isinstance(outcome, ErrorCode):
                    results[tp] = (outcome, -1)
                    continue
                partition_log, advanced = outcome
                if advanced:
                    moved.append((tp, partition_log))
                results[tp] = (ErrorCode.none, partition_log.log_start_offset)
            if not moved:
                return results
            try:
                await anyio.to_thread.run_sync(self.logs.write_checkpoints)
            except OSError:
                log.exception("writing the log start offset checkpoint failed")
                for tp, _ in moved:
                    results[tp] = (ErrorCode.kafka_storage_error, -1)
            for (topic, partition), partition_log in moved:
                log.info(
                    "log start offset of %s-%d moved to %d (DeleteRecords)",
                    topic,
                    partition,
                    partition_log.log_start_offset,
                )
                self.waiters.notify(topic, partition)  # fetches below the new start end now
            await self._delete_segments_below_start([lg for _, lg in moved])
        return results

    def _advance_log_start(self, tp: tuple[str, int], offset: int) -> ErrorCode | tuple[Log, bool]:
        """One partition's error, or its log and whether its start moved (the caller still has
        to checkpoint it)."""
        topic, partition = tp
        partition_log = self.logs.get_log(topic, partition)
        if partition_log is None:  # deleted since the request was checked
            return ErrorCode.unknown_topic_or_partition
        if is_internal(topic):
            return ErrorCode.invalid_topic_exception
        if not partition_log.config.delete:
            return ErrorCode.policy_violation
        if partition_log.offline:
            return ErrorCode.kafka_storage_error
        if offset == HIGH_WATERMARK:
            offset = partition_log.log_end_offset
        if offset < 0:
            return ErrorCode.offset_out_of_range
        try:
            return partition_log, partition_log.advance_start(offset)
        except se.OffsetOutOfRange:
            return ErrorCode.offset_out_of_range

    async def _delete_segments_below_start(self, logs: list[Log]) -> None:
        """Take the segments wholly below each log's start out of it (renames, on the loop) and
        unlink them on a worker thread. Failures are logged: the log start stands, and what is
        left on disk is deleted at the next start."""
        now_ms = int(time.time() * 1000)
        deletions: list[SegmentDeletion] = []
        for partition_log in logs:
            try:
                deletions.append(partition_log.delete_segments_below_start(now_ms))
            except OSError:
                log.exception("deleting segments below the log start of %s", partition_log.dir)

        def delete_files() -> None:
            for deletion in deletions:
                try:
                    deletion.delete_files()
                except OSError:
                    log.exception("deleting the files of %s", deletion.segments)

        if any(deletions):
            await anyio.to_thread.run_sync(delete_files)

    async def delete_old_segments(self) -> int:
        """One retention pass over every log (Kafka's LogManager.cleanupLogs and
        UnifiedLog.deleteOldSegments; rules in kpy.storage.retention): segments are renamed to
        ``*.deleted`` on the loop, the moved log starts are checkpointed, the Fetch long polls of
        those partitions woken (a fetch below the new start ends with OFFSET_OUT_OF_RANGE), and
        the files unlinked after each topic's file.delete.delay.ms. Offline logs are left
        alone, as Kafka takes them out of its log manager. Returns the segments deleted.

        Under the admin lock, as DeleteRecords and the periodic checkpoint are."""
        now_ms = int(time.time() * 1000)
        deleted = 0
        async with self.admin_lock:
            moved: list[tuple[str, int]] = []
            for (topic, partition), partition_log in self.logs.logs().items():
                if partition_log.closed or partition_log.offline:
                    continue
                start = partition_log.log_start_offset
                try:
                    deletion = partition_log.delete_old_segments(now_ms)
                except OSError:
                    log.exception("retention of %s-%d failed; will try again", topic, partition)
                    continue
                if deletion:
                    deleted += len(deletion.segments)
                    self.file_deleter.schedule(deletion, partition_log.config.file_delete_delay_ms)
                if partition_log.log_start_offset != start:
                    moved.append((topic, partition))
                    log.info(
                        "retention deleted %d segment(s) of %s-%d; log start offset now %d",
                        len(deletion.segments),
                        topic,
                        partition,
                        partition_log.log_start_offset,
                    )
            if moved:
                try:
                    await anyio.to_thread.run_sync(self.logs.write_checkpoints)
                except OSError:
                    log.exception("writing the log start offset checkpoint failed")
                for topic, partition in moved:
                    self.waiters.notify(topic, partition)
        return deleted

    async def clean_logs(self) -> int:
        """One pass of the log cleaner (kpy.storage.cleaner) over the compacted logs that need
        it; returns how many were cleaned. The reading and rewriting run on a worker thread,
        each group's swap into the log on the loop; a group under way finishes even when the
        broker shuts down (shielded), so the log in memory matches the files. The first dirty
        offsets are checkpointed in ``cleaner-offset-checkpoint`` after each log."""
        cleaned = 0
        for tp, partition_log in list(self.logs.logs().items()):
            now_ms = int(time.time() * 1000)
            if (
                partition_log.closed
                or partition_log.offline
                or partition_log.cleaning
                or not cleaner.is_compacted(partition_log.config)
            ):
                continue
            checkpoint = self.cleaner_checkpoints.get(tp)
            cleanable = cleaner.cleanable_range(partition_log, checkpoint, now_ms)
            if not cleaner.needs_cleaning(partition_log.config, cleanable, now_ms):
                continue
            try:
                await self._clean_log(partition_log, cleanable, now_ms)
            except se.LogClosed:  # deleted or shut down meanwhile
                continue
            except OSError:
                log.exception("cleaning %s-%d failed; will try again", tp[0], tp[1])
                continue
            if partition_log.closed:
                continue
            self.cleaner_checkpoints[tp] = cleanable.first_uncleanable
            live = self.logs.logs()
            offsets = {k: v for k, v in self.cleaner_checkpoints.items() if k in live}
            self.cleaner_checkpoints = offsets
            path = self.logs.data_dir / CLEANER_CHECKPOINT
            await anyio.to_thread.run_sync(write_offset_checkpoint, path, offsets, self.fs)
            cleaned += 1
        return cleaned

    async def _clean_log(
        self, partition_log: Log, cleanable: cleaner.CleanableRange, now_ms: int
    ) -> None:
        work = cleaner.Cleaner(
            partition_log, cleanable, now_ms, cleaner.producer_last_offsets(partition_log)
        )
        partition_log.cleaning = True
        try:
            await anyio.to_thread.run_sync(work.build_offset_map)
            for group in work.groups():
                await anyio.lowlevel.checkpoint()  # shutdown stops here, between groups
                with anyio.CancelScope(shield=True):
                    done = await anyio.to_thread.run_sync(work.clean_group, group)
                    if partition_log.closed:  # deleted or shut down meanwhile
                        done.new.abandon()
                        return
                    partition_log.replace_segments(done.old, done.new)
                self.file_deleter.schedule(
                    SegmentDeletion(partition_log.fs, partition_log.dir, done.old),
                    partition_log.config.file_delete_delay_ms,
                )
        finally:
            partition_log.cleaning = False
        stats = work.stats
        log.info(
            "cleaned %s: %d of %d records kept, %d bytes to %d, %d segment group(s)",
            partition_log.dir.name,
            stats.records_kept,
            stats.records_read,
            stats.bytes_read,
            stats.bytes_written,
            stats.groups,
        )

    async def flush_dirty_logs(self) -> None:
        """fsync the logs whose last flush is flush.ms old (Kafka's LogManager.flushDirtyLogs),
        through the group commit; a failure is logged (the log went offline)."""
        now_ms = int(time.time() * 1000)
        due = [
            (tp, lg)
            for tp, lg in self.logs.logs().items()
            if not lg.closed and not lg.offline and lg.flush_due_by_time(now_ms)
        ]
        for (topic, partition), partition_log in due:
            try:
                await self.group_commit.flushed(partition_log, partition_log.log_end_offset)
            except (OSError, se.KafkaStorageError):
                log.exception("flushing %s-%d failed", topic, partition)

    @property
    def cluster_id(self) -> str:
        return self.logs.cluster_id

    def close(self) -> None:
        try:
            self.file_deleter.delete_all_now()
        finally:
            self.logs.close()

    async def dispatch(
        self, frame: bytes, peer: str, listener: str = "", principal: str = ANONYMOUS
    ) -> bytes | None:
        header = parse_header(frame)
        reg = REGISTRY.get(header.api_key)
        if reg is None:
            raise ProtocolError(f"unknown API key {header.api_key}")
        ctx = RequestContext(self, header, peer, listener, principal)
        if not reg.min_version <= header.api_version <= reg.max_version:
            if header.api_key == API_VERSIONS_KEY:
                from kpy.handlers.api_versions import unsupported_version_response

                return unsupported_version_response(header)
            raise ProtocolError(
                f"{reg.name} v{header.api_version} is not served (v{reg.min_version}-"
                f"v{reg.max_version})"
            )
        handler, on_error = loaded(reg)
        request = decode_request(header, frame)
        try:
            response: Any = await handler(ctx, request)
        except CloseConnection:
            raise
        except Exception as e:
            # A bug or an unforeseen failure: Kafka's handleError answers UNKNOWN_SERVER_ERROR
            # (or closes the connection where the API has no response, as acks=0).
            log.exception("%s v%d from %s failed", reg.name, header.api_version, peer)
            if on_error is None:
                raise CloseConnection(f"{reg.name} failed: {e!r}") from e
            response = on_error(ctx, request, ErrorCode.unknown_server_error)
            if response is None:
                raise CloseConnection(f"{reg.name} failed: {e!r}") from e
        if response is None:
            return None
        return encode_response(header, response)
