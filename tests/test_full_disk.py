"""A data directory on a tiny filesystem that fills up: the full partition answers Produce with
KAFKA_STORAGE_ERROR (raw requests and confluent-kafka), kpy stays up, reads go on, and once space
is freed the same kpy, without a restart, takes writes again, a retrying producer's records
included; every acknowledged record is there, after a clean restart and after a SIGKILL too.

The filesystem is a 6 MiB tmpfs the test mounts, which needs root (CAP_SYS_ADMIN); elsewhere
the test is skipped."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kio.schema.errors import ErrorCode
from kpy_process import KpyProcess
from rawclient import RawClient
from requests_v import create_topic, fetch, list_offsets, metadata, produce

from kpy.protocol.records import build_batch, decode_records, iter_headers

confluent_kafka = pytest.importorskip("confluent_kafka")

from confluent_kafka import KafkaError, Producer  # noqa: E402

DEADLINE = 60.0
VALUE_SIZE = 8000
TOPIC = "full"


@pytest.fixture
def tiny_fs(tmp_path: Path) -> Iterator[Path]:
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mount_point = tmp_path / "fs"
    mount_point.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=6m", "tmpfs", str(mount_point)],
        capture_output=True,
        text=True,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


def free_bytes(path: Path) -> int:
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def value(i: int) -> bytes:
    return b"%08d" % i + b"v" * (VALUE_SIZE - 8)


def produce_one(client: RawClient, i: int) -> Any:
    batch = build_batch([(None, value(i))])
    return produce(client, TOPIC, batch).responses[0].partition_responses[0]


def read_all(client: RawClient) -> dict[int, bytes | None]:
    """Every record of the partition by offset, read with raw fetches."""
    end = list_offsets(client, TOPIC, 0, -1).offset
    got: dict[int, bytes | None] = {}
    offset = 0
    while offset < end:
        part = fetch(client, [(TOPIC, 0, offset, 1 << 20)]).responses[0].partitions[0]
        assert part.error_code == ErrorCode.none
        assert part.records, f"nothing at {offset} below the end {end}"
        data = part.records
        for pos, header in iter_headers(data):
            for record in decode_records(memoryview(data)[pos : pos + header.size]):
                got[record.offset] = record.value
                offset = record.offset + 1
    return got


def test_a_full_disk(tiny_fs: Path, kpy_factory: Any) -> None:
    broker: KpyProcess = kpy_factory(
        {"offsets.topic.num.partitions": "1"}, data_dir=tiny_fs / "data"
    )
    acked: dict[int, bytes] = {}
    with RawClient(broker.bootstrap) as c:
        created = create_topic(c, TOPIC, 1, internal_segment_bytes=str(64 * 1024))
        assert created.error_code == ErrorCode.none
        # Leave a little room, then write until it is gone.
        filler = tiny_fs / "filler"
        filler.write_bytes(b"\0" * (free_bytes(tiny_fs) - 600 * 1024))
        i = 0
        while True:
            part = produce_one(c, i)
            if part.error_code != ErrorCode.none:
                break
            acked[part.base_offset] = value(i)
            i += 1
            assert i < 1000, "the filesystem never filled up"
        assert part.error_code == ErrorCode.kafka_storage_error
        assert len(acked) > 10

        # Still full: every produce fails alike, the log is as it was, kpy answers the rest.
        assert produce_one(c, i).error_code == ErrorCode.kafka_storage_error
        assert list_offsets(c, TOPIC, 0, -1).offset == len(acked)
        assert metadata(c, TOPIC).topics[0].error_code == ErrorCode.none
        assert broker.proc is not None and broker.proc.poll() is None

        # confluent-kafka without retries sees the error itself.
        reports: list[Any] = []
        once = Producer({"bootstrap.servers": broker.bootstrap, "retries": 0})
        once.produce(
            TOPIC, value=b"no room", partition=0, on_delivery=lambda e, m: reports.append(e)
        )
        once.flush(30)
        assert [r.code() for r in reports] == [KafkaError.KAFKA_STORAGE_ERROR]

        # Reads go on.
        assert read_all(c) == acked

        # A producer that retries keeps trying while the disk is full...
        retrying_reports: list[tuple[Any, Any]] = []
        retrying = Producer(
            {"bootstrap.servers": broker.bootstrap, "message.timeout.ms": int(DEADLINE * 1000)}
        )
        retrying.produce(
            TOPIC,
            value=b"waited for room",
            partition=0,
            on_delivery=lambda e, m: retrying_reports.append((e, m.offset())),
        )
        retrying.poll(1)
        assert not retrying_reports

        # ... and gets through once there is room again: no restart.
        filler.unlink()
        assert retrying.flush(DEADLINE) == 0
        ((error, offset),) = retrying_reports
        assert error is None and offset == len(acked)
        acked[offset] = b"waited for room"
        part = produce_one(c, i)
        assert part.error_code == ErrorCode.none and part.base_offset == len(acked)
        acked[part.base_offset] = value(i)
        assert read_all(c) == acked

    assert "No space left on device" in broker.log_text()  # logged, not crashed
    broker.stop()
    broker.start()
    with RawClient(broker.bootstrap) as c:
        assert read_all(c) == acked
        part = produce_one(c, i + 1)
        assert part.error_code == ErrorCode.none
        acked[part.base_offset] = value(i + 1)
    broker.kill()
    broker.start()
    with RawClient(broker.bootstrap) as c:
        assert read_all(c) == acked
    broker.stop()
