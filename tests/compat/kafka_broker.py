"""A real Apache Kafka broker for differential tests, started by ``compat-tests/kafka-broker``.

``KafkaBroker(directory).start()`` formats a fresh KRaft log dir (kafka-storage format
--standalone) and runs kafka.Kafka as one combined broker and controller on free ports, then waits
until it logs "Kafka Server started" (Kafka logs that once the broker is unfenced) and answers a
Metadata request listing itself. It has what KpyProcess has for the compat tests: ``bootstrap``,
``data_dir`` (the log dir, for kafka-dump-log) and ``kind``.

One broker can serve many tests: ``reset()`` deletes every topic and consumer group the tests
made and waits until their partition directories are gone, so the next test starts as on a fresh
broker (apart from the internal topics and the ids Kafka hands out). For that it is started with
DELETE_AT_ONCE, the only change to the shipped configuration besides ports and log.dirs.

The JVM must never outlive the tests: ``stop()`` ends it (SIGTERM, then SIGKILL), and on Linux the
kernel kills it if the test process dies first (PR_SET_PDEATHSIG; the launcher execs java, so the
setting reaches the JVM).
"""

from __future__ import annotations

import ctypes
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient
from rawclient import RawClient
from requests_v import metadata

from compat.tools import ROOT, libs

KAFKA_BROKER = ROOT / "compat-tests" / "kafka-broker"
LISTENING = re.compile(r"kafka-broker: Kafka \S+ on (\S+):(\d+) \(controller (\d+)\)")
STARTED = "Kafka Server started"
PR_SET_PDEATHSIG = 1

# A deleted partition's directory goes in 100 ms, not a minute (log.segment.delete.delay.ms),
# and the task that deletes it starts at once, not 30 s after startup (log.initial.task.delay.ms).
DELETE_AT_ONCE = {"log.segment.delete.delay.ms": "100", "log.initial.task.delay.ms": "0"}


def missing(version: str) -> str | None:
    """Why a Kafka ``version`` broker cannot run on this machine, or None when it can."""
    if shutil.which(os.environ.get("JAVA", "java")) is None:
        return "java is not installed"
    if shutil.which("python3") is None:
        return "python3 (used by compat-tests/kafka-broker) is not on PATH"
    jars = libs(version)
    for jar in (f"kafka_2.13-{version}.jar", f"kafka-server-{version}.jar"):
        if not (jars / jar).is_file():
            return f"Kafka {version} server jars missing: run compat-tests/fetch-jars {version}"
    return None


def _die_with_parent() -> None:
    """In the child before exec: SIGKILL it when the process that started it dies."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


class KafkaBroker:
    """One Apache Kafka node (broker and controller) with its files under ``directory``."""

    kind = "kafka"

    def __init__(
        self, directory: Path, version: str = "4.1.0", overrides: dict[str, str] | None = None
    ) -> None:
        self.directory = directory
        self.version = version
        self.overrides = dict(overrides or {})
        self.data_dir = directory / "logs"
        self.log_file = directory / "kafka.out"
        self.proc: subprocess.Popen[bytes] | None = None
        self.host = "127.0.0.1"
        self.port = 0
        self.controller_port = 0

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    def start(self, timeout: float = 90.0) -> KafkaBroker:
        self.directory.mkdir(parents=True, exist_ok=True)
        args = [str(KAFKA_BROKER), "--version", self.version, "--dir", str(self.directory)]
        if self.port:  # a restart: the same ports (the quorum's voter keeps its endpoint)
            args += ["--port", str(self.port), "--controller-port", str(self.controller_port)]
        for key, value in self.overrides.items():
            args += ["--override", f"{key}={value}"]
        with self.log_file.open("wb") as out:
            self.proc = subprocess.Popen(
                args,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                preexec_fn=_die_with_parent,
            )
        try:
            self._wait_ready(time.monotonic() + timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self, deadline: float) -> None:
        assert self.proc is not None
        while True:
            text = self.log_text()
            m = LISTENING.search(text)
            if m:
                self.host, self.port = m.group(1), int(m.group(2))
                self.controller_port = int(m.group(3))
            if m and STARTED in text and self._answers():
                return
            if self.proc.poll() is not None:
                raise RuntimeError(f"Kafka exited {self.proc.returncode}:\n{self._tail()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"Kafka did not start in time:\n{self._tail()}")
            time.sleep(0.2)

    def _answers(self) -> bool:
        """Whether the broker answers Metadata and lists itself."""
        try:
            with RawClient(self.bootstrap, timeout=5.0) as client:
                return len(metadata(client).brokers) == 1
        except OSError:
            return False

    def stop(self, timeout: float = 20.0) -> int:
        """SIGTERM (Kafka's controlled shutdown) and wait; SIGKILL if it takes too long."""
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
        self.proc = None
        return code

    def kill(self) -> None:
        """SIGKILL: an unclean stop, as a crash leaves the files (``start()`` then restarts it on
        the same data and ports)."""
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None

    def restart(self) -> KafkaBroker:
        """A clean stop, then a start on the same data and ports."""
        self.stop()
        return self.start()

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def reset(self, timeout: float = 30.0) -> None:
        """Delete all topics but the internal ones and all consumer groups; wait for their logs to
        leave ``data_dir``. Raises if anything is left (a group with members cannot be deleted)."""
        admin = AdminClient({"bootstrap.servers": self.bootstrap})
        groups = admin.list_consumer_groups(request_timeout=timeout).result()
        if groups.errors:
            raise KafkaException(f"listing groups: {groups.errors}")
        ids = [g.group_id for g in groups.valid]
        if ids:
            for future in admin.delete_consumer_groups(ids, request_timeout=timeout).values():
                future.result()
        topics = [t for t in admin.list_topics(timeout=timeout).topics if not t.startswith("__")]
        if topics:
            for future in admin.delete_topics(topics, operation_timeout=timeout).values():
                future.result()
        deadline = time.monotonic() + timeout
        while leftover := self._user_log_dirs():
            if time.monotonic() > deadline:
                raise KafkaException(f"partition directories left after deletion: {leftover}")
            time.sleep(0.1)

    def _user_log_dirs(self) -> list[str]:
        """Partition directories of non-internal topics, deleted ones included."""
        return [
            p.name for p in self.data_dir.iterdir() if p.is_dir() and not p.name.startswith("__")
        ]

    def log_text(self) -> str:
        try:
            return self.log_file.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def _tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])
