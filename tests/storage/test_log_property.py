"""A Log driven through random appends, reads, lookups and restarts, against a list model."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule
from storage_helpers import batch_with_timestamps, request, truncate_file

from kpy.protocol.records import decode_records, validate_batches
from kpy.storage.fs import OS_FS, FileSystem, MemoryFileSystem
from kpy.storage.log import Log, LogConfig

CONFIG = LogConfig(segment_bytes=700, index_interval_bytes=120)

records_st = st.lists(
    st.tuples(st.binary(max_size=60), st.integers(min_value=0, max_value=1000)),
    min_size=1,
    max_size=5,
)


@dataclass
class ModelBatch:
    base: int
    values: list[bytes]
    timestamps: list[int]
    size: int

    @property
    def last(self) -> int:
        return self.base + len(self.values) - 1


class LogMachine(RuleBasedStateMachine):
    in_memory = False  # on the disk (OS_FS), or on a MemoryFileSystem of its own

    def __init__(self) -> None:
        super().__init__()
        self.fs: FileSystem
        if self.in_memory:
            self.fs = MemoryFileSystem()
            self.dir = Path("/kpy-log-prop")
            self.fs.mkdir(self.dir)
        else:
            self.fs = OS_FS
            self.dir = Path(tempfile.mkdtemp(prefix="kpy-log-prop-"))
        self.log = Log.open(self.dir, CONFIG, fs=self.fs)
        self.batches: list[ModelBatch] = []

    def teardown(self) -> None:
        try:
            self.log.abandon()  # releases the files; a no-op if the last step closed the log
        finally:
            self.fs.rmtree(self.dir)

    @property
    def end(self) -> int:
        return self.batches[-1].last + 1 if self.batches else 0

    def records(self) -> list[tuple[int, int, bytes]]:
        return [
            (b.base + i, ts, v)
            for b in self.batches
            for i, (v, ts) in enumerate(zip(b.values, b.timestamps, strict=True))
        ]

    @rule(request_batches=st.lists(records_st, min_size=1, max_size=3))
    def append(self, request_batches: list[list[tuple[bytes, int]]]) -> None:
        raw = [
            batch_with_timestamps([v for v, _ in recs], [ts for _, ts in recs])
            for recs in request_batches
        ]
        buf, headers = request(*raw)
        result = self.log.append(buf, headers, now_ms=0)
        assert result.base_offset == self.end
        base = self.end
        for recs, header in zip(request_batches, headers, strict=True):
            self.batches.append(
                ModelBatch(base, [v for v, _ in recs], [ts for _, ts in recs], header.size)
            )
            base += len(recs)
        assert result.last_offset == base - 1

    @precondition(lambda self: bool(self.batches))
    @rule(data=st.data(), max_bytes=st.integers(min_value=0, max_value=2000))
    def read(self, data: st.DataObject, max_bytes: int) -> None:
        offset = data.draw(st.integers(min_value=0, max_value=self.end))
        got = self.log.read(offset, max_bytes)
        if offset == self.end:
            assert got == b""
            return
        headers = validate_batches(got)
        first = next(i for i, b in enumerate(self.batches) if b.last >= offset)
        expected = self.batches[first : first + len(headers)]
        assert [(h.base_offset, h.last_offset) for h in headers] == [
            (b.base, b.last) for b in expected
        ]
        assert len(got) <= max_bytes or len(headers) == 1
        following = self.batches[first + len(headers) : first + len(headers) + 1]
        if following:  # stopped only because the next batch would not fit
            assert len(got) + following[0].size > max_bytes
        records = decode_records(got[: headers[0].size])
        want = expected[0]
        assert [r.value for r in records] == want.values
        assert [r.timestamp for r in records] == want.timestamps

    @rule(target_ts=st.integers(min_value=-1, max_value=1001))
    def offset_for_timestamp(self, target_ts: int) -> None:
        if target_ts < 0:
            assert self.log.offset_for_timestamp(-1) == (self.end, -1)
            return
        want = next(((o, ts) for o, ts, _ in self.records() if ts >= target_ts), None)
        assert self.log.offset_for_timestamp(target_ts) == want

    @rule()
    def max_timestamp(self) -> None:
        recs = self.records()
        if not recs:
            assert self.log.max_timestamp() is None
            return
        top = max(ts for _, ts, _ in recs)
        want = next((o, ts) for o, ts, _ in recs if ts == top)
        assert self.log.max_timestamp() == want

    @rule()
    def clean_restart(self) -> None:
        end = self.log.log_end_offset
        self.log.close()
        self.log = Log.open(self.dir, CONFIG, recovery_point=end, clean_shutdown=True, fs=self.fs)
        assert self.log.recovered_segments == 0
        assert self.log.rebuilt_indexes == 0

    @rule(data=st.data())
    def torn_restart(self, data: st.DataObject) -> None:
        active = self.log.active_segment
        cut = data.draw(st.integers(min_value=0, max_value=active.size))
        recovery_point = self.log.recovery_point
        self.log.abandon()  # crash: no close
        truncate_file(self.fs, active.log_path, cut)  # the tail is lost
        pos = 0
        kept: list[ModelBatch] = []
        for batch in self.batches:
            if batch.base < active.base_offset:
                kept.append(batch)
            elif pos + batch.size <= cut:
                kept.append(batch)
                pos += batch.size
            else:
                break
        self.batches = kept
        self.log = Log.open(
            self.dir, CONFIG, recovery_point=recovery_point, clean_shutdown=False, fs=self.fs
        )
        assert self.log.truncated_bytes == cut - pos

    @rule()
    def flush(self) -> None:
        self.log.flush()
        assert self.log.recovery_point == self.end

    @invariant()
    def end_offset_matches(self) -> None:
        assert self.log.log_end_offset == self.end
        assert self.log.active_segment.base_offset <= self.end


class MemoryLogMachine(LogMachine):
    in_memory = True


for _machine in (LogMachine, MemoryLogMachine):
    _machine.TestCase.settings = settings(
        max_examples=50,
        stateful_step_count=30,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow],
    )
test_log_against_model = LogMachine.TestCase
test_log_in_memory_against_model = MemoryLogMachine.TestCase
