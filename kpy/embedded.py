"""kpy inside a test run: ``with kpy.Broker() as broker: broker.bootstrap_servers``.

Two ways to run the broker, same interface:

- ``mode="thread"`` (the default): the broker's event loop runs in a background thread of the
  calling process. Starting one costs milliseconds once kpy is imported (no interpreter to start,
  no modules to load twice), which is what makes a broker per test affordable. The broker shares
  the caller's GIL: clients written in C (confluent-kafka, the JVM tools in their own process)
  barely notice, a pure-Python client in the same process competes with it for the CPU.
- ``mode="subprocess"``: ``python -m kpy serve`` as a child process, the broker's own
  interpreter. Use it for isolation from the test process, for load that needs a core of its
  own, and to kill the broker (``kill()``, SIGKILL) as a crash would.

Data lives in ``data_dir`` when one is given (kept on stop), in a temporary directory removed on
stop when none is, or nowhere on disk with ``in_memory=True``. Port 0 (the default) takes a free
port, read back from the bound socket.
"""

from __future__ import annotations

import collections
import concurrent.futures
import contextlib
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

log = logging.getLogger("kpy.embedded")

Mode = Literal["thread", "subprocess"]
_READY = re.compile(r"kpy listening on (\S+):(\d+)")


class BrokerError(RuntimeError):
    """The broker could not start (its output or the exception says why)."""


class Broker:
    """A kpy broker for a test run. Start with ``start()`` or ``with``; stop with ``stop()``.

    ``config`` takes Kafka's broker configuration keys (as ``kpy serve --override``), e.g.
    ``{"num.partitions": "3", "auto.create.topics.enable": "false"}``.
    """

    def __init__(
        self,
        port: int = 0,
        data_dir: str | os.PathLike[str] | None = None,
        *,
        host: str = "127.0.0.1",
        in_memory: bool = False,
        mode: Mode = "thread",
        config: Mapping[str, str] | None = None,
        start_timeout: float = 30.0,
    ) -> None:
        if mode not in ("thread", "subprocess"):
            raise ValueError(f"mode is 'thread' or 'subprocess', not {mode!r}")
        if in_memory and data_dir is not None:
            raise ValueError("in_memory=True keeps no data directory; give one or the other")
        placed = {"listeners", "log.dirs", "log.dir", "kpy.storage.in.memory"} & set(config or {})
        if placed:
            raise ValueError(f"set {sorted(placed)} with port, host, data_dir and in_memory")
        self.host = host
        self.port = port
        self.mode: Mode = mode
        self.in_memory = in_memory
        self.config = dict(config or {})
        self.start_timeout = start_timeout
        self._asked_port = port
        self._given_dir = Path(data_dir) if data_dir is not None else None
        self._temp_dir: str | None = None
        self._runner: _ThreadRunner | _ProcessRunner | None = None

    # --- Where it is ----------------------------------------------------------------------

    @property
    def bootstrap_servers(self) -> str:
        """``host:port``, as clients' bootstrap.servers takes it."""
        if self._runner is None:
            raise BrokerError("the broker is not running")
        host = "127.0.0.1" if self.host in ("", "0.0.0.0") else self.host
        return f"{host}:{self.port}"

    @property
    def data_dir(self) -> Path | None:
        """Where the logs are (None in memory, or before a temporary one is made)."""
        if self._given_dir is not None:
            return self._given_dir
        return Path(self._temp_dir) if self._temp_dir is not None else None

    @property
    def running(self) -> bool:
        return self._runner is not None and self._runner.alive()

    # --- Life -----------------------------------------------------------------------------

    def start(self) -> Broker:
        if self._runner is not None:
            raise BrokerError("already started")
        made_dir = False
        if not self.in_memory and self._given_dir is None and self._temp_dir is None:
            self._temp_dir = tempfile.mkdtemp(prefix="kpy-")
            made_dir = True
        overrides = {**self.config, **self._placement()}
        runner: _ThreadRunner | _ProcessRunner = (
            _ThreadRunner(overrides) if self.mode == "thread" else _ProcessRunner(overrides)
        )
        try:
            self.port = runner.start(self.start_timeout)
        except BaseException:
            if made_dir:  # not one whose data a restart() was to keep
                self._remove_temp_dir()
            raise
        self._runner = runner
        return self

    def stop(self) -> None:
        """Shut down cleanly (as SIGTERM does) and remove a temporary data directory."""
        runner, self._runner = self._runner, None
        try:
            if runner is not None:
                runner.stop()
        finally:
            self._remove_temp_dir()
            self.port = self._asked_port

    def restart(self) -> Broker:
        """Stop (if ``kill`` has not) and start again on the same port with the same data (a
        temporary directory is kept across the restart; memory is not)."""
        if self._runner is None:
            raise BrokerError("the broker is not running")
        port = self.port
        runner, self._runner = self._runner, None
        runner.stop()
        self._asked_port, asked = port, self._asked_port
        try:
            return self.start()
        finally:
            self._asked_port = asked

    def kill(self) -> None:
        """SIGKILL the broker process (``mode="subprocess"``): its files are left as a crash
        leaves them; ``restart`` recovers them, ``stop`` cleans up."""
        if not isinstance(self._runner, _ProcessRunner):
            raise BrokerError("kill() needs mode='subprocess'")
        self._runner.kill()

    def __enter__(self) -> Broker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    async def __aenter__(self) -> Broker:
        import anyio.to_thread

        return await anyio.to_thread.run_sync(self.start)

    async def __aexit__(self, *exc: object) -> None:
        import anyio.to_thread

        await anyio.to_thread.run_sync(self.stop)

    def __repr__(self) -> str:
        where = f"{self.host}:{self.port}" if self._runner is not None else "stopped"
        return f"<kpy.Broker {self.mode} {where}>"

    # --- Inside ---------------------------------------------------------------------------

    def _placement(self) -> dict[str, str]:
        out = {"listeners": f"PLAINTEXT://{self.host}:{self._asked_port}"}
        if self.in_memory:
            out["kpy.storage.in.memory"] = "true"
        else:
            out["log.dirs"] = str(self.data_dir)
        return out

    def _remove_temp_dir(self) -> None:
        if self._temp_dir is not None:
            shutil.rmtree(self._temp_dir, ignore_errors=True)
            self._temp_dir = None


class _ThreadRunner:
    """The broker's event loop in a thread of this process (anyio's blocking portal)."""

    def __init__(self, overrides: dict[str, str]) -> None:
        self._overrides = overrides
        self._stack = contextlib.ExitStack()
        self._future: Any = None

    def start(self, timeout: float) -> int:
        import anyio.from_thread

        from kpy.cli import _hide_hypothesis, raise_file_limit

        _hide_hypothesis()
        raise_file_limit()
        from kpy import server
        from kpy.config import BrokerConfig, ConfigError

        try:
            config = BrokerConfig.load(None, self._overrides)
        except ConfigError as e:
            raise BrokerError(f"bad configuration: {e}") from e
        options: dict[str, Any] = {}
        with contextlib.suppress(ImportError):
            import uvloop  # noqa: F401

            options["use_uvloop"] = True

        started: concurrent.futures.Future[int] = concurrent.futures.Future()

        async def serve() -> None:
            def ready(broker: object, bound: list[tuple[str, int]]) -> None:
                started.set_result(bound[0][1])

            await server.run(config, ready=ready, handle_signals=False)

        self._portal = self._stack.enter_context(
            anyio.from_thread.start_blocking_portal("asyncio", options)
        )
        self._future = self._portal.start_task_soon(serve, name="kpy broker")
        try:
            concurrent.futures.wait(
                [started, self._future], timeout, concurrent.futures.FIRST_COMPLETED
            )
            if started.done():
                return started.result()
            if self._future.done():
                self._future.result()  # raises what stopped it
                raise BrokerError("kpy stopped before it was ready")
            raise BrokerError(f"kpy was not ready after {timeout:g} s")
        except BaseException as e:
            self.stop()  # cancels the start, whatever stage it reached
            if isinstance(e, OSError):
                raise BrokerError(f"kpy could not start: {e}") from e
            raise

    def alive(self) -> bool:
        return self._future is not None and not self._future.done()

    def stop(self) -> None:
        future, self._future = self._future, None
        if future is not None:
            future.cancel()  # cancels the broker's task: it closes its logs and returns
            try:
                future.result()
            except concurrent.futures.CancelledError:
                pass
            except BaseException:
                log.exception("the kpy broker thread had failed")
        self._stack.close()  # ends the event loop and joins its thread


class _ProcessRunner:
    """``python -m kpy serve`` as a child process; its output goes to this logger."""

    def __init__(self, overrides: dict[str, str]) -> None:
        self._overrides = overrides
        self.proc: subprocess.Popen[str] | None = None
        self.output: collections.deque[str] = collections.deque(maxlen=1000)  # the last lines
        self._pump: threading.Thread | None = None

    def start(self, timeout: float) -> int:
        args = [sys.executable, "-m", "kpy", "serve"]
        for key, value in self._overrides.items():
            args += ["--override", f"{key}={value}"]
        self.proc = subprocess.Popen(
            args,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        ready = threading.Event()
        found: list[int] = []

        def pump() -> None:
            assert self.proc is not None and self.proc.stdout is not None
            for line in self.proc.stdout:
                self.output.append(line)
                if not ready.is_set():
                    m = _READY.search(line)
                    if m:
                        found.append(int(m.group(2)))
                        ready.set()
                else:
                    log.debug("kpy: %s", line.rstrip())
            ready.set()

        self._pump = threading.Thread(target=pump, name="kpy output", daemon=True)
        self._pump.start()
        if not ready.wait(timeout) or not found:
            self.kill()
            raise BrokerError("kpy did not start:\n" + "".join(self.output))
        return found[0]

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 30.0) -> None:
        proc = self.proc
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        self._release()

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self._release()

    def _release(self) -> None:
        if self._pump is not None:
            self._pump.join(5)
        if self.proc is not None and self.proc.stdout is not None:
            self.proc.stdout.close()
        self.proc = None
