"""A hostile load on kpy while a well-behaved producer and consumer work, and kpy's memory.

    python -m bench.load                      # a long run: starts its own kpy, prints progress
    python -m bench.load --quick              # the size tests/test_load.py runs
    python -m bench.load --bootstrap HOST:PORT --pid PID   # against a running kpy

For ``--duration`` seconds at least:

- a confluent-kafka producer (acks=all, idempotent) writes numbered records to one partition and
  a confluent-kafka consumer reads them back; at the end every acknowledged record must have been
  consumed exactly once, in order;
- ``--connections`` connections open and close in waves of ``--wave`` (half send ApiVersions
  and read the answer, half close at once);
- and, in cycles until the time is up: ``--slow-readers`` clients (a 4 KiB receive buffer)
  arrive within two seconds and send a Fetch for up to 50 MiB of a topic filled with
  ``--fill-mib`` MiB, never reading the response; ``--stallers`` clients send half of a frame of
  up to 1 MiB and stall; one client declares a frame of just under socket.request.max.bytes,
  sends 1 MiB of it and stalls; once that one is gone (closed by kpy as idle, or by the script
  after ``--stall-s``), ``--big-frames`` frames of socket.request.max.bytes exactly, the largest
  allowed (a Produce request kpy must read whole and answer MESSAGE_TOO_LARGE), and as many of
  one byte more (kpy must close the connection on reading the size) are sent. A cycle ends once
  its clients have been idle for connections.max.idle.ms, counting those kpy closed.

kpy's resident memory is sampled from /proc/<pid>/status every 100 ms; its peak (VmHWM) is
reported at the end with the counts. Started by the script, kpy runs with
connections.max.idle.ms ``--idle-ms`` (default 10 s) so that stalled clients are reaped within
the run; everything else is kpy's default. The script asserts nothing: tests/test_load.py does.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import resource
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field

MAX_REQUEST = 100 * 1024 * 1024  # socket.request.max.bytes, kpy's and Kafka's default
TOPIC = "load"
BULK = "load-bulk"
BIG = "load-big"
READY = re.compile(r"kpy listening on (\S+):(\d+)")
BURST_S = 2.0  # slow readers of a cycle arrive within this many seconds


@dataclass
class Options:
    duration: float = 60.0
    connections: int = 5000
    wave: int = 250
    slow_readers: int = 50
    stallers: int = 100
    big_frames: int = 4
    fill_mib: int = 128
    stall_s: float = 30.0
    idle_ms: int = 10_000
    produce_rate: int = 2000  # records per second

    @classmethod
    def quick(cls) -> Options:
        return cls(
            duration=12.0,
            connections=1000,
            wave=100,
            slow_readers=20,
            stallers=40,
            big_frames=2,
            fill_mib=48,
            stall_s=15.0,
            idle_ms=4000,
            produce_rate=1000,
        )


@dataclass
class Result:
    produced: int = 0
    acked: int = 0
    failed: int = 0
    consumed: int = 0
    lost: int = 0  # acknowledged and never consumed
    duplicates: int = 0
    in_order: bool = False
    connections_opened: int = 0  # the waves'
    connections_answered: int = 0
    connections_refused: int = 0
    slow_readers: int = 0
    slow_readers_closed_by_kpy: int = 0
    stallers: int = 0
    stallers_closed_by_kpy: int = 0
    large_stallers_closed_by_kpy: int = 0
    cycles: int = 0
    big_frames_answered: int = 0  # socket.request.max.bytes exactly: MESSAGE_TOO_LARGE
    big_frame_errors: list[int] = field(default_factory=list)
    over_limit_closed: int = 0  # one byte more: closed on the size alone
    rss_start_mib: float = 0.0
    rss_max_sampled_mib: float = 0.0
    rss_end_mib: float = 0.0
    peak_rss_mib: float = 0.0  # VmHWM: the most kpy ever held
    alive: bool = False
    seconds: float = 0.0


# --- Frames, by hand -----------------------------------------------------------------------


def _frame(api_key: int, version: int, correlation_id: int, body: bytes) -> bytes:
    """A request frame with header v1 (the versions used here are not flexible)."""
    header = struct.pack(">hhih", api_key, version, correlation_id, 4) + b"load"
    return struct.pack(">i", len(header) + len(body)) + header + body


def _string(s: str) -> bytes:
    return struct.pack(">h", len(s)) + s.encode()


def api_versions_frame(correlation_id: int) -> bytes:
    return _frame(18, 0, correlation_id, b"")


def fetch_frame(topic: str, max_bytes: int) -> bytes:
    """Fetch v4 for partition 0 from offset 0, no waiting."""
    body = (
        struct.pack(
            ">iiiib", -1, 0, 0, max_bytes, 0
        )  # replica, max wait, min bytes, max, isolation
        + struct.pack(">i", 1)
        + _string(topic)
        + struct.pack(">iiqi", 1, 0, 0, max_bytes)  # one partition: index, offset, its max
    )
    return _frame(1, 4, 1, body)


def produce_prefix(topic: str, records_size: int, correlation_id: int) -> bytes:
    """A Produce v3 request (acks=all) whose one partition's records, ``records_size`` bytes,
    follow: the frame's first bytes, with the size of the whole."""
    body = (
        struct.pack(">hhi", -1, -1, 30_000)  # no transactional id, acks, timeout
        + struct.pack(">i", 1)
        + _string(topic)
        + struct.pack(">iii", 1, 0, records_size)
    )
    header = struct.pack(">hhih", 0, 3, correlation_id, 4) + b"load"
    return struct.pack(">i", len(header) + len(body) + records_size) + header + body


def batch_header(size: int) -> bytes:
    """The 61-byte header of a v2 record batch of ``size`` bytes (its CRC is not computed: the
    size alone is refused)."""
    return struct.pack(">qiibIhiqqqhii", 0, size - 12, -1, 2, 0, 0, 0, 0, 0, -1, -1, -1, 1)


def produce_records_frame(topic: str, records: bytes, correlation_id: int) -> bytes:
    return produce_prefix(topic, len(records), correlation_id) + records


async def read_frame(reader: asyncio.StreamReader) -> bytes:
    (size,) = struct.unpack(">i", await reader.readexactly(4))
    return await reader.readexactly(size)


def produce_error(response: bytes) -> int:
    """The error code of the one partition of a Produce v3 response."""
    pos = 4 + 4  # correlation id, topic count
    (name_len,) = struct.unpack_from(">h", response, pos)
    pos += 2 + name_len + 4 + 4  # name, partition count, index
    (error,) = struct.unpack_from(">h", response, pos)
    return int(error)


# --- kpy's memory --------------------------------------------------------------------------


def status_kib(pid: int, key: str) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


class RssSampler(threading.Thread):
    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.max_kib = 0
        self.last_kib = 0
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.wait(0.1):
            try:
                self.last_kib = status_kib(self.pid, "VmRSS")
            except OSError:
                return
            self.max_kib = max(self.max_kib, self.last_kib)

    def stop(self) -> None:
        self._halt.set()
        self.join()


# --- The well-behaved clients --------------------------------------------------------------


class GoodProducer(threading.Thread):
    def __init__(self, bootstrap: str, rate: int) -> None:
        super().__init__(daemon=True)
        from confluent_kafka import Producer

        self.producer = Producer(
            {
                "bootstrap.servers": bootstrap,
                "acks": "all",
                "enable.idempotence": True,
                "linger.ms": 5,
                "client.id": "load-producer",
            }
        )
        self.rate = rate
        self.acked: list[int] = []
        self.failed = 0
        self.produced = 0
        self._halt = threading.Event()

    def _delivered(self, err: object, msg: object) -> None:
        if err is not None:
            self.failed += 1
        else:
            self.acked.append(int(msg.value()[:10]))  # type: ignore[attr-defined]

    def run(self) -> None:
        start = time.monotonic()
        padding = b"." * 100
        while not self._halt.is_set():
            due = int((time.monotonic() - start) * self.rate)
            while self.produced < due:
                try:
                    self.producer.produce(
                        TOPIC, b"%010d" % self.produced + padding, on_delivery=self._delivered
                    )
                except BufferError:
                    break
                self.produced += 1
            self.producer.poll(0.01)
        self.producer.flush(120)

    def stop(self) -> None:
        self._halt.set()
        self.join()


class GoodConsumer(threading.Thread):
    def __init__(self, bootstrap: str) -> None:
        super().__init__(daemon=True)
        from confluent_kafka import Consumer, TopicPartition

        self.consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": "load-consumer",
                "enable.auto.commit": False,
                "client.id": "load-consumer",
            }
        )
        self.consumer.assign([TopicPartition(TOPIC, 0, 0)])
        self.values: list[int] = []
        self.errors = 0
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.is_set():
            for msg in self.consumer.consume(1000, 0.2):
                if msg.error():
                    self.errors += 1
                else:
                    self.values.append(int(msg.value()[:10]))
        self.consumer.close()

    def stop(self) -> None:
        self._halt.set()
        self.join()


# --- The hostile clients -------------------------------------------------------------------


async def _connect(
    host: str, port: int, recv_buffer: int | None = None
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    if recv_buffer is None:
        return await asyncio.open_connection(host, port)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, recv_buffer)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, (host, port))
    return await asyncio.open_connection(sock=sock)


async def _closed_by_peer(reader: asyncio.StreamReader) -> bool:
    """True if the peer has closed (end of stream or reset) without our reading anything but
    what it had sent: read and discard until the end."""
    try:
        while await reader.read(1 << 16):
            pass
    except ConnectionError:
        pass
    return True


class Hostile:
    def __init__(self, host: str, port: int, options: Options, result: Result) -> None:
        self.host, self.port = host, port
        self.options = options
        self.result = result
        self.held: list[tuple[str, asyncio.StreamReader, asyncio.StreamWriter]] = []

    async def run(self) -> None:
        """Connection waves for ``duration``; meanwhile cycles of the other hostile clients,
        until ``duration`` has passed."""
        o = self.options
        end = time.monotonic() + o.duration
        waves = asyncio.create_task(self._waves(o.duration))
        while True:
            await self._cycle()
            self.result.cycles += 1
            if time.monotonic() >= end:
                break
        await waves

    async def _cycle(self) -> None:
        """Slow readers and stallers arrive within ``BURST_S`` seconds, with a client that
        declares a frame of just under the largest size and stalls; once that one is gone the
        frames of the largest size and of one byte more are sent. Then, once every client of
        the cycle has been idle for connections.max.idle.ms, the cycle counts those kpy
        closed."""
        self.held = []
        started = time.monotonic()
        large_staller = await self._large_staller()
        await asyncio.gather(
            self._slow_readers(), self._stallers(), self._big_frames(large_staller)
        )
        reaped = started + BURST_S + self.options.idle_ms / 1000 + 2  # the sweep's margin
        await asyncio.sleep(max(reaped - time.monotonic(), 0))
        await self._count_closed()

    async def _waves(self, duration: float) -> None:
        o = self.options
        waves = max(o.connections // o.wave, 1)
        pause = duration / waves / 2
        for w in range(waves):
            results = await asyncio.gather(
                *(self._one_connection(w * o.wave + i) for i in range(o.wave)),
                return_exceptions=True,
            )
            for r in results:
                if isinstance(r, BaseException):
                    self.result.connections_refused += 1
            await asyncio.sleep(pause)

    async def _one_connection(self, n: int) -> None:
        reader, writer = await self._open()
        self.result.connections_opened += 1
        try:
            if n % 2 == 0:
                writer.write(api_versions_frame(n))
                response = await asyncio.wait_for(read_frame(reader), 30)
                if struct.unpack_from(">i", response)[0] == n:
                    self.result.connections_answered += 1
        finally:
            writer.close()

    async def _open(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        return await asyncio.wait_for(_connect(self.host, self.port), 30)

    async def _slow_readers(self) -> None:
        o = self.options
        for _ in range(o.slow_readers):
            reader, writer = await _connect(self.host, self.port, recv_buffer=4096)
            writer.write(fetch_frame(BULK, 50 << 20))
            self.held.append(("slow", reader, writer))
            self.result.slow_readers += 1
            await asyncio.sleep(BURST_S / max(o.slow_readers, 1))

    async def _stallers(self) -> None:
        o = self.options
        for i in range(o.stallers):
            size = (1000, 64 << 10, 1 << 20)[i % 3]
            reader, writer = await self._open()
            writer.write(struct.pack(">i", size) + b"\x00" * (size // 2))
            self.held.append(("staller", reader, writer))
            self.result.stallers += 1

    async def _large_staller(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        reader, writer = await self._open()
        writer.write(struct.pack(">i", MAX_REQUEST - 100) + b"\x00" * (1 << 20))
        return reader, writer

    async def _big_frames(self, staller: tuple[asyncio.StreamReader, asyncio.StreamWriter]) -> None:
        reader, writer = staller
        try:
            await asyncio.wait_for(_closed_by_peer(reader), self.options.stall_s)
            self.result.large_stallers_closed_by_kpy += 1
        except TimeoutError:
            pass
        writer.close()
        for i in range(self.options.big_frames):
            await self._just_under(i)
            await self._just_over()

    async def _just_under(self, n: int) -> None:
        """A Produce request of exactly socket.request.max.bytes, sent 1 MiB at a time."""
        prefix_len = len(produce_prefix(BIG, 0, n)) - 4
        records = MAX_REQUEST - prefix_len
        reader, writer = await self._open()
        try:
            writer.write(produce_prefix(BIG, records, n) + batch_header(records))
            chunk = bytes(1 << 20)
            left = records - 61
            while left > 0:
                writer.write(chunk[: min(left, len(chunk))])
                left -= len(chunk)
                await writer.drain()
            response = await asyncio.wait_for(read_frame(reader), 120)
            self.result.big_frames_answered += 1
            self.result.big_frame_errors.append(produce_error(response))
        finally:
            writer.close()

    async def _just_over(self) -> None:
        reader, writer = await self._open()
        try:
            writer.write(struct.pack(">i", MAX_REQUEST + 1))
            try:
                for _ in range(64):  # kpy closes on the size: these cannot all go through
                    writer.write(bytes(1 << 20))
                    await writer.drain()
            except ConnectionError:
                pass
            await asyncio.wait_for(_closed_by_peer(reader), 30)
            self.result.over_limit_closed += 1
        finally:
            writer.close()

    async def _count_closed(self) -> None:
        """How many of the held connections kpy has closed (read to the end, briefly)."""

        async def closed(reader: asyncio.StreamReader) -> bool:
            try:
                return await asyncio.wait_for(_closed_by_peer(reader), 0.5)
            except TimeoutError:
                return False

        found = await asyncio.gather(*(closed(reader) for _, reader, _ in self.held))
        for (kind, _, writer), was_closed in zip(self.held, found, strict=True):
            if was_closed and kind == "slow":
                self.result.slow_readers_closed_by_kpy += 1
            elif was_closed:
                self.result.stallers_closed_by_kpy += 1
            writer.close()


# --- Set-up and the run --------------------------------------------------------------------


def fill(host: str, port: int, mib: int) -> None:
    """Write ``mib`` MiB of 1 MB batches to BULK, for the slow readers to fetch, and create the
    other topics (auto-created by Metadata)."""
    from kpy.protocol import records as rb

    with socket.create_connection((host, port), timeout=30) as sock:
        for n, topic in enumerate((TOPIC, BULK, BIG)):
            body = struct.pack(">i", 1) + _string(topic)
            sock.sendall(_frame(3, 4, n, body + b"\x01"))  # Metadata v4, auto-create
            _recv_frame(sock)
        batch = rb.build_batch([(None, bytes(1_000_000))])
        for i in range((mib << 20) // len(batch)):
            sock.sendall(produce_records_frame(BULK, batch, i))
            if produce_error(_recv_frame(sock)) != 0:
                raise RuntimeError("filling the bulk topic failed")


def _recv_frame(sock: socket.socket) -> bytes:
    def exact(n: int) -> bytes:
        out = bytearray()
        while len(out) < n:
            chunk = sock.recv(n - len(out))
            if not chunk:
                raise ConnectionError("closed")
            out += chunk
        return bytes(out)

    (size,) = struct.unpack(">i", exact(4))
    return exact(size)


def alive(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=10) as sock:
            sock.settimeout(10)
            sock.sendall(api_versions_frame(7))
            return struct.unpack_from(">i", _recv_frame(sock))[0] == 7
    except OSError:
        return False


def raise_open_file_limit(wanted: int = 8192) -> None:
    """Connections are file descriptors, here and in a kpy started from here (which inherits the
    limit): raise the soft limit toward the hard one."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


def run(bootstrap: str, pid: int, options: Options, progress: bool = False) -> Result:
    """The load against the kpy at ``bootstrap`` whose process is ``pid``."""
    host, port_text = bootstrap.rsplit(":", 1)
    port = int(port_text)
    raise_open_file_limit()
    result = Result()
    started = time.monotonic()
    fill(host, port, options.fill_mib)
    result.rss_start_mib = status_kib(pid, "VmRSS") / 1024
    sampler = RssSampler(pid)
    sampler.start()
    consumer = GoodConsumer(bootstrap)
    producer = GoodProducer(bootstrap, options.produce_rate)
    consumer.start()
    producer.start()
    reporter = _Reporter(result, producer, consumer, sampler) if progress else None
    try:
        asyncio.run(Hostile(host, port, options, result).run())
    finally:
        producer.stop()
        deadline = time.monotonic() + 60
        while len(consumer.values) < len(producer.acked) and time.monotonic() < deadline:
            time.sleep(0.1)
        consumer.stop()
        if reporter is not None:
            reporter.stop()
        sampler.stop()
    acked, consumed = producer.acked, consumer.values
    result.produced, result.acked, result.failed = producer.produced, len(acked), producer.failed
    result.consumed = len(consumed)
    seen = set(consumed)
    result.lost = sum(1 for v in acked if v not in seen)
    result.duplicates = len(consumed) - len(seen)
    acked_set = set(acked)
    result.in_order = [v for v in consumed if v in acked_set] == acked
    result.rss_max_sampled_mib = sampler.max_kib / 1024
    result.rss_end_mib = status_kib(pid, "VmRSS") / 1024
    result.peak_rss_mib = status_kib(pid, "VmHWM") / 1024
    result.alive = alive(host, port)
    result.seconds = time.monotonic() - started
    return result


class _Reporter(threading.Thread):
    def __init__(
        self, result: Result, producer: GoodProducer, consumer: GoodConsumer, rss: RssSampler
    ) -> None:
        super().__init__(daemon=True)
        self.args = result, producer, consumer, rss
        self._halt = threading.Event()
        self.start()

    def run(self) -> None:
        result, producer, consumer, rss = self.args
        while not self._halt.wait(2):
            print(
                f"acked {len(producer.acked)} consumed {len(consumer.values)} | connections "
                f"{result.connections_opened} slow readers {result.slow_readers} stallers "
                f"{result.stallers} big frames {result.big_frames_answered}+"
                f"{result.over_limit_closed} | kpy RSS {rss.last_kib / 1024:.0f} MiB "
                f"(max {rss.max_kib / 1024:.0f})",
                file=sys.stderr,
                flush=True,
            )

    def stop(self) -> None:
        self._halt.set()
        self.join()


@contextmanager
def kpy_process(idle_ms: int, data_dir: str) -> Iterator[tuple[str, int]]:
    """``kpy serve`` on a free port with kpy's defaults but connections.max.idle.ms."""
    args = [sys.executable, "-m", "kpy", "serve", "--port", "0", "--data-dir", data_dir]
    args += ["--override", f"connections.max.idle.ms={idle_ms}", "--log-level", "WARNING"]
    proc = subprocess.Popen(
        args,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            m = READY.search(line)
            if m:
                break
        else:
            raise RuntimeError("kpy did not start")
        threading.Thread(target=proc.stdout.read, daemon=True).start()  # drain its log
        yield f"{m.group(1)}:{m.group(2)}", proc.pid
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.load", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--quick", action="store_true", help="the sizes tests/test_load.py uses")
    parser.add_argument("--bootstrap", help="a running kpy (with --pid) instead of starting one")
    parser.add_argument("--pid", type=int, help="the process id of the kpy at --bootstrap")
    parser.add_argument("--json", help="write the result here as JSON")
    defaults = Options()
    for name, value in asdict(defaults).items():
        parser.add_argument("--" + name.replace("_", "-"), type=type(value), default=None)
    args = parser.parse_args(argv)
    options = Options.quick() if args.quick else defaults
    for name in asdict(defaults):
        if getattr(args, name) is not None:
            setattr(options, name, getattr(args, name))
    if args.bootstrap:
        if args.pid is None:
            parser.error("--bootstrap needs --pid (kpy's memory is read from /proc)")
        result = run(args.bootstrap, args.pid, options, progress=True)
    else:
        raise_open_file_limit()
        with tempfile.TemporaryDirectory() as tmp, kpy_process(options.idle_ms, tmp) as (b, pid):
            result = run(b, pid, options, progress=True)
    report = asdict(result)
    print(json.dumps(report, indent=1))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"options": asdict(options), "result": report}, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
