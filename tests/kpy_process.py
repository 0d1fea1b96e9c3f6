"""Start and stop a real kpy broker as a subprocess, for tests.

The broker is the installed ``kpy`` (``python -m kpy``); it binds a free port (``--port 0``) and
prints one ready line, from which the port is read. With ``in_memory`` it runs ``--in-memory``
(no data directory on disk; ``data_dir``, if given, names the one in memory), and ``cwd`` sets
the directory it runs in.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

READY = re.compile(r"kpy listening on (\S+):(\d+)")


class KpyProcess:
    kind = "kpy"

    def __init__(
        self,
        data_dir: Path | None,
        overrides: dict[str, str] | None = None,
        *,
        in_memory: bool = False,
        cwd: Path | None = None,
    ) -> None:
        if data_dir is None and not in_memory:
            raise ValueError("a broker on disk needs a data directory")
        self.data_dir = data_dir
        self.overrides = dict(overrides or {})
        self.in_memory = in_memory
        self.cwd = cwd
        self.proc: subprocess.Popen[str] | None = None
        self.port = 0
        self.ports: list[int] = []  # every listener's, in the order of the listeners setting
        self.output: list[str] = []
        self._ready_line = False

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, timeout: float = 20.0) -> KpyProcess:
        args = [sys.executable, "-m", "kpy", "serve"]
        if "listeners" not in self.overrides:  # else the listeners given, in their order
            args += ["--port", str(self.port)]
        if self.data_dir is not None:
            args += ["--data-dir", str(self.data_dir)]
        if self.in_memory:
            args.append("--in-memory")
        for key, value in self.overrides.items():
            args += ["--override", f"{key}={value}"]
        self.output = []
        self._ready_line = False
        self.proc = subprocess.Popen(
            args,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
            cwd=self.cwd,
        )
        ready = threading.Event()

        def pump() -> None:
            assert self.proc is not None and self.proc.stdout is not None
            for line in self.proc.stdout:
                self.output.append(line)
                m = READY.search(line)
                if m and not ready.is_set():
                    self.port = int(m.group(2))
                    where = line.split("kpy listening on ", 1)[1].split(", data in")[0]
                    self.ports = [int(a.rsplit(":", 1)[1]) for a in where.split(", ")]
                    self._ready_line = True
                    ready.set()
            ready.set()

        self._pump = threading.Thread(target=pump, daemon=True)
        self._pump.start()
        # The pump also sets ``ready`` at the end of the output: a broker that exited (perhaps
        # not yet reaped) printed no ready line.
        if not ready.wait(timeout) or self.proc.poll() is not None or not self._ready_line:
            self.kill()
            raise RuntimeError("kpy did not start:\n" + "".join(self.output))
        return self

    def stop(self, timeout: float = 20.0) -> int:
        """SIGTERM and wait: a clean shutdown."""
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
        self._release()
        return code

    def _release(self) -> None:
        assert self.proc is not None
        self._pump.join(5)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self.proc = None

    def kill(self) -> None:
        """SIGKILL: an unclean stop, as a crash or power cut leaves the files."""
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self._release()

    def restart(self) -> KpyProcess:
        self.stop()
        time.sleep(0.05)
        return self.start()

    def log_text(self) -> str:
        return "".join(self.output)
