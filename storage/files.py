"""Durable writes: fsync of files and directories, and small files written atomically (to a
temporary name, fsync, rename over, fsync the directory), so a crash at any point leaves either
the old file or the new one, never a torn mix.

Every fsync of the storage layer goes through ``fsync_file`` or ``fsync_dir``, so that the
power-loss simulation (durability.py) sees what each one made durable.
"""

from __future__ import annotations

import os
from pathlib import Path

from kpy.storage import durability


def fsync_file(fd: int, path: Path) -> None:
    """fsync the open file ``fd`` (whose name is ``path``)."""
    size = os.fstat(fd).st_size if durability.enabled() else 0
    os.fsync(fd)
    durability.record_file(path, size)


def fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    durability.record_dir(directory)


def write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)
