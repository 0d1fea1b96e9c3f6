"""The hostile load test (bench/load.py, ``python -m bench.load --quick``) against a real kpy
subprocess: 1,000 connections opening and closing in waves, slow readers that never read their
Fetch responses, clients that send half a frame and stall, frames of socket.request.max.bytes
(100 MiB) and of one byte more, while a confluent-kafka producer (acks=all) and consumer work.

Every acknowledged record is consumed exactly once and in order, every hostile client gets what
Kafka gives it (an answer, MESSAGE_TOO_LARGE, or a closed connection), kpy is alive and answering
at the end, and its peak resident memory stays under ``PEAK_RSS_MIB``. What that bound is made
of, with kpy's defaults: the process itself (about 35 MiB), the responses held for slow readers
(kpy.queued.max.response.bytes, 64 MiB, plus a batch for each reader past it), and one request
of socket.request.max.bytes at a time (queued.max.request.bytes defaults to it), which a Produce
holds three times while it is handled (the frame, its records, the copy the log writes):
about 35 + 64 + 20 + 300 = 420 MiB (a run measures about 400). The bound leaves room for a large
Fetch response being encoded at the same moment (its records are copied twice while it is
built). Without the bounds the slow readers alone would hold a GiB.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from kio.schema.errors import ErrorCode
from kpy_process import KpyProcess

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.load import Options, raise_open_file_limit, run

PEAK_RSS_MIB = 600


@pytest.mark.clients
@pytest.mark.timeout(180)
def test_hostile_load_leaves_good_clients_whole_and_memory_bounded(tmp_path: Path) -> None:
    raise_open_file_limit()  # the broker, started next, inherits it
    options = Options.quick()
    broker = KpyProcess(tmp_path / "data", {"connections.max.idle.ms": str(options.idle_ms)})
    broker.start()
    try:
        assert broker.proc is not None
        result = run(broker.bootstrap, broker.proc.pid, options)
    finally:
        code = broker.stop()
    print(result)

    # The well-behaved clients: nothing acknowledged lost, duplicated or reordered.
    assert result.acked > 0
    assert result.failed == 0
    assert result.consumed == result.acked
    assert (result.lost, result.duplicates, result.in_order) == (0, 0, True)

    # The hostile ones got Kafka's treatment.
    assert result.connections_opened == options.connections
    assert result.connections_refused == 0
    assert result.connections_answered == options.connections // 2
    frames = result.cycles * options.big_frames
    assert result.big_frames_answered == frames
    assert result.big_frame_errors == [ErrorCode.message_too_large] * frames
    assert result.over_limit_closed == frames
    # connections.max.idle.ms closed every stalled client and every slow reader.
    assert result.large_stallers_closed_by_kpy == result.cycles
    assert result.stallers_closed_by_kpy == result.stallers == result.cycles * options.stallers
    assert result.slow_readers_closed_by_kpy == result.slow_readers
    assert result.slow_readers == result.cycles * options.slow_readers

    # kpy: bounded, alive, and it stopped cleanly with nothing unexpected in its log.
    assert result.peak_rss_mib < PEAK_RSS_MIB, f"kpy's peak RSS: {result.peak_rss_mib:.0f} MiB"
    assert result.alive
    assert code == 0
    log = broker.log_text()
    assert "Traceback" not in log and "unexpected error" not in log, log[-3000:]
