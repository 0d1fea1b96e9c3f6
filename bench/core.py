"""What every workload of the benchmark shares: the brokers under test, the Java tools, results.

A workload (bench/workloads/*.py) is a function ``run(ctx: Context) -> list[Measurement]``. The
runner starts one broker at a time (kpy, then Apache Kafka, then the sink where a workload wants
it), gives each workload a Context naming that broker, and collects what the workloads measured
into one table with the ratio kpy/Kafka per row.

Nothing here asserts anything about time: the benchmark reports numbers, it does not judge them.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
COMPAT = ROOT / "compat-tests"
KAFKA_VERSION = os.environ.get("BENCH_KAFKA_VERSION", "4.1.0")


@dataclass
class Measurement:
    """One figure of one broker in one workload.

    ``row`` names the workload row the same way for every broker (so kpy's and Kafka's figures
    meet in one line of the table); ``unit`` says what ``value`` counts; ``better`` is "higher" for
    throughput and "lower" for latency, time and memory.
    """

    row: str
    unit: str
    value: float
    better: str = "higher"
    broker: str = ""
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Scale:
    """Sizes of the workloads: ``full`` is what the issue asks for, ``quick`` a smoke run."""

    name: str
    small_records: int  # 100-byte records
    large_records: int  # 1 KB records
    latency_messages: int
    repeats: int
    # The scale workloads (bench/workloads/scale.py): partitions of the many-partitions topic,
    # idle connections beside the producer, members of the consumer group.
    partitions: int = 1000
    idle_connections: int = 200
    group_members: int = 20
    # Fresh groups per broker. The time to a stable group is bimodal with either broker: all
    # members in the first generation (tens of ms), or one more rebalance that waits for the
    # members' next heartbeat (about 3 s); a median of 3 would pick a mode by chance.
    group_runs: int = 7

    @staticmethod
    def full() -> Scale:
        return Scale("full", 1_000_000, 200_000, 10_000, 3)

    @staticmethod
    def quick() -> Scale:
        return Scale("quick", 5_000, 1_000, 200, 1, 50, 20, 4, 1)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_port(port: int, timeout: float, proc: subprocess.Popen[Any] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before listening")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.005)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout} s")


def rss_bytes(pid: int) -> tuple[int, int]:
    """(current, peak) resident set size of a process, from /proc (VmRSS, VmHWM)."""
    values = {"VmRSS": 0, "VmHWM": 0}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                key, _, rest = line.partition(":")
                if key in values:
                    values[key] = int(rest.split()[0]) * 1024
    except FileNotFoundError:
        pass
    return values["VmRSS"], values["VmHWM"]


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far (from /proc/PID/stat)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except FileNotFoundError:
        return 0.0
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


class Broker:
    """A broker process under test. Subclasses say how to start it."""

    name = "broker"

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = workdir / f"{self.name}.log"
        self.started_at = 0.0

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def command(self) -> list[str]:
        raise NotImplementedError

    def launch(self) -> None:
        """Start the process on a free port and return at once (``start`` waits for it)."""
        self.port = free_port()
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self._log = log
        self.started_at = time.perf_counter()
        self.proc = subprocess.Popen(
            self.command(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )

    def start(self, timeout: float = 120.0) -> None:
        """Start the process and return once its port accepts connections."""
        self.launch()
        assert self.proc is not None
        wait_port(self.port, timeout, self.proc)

    def stop(self, timeout: float = 60.0) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self._log.close()
        self.proc = None

    def rss(self) -> tuple[int, int]:
        return rss_bytes(self.pid)

    def cpu(self) -> float:
        return cpu_seconds(self.pid)


class KpyBroker(Broker):
    """``kpy serve`` on a fresh data directory, as a user runs it (default settings)."""

    name = "kpy"

    def command(self) -> list[str]:
        data = self.workdir / "kpy-data"
        return [
            sys.executable,
            "-m",
            "kpy",
            "serve",
            "--port",
            str(self.port),
            "--data-dir",
            str(data),
            "--log-level",
            "WARNING",
        ]


def compile_kpy() -> None:
    """Write kpy's bytecode, as pip does when it installs a wheel. An editable install run with
    PYTHONDONTWRITEBYTECODE set would otherwise compile every module at each start (0.25-0.3 s
    of the start-up figure on this machine)."""
    import compileall

    import kpy
    import kpy.protocol
    import kpy.storage

    for package in (kpy, kpy.protocol, kpy.storage):
        compileall.compile_dir(Path(package.__file__).parent, quiet=1)


class KafkaBroker(Broker):
    """Apache Kafka from the Maven jars: compat-tests/kafka-broker, the server.properties and heap
    (-Xmx1G -Xms1G) Kafka ships with, on a fresh directory. ``--dir`` makes the script exec the
    JVM, so the process measured is Kafka itself."""

    name = "kafka"

    def command(self) -> list[str]:
        data = self.workdir / "kafka-data"
        if data.exists():
            shutil.rmtree(data)
        data.mkdir(parents=True)
        return [
            str(COMPAT / "kafka-broker"),
            "--version",
            KAFKA_VERSION,
            "--dir",
            str(data),
            "--port",
            str(self.port),
        ]

    def start(self, timeout: float = 120.0) -> None:
        super().start(timeout)
        # The port opens before the broker has registered with its controller: wait for the log.
        deadline = time.monotonic() + timeout
        while b"Kafka Server started" not in self.log_path.read_bytes():
            if time.monotonic() > deadline:
                raise TimeoutError("Kafka did not log 'Kafka Server started'")
            time.sleep(0.05)


def kafka_libs() -> Path:
    libs = COMPAT / "target" / f"kafka-{KAFKA_VERSION}" / "libs"
    if not libs.is_dir():
        raise RuntimeError(f"no Kafka jars in {libs}: run compat-tests/fetch-jars {KAFKA_VERSION}")
    return libs


# JVM options as bin/kafka-run-class.sh sets them for every tool (KAFKA_JVM_PERFORMANCE_OPTS).
JVM_PERFORMANCE_OPTS = [
    "-server",
    "-XX:+UseG1GC",
    "-XX:MaxGCPauseMillis=20",
    "-XX:InitiatingHeapOccupancyPercent=35",
    "-XX:+ExplicitGCInvokesConcurrent",
    "-XX:MaxInlineLevel=15",
    "-Djava.awt.headless=true",
]

# The tools' main classes and the heap their bin/*.sh scripts give them.
JAVA_TOOLS = {
    "kafka-producer-perf-test": ("org.apache.kafka.tools.ProducerPerformance", "-Xmx512M"),
    "kafka-consumer-perf-test": ("org.apache.kafka.tools.ConsumerPerformance", "-Xmx512M"),
    "kafka-e2e-latency": ("org.apache.kafka.tools.EndToEndLatency", "-Xmx256M"),
    "kafka-topics": ("org.apache.kafka.tools.TopicCommand", "-Xmx256M"),
}


def java_tool(tool: str, args: list[str], timeout: float = 900.0) -> str:
    """Run a stock Kafka tool as its bin/ script does; return its stdout (raise on failure)."""
    main, heap = JAVA_TOOLS[tool]
    cmd = [
        os.environ.get("JAVA", "java"),
        heap,
        *JVM_PERFORMANCE_OPTS,
        "-Dorg.slf4j.simpleLogger.defaultLogLevel=warn",
        "-Dorg.slf4j.simpleLogger.logFile=System.err",
        "-cp",
        f"{kafka_libs()}/*",
        main,
        *args,
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise RuntimeError(f"{tool} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    return done.stdout


def create_topic(bootstrap: str, topic: str, partitions: int = 1, **configs: str) -> None:
    """Create a topic with confluent-kafka's AdminClient and wait until it is usable."""
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.create_topics(
        [NewTopic(topic, partitions, 1, config=dict(configs))], operation_timeout=30
    )
    futures[topic].result(60)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        md = admin.list_topics(topic, timeout=10)
        t = md.topics.get(topic)
        ready = t is not None and t.error is None and len(t.partitions) == partitions
        if ready and all(p.leader >= 0 for p in t.partitions.values()):
            return
        time.sleep(0.05)
    raise TimeoutError(f"topic {topic} not ready")


@dataclass
class Context:
    """What a workload gets: the running broker, the sizes, a scratch directory."""

    broker: Broker
    scale: Scale
    scratch: Path
    log: Callable[[str], None]

    @property
    def bootstrap(self) -> str:
        return self.broker.bootstrap

    def measurement(
        self, row: str, unit: str, value: float, better: str = "higher", **detail: Any
    ) -> Measurement:
        return Measurement(row, unit, value, better, self.broker.name, dict(detail))


def new_workdir(prefix: str) -> Path:
    return Path(tempfile.mkdtemp(prefix=prefix))


class Sampler:
    """Samples a process's resident memory every ``interval`` s in a thread; ``peak`` is the most
    seen (VmHWM would include start-up, which for a JVM is not load)."""

    def __init__(self, pid: int, interval: float = 0.05) -> None:
        self.pid = pid
        self.interval = interval
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_bytes(self.pid)[0])
            self._stop.wait(self.interval)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


PERF_LINE = re.compile(
    r"(?P<n>\d+) records sent, (?P<rate>[\d.]+) records/sec \((?P<mb>[\d.]+) MB/sec\), "
    r"(?P<avg>[\d.]+) ms avg latency, (?P<max>[\d.]+) ms max latency, (?P<p50>\d+) ms 50th, "
    r"(?P<p95>\d+) ms 95th, (?P<p99>\d+) ms 99th, (?P<p999>\d+) ms 99.9th"
)


@dataclass(frozen=True)
class Workload:
    """A named workload and the brokers it runs against ("kpy", "kafka", and "sink" for the
    producer-only workloads that also show what the client can push to a broker that stores
    nothing). Each bench/workloads/*.py module lists its own in ``WORKLOADS``."""

    name: str
    run: Callable[[Context], list[Measurement]]
    brokers: tuple[str, ...] = ("kpy", "kafka")
    # True for a workload that starts (and stops) its own brokers, such as the start-up
    # measurement: the runner then hands it a Context whose broker is not started.
    starts_broker: bool = False
