"""Broker CPU per request over a real socket, with a raw pipelining client that costs little.

    python scripts/bench_wire.py [--size 100] [--requests 10000] [--depth 5] [--fetch-rounds 2]

Starts kpy on a temporary directory, sends --requests Produce v9 requests of one uncompressed
~16 KB batch of --size byte records (acks=1), --depth of them in flight as the Java producer
keeps 5, then reads the whole log back --fetch-rounds times with Fetch v12 requests of 1 MB.
Prints requests/s and kpy's CPU time (user + system, from /proc) per request: what the broker
spends, sockets included, apart from the client. Numbers vary with load; compare back to back.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

import bench_dispatch
import requests_v
from rawclient import RawClient

from kpy.protocol import records as rb


def _cpu(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _sized(body: bytes) -> bytes:
    return struct.pack(">i", len(body)) + body


class Wire:
    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.file = self.sock.makefile("rb", buffering=1 << 20)

    def receive(self) -> bytes:
        (size,) = struct.unpack(">i", self.file.read(4))
        return self.file.read(size)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", type=int, default=100)
    parser.add_argument("--requests", type=int, default=10000)
    parser.add_argument("--depth", type=int, default=5)
    parser.add_argument("--fetch-rounds", type=int, default=2)
    args = parser.parse_args()
    per_batch = max(1, 16000 // (args.size + 10))
    now = int(time.time() * 1000)
    batch = rb.build_batch([(None, os.urandom(args.size))] * per_batch, timestamp=now)
    produce = _sized(bench_dispatch._produce(batch))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with tempfile.TemporaryDirectory() as scratch:
        data = os.path.join(scratch, "data")
        command = [sys.executable, "-m", "kpy", "serve", "--port", str(port), "--data-dir", data]
        proc = subprocess.Popen(
            [*command, "--log-level", "WARNING"],
            stdout=subprocess.DEVNULL,
            start_new_session=True,
            cwd=scratch,  # not the repository: ``-m`` puts the working directory first on sys.path
        )
        try:
            _run(proc.pid, port, produce, per_batch, args)
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait()


def _run(pid: int, port: int, produce: bytes, per_batch: int, args: argparse.Namespace) -> None:
    for _ in range(1000):
        try:
            socket.create_connection(("127.0.0.1", port)).close()
            break
        except OSError:
            time.sleep(0.01)
    with RawClient(f"127.0.0.1:{port}") as client:
        requests_v.create_topic(client, "load")
    wire = Wire(port)
    for _ in range(20):  # warm up
        wire.sock.sendall(produce)
        wire.receive()
    cpu, wall = _cpu(pid), time.perf_counter()
    sent = received = 0
    while received < args.requests:
        while sent < args.requests and sent - received < args.depth:
            wire.sock.sendall(produce)
            sent += 1
        wire.receive()
        received += 1
    cpu, wall = _cpu(pid) - cpu, time.perf_counter() - wall
    print(
        f"produce: {args.requests / wall:,.0f} requests/s ({args.requests * per_batch / wall:,.0f} "
        f"records/s), kpy CPU {cpu / args.requests * 1e6:.0f} us per request"
    )
    total = (args.requests + 20) * per_batch
    for round_ in range(args.fetch_rounds):
        cpu, wall = _cpu(pid), time.perf_counter()
        offset = count = size = 0
        while offset < total:
            wire.sock.sendall(_sized(bench_dispatch._fetch(offset)))
            response = wire.receive()
            count += 1
            size += len(response)
            last = None
            for _pos, header in rb.iter_headers(_records_of(response)):
                last = header
            assert last is not None
            offset = last.next_offset
        cpu, wall = _cpu(pid) - cpu, time.perf_counter() - wall
        print(
            f"fetch round {round_}: {size / wall / 1e6:,.0f} MB/s, kpy CPU "
            f"{cpu / count * 1e3:.2f} ms per 1 MB request ({cpu * 1e9 / size:.2f} ns/B)"
        )


def _records_of(response: bytes) -> bytes:
    from kio.serial import entity_reader

    from kpy.protocol.messages import response_type

    decoded, _ = entity_reader(response_type(1, 12))(response, 5)
    records: bytes = decoded.responses[0].partitions[0].records
    return records


if __name__ == "__main__":
    main()
