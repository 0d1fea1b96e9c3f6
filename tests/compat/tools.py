"""Run the stock Apache Kafka command-line tools, as ``compat-tests/kafka-tool`` launches them.

``Tools(version)`` runs one release's tools (jars from ``compat-tests/fetch-jars``);
``missing(version)`` says why they cannot run here, or None.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
KAFKA_TOOL = ROOT / "compat-tests" / "kafka-tool"
TARGET = ROOT / "compat-tests" / "target"


def libs(version: str) -> Path:
    return TARGET / f"kafka-{version}" / "libs"


def missing(version: str) -> str | None:
    """Why the ``version`` tools cannot run on this machine, or None when they can."""
    if shutil.which(os.environ.get("JAVA", "java")) is None:
        return "java is not installed"
    if not (libs(version) / f"kafka-tools-{version}.jar").is_file():
        return f"Kafka {version} jars missing: run compat-tests/fetch-jars {version}"
    return None


class Tools:
    """The stock tools of one Kafka release."""

    def __init__(self, version: str) -> None:
        self.version = version
        self.major = int(version.split(".")[0])

    def run(
        self, name: str, *args: str, stdin: str | None = None, timeout: float = 90.0
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(KAFKA_TOOL), "--version", self.version, name, *args],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def ok(self, name: str, *args: str, stdin: str | None = None, timeout: float = 90.0) -> str:
        """Run a tool that must succeed; its stdout."""
        return self.check(self.run(name, *args, stdin=stdin, timeout=timeout))

    @staticmethod
    def check(result: subprocess.CompletedProcess[str]) -> str:
        """The stdout of a tool run that must have exited 0."""
        assert result.returncode == 0, (
            f"exit {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"
        )
        return result.stdout
