"""Start-up of kpy serve: process start -> listening -> first acknowledged produce.

    python scripts/bench_startup.py [--runs 8] [--compare DIR]

Each run starts ``python -m kpy serve`` on a fresh data directory, polls its port, then has a
confluent-kafka producer send one record (the topic is auto-created) and waits for the ack.
Prints the median and min of the wall times and of kpy's CPU time (user + system, from /proc)
at both points, and its resident memory once idle. ``--compare DIR`` alternates each run with
a second tree (DIR holds kpy/ laid out as installed: kpy/, kpy/protocol, kpy/storage), put first
on PYTHONPATH: before/after on a shared machine, back to back. Numbers vary with load.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

from confluent_kafka import Producer


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _cpu(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS"):
                return int(line.split()[1]) / 1024
    return 0.0


def once(env: dict[str, str]) -> tuple[float, float, float, float, float]:
    port = _free_port()
    scratch = tempfile.mkdtemp(prefix="kpy-startup-")
    data = os.path.join(scratch, "data")
    command = [sys.executable, "-m", "kpy", "serve", "--port", str(port), "--data-dir", data]
    started = time.perf_counter()
    proc = subprocess.Popen(
        [*command, "--log-level", "WARNING"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        env=env,
        cwd=scratch,  # not the repository: ``-m`` puts the working directory first on sys.path
    )
    try:
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.002)
        listen, cpu_listen = time.perf_counter() - started, _cpu(proc.pid)
        producer = Producer({"bootstrap.servers": f"127.0.0.1:{port}", "linger.ms": 0})
        producer.produce("startup", b"x")
        if producer.flush(30) != 0:
            raise SystemExit("the first record was not acknowledged")
        produced, cpu_produced = time.perf_counter() - started, _cpu(proc.pid)
        time.sleep(0.5)
        return listen, produced, cpu_listen, cpu_produced, _rss_mb(proc.pid)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=8)
    parser.add_argument("--compare", metavar="DIR")
    args = parser.parse_args()
    trees = {"this tree": dict(os.environ)}
    if args.compare:
        trees[args.compare] = {**os.environ, "PYTHONPATH": args.compare}
    results: dict[str, list[tuple[float, ...]]] = {name: [] for name in trees}
    for _ in range(args.runs):
        for name, env in trees.items():
            results[name].append(once(env))
    names = ["listening (s)", "first produce (s)", "CPU at listening (s)", "CPU at produce (s)"]
    for name, rows in results.items():
        print(name)
        for i, label in enumerate([*names, "idle RSS (MB)"]):
            column = [row[i] for row in rows]
            print(f"  {label:22} median {statistics.median(column):.3f}  min {min(column):.3f}")


if __name__ == "__main__":
    main()
