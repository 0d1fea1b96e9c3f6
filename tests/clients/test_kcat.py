"""kcat (librdkafka through Debian's package) produces 10,000 messages and reads them back.

kcat cannot set a timestamp per message, and -H puts the same headers on every message of a run,
so this test checks CreateTime stamps near the produce time and the one header set."""

from __future__ import annotations

import json
import shutil
import subprocess
import time

import pytest
from kpy_process import KpyProcess

from clients.workload import PARTITIONS, by_partition, messages

KCAT = shutil.which("kcat") or shutil.which("kafkacat")
pytestmark = pytest.mark.skipif(
    KCAT is None, reason="kcat is not installed (scripts/test installs it with apt-get as root)"
)
TOPIC = "kcat-roundtrip"


def test_round_trip(kpy_factory: object) -> None:
    kpy: KpyProcess = kpy_factory({"num.partitions": str(PARTITIONS)})  # type: ignore[operator]
    assert KCAT is not None
    msgs = messages(printable=True)
    expected = by_partition(msgs)
    started = int(time.time() * 1000)
    for p in range(PARTITIONS):
        lines = b"".join(
            (m.key if m.key is not None else b"") + b"\t" + (m.value or b"") + b"\n"
            for m in expected[p]
        )
        subprocess.run(
            [
                KCAT,
                "-P",
                "-b",
                kpy.bootstrap,
                "-t",
                TOPIC,
                "-p",
                str(p),
                "-K",
                "\t",
                "-Z",
                "-H",
                "source=kcat",
                "-X",
                "message.max.bytes=2000000",
            ],
            input=lines,
            check=True,
            timeout=120,
        )
    finished = int(time.time() * 1000)
    for p in range(PARTITIONS):
        out = subprocess.run(
            [
                KCAT,
                "-C",
                "-b",
                kpy.bootstrap,
                "-t",
                TOPIC,
                "-p",
                str(p),
                "-o",
                "beginning",
                "-e",
                "-J",
                "-X",
                "fetch.message.max.bytes=2000000",
            ],
            capture_output=True,
            check=True,
            timeout=120,
        ).stdout
        got = [json.loads(line) for line in out.splitlines() if line.strip()]
        assert len(got) == len(expected[p])
        for i, (want, rec) in enumerate(zip(expected[p], got, strict=True)):
            assert rec["offset"] == i
            # -Z: an empty key or value is sent as null.
            assert rec["key"] == (want.key.decode() if want.key else None)
            assert rec["payload"] == (want.value.decode() if want.value else None)
            assert rec["headers"] == ["source", "kcat"]
            assert rec["tstype"] == "create"
            assert started - 1000 <= rec["ts"] <= finished + 1000
