from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from kpy_process import KpyProcess

pytest_plugins = ["pytester"]  # tests/test_pytest_plugin.py runs suites as users do


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--compat-broker",
        default=None,
        help="broker under test in tests/compat: kpy (default) or kafka (a real Apache Kafka "
        "4.1.0 from compat-tests/target; kafka-<version> for another release). "
        "Environment: KPY_COMPAT_BROKER.",
    )


@pytest.fixture
def kpy(tmp_path: Path) -> Iterator[KpyProcess]:
    """A fresh broker on a free port with its own data directory."""
    proc = KpyProcess(tmp_path / "data").start()
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture
def kpy_factory(tmp_path: Path) -> Iterator[object]:
    """Start brokers with overrides; all are stopped at the end."""
    started: list[KpyProcess] = []

    def make(overrides: dict[str, str] | None = None, data_dir: Path | None = None) -> KpyProcess:
        proc = KpyProcess(data_dir or tmp_path / f"data{len(started)}", overrides).start()
        started.append(proc)
        return proc

    yield make
    for proc in started:
        proc.stop()
