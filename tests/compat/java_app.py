"""Long-running Java applications from the jars: Kafka Streams apps, Connect workers, MirrorMaker 2.

The command-line tools run to completion (``Tools.run``); these run until stopped, so
``JavaApp`` starts one through ``compat-tests/kafka-tool`` (``kafka-run-class``,
``connect-standalone``, ``connect-distributed``, ``connect-mirror-maker``) with its output in a
log file, waits for what the test needs (a line in the log, or any condition), and stops it the
way an operator does: SIGTERM, which runs the application's shutdown hooks (Streams closes and
commits, Connect stops its tasks and flushes offsets), then SIGKILL if it hangs. ``kill()`` is
the crash. The JVM never outlives the test process (PR_SET_PDEATHSIG, as for the reference
broker; on a tool's first run, when kafka-tool keeps java as its child to save a class-data
archive, only the launcher has it).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from compat.kafka_broker import _die_with_parent
from compat.tools import KAFKA_TOOL


class JavaApp:
    """One JVM started by ``kafka-tool TOOL ARGS`` with output in ``log_file``."""

    def __init__(
        self,
        version: str,
        tool: str,
        *args: str,
        log_file: Path,
        classpath: str | None = None,
        heap: str | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        self.version = version
        self.tool = tool
        self.args = args
        self.log_file = log_file
        self.env = dict(os.environ)
        self.env.pop("CLASSPATH", None)
        if classpath:
            self.env["CLASSPATH"] = classpath
        if heap:
            self.env["KAFKA_HEAP_OPTS"] = heap
        # E.g. KAFKA_OPTS, whose JVM options come after kafka-tool's (a logger's level).
        self.env.update(env or {})
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> JavaApp:
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        # Appended to: a restarted application's log follows its first run's.
        with self.log_file.open("ab") as out:
            self.proc = subprocess.Popen(
                [str(KAFKA_TOOL), "--version", self.version, self.tool, *self.args],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=self.env,
                # A group of its own: on a tool's first run kafka-tool runs java as a child (to
                # keep its class-data archive), and a signal must reach the JVM too.
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )
        return self

    def __enter__(self) -> JavaApp:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_text(self) -> str:
        try:
            return self.log_file.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def tail(self, lines: int = 60) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def wait_until(
        self, condition: Callable[[], bool], what: str, timeout: float = 90.0, poll: float = 0.3
    ) -> None:
        """Poll ``condition`` until true; fail with the log's tail if the JVM exits or time runs
        out (``what`` says what was awaited)."""
        deadline = time.monotonic() + timeout
        while not condition():
            if not self.running():
                code = None if self.proc is None else self.proc.returncode
                raise AssertionError(f"{self.tool} exited ({code}) before {what}:\n{self.tail()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.tool}: no {what} in {timeout} s:\n{self.tail()}")
            time.sleep(poll)

    def wait_for_log(self, text: str, timeout: float = 90.0) -> None:
        self.wait_until(lambda: text in self.log_text(), repr(text), timeout)

    def stop(self, timeout: float = 30.0) -> int | None:
        """SIGTERM (the application's shutdown hooks run) and wait; SIGKILL past ``timeout``."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self._signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self._signal(signal.SIGKILL)
            code = self.proc.wait()
        self._signal(signal.SIGKILL)  # anything of the group still there
        self.proc = None
        return code

    def kill(self) -> None:
        """SIGKILL: the crash (no shutdown hook runs, nothing is flushed)."""
        if self.proc is not None:
            self._signal(signal.SIGKILL)
            self.proc.wait()
            self.proc = None

    def _signal(self, signum: int) -> None:
        assert self.proc is not None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signum)
