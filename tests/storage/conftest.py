"""Fixtures for the storage tests: release what a test opens, fail a test that leaks fds, and
the file system a test runs on (``fs``: the disk and memory, one run each)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest
from storage_helpers import Opened

from kpy.storage.fs import OS_FS, FileSystem, MemoryFileSystem

_FD_DIR = Path("/proc/self/fd")
# The MemoryFileSystems the running test made (``fs``), checked for leaked descriptors.
_memory_file_systems: list[MemoryFileSystem] = []


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
    memory, _memory_file_systems[:] = list(_memory_file_systems), []
    for fs in memory:
        if fs.open_descriptors:
            pytest.fail(
                f"test leaked {fs.open_descriptors} descriptor(s) of its MemoryFileSystem",
                pytrace=False,
            )
    after = _open_fds()
    if len(after) > len(before):
        leaked = sorted(f"{fd} -> {target}" for fd, target in after.items() if fd not in before)
        pytest.fail(
            f"test leaked {len(after) - len(before)} file descriptor(s): " + ", ".join(leaked),
            pytrace=False,
        )


@pytest.fixture(params=["os", "memory"])
def fs(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[FileSystem]:
    """The file system of the test, the disk or memory. In memory, ``tmp_path`` names a
    directory of the MemoryFileSystem, and the one on disk must stay empty."""
    if request.param == "os":
        yield OS_FS
        return
    memory = MemoryFileSystem()
    memory.mkdir(tmp_path)
    _memory_file_systems.append(memory)
    yield memory
    written = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*"))
    assert not written, f"a test on the MemoryFileSystem wrote to the disk: {written}"


@pytest.fixture
def opened() -> Iterator[Opened]:
    """Register storage objects to be abandoned at the end of the test (see ``Opened``)."""
    with ExitStack() as stack:
        yield Opened(stack)
