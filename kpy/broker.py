"""The broker: shared state behind the handlers, and request dispatch.

``Broker`` owns the LogManager, the producer id allocator and the wake-ups that end Fetch long
polls. ``Broker.dispatch`` turns one frame into the bytes of its response (or nothing, for
acks=0 produces), and raises ProtocolError where Kafka closes the connection: a header that does
not parse, an unknown API key, a version outside the served range (except ApiVersions, which
answers), a body that does not parse.
"""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass
from typing import Any

import anyio
from kio.schema.errors import ErrorCode

from kpy.config import BrokerConfig, Listener
from kpy.coordinator.consumer_group import ConsumerGroupCoordinator
from kpy.coordinator.group import GroupCoordinator
from kpy.coordinator.offsets import OffsetStore
from kpy.handlers.registry import REGISTRY, CloseConnection
from kpy.leader_epoch import LEADER_EPOCH
from kpy.producer_ids import ProducerIdManager
from kpy.protocol.messages import (
    API_VERSIONS_KEY,
    ProtocolError,
    RequestHeader,
    decode_request,
    encode_response,
    parse_header,
)
from kpy.storage import errors as se
from kpy.storage.config import TOPIC_CONFIG_NAMES, LogConfig
from kpy.storage.log_manager import LogManager, TopicInfo
from kpy.topics import collision_key, name_error

log = logging.getLogger("kpy.broker")
ZERO_UUID = uuid.UUID(int=0)


@dataclass
class RequestContext:
    broker: Broker
    header: RequestHeader
    peer: str
    listener: str  # the name of the listener the connection came in on

    @property
    def version(self) -> int:
        return self.header.api_version


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


class Broker:
    def __init__(self, config: BrokerConfig) -> None:
        import kpy.handlers  # noqa: F401  (registers every handler)

        self.config = config
        self.node_id = config.node_id
        data_dir = config.data_dir
        data_dir.mkdir(parents=True, exist_ok=True)
        self.logs = LogManager.open(data_dir, config.topic_defaults(), node_id=self.node_id)
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
            data_dir,
            how,
            sum(lg.recovered_segments for lg in logs.values()),
        )
        self.producer_ids = ProducerIdManager(data_dir)
        self.waiters = PartitionWaiters()
        self.offsets = OffsetStore.open(
            self.logs, config.get_int("offsets.topic.num.partitions"), leader_epoch=LEADER_EPOCH
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
        self.max_request_size = config.get_int("socket.request.max.bytes")
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

    def effective_topic_config(self, info: TopicInfo) -> dict[str, str]:
        merged = dict(self.config.topic_defaults())
        merged.update({k: v for k, v in info.configs.items() if v is not None})
        return merged

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
                LogConfig.from_properties({**self.config.topic_defaults(), **clean})
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

    @property
    def cluster_id(self) -> str:
        return self.logs.cluster_id

    def close(self) -> None:
        self.logs.close()

    async def dispatch(self, frame: bytes, peer: str, listener: str = "") -> bytes | None:
        header = parse_header(frame)
        reg = REGISTRY.get(header.api_key)
        if reg is None:
            raise ProtocolError(f"unknown API key {header.api_key}")
        ctx = RequestContext(self, header, peer, listener)
        if not reg.min_version <= header.api_version <= reg.max_version:
            if header.api_key == API_VERSIONS_KEY:
                from kpy.handlers.api_versions import unsupported_version_response

                return unsupported_version_response(header)
            raise ProtocolError(
                f"{reg.name} v{header.api_version} is not served (v{reg.min_version}-"
                f"v{reg.max_version})"
            )
        request = decode_request(header, frame)
        try:
            response: Any = await reg.handler(ctx, request)
        except CloseConnection:
            raise
        except Exception as e:
            # A bug or an unforeseen failure: Kafka's handleError answers UNKNOWN_SERVER_ERROR
            # (or closes the connection where the API has no response, as acks=0).
            log.exception("%s v%d from %s failed", reg.name, header.api_version, peer)
            if reg.error_response is None:
                raise CloseConnection(f"{reg.name} failed: {e!r}") from e
            response = reg.error_response(ctx, request, ErrorCode.unknown_server_error)
            if response is None:
                raise CloseConnection(f"{reg.name} failed: {e!r}") from e
        if response is None:
            return None
        return encode_response(header, response)
