"""Fixtures for the stock-tool tests.

``tools`` is parametrized over the Kafka releases whose tools are tested (KAFKA_TOOL_VERSIONS,
comma-separated; default "4.1.0,3.9.1"); a release whose jars or java are missing skips with the
reason. ``broker`` is the broker under test: a fresh kpy (the default).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from kpy_process import KpyProcess

from compat.tools import Tools, missing

VERSIONS = [v.strip() for v in os.environ.get("KAFKA_TOOL_VERSIONS", "4.1.0,3.9.1").split(",")]


@pytest.fixture(params=VERSIONS, ids=[f"tools-{v}" for v in VERSIONS])
def tools(request: pytest.FixtureRequest) -> Tools:
    version: str = request.param
    why = missing(version)
    if why is not None:
        pytest.skip(why)
    return Tools(version)


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[KpyProcess]:
    """The broker under test, with ``bootstrap`` and ``data_dir``."""
    proc = KpyProcess(tmp_path / "data").start()
    try:
        yield proc
    finally:
        proc.stop()
