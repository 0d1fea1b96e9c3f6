"""``kpy serve --in-memory`` (kpy.storage.in.memory): a throwaway broker that writes no file.

A real kpy runs --in-memory with its working directory in a fresh, empty directory, with no
--data-dir (so the default ./kpy-data would land there); confluent-kafka creates a topic,
produces (idempotently) and consumes in a group that commits its offsets, a second consumer of
the group resumes at them, the topic is deleted and made again empty, a broker config is
changed at run time, and the broker stops cleanly; the directory is still empty afterwards.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from kpy_process import KpyProcess

from kpy.broker import Broker
from kpy.config import BrokerConfig, ConfigError
from kpy.storage.fs import MemoryFileSystem

confluent_kafka = pytest.importorskip("confluent_kafka")

from clients.group_util import (  # noqa: E402
    PARTITIONS,
    consume,
    create_topic,
    group_consumer,
    values,
)
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition  # noqa: E402
from confluent_kafka.admin import (  # noqa: E402
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
)

TOPIC = "scratch"
TOTAL = 300
FIRST = 120
GROUP = "in-memory"


def end_offsets(bootstrap: str) -> list[int]:
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "watermarks"})
    try:
        return [
            c.get_watermark_offsets(TopicPartition(TOPIC, p), timeout=10)[1]
            for p in range(PARTITIONS)
        ]
    finally:
        c.close()


def open_files(kpy: KpyProcess) -> list[str]:
    """The files on disk the broker process holds open (not sockets, pipes or devices)."""
    assert kpy.proc is not None
    fd_dir = Path(f"/proc/{kpy.proc.pid}/fd")
    if not fd_dir.is_dir():
        return []
    targets = []
    for fd in fd_dir.iterdir():
        try:
            targets.append(os.readlink(fd))
        except OSError:
            continue
    return sorted(t for t in targets if t.startswith("/") and not t.startswith("/dev/"))


def test_in_memory_broker_serves_clients_and_writes_no_file(tmp_path: Path) -> None:
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    kpy = KpyProcess(None, in_memory=True, cwd=cwd).start()
    try:
        assert "data in memory (ready in" in kpy.log_text()
        bootstrap = kpy.bootstrap
        admin = AdminClient({"bootstrap.servers": bootstrap})
        create_topic(bootstrap, TOPIC)
        producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True})
        for i in range(TOTAL):  # values(0, TOTAL), as group_util's produce writes them
            producer.produce(TOPIC, value=b"%d" % i, partition=i % PARTITIONS)
        assert producer.flush(30) == 0

        first = group_consumer(bootstrap, GROUP, TOPIC)
        try:
            got = consume(first, FIRST)
            first.commit(asynchronous=False)
            committed = first.committed(
                [TopicPartition(TOPIC, p) for p in range(PARTITIONS)], timeout=10
            )
            # A partition the consumer read nothing of has no committed offset (-1001).
            assert sum(max(tp.offset, 0) for tp in committed) == FIRST
        finally:
            first.close()
        second = group_consumer(bootstrap, GROUP, TOPIC)
        try:
            got += consume(second, TOTAL - FIRST)  # resumes at the committed offsets
        finally:
            second.close()
        assert sorted(v for _, _, v in got) == sorted(values(0, TOTAL))
        assert open_files(kpy) == []  # segments, indexes, snapshots: none is a file on disk

        # A dynamic broker config (kpy-broker-configs.json, in memory).
        resource = ConfigResource(
            ConfigResource.Type.BROKER,
            "1",
            incremental_configs=[
                ConfigEntry(
                    "log.retention.bytes",
                    "1000000",
                    incremental_operation=AlterConfigOpType.SET,
                )
            ],
        )
        admin.incremental_alter_configs([resource])[resource].result(10)

        admin.delete_topics([TOPIC])[TOPIC].result(10)
        assert TOPIC not in admin.list_topics(timeout=10).topics
        for _ in range(100):  # the deletion reaches the metadata at once; be patient anyway
            try:
                create_topic(bootstrap, TOPIC)
                break
            except KafkaException:
                pass
        assert end_offsets(bootstrap) == [0] * PARTITIONS  # a new topic, empty
    finally:
        assert kpy.stop() == 0
    assert os.listdir(cwd) == []  # no ./kpy-data, nor anything else
    assert not (tmp_path / "kpy-data").exists()
    assert "Traceback" not in kpy.log_text()


def test_in_memory_broker_in_process(tmp_path: Path) -> None:
    data = tmp_path / "data"
    config = BrokerConfig.load(None, {"log.dirs": str(data), "kpy.storage.in.memory": "true"})
    broker = Broker(config)
    try:
        assert isinstance(broker.fs, MemoryFileSystem)
        broker.logs.create_topic("t", 2)
        broker.producer_ids.generate()
        files = broker.fs.files()
        assert str(data / "meta.properties") in files
        assert str(data / "kpy-topics.json") in files
        assert str(data / "producer-ids.json") in files
        assert str(data / "t-1" / "00000000000000000000.log") in files
    finally:
        broker.close()
    assert str(data / ".kafka_cleanshutdown") in broker.fs.files()
    assert broker.fs.open_descriptors == 0
    assert not data.exists()
    assert list(tmp_path.iterdir()) == []


def test_in_memory_setting_is_checked() -> None:
    assert not BrokerConfig.load(None, {}).in_memory
    with pytest.raises(ConfigError, match=r"kpy\.storage\.in\.memory"):
        BrokerConfig.load(None, {"kpy.storage.in.memory": "yes"})
    with pytest.raises(ConfigError, match="needs the disk"):
        BrokerConfig.load(
            None, {"kpy.storage.in.memory": "true", "kpy.test.durability.journal": "/j"}
        )
