"""``kpy wait`` (readiness for shell CI) and ``kpy serve --log-format json``, as processes."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

import kpy


def kpy_command(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kpy", *args], capture_output=True, text=True, timeout=timeout
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_wait_for_a_running_broker() -> None:
    with kpy.Broker() as broker:
        done = kpy_command("wait", "--bootstrap", broker.bootstrap_servers, "--timeout", "10")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"ready: {broker.host}:")
    assert "1 broker(s)" in done.stdout


def test_wait_for_a_broker_that_starts_later() -> None:
    port = free_port()
    waiting = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "kpy",
            "wait",
            "--bootstrap",
            f"127.0.0.1:{port}",
            "--timeout",
            "60",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        threading.Event().wait(1.0)  # kpy wait is polling a closed port by now
        assert waiting.poll() is None
        with kpy.Broker(port=port):
            out, err = waiting.communicate(timeout=60)
    finally:
        waiting.kill()
    assert waiting.returncode == 0, err
    assert out.startswith(f"ready: 127.0.0.1:{port}")


def test_wait_times_out_on_a_closed_port() -> None:
    done = kpy_command("wait", "--bootstrap", f"127.0.0.1:{free_port()}", "--timeout", "0.5")
    assert done.returncode == 1
    assert "no broker ready within 0.5 s" in done.stderr
    assert "refused" in done.stderr


def test_wait_is_not_fooled_by_a_server_that_is_not_kafka() -> None:
    """A port that accepts and answers something else (an HTTP server, say) is not ready."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]

        def answer_junk() -> None:
            while True:
                try:
                    conn, _ = server.accept()
                except OSError:
                    return
                with conn:
                    conn.recv(1024)
                    conn.sendall(b"HTTP/1.1 400 Bad Request\r\n\r\n")

        threading.Thread(target=answer_junk, daemon=True).start()
        done = kpy_command("wait", "--bootstrap", f"127.0.0.1:{port}", "--timeout", "0.5")
    assert done.returncode == 1
    assert "no broker ready" in done.stderr


def test_wait_refuses_a_bad_address() -> None:
    done = kpy_command("wait", "--bootstrap", "localhost", "--timeout", "1")
    assert done.returncode == 2
    assert "HOST:PORT" in done.stderr


def test_serve_logs_json_lines(tmp_path: Path) -> None:
    serve = ["serve", "--port", "0", "--data-dir", str(tmp_path), "--log-format", "json"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "kpy", *serve, "--log-level", "INFO"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        ready = proc.stdout.readline()
        assert ready.startswith("kpy listening on 127.0.0.1:")  # the ready line stays text
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    records = [json.loads(line) for line in err.splitlines()]
    assert records, err
    for record in records:
        assert {"time", "level", "logger", "message"} <= set(record), record
    said = {(r["level"], r["logger"], r["message"]) for r in records}
    assert ("INFO", "kpy.server", "stopped cleanly") in said
