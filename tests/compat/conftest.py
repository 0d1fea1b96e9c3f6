"""Fixtures for the stock-tool tests.

``tools`` is parametrized over the Kafka releases whose tools are tested (KAFKA_TOOL_VERSIONS,
comma-separated; default "4.1.0,3.9.1"); a release whose jars or java are missing skips with the
reason. ``broker`` is the broker under test: kpy by default, or a real Apache Kafka with
``--compat-broker=kafka`` (or KPY_COMPAT_BROKER=kafka), the reference the same expectations are
checked against. Either has ``bootstrap``, ``data_dir`` (the directory holding the partition
directories) and ``kind`` ("kpy" or "kafka").

kpy starts fresh for each test. A JVM broker takes seconds to start, so one Kafka serves the
session and is reset after each test (its topics and groups deleted, their directories gone: see
KafkaBroker.reset); a reset that fails, or a broker that died, means a fresh one for the next test.
The session's end stops it, interrupted or not, and the JVM dies with the test process anyway.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from kpy_process import KpyProcess

from compat import kafka_broker
from compat.kafka_broker import DELETE_AT_ONCE, KafkaBroker
from compat.tools import Tools, missing

VERSIONS = [v.strip() for v in os.environ.get("KAFKA_TOOL_VERSIONS", "4.1.0,3.9.1").split(",")]
KAFKA_DEFAULT_VERSION = "4.1.0"


def broker_choice(config: pytest.Config) -> tuple[str, str | None]:
    """("kpy", None) or ("kafka", version), from --compat-broker or KPY_COMPAT_BROKER."""
    raw = config.getoption("--compat-broker") or os.environ.get("KPY_COMPAT_BROKER") or "kpy"
    if raw == "kpy":
        return "kpy", None
    if raw == "kafka":
        return "kafka", KAFKA_DEFAULT_VERSION
    if raw.startswith("kafka-"):
        return "kafka", raw.removeprefix("kafka-")
    raise pytest.UsageError(f"--compat-broker: kpy, kafka or kafka-<version>, not {raw!r}")


def pytest_report_header(config: pytest.Config) -> str:
    kind, version = broker_choice(config)
    return f"compat broker: {kind}" + (f" {version}" if version else "")


@pytest.fixture(params=VERSIONS, ids=[f"tools-{v}" for v in VERSIONS])
def tools(request: pytest.FixtureRequest) -> Tools:
    version: str = request.param
    why = missing(version)
    if why is not None:
        pytest.skip(why)
    return Tools(version)


class SharedKafka:
    """The session's Apache Kafka broker, started on first use, replaced when a reset fails."""

    def __init__(self, root: Path, version: str) -> None:
        self.root = root
        self.version = version
        self.current: KafkaBroker | None = None
        self.started = 0

    def get(self) -> KafkaBroker:
        if self.current is not None and not self.current.running():
            self.stop()
        if self.current is None:
            self.started += 1
            directory = self.root / f"kafka{self.started}"
            self.current = KafkaBroker(directory, self.version, DELETE_AT_ONCE)
            self.current.start()
        return self.current

    def release(self) -> None:
        """After a test: make the broker clean for the next one, or drop it."""
        if self.current is None:
            return
        try:
            self.current.reset()
        except Exception:
            self.stop()

    def stop(self) -> None:
        if self.current is not None:
            self.current.stop()
            self.current = None


@pytest.fixture(scope="session")
def shared_kafka(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SharedKafka]:
    _, version = broker_choice(request.config)
    shared = SharedKafka(tmp_path_factory.mktemp("kafka"), version or KAFKA_DEFAULT_VERSION)
    try:
        yield shared
    finally:
        shared.stop()


@pytest.fixture
def broker(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[KpyProcess | KafkaBroker]:
    """The broker under test, with ``bootstrap``, ``data_dir`` and ``kind``."""
    kind, version = broker_choice(request.config)
    if kind == "kafka":
        assert version is not None
        why = kafka_broker.missing(version)
        if why is not None:
            pytest.skip(why)
        shared: SharedKafka = request.getfixturevalue("shared_kafka")
        try:
            yield shared.get()
        finally:
            shared.release()
        return
    proc = KpyProcess(tmp_path / "data").start()
    try:
        yield proc
    finally:
        proc.stop()
    # Whatever the clients and tools sent, kpy answered it: a handler's traceback is a bug even
    # when the scenario passed.
    log = proc.log_text()
    assert "Traceback" not in log and "unexpected error" not in log, log[-5000:]
