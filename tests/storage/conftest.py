"""Fixtures for the storage tests: release what a test opens, and fail a test that leaks fds."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest
from storage_helpers import Opened

_FD_DIR = Path("/proc/self/fd")


def _open_fds() -> dict[int, str]:
    """Descriptor -> what it points at, for every descriptor open in this process."""
    fds: dict[int, str] = {}
    for name in os.listdir(_FD_DIR):
        try:
            fds[int(name)] = os.readlink(_FD_DIR / name)
        except OSError:  # listdir's own descriptor, closed by now
            continue
    return fds


@pytest.fixture(autouse=True)
def no_fd_leaks() -> Iterator[None]:
    """Fail a test that ends with more file descriptors open than it started with.

    Storage objects hold raw ``os.open`` descriptors, which garbage collection never closes: a
    Log the test forgot stays open for the rest of the run (and pushes later sockets past 1024).
    Skipped where /proc/self/fd does not exist.
    """
    if not _FD_DIR.is_dir():
        yield
        return
    before = _open_fds()
    yield
    after = _open_fds()
    if len(after) > len(before):
        leaked = sorted(f"{fd} -> {target}" for fd, target in after.items() if fd not in before)
        pytest.fail(
            f"test leaked {len(after) - len(before)} file descriptor(s): " + ", ".join(leaked),
            pytrace=False,
        )


@pytest.fixture
def opened() -> Iterator[Opened]:
    """Register storage objects to be abandoned at the end of the test (see ``Opened``)."""
    with ExitStack() as stack:
        yield Opened(stack)
