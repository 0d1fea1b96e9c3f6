"""LogManager: the data directory, its partition logs, topic metadata and checkpoint files.

Files in the data directory root:

    meta.properties                    Kafka's format (java.util.Properties text):
                                           #
                                           #<date>
                                           cluster.id=<22-char base64url uuid>
                                           node.id=<int>
                                           version=1
    recovery-point-offset-checkpoint   Kafka's offset checkpoint text format:
    log-start-offset-checkpoint            0                      (format version)
                                           <n>                    (number of lines that follow)
                                           <topic> <partition> <offset>   (n lines)
    .kafka_cleanshutdown               exists only between a clean close and the next open;
                                       content as Kafka's: {"version":0,"brokerEpoch":-1}
    kpy-topics.json                    kpy's own (see "Changing kpy-topics.json" below)
    <topic>-<partition>/               one Log each (log.py), holding also Kafka's
                                       partition.metadata: "version: 0\\ntopic_id: <base64url>"

kpy-topics.json layout:

    {"version": 1,
     "topics": [{"name": str, "topic_id": str (Kafka's base64url form of a uuid4),
                 "partitions": int, "configs": {kafka config name: str}}]}

Changing kpy-topics.json:
    1. Add fields with a default, so an older file still loads; readers ignore unknown fields.
    2. Anything else (renaming, changing a meaning): bump "version", keep a reader for the old
       version here, and write only the new one.
    3. The file is the commit point of create_topic and delete_topic. create_topic writes it
       after creating (and opening) the partition directories, delete_topic before removing
       them, so a crash in between is repaired at open (directories of unknown topics are left
       alone and logged; missing directories are created; a directory whose partition.metadata
       names another topic id is deleted, as when the same name is created again).

Every file above is written atomically: to ``<name>.tmp``, fsync, rename, fsync the directory.
All of them, and the logs, are on the manager's FileSystem (``fs``, fs.py): the disk by default,
or memory for a throwaway broker, where the same names hold the same bytes and nothing is
durable.

Threads: the event loop thread, except ``create_topic``, ``checkpoint`` and
``write_checkpoints``, which the broker runs on a worker thread (one at a time, under its admin
lock). ``create_topic`` opens every log
first and then publishes the topic by replacing ``_logs``, ``_topics`` and ``_by_id`` with new
dicts, so the event loop never sees a topic without its logs nor a dict changing under an
iteration. Logs it hands out may be read from worker threads (log.py).

After a crash: no clean shutdown marker at open, so each log recovers from its checkpointed
recovery point (0 if the checkpoint lacks it); checkpoints are rewritten right after opening.
The log start offsets are checkpointed periodically (``checkpoint``) and at once when one moves
(``write_checkpoints``, before the segments below it are deleted), and each log opens at its
checkpointed start or later (log.py).
``close`` writes no marker while any log is offline (a failed write it could not undo), so that
log is recovered at the next start.
"""

from __future__ import annotations

import base64
import json
import logging
import re
import time
import uuid
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

from kpy.storage.config import LogConfig
from kpy.storage.errors import (
    InconsistentMetadata,
    InvalidPartitions,
    InvalidTopic,
    KafkaStorageError,
    TopicExists,
    UnknownTopic,
)
from kpy.storage.fs import OS_FS, FileSystem
from kpy.storage.log import Log

log = logging.getLogger(__name__)

# A recovery after an unclean shutdown that takes longer than this logs its progress this often.
RECOVERY_PROGRESS_EVERY_S = 5.0


class RecoveryProgress:
    """Progress lines for a long recovery at start-up (Kafka logs its "n/m logs loaded" and
    "n/m recovered" likewise): segments checked of the segments there are, logs opened."""

    def __init__(self, fs: FileSystem, root: Path, topics: Iterable[TopicInfo]) -> None:
        self.logs_total = 0
        self.segments_total = 0
        for info in topics:
            for partition in range(info.partitions):
                self.logs_total += 1
                directory = root / f"{info.name}-{partition}"  # missing: none, made at open
                self.segments_total += len(fs.names_ending(directory, ".log"))
        self.logs = self.segments = 0
        self._began = self._said = time.monotonic()

    def segment_checked(self) -> None:
        self.segments += 1
        self._report()

    def log_opened(self) -> None:
        self.logs += 1
        self._report()

    def _report(self) -> None:
        now = time.monotonic()
        if now - self._said >= RECOVERY_PROGRESS_EVERY_S:
            self._said = now
            log.info(
                "recovering after an unclean shutdown: %d segments checked (of %d in all; "
                "those below a log's recovery point need none), %d of %d logs open (%.0f s)",
                self.segments,
                self.segments_total,
                self.logs,
                self.logs_total,
                now - self._began,
            )


RECOVERY_POINT_CHECKPOINT = "recovery-point-offset-checkpoint"
LOG_START_OFFSET_CHECKPOINT = "log-start-offset-checkpoint"
CLEAN_SHUTDOWN_FILE = ".kafka_cleanshutdown"
META_PROPERTIES = "meta.properties"
TOPICS_FILE = "kpy-topics.json"
PARTITION_METADATA = "partition.metadata"
TOPICS_FILE_VERSION = 1

_LEGAL_TOPIC = re.compile(r"^[a-zA-Z0-9._-]+$")
MAX_TOPIC_LENGTH = 249
# Threads that create the partitions of one new topic (see ``_open_new_logs``).
CREATE_THREADS = 8
_METADATA_TOPIC_ID = uuid.UUID(int=1)

TopicPartition = tuple[str, int]


# --- Kafka's Uuid text form ---


def uuid_to_kafka(value: uuid.UUID) -> str:
    """Kafka's Uuid.toString: base64url of the 16 bytes, without padding (22 characters)."""
    return base64.urlsafe_b64encode(value.bytes).rstrip(b"=").decode("ascii")


def uuid_from_kafka(text: str) -> uuid.UUID:
    raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    if len(raw) != 16:
        raise ValueError(f"{text!r} is not a Kafka uuid")
    return uuid.UUID(bytes=raw)


def random_kafka_uuid() -> uuid.UUID:
    """A uuid4 Kafka would accept (Uuid.randomUuid: not zero, not reserved, no leading '-')."""
    while True:
        value = uuid.uuid4()
        if value.int > 1 and not uuid_to_kafka(value).startswith("-"):
            return value


def read_offset_checkpoint(path: Path, fs: FileSystem = OS_FS) -> dict[TopicPartition, int]:
    """Parse Kafka's offset checkpoint file; a missing or malformed file reads as empty."""
    try:
        lines = fs.read_text(path).splitlines()
    except FileNotFoundError:
        return {}
    try:
        if lines[0].strip() != "0":
            raise ValueError(f"unknown checkpoint version {lines[0]!r}")
        count = int(lines[1])
        offsets: dict[TopicPartition, int] = {}
        for line in lines[2 : 2 + count]:
            topic, partition, offset = line.split(" ")
            offsets[(topic, int(partition))] = int(offset)
        if len(offsets) != count:
            raise ValueError("checkpoint line count mismatch")
        return offsets
    except (ValueError, IndexError) as exc:
        log.warning("ignoring malformed checkpoint %s: %s", path, exc)
        return {}


def write_offset_checkpoint(
    path: Path, offsets: Mapping[TopicPartition, int], fs: FileSystem = OS_FS
) -> None:
    lines = ["0", str(len(offsets))]
    lines += [
        f"{topic} {partition} {offset}" for (topic, partition), offset in sorted(offsets.items())
    ]
    fs.write_atomic(path, ("\n".join(lines) + "\n").encode("utf-8"))


def read_properties(path: Path, fs: FileSystem = OS_FS) -> dict[str, str]:
    props: dict[str, str] = {}
    for raw in fs.read_text(path).splitlines():
        line = raw.strip()
        if not line or line[0] in "#!":
            continue
        key, _, value = line.partition("=")
        props[key.strip()] = value.strip()
    return props


def write_properties(path: Path, props: Mapping[str, str], fs: FileSystem = OS_FS) -> None:
    stamp = time.strftime("%a %b %d %H:%M:%S UTC %Y", time.gmtime())
    lines = ["#", f"#{stamp}"] + [f"{k}={v}" for k, v in props.items()]
    fs.write_atomic(path, ("\n".join(lines) + "\n").encode("utf-8"))


def validate_topic_name(name: str) -> None:
    """Kafka's Topic.validate."""
    if not name:
        raise InvalidTopic("topic name is empty")
    if name in (".", ".."):
        raise InvalidTopic(f"topic name cannot be {name!r}")
    if len(name) > MAX_TOPIC_LENGTH:
        raise InvalidTopic(f"topic name is longer than {MAX_TOPIC_LENGTH} characters")
    if not _LEGAL_TOPIC.match(name):
        raise InvalidTopic(f"topic name {name!r} has characters outside [a-zA-Z0-9._-]")


def _collision_key(name: str) -> str:
    return name.replace(".", "_")


@dataclass(frozen=True, slots=True)
class TopicInfo:
    name: str
    topic_id: uuid.UUID
    partitions: int
    configs: Mapping[str, str] = field(default_factory=dict)  # the topic's overrides only

    def to_json(self) -> dict[str, object]:
        return {
            "name": self.name,
            "topic_id": uuid_to_kafka(self.topic_id),
            "partitions": self.partitions,
            "configs": dict(self.configs),
        }

    @classmethod
    def from_json(cls, obj: Mapping[str, object]) -> TopicInfo:
        configs = obj.get("configs") or {}
        assert isinstance(configs, dict)
        partitions = obj["partitions"]
        assert isinstance(partitions, int)
        return cls(
            str(obj["name"]),
            uuid_from_kafka(str(obj["topic_id"])),
            partitions,
            {str(k): str(v) for k, v in configs.items()},
        )


class LogManager:
    """Owns one data directory: see the module docstring for its files."""

    def __init__(
        self,
        data_dir: Path,
        default_config: LogConfig,
        node_id: int,
        cluster_id: str,
        had_clean_shutdown: bool,
        fs: FileSystem = OS_FS,
    ) -> None:
        self.data_dir = data_dir
        self.fs = fs  # the disk or memory (fs.py): every log of this manager is on it
        self.default_config = default_config
        self.node_id = node_id
        self.cluster_id = cluster_id
        self.had_clean_shutdown = had_clean_shutdown
        self._topics: dict[str, TopicInfo] = {}
        self._by_id: dict[uuid.UUID, TopicInfo] = {}
        self._logs: dict[TopicPartition, Log] = {}
        self._closed = False

    # --- Opening ---

    @classmethod
    def open(
        cls,
        data_dir: Path | str,
        default_config_overrides: Mapping[str, str] | None = None,
        *,
        node_id: int = 1,
        now_ms: int | None = None,
        fs: FileSystem = OS_FS,
    ) -> LogManager:
        """Open (or initialise) a data directory and every partition log in it, on ``fs`` (the
        disk by default; a MemoryFileSystem keeps it all in memory).

        ``default_config_overrides`` uses Kafka's topic config names ("segment.bytes"); topic
        overrides apply on top of it.
        """
        root = Path(data_dir)
        fs.mkdir(root)
        now = int(time.time() * 1000) if now_ms is None else now_ms
        default_config = LogConfig.from_properties(default_config_overrides or {})
        for tmp in fs.names_ending(root, ".tmp"):
            fs.unlink(root / tmp)
        cluster_id = cls._load_meta_properties(fs, root, node_id)
        marker = root / CLEAN_SHUTDOWN_FILE
        clean = fs.exists(marker)
        manager = cls(root, default_config, node_id, cluster_id, clean, fs)
        try:
            for info in manager._read_topics_file():
                manager._add_topic(info)
            recovery_points = read_offset_checkpoint(root / RECOVERY_POINT_CHECKPOINT, fs)
            start_offsets = read_offset_checkpoint(root / LOG_START_OFFSET_CHECKPOINT, fs)
            manager._sweep(root)
            progress = None if clean else RecoveryProgress(fs, root, manager._topics.values())
            for info in manager._topics.values():
                for partition in range(info.partitions):
                    tp = (info.name, partition)
                    manager._logs[tp] = manager._open_log(
                        info,
                        partition,
                        recovery_point=recovery_points.get(tp, 0),
                        log_start_offset=start_offsets.get(tp, 0),
                        clean=clean,
                        now_ms=now,
                        progress=progress,
                    )
                    if progress is not None:
                        progress.log_opened()
            if clean:
                fs.unlink(marker)
                fs.fsync_dir(root)
            manager._write_checkpoints()
        except BaseException:  # release the logs opened so far; write nothing more
            manager.abandon()
            raise
        return manager

    @staticmethod
    def _load_meta_properties(fs: FileSystem, root: Path, node_id: int) -> str:
        path = root / META_PROPERTIES
        if fs.exists(path):
            props = read_properties(path, fs)
            if props.get("version") != "1":
                raise InconsistentMetadata(f"{path}: unsupported version {props.get('version')}")
            if props.get("node.id") != str(node_id):
                raise InconsistentMetadata(
                    f"{path}: node.id {props.get('node.id')} does not match configured {node_id}"
                )
            cluster_id = props.get("cluster.id")
            if not cluster_id:
                raise InconsistentMetadata(f"{path}: no cluster.id")
            return cluster_id
        cluster_id = uuid_to_kafka(random_kafka_uuid())
        write_properties(
            path, {"cluster.id": cluster_id, "node.id": str(node_id), "version": "1"}, fs
        )
        return cluster_id

    def _read_topics_file(self) -> list[TopicInfo]:
        path = self.data_dir / TOPICS_FILE
        try:
            obj = json.loads(self.fs.read_bytes(path))
        except FileNotFoundError:
            return []
        if obj.get("version") != TOPICS_FILE_VERSION:
            raise InconsistentMetadata(f"{path}: unsupported version {obj.get('version')}")
        return [TopicInfo.from_json(t) for t in obj.get("topics", [])]

    def _write_topics_file(self, topics: Mapping[str, TopicInfo] | None = None) -> None:
        """Write ``topics`` (default: the registered ones) to kpy-topics.json."""
        values = (self._topics if topics is None else topics).values()
        obj = {
            "version": TOPICS_FILE_VERSION,
            "topics": [t.to_json() for t in sorted(values, key=lambda t: t.name)],
        }
        self.fs.write_atomic(self.data_dir / TOPICS_FILE, json.dumps(obj, indent=1).encode("utf-8"))

    def _sweep(self, root: Path) -> None:
        """Finish interrupted deletes; report directories that belong to no known partition."""
        fs = self.fs
        for name in fs.listdir(root):
            entry = root / name
            if not fs.is_dir(entry):
                continue
            if entry.name.endswith("-delete"):
                fs.rmtree(entry)
                continue
            topic, _, partition = entry.name.rpartition("-")
            info = self._topics.get(topic)
            if info is None or not partition.isdigit() or int(partition) >= info.partitions:
                log.warning("ignoring directory %s: no such partition in %s", entry, TOPICS_FILE)

    def _add_topic(self, info: TopicInfo) -> None:
        self._topics = {**self._topics, info.name: info}
        self._by_id = {**self._by_id, info.topic_id: info}

    def partition_dir(self, topic: str, partition: int) -> Path:
        return self.data_dir / f"{topic}-{partition}"

    def _open_log(
        self,
        info: TopicInfo,
        partition: int,
        *,
        config: LogConfig | None = None,
        recovery_point: int,
        log_start_offset: int,
        clean: bool,
        now_ms: int,
        sync_data_dir: bool = True,
        progress: RecoveryProgress | None = None,
    ) -> Log:
        """Open a partition's log, creating its directory and partition.metadata if missing
        (``sync_data_dir=False``: the caller fsyncs the data directory afterwards)."""
        fs = self.fs
        directory = self.partition_dir(info.name, partition)
        metadata = directory / PARTITION_METADATA
        expected = f"version: 0\ntopic_id: {uuid_to_kafka(info.topic_id)}"
        if (
            fs.exists(directory)
            and fs.exists(metadata)
            and fs.read_text(metadata).strip() != expected
        ):
            # A directory left by a deleted topic of the same name: finish deleting it.
            doomed = directory.with_name(f"{directory.name}.{uuid.uuid4().hex}-delete")
            fs.rename(directory, doomed)
            fs.rmtree(doomed)
        if not fs.exists(metadata):
            fs.mkdir(directory)
            fs.write_atomic(metadata, expected.encode("utf-8"))
            if sync_data_dir:
                fs.fsync_dir(self.data_dir)
        return Log.open(
            directory,
            config or self.topic_config(info.name),
            recovery_point=recovery_point,
            clean_shutdown=clean,
            now_ms=now_ms,
            log_start_offset=log_start_offset,
            on_segment_checked=progress.segment_checked if progress is not None else None,
            fs=fs,
        )

    # --- Topics ---

    def topics(self) -> list[TopicInfo]:
        return sorted(self._topics.values(), key=lambda t: t.name)

    def topic(self, name: str) -> TopicInfo | None:
        return self._topics.get(name)

    def topic_by_id(self, topic_id: uuid.UUID) -> TopicInfo | None:
        return self._by_id.get(topic_id)

    def topic_config(self, name: str) -> LogConfig:
        info = self._topics[name]
        return LogConfig.from_properties(info.configs, base=self.default_config)

    def create_topic(
        self,
        name: str,
        partitions: int,
        configs: Mapping[str, str] | None = None,
        *,
        now_ms: int | None = None,
    ) -> TopicInfo:
        """Create a topic and its partition logs. Raises InvalidTopic, TopicExists,
        InvalidPartitions, InvalidConfig; nothing is written when it raises.

        Opens every log and writes kpy-topics.json before the topic becomes visible (``topic``,
        ``get_log``): it may run on a worker thread while the event loop serves requests. If
        opening a log or writing the file fails, the logs opened so far are deleted and the
        topic is not created."""
        validate_topic_name(name)
        if name in self._topics:
            raise TopicExists(f"topic {name!r} already exists")
        key = _collision_key(name)
        for other in self._topics:
            if _collision_key(other) == key:
                raise InvalidTopic(f"topic {name!r} collides with existing topic {other!r}")
        if partitions < 1:
            raise InvalidPartitions(f"partition count {partitions} is below 1")
        overrides = dict(configs or {})
        config = LogConfig.from_properties(overrides, base=self.default_config)  # validates
        topic_id = random_kafka_uuid()
        while topic_id in self._by_id:
            topic_id = random_kafka_uuid()
        info = TopicInfo(name, topic_id, partitions, overrides)
        now = int(time.time() * 1000) if now_ms is None else now_ms
        opened: dict[TopicPartition, Log] = {}
        try:
            self._open_new_logs(info, range(partitions), config, now, opened)
            self._write_topics_file({**self._topics, name: info})
        except BaseException:  # not created: remove the directories made so far
            with ExitStack() as stack:
                for partition in range(partitions):
                    stack.callback(self._discard_partition, info, partition, opened)
            raise
        # Publish: whole new dicts, so a reader on the event loop sees all or nothing.
        self._logs = {**self._logs, **opened}
        self._by_id = {**self._by_id, topic_id: info}
        self._topics = {**self._topics, name: info}
        return info

    def _discard_partition(
        self, info: TopicInfo, partition: int, opened: Mapping[TopicPartition, Log]
    ) -> None:
        """Delete a partition of a topic whose creation failed (its log if it was opened)."""
        partition_log = opened.get((info.name, partition))
        if partition_log is not None:
            partition_log.delete()
            return
        directory = self.partition_dir(info.name, partition)
        metadata = directory / PARTITION_METADATA
        expected = f"version: 0\ntopic_id: {uuid_to_kafka(info.topic_id)}"
        if self.fs.exists(metadata) and self.fs.read_text(metadata).strip() == expected:
            self.fs.rmtree(directory)

    def create_partitions(self, name: str, total: int, *, now_ms: int | None = None) -> TopicInfo:
        """Grow a topic to ``total`` partitions (CreatePartitions)."""
        info = self._topics.get(name)
        if info is None:
            raise UnknownTopic(f"unknown topic {name!r}")
        if total <= info.partitions:
            raise InvalidPartitions(f"topic {name!r} already has {info.partitions} partitions")
        grown = TopicInfo(name, info.topic_id, total, info.configs)
        self._add_topic(grown)
        self._write_topics_file()
        now = int(time.time() * 1000) if now_ms is None else now_ms
        opened: dict[TopicPartition, Log] = {}
        try:
            self._open_new_logs(grown, range(info.partitions, total), None, now, opened)
        finally:  # the ones that opened are served even if another failed, as before
            self._logs = {**self._logs, **opened}
        return grown

    def _open_new_logs(
        self,
        info: TopicInfo,
        partitions: Iterable[int],
        config: LogConfig | None,
        now_ms: int,
        opened: dict[TopicPartition, Log],
    ) -> None:
        """Open (creating) the logs of new partitions into ``opened``, then fsync the data
        directory once, which holds the entries of all their directories.

        Each new partition costs two fsyncs of its own (partition.metadata, its directory); for
        a topic of many partitions (``__consumer_offsets`` has 50, created at a broker's first
        start) they run on a few threads, so that the file system commits them together rather
        than one after another. Returns (or raises the first error) only once every partition
        is done, so ``opened`` then holds every log that opened."""
        wanted = list(partitions)

        def open_one(partition: int) -> None:
            opened[(info.name, partition)] = self._open_log(
                info,
                partition,
                config=config,
                recovery_point=0,
                log_start_offset=0,
                clean=True,
                now_ms=now_ms,
                sync_data_dir=False,
            )

        if len(wanted) == 1:
            open_one(wanted[0])
        else:
            with ThreadPoolExecutor(min(CREATE_THREADS, len(wanted))) as pool:
                futures = [pool.submit(open_one, partition) for partition in wanted]
            for future in futures:
                future.result()  # the first error, once all are done
        if wanted:
            self.fs.fsync_dir(self.data_dir)

    def set_topic_configs(self, name: str, configs: Mapping[str, str]) -> TopicInfo:
        """Replace a topic's overrides (AlterConfigs); open logs pick up the new config."""
        info = self._topics.get(name)
        if info is None:
            raise UnknownTopic(f"unknown topic {name!r}")
        config = LogConfig.from_properties(configs, base=self.default_config)
        updated = TopicInfo(name, info.topic_id, info.partitions, dict(configs))
        self._add_topic(updated)
        self._write_topics_file()
        for partition in range(info.partitions):
            self._logs[(name, partition)].config = config
        return updated

    def check_default_config(self, overrides: Mapping[str, str]) -> None:
        """Raise InvalidConfig if ``set_default_config(overrides)`` would."""
        self._with_default(overrides)

    def set_default_config(self, overrides: Mapping[str, str]) -> None:
        """Replace the broker-supplied topic defaults (Kafka's dynamic broker configs); every open
        log whose topic does not override a setting picks up the new value."""
        self.default_config, configs = self._with_default(overrides)
        for (topic, _), partition_log in self._logs.items():
            partition_log.config = configs[topic]

    def _with_default(self, overrides: Mapping[str, str]) -> tuple[LogConfig, dict[str, LogConfig]]:
        default_config = LogConfig.from_properties(overrides)
        configs = {
            name: LogConfig.from_properties(info.configs, base=default_config)
            for name, info in self._topics.items()
        }
        return default_config, configs

    def delete_topic(self, name: str) -> TopicInfo:
        """Forget a topic and delete its partition directories (via Kafka's ``-delete`` rename)."""
        info = self._topics.get(name)
        if info is None:
            raise UnknownTopic(f"unknown topic {name!r}")
        # New dicts, not changed in place: ``checkpoint`` may be iterating on a worker thread.
        self._topics = {k: v for k, v in self._topics.items() if k != name}
        self._by_id = {k: v for k, v in self._by_id.items() if k != info.topic_id}
        self._write_topics_file()
        doomed = [lg for (topic, _), lg in self._logs.items() if topic == name]
        self._logs = {tp: lg for tp, lg in self._logs.items() if tp[0] != name}
        for partition_log in doomed:
            partition_log.delete()
        self.fs.fsync_dir(self.data_dir)
        self._write_checkpoints()
        return info

    def get_log(self, topic: str, partition: int) -> Log | None:
        return self._logs.get((topic, partition))

    def logs(self) -> dict[TopicPartition, Log]:
        return dict(self._logs)

    # --- Checkpoints and shutdown ---

    def write_checkpoints(self) -> None:
        """Write the recovery point and log start offset checkpoints now (on a worker thread,
        serialized with ``checkpoint``): after a log's start moved, so that no restart, clean or
        not, moves it back."""
        self._write_checkpoints()

    def _write_checkpoints(self) -> None:
        write_offset_checkpoint(
            self.data_dir / RECOVERY_POINT_CHECKPOINT,
            {tp: lg.recovery_point for tp, lg in self._logs.items()},
            self.fs,
        )
        write_offset_checkpoint(
            self.data_dir / LOG_START_OFFSET_CHECKPOINT,
            {tp: lg.log_start_offset for tp, lg in self._logs.items()},
            self.fs,
        )

    def checkpoint(self, *, flush_active: bool = False) -> None:
        """fsync rolled segments (and the active ones if asked), then write the checkpoints.

        A log whose fsync fails goes offline (Log.flush) and keeps its recovery point; the
        others are flushed and checkpointed all the same, and the first error is raised
        after."""
        failure: Exception | None = None
        for partition_log in self._logs.values():
            if partition_log.offline:
                continue
            try:
                partition_log.flush(
                    None if flush_active else partition_log.active_segment.base_offset
                )
            except (OSError, KafkaStorageError) as e:
                failure = failure or e
        self._write_checkpoints()
        if failure is not None:
            raise failure

    def close(self) -> None:
        """Close every log (producer snapshots, fsync), write checkpoints and the clean marker
        (not if a log is offline: it must be recovered at the next start).

        If any of that fails, the logs not yet closed are abandoned (see ``abandon``) before the
        error propagates; the clean shutdown marker is then not written.
        """
        if self._closed:
            return
        try:
            for partition_log in self._logs.values():
                partition_log.close()
            self._write_checkpoints()
            offline = sorted(tp for tp, lg in self._logs.items() if lg.offline)
            if offline:
                log.error("not writing %s: offline logs %s", CLEAN_SHUTDOWN_FILE, offline)
            else:
                self.fs.write_atomic(
                    self.data_dir / CLEAN_SHUTDOWN_FILE, b'{"version":0,"brokerEpoch":-1}'
                )
        finally:
            self.abandon()

    def abandon(self) -> None:
        """Drop every log as a crash would (``Log.abandon``): release their file descriptors
        without fsync, producer snapshots, checkpoints or the clean shutdown marker.

        For crash simulation (the next ``open`` of the directory recovers as after a real crash)
        and for releasing resources after a failure. Idempotent; a no-op after ``close``.
        """
        self._closed = True
        with ExitStack() as stack:  # every log, even if one fails
            for partition_log in self._logs.values():
                stack.callback(partition_log.abandon)

    @property
    def closed(self) -> bool:
        return self._closed
