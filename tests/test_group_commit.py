"""GroupCommit on a real Log and real fsyncs: waiters whose appends came before a round share
it, appends made during a round share the next one, and a failed fsync reaches every waiter it
covered."""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest

from kpy.group_commit import GroupCommit
from kpy.protocol.records import build_batch, validate_batches
from kpy.storage.errors import KafkaStorageError, LogOffline
from kpy.storage.log import Log, LogConfig


@pytest.fixture
def log(tmp_path: Path) -> Iterator[Log]:
    opened = Log.open(tmp_path, LogConfig())
    try:
        yield opened
    finally:
        opened.abandon()


def append(log: Log) -> int:
    """Append one record; return the offset after it (what a producer waits to be durable)."""
    buf = bytearray(build_batch([(None, b"value")]))
    return log.append(buf, validate_batches(buf), now_ms=0).last_offset + 1


def test_waiters_appended_before_a_round_share_one_fsync(log: Log) -> None:
    commit = GroupCommit()
    offsets = [append(log) for _ in range(10)]

    async def main() -> None:
        async with anyio.create_task_group() as tg:
            for offset in offsets:
                tg.start_soon(commit.flushed, log, offset)

    anyio.run(main)
    assert commit.rounds == 1
    assert log.recovery_point == log.log_end_offset == 10


def test_appends_during_a_round_share_the_next(log: Log) -> None:
    commit = GroupCommit()

    async def main() -> None:
        async with anyio.create_task_group() as tg:
            tg.start_soon(commit.flushed, log, append(log))
            await anyio.sleep(0)  # the first waiter starts its round (on a worker thread)
            for _ in range(5):
                tg.start_soon(commit.flushed, log, append(log))

    anyio.run(main)
    assert commit.rounds == 2
    assert log.recovery_point == log.log_end_offset == 6


def test_nothing_to_flush_starts_no_round(log: Log) -> None:
    commit = GroupCommit()
    offset = append(log)
    log.flush()
    anyio.run(commit.flushed, log, offset)
    assert commit.rounds == 0


def test_a_failed_fsync_fails_every_waiter_it_covered(
    log: Log, monkeypatch: pytest.MonkeyPatch
) -> None:
    commit = GroupCommit()
    offsets = [append(log) for _ in range(3)]
    errors: list[BaseException] = []

    async def wait(offset: int) -> None:
        try:
            await commit.flushed(log, offset)
        except (OSError, KafkaStorageError) as e:
            errors.append(e)

    async def main() -> None:
        async with anyio.create_task_group() as tg:
            for offset in offsets:
                tg.start_soon(wait, offset)

    def eio(fd: int) -> None:
        raise OSError(errno.EIO, "I/O error")

    with monkeypatch.context() as patch:
        patch.setattr(os, "fsync", eio)
        anyio.run(main)
    assert len(errors) == 3 and commit.rounds == 1
    assert log.offline and log.recovery_point == 0
    with pytest.raises(LogOffline):  # and later ones fail at once: a restart must recover it
        anyio.run(commit.flushed, log, offsets[-1])
