from __future__ import annotations

import base64
import json
import logging
import uuid
from pathlib import Path

import pytest
from storage_helpers import Opened, create_file, offsets_in, request

from kpy.protocol.records import build_batch
from kpy.storage import durability, log_manager
from kpy.storage.errors import (
    InconsistentMetadata,
    InvalidConfig,
    InvalidPartitions,
    InvalidTopic,
    TopicExists,
    UnknownTopic,
)
from kpy.storage.fs import FileSystem
from kpy.storage.log_manager import LogManager, read_offset_checkpoint, uuid_to_kafka


def produce(manager: LogManager, topic: str, partition: int, n: int) -> None:
    log = manager.get_log(topic, partition)
    assert log is not None
    for _ in range(n):
        log.append(*request(build_batch([(None, b"v")])), now_ms=0)


def test_fresh_data_dir_files(fs: FileSystem, tmp_path: Path, opened: Opened) -> None:
    manager = opened(LogManager.open(tmp_path, node_id=3, fs=fs))
    props = fs.read_text(tmp_path / "meta.properties").splitlines()
    assert props[0] == "#"
    kv = dict(line.split("=", 1) for line in props if not line.startswith("#"))
    assert kv["node.id"] == "3" and kv["version"] == "1"
    assert len(kv["cluster.id"]) == 22
    assert len(base64.urlsafe_b64decode(kv["cluster.id"] + "==")) == 16
    assert manager.cluster_id == kv["cluster.id"]
    assert not manager.had_clean_shutdown
    manager.close()
    again = opened(LogManager.open(tmp_path, node_id=3, fs=fs))
    assert again.cluster_id == kv["cluster.id"]
    assert again.had_clean_shutdown
    with pytest.raises(InconsistentMetadata):
        LogManager.open(tmp_path, node_id=4, fs=fs)


def test_create_topic_writes_kafka_files(fs: FileSystem, tmp_path: Path, opened: Opened) -> None:
    manager = opened(LogManager.open(tmp_path, fs=fs))
    info = manager.create_topic("orders", 3, {"internal.segment.bytes": "2000"})
    assert info.partitions == 3
    for p in range(3):
        meta = fs.read_text(tmp_path / f"orders-{p}" / "partition.metadata")
        assert meta == f"version: 0\ntopic_id: {uuid_to_kafka(info.topic_id)}"
    log = manager.get_log("orders", 2)
    assert log is not None and log.config.segment_bytes == 2000
    assert manager.get_log("orders", 3) is None
    assert manager.topic_by_id(info.topic_id) == info
    stored = json.loads(fs.read_text(tmp_path / "kpy-topics.json"))
    assert stored["topics"][0]["name"] == "orders"
    assert stored["topics"][0]["configs"] == {"internal.segment.bytes": "2000"}


def test_checkpoint_files_use_kafka_text_format(
    fs: FileSystem, tmp_path: Path, opened: Opened
) -> None:
    manager = opened(LogManager.open(tmp_path, fs=fs))
    manager.create_topic("a", 2)
    produce(manager, "a", 1, 4)
    manager.close()
    lines = fs.read_text(tmp_path / "recovery-point-offset-checkpoint").splitlines()
    assert lines == ["0", "2", "a 0 0", "a 1 4"]
    assert read_offset_checkpoint(tmp_path / "log-start-offset-checkpoint", fs) == {
        ("a", 0): 0,
        ("a", 1): 0,
    }
    assert fs.exists(tmp_path / ".kafka_cleanshutdown")


def test_reopen_after_clean_close_keeps_ids_and_data(
    fs: FileSystem, tmp_path: Path, opened: Opened
) -> None:
    manager = opened(LogManager.open(tmp_path, {"internal.segment.bytes": "500"}, fs=fs))
    info = manager.create_topic("t", 1)
    produce(manager, "t", 0, 30)
    manager.close()
    again = opened(LogManager.open(tmp_path, {"internal.segment.bytes": "500"}, fs=fs))
    assert not fs.exists(tmp_path / ".kafka_cleanshutdown")  # removed so a crash shows
    assert again.topics() == [info]
    log = again.get_log("t", 0)
    assert log is not None
    assert log.log_end_offset == 30
    assert len(log.segments) > 1
    assert (log.recovered_segments, log.rebuilt_indexes) == (0, 0)
    assert [b for b, _ in offsets_in(log.read(0, 1 << 20))] == list(range(30))


def test_crash_leads_to_recovery_from_checkpoint(
    fs: FileSystem, tmp_path: Path, opened: Opened
) -> None:
    manager = opened(LogManager.open(tmp_path, {"internal.segment.bytes": "500"}, fs=fs))
    manager.create_topic("t", 1)
    produce(manager, "t", 0, 30)
    manager.checkpoint()
    log = manager.get_log("t", 0)
    assert log is not None
    rolled = log.active_segment.base_offset
    assert log.recovery_point == rolled
    manager.abandon()  # crash: no close, no checkpoints, no clean shutdown marker
    again = opened(LogManager.open(tmp_path, {"internal.segment.bytes": "500"}, fs=fs))
    assert not again.had_clean_shutdown
    relog = again.get_log("t", 0)
    assert relog is not None
    assert relog.recovered_segments == 1  # just the segment holding the recovery point
    assert relog.log_end_offset == 30
    checkpoint = read_offset_checkpoint(tmp_path / "recovery-point-offset-checkpoint", fs)
    assert checkpoint[("t", 0)] == 30


def test_delete_topic(fs: FileSystem, tmp_path: Path, opened: Opened) -> None:
    manager = opened(LogManager.open(tmp_path, fs=fs))
    info = manager.create_topic("gone", 2)
    produce(manager, "gone", 0, 3)
    assert manager.delete_topic("gone") == info
    assert not fs.exists(tmp_path / "gone-0") and not fs.exists(tmp_path / "gone-1")
    assert not any(name.endswith("-delete") for name in fs.listdir(tmp_path))
    assert manager.topics() == [] and manager.topic_by_id(info.topic_id) is None
    with pytest.raises(UnknownTopic):
        manager.delete_topic("gone")
    again = manager.create_topic("gone", 1)
    assert again.topic_id != info.topic_id
    assert manager.get_log("gone", 0) is not None
    assert manager.get_log("gone", 0).log_end_offset == 0  # type: ignore[union-attr]


def test_interrupted_delete_is_finished_at_open(
    fs: FileSystem, tmp_path: Path, opened: Opened
) -> None:
    manager = opened(LogManager.open(tmp_path, fs=fs))
    manager.create_topic("t", 1)
    manager.close()
    leftover = tmp_path / f"t-0.{uuid.uuid4().hex}-delete"
    fs.mkdir(leftover)
    create_file(fs, leftover / "00000000000000000000.log", b"x")
    opened(LogManager.open(tmp_path, fs=fs))
    assert not fs.exists(leftover)


def test_stale_directory_of_recreated_topic_is_replaced(
    fs: FileSystem, tmp_path: Path, opened: Opened
) -> None:
    manager = opened(LogManager.open(tmp_path, fs=fs))
    manager.create_topic("t", 1)
    produce(manager, "t", 0, 5)
    manager.close()
    # simulate a crash after the topics file changed but before the old dir was removed
    create_file(
        fs,
        tmp_path / "t-0" / "partition.metadata",
        f"version: 0\ntopic_id: {uuid_to_kafka(uuid.uuid4())}".encode(),
    )
    again = opened(LogManager.open(tmp_path, fs=fs))
    log = again.get_log("t", 0)
    assert log is not None and log.log_end_offset == 0


def test_invalid_requests(fs: FileSystem, tmp_path: Path, opened: Opened) -> None:
    manager = opened(LogManager.open(tmp_path, fs=fs))
    manager.create_topic("a.b", 1)
    for name in ("", ".", "..", "bad/name", "x" * 250):
        with pytest.raises(InvalidTopic):
            manager.create_topic(name, 1)
    with pytest.raises(InvalidTopic):
        manager.create_topic("a_b", 1)  # collides with a.b
    with pytest.raises(TopicExists):
        manager.create_topic("a.b", 1)
    with pytest.raises(InvalidPartitions):
        manager.create_topic("c", 0)
    with pytest.raises(InvalidConfig):
        manager.create_topic("c", 1, {"segment.bytes": "nope"})
    assert [t.name for t in manager.topics()] == ["a.b"]


def test_create_partitions_and_alter_configs(
    fs: FileSystem, tmp_path: Path, opened: Opened
) -> None:
    manager = opened(LogManager.open(tmp_path, fs=fs))
    manager.create_topic("t", 1)
    grown = manager.create_partitions("t", 3)
    assert grown.partitions == 3 and manager.get_log("t", 2) is not None
    manager.set_topic_configs("t", {"segment.ms": "123"})
    log = manager.get_log("t", 0)
    assert log is not None and log.config.segment_ms == 123
    manager.close()
    again = opened(LogManager.open(tmp_path, fs=fs))
    reopened = again.get_log("t", 1)
    assert reopened is not None and reopened.config.segment_ms == 123


def test_failed_open_releases_the_logs_it_opened(
    fs: FileSystem, tmp_path: Path, opened: Opened
) -> None:
    manager = opened(LogManager.open(tmp_path, fs=fs))
    manager.create_topic("t", 2)
    produce(manager, "t", 0, 3)
    manager.close()
    bad = tmp_path / "t-1" / "00000000000000000000.timeindex"
    fs.unlink(bad)
    fs.mkdir(bad)
    with pytest.raises(IsADirectoryError):
        LogManager.open(tmp_path, fs=fs)
    # t-0 was opened first and released (checked by the autouse no_fd_leaks fixture); the open
    # wrote nothing, so the clean shutdown marker is still there
    assert fs.exists(tmp_path / ".kafka_cleanshutdown")


def test_abandon_writes_no_clean_shutdown_marker(
    fs: FileSystem, tmp_path: Path, opened: Opened
) -> None:
    manager = opened(LogManager.open(tmp_path, fs=fs))
    manager.create_topic("t", 1)
    produce(manager, "t", 0, 3)
    manager.abandon()
    assert manager.closed
    assert not fs.exists(tmp_path / ".kafka_cleanshutdown")
    manager.close()  # a no-op after abandon
    assert not fs.exists(tmp_path / ".kafka_cleanshutdown")
    again = opened(LogManager.open(tmp_path, fs=fs))
    assert not again.had_clean_shutdown
    relog = again.get_log("t", 0)
    assert relog is not None and relog.log_end_offset == 3


def test_create_topic_fsyncs_the_data_dir_once_for_all_its_partitions(
    tmp_path: Path, opened: Opened
) -> None:
    data = tmp_path / "data"
    journal = tmp_path / "journal"
    manager = opened(LogManager.open(data))
    durability.enable(journal)
    try:
        manager.create_topic("many", 20)
    finally:
        durability.disable()
    synced = [line.split(" ")[1] for line in journal.read_text().splitlines() if line[0] == "D"]
    # Every new partition directory is fsynced (its partition.metadata), and the data directory
    # twice: once for the twenty new directories together, once for kpy-topics.json.
    assert sorted(p for p in synced if p != str(data.absolute())) == sorted(
        str(manager.partition_dir("many", p).absolute()) for p in range(20)
    )
    assert synced.count(str(data.absolute())) == 2
    manager.close()
    again = opened(LogManager.open(data))
    assert [again.get_log("many", p) is not None for p in range(20)] == [True] * 20


def test_a_long_recovery_logs_its_progress(
    tmp_path: Path,
    opened: Opened,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    config = {"internal.segment.bytes": "500"}
    manager = opened(LogManager.open(tmp_path, config))
    manager.create_topic("t", 2)
    produce(manager, "t", 0, 30)
    produce(manager, "t", 1, 30)
    segments = sum(1 for _ in tmp_path.glob("t-*/*.log"))
    assert segments > 4
    manager.abandon()  # crash before any checkpoint: every segment is recovered
    monkeypatch.setattr(log_manager, "RECOVERY_PROGRESS_EVERY_S", 0.0)  # "long": every step
    with caplog.at_level(logging.INFO, logger="kpy.storage.log_manager"):
        opened(LogManager.open(tmp_path, config))
    lines = [r.getMessage() for r in caplog.records if "recovering after" in r.getMessage()]
    assert lines[0].startswith(
        f"recovering after an unclean shutdown: 1 segments checked (of {segments} in all"
    )
    assert f": {segments} segments checked (of {segments} in all" in lines[-1]
    assert "2 of 2 logs open" in lines[-1]


def test_a_clean_start_logs_no_recovery_progress(
    tmp_path: Path,
    opened: Opened,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    manager = LogManager.open(tmp_path, {"internal.segment.bytes": "500"})
    manager.create_topic("t", 1)
    produce(manager, "t", 0, 30)
    manager.close()
    monkeypatch.setattr(log_manager, "RECOVERY_PROGRESS_EVERY_S", 0.0)
    with caplog.at_level(logging.INFO, logger="kpy.storage.log_manager"):
        opened(LogManager.open(tmp_path, {"internal.segment.bytes": "500"}))
    assert not [r for r in caplog.records if "recovering after" in r.getMessage()]
