"""The file-system seam: every file operation of the storage layer, and of the broker's own files
in the data directory, goes through a FileSystem, chosen once per LogManager (and Broker).

Two implementations:

- ``OsFileSystem`` (``OS_FS``, the default): the disk, through the os module, exactly as kpy
  wrote its files before the seam existed (same calls, same flags, same fsyncs, same files).
- ``MemoryFileSystem``: the same semantics held in memory, for throwaway brokers (``kpy serve
  --in-memory``, CI suites); nothing touches the disk and fsync does nothing.

Descriptors, not file objects. The storage layer works on integer descriptors with positional
reads (``pread``) and appends (files opened with O_APPEND), and relies on POSIX for the rest: a
descriptor keeps reading a file after it was renamed (``*.deleted``, the cleaner's ``.swap``) or
unlinked (a reader still inside a deleted segment), and a rename replaces its target atomically.
So a FileSystem opens a file to a descriptor (``open``) and hands out the calls that take one as
``fs.io``: for the OsFileSystem that is the ``os`` module itself, so the hot paths (a segment's
``os.write`` on append, ``os.pread`` on Fetch) make the very calls they made before, at the same
cost, and tests that patch ``os.write`` or ``os.fsync`` still reach every descriptor; the
MemoryFileSystem is its own ``io``, with a table of open descriptors as a kernel keeps, each
holding its file's bytes (an inode) whatever happens to the names.

Why hand-written: no maintained library offers a file-system abstraction with descriptors,
positional reads (pread, no shared file position) and POSIX rename/unlink semantics for open
files. Checked: pyfilesystem2 (``fs`` on PyPI, last release 2.4.16 of May 2022, unmaintained)
opens file objects with a seek position (``openbin``; a BytesIO in its MemoryFS), no pread and no
descriptor; fsspec's MemoryFileSystem keeps a BytesIO per path in a store shared by every
instance of the class by default, and hands out file objects, not descriptors; pyfakefs is a test
double that replaces the os module for the whole process (its fake os module, as read, has no
``pread``), where kpy needs a file system chosen per broker in production code. What kpy needs is
small: the methods below.

Durability: every fsync of the storage layer goes through ``fsync_file``, ``fsync_path`` or
``fsync_dir`` of its FileSystem; the OsFileSystem's report each one to the power-loss simulation
(durability.py), the MemoryFileSystem has nothing to make durable. Small files are written with
``write_atomic``: to ``<name>.tmp``, fsync, rename over, fsync the directory, so a crash leaves
the old file or the new one, never a torn mix.

Threads: an OsFileSystem holds no state. A MemoryFileSystem is used from the event loop thread
and from worker threads at once (reads of segments, flushes, topic creation, file deletion): one
lock guards its names, its descriptors and the bytes of its files, so each call is atomic, as
the system calls it stands for are.
"""

from __future__ import annotations

import errno
import os
import shutil
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator
from pathlib import Path, PurePath
from typing import Protocol

from kpy.storage import durability

__all__ = ["OS_FS", "FileIO", "FileSystem", "MemoryFileSystem", "OsFileSystem"]

StrPath = str | PurePath
# Kafka's adjustForLargeFileSystems: a size past a Java long reads as Long.MAX_VALUE.
MAX_LONG = (1 << 63) - 1


class FileIO(Protocol):
    """The calls on a descriptor, with the ``os`` module's signatures (the module is one)."""

    def pread(self, fd: int, length: int, offset: int, /) -> bytes: ...

    def write(self, fd: int, data: bytes | bytearray | memoryview, /) -> int: ...

    def ftruncate(self, fd: int, length: int, /) -> None: ...

    def close(self, fd: int, /) -> None: ...


class FileSystem(ABC):
    """Files and directories by path, and descriptors (``open``, ``io``). Errors are the OSError
    subclasses the system calls raise (FileNotFoundError, IsADirectoryError, ...)."""

    io: FileIO

    # --- Descriptors ---

    @abstractmethod
    def open(self, path: StrPath) -> int:
        """Open ``path`` for reading and appending (O_RDWR | O_APPEND), creating it (0o644) if
        missing; its directory must exist. Close the descriptor with ``io.close``."""

    @abstractmethod
    def file_size(self, fd: int) -> int: ...

    @abstractmethod
    def file_mtime_ns(self, fd: int) -> int:
        """When the open file was last written (or ``utime`` set), in ns since the epoch."""

    @abstractmethod
    def fsync_file(self, fd: int, path: StrPath) -> None:
        """fsync the open file ``fd``, whose name is ``path`` now."""

    @abstractmethod
    def fsync_path(self, path: StrPath) -> None:
        """fsync the file at ``path`` (FileNotFoundError if it is gone)."""

    @abstractmethod
    def fsync_dir(self, directory: StrPath) -> None: ...

    # --- Names ---

    @abstractmethod
    def exists(self, path: StrPath) -> bool: ...

    @abstractmethod
    def is_dir(self, path: StrPath) -> bool: ...

    @abstractmethod
    def is_file(self, path: StrPath) -> bool: ...

    @abstractmethod
    def mkdir(self, path: StrPath) -> None:
        """Create the directory and any missing parents; an existing directory is no error."""

    @abstractmethod
    def listdir(self, directory: StrPath) -> list[str]:
        """The names in ``directory`` (files and directories), in no particular order."""

    def names_ending(self, directory: StrPath, suffix: str) -> list[str]:
        """The names in ``directory`` that end with ``suffix`` (``Path.glob("*" + suffix)``:
        none when the directory is missing)."""
        try:
            return [name for name in self.listdir(directory) if name.endswith(suffix)]
        except (FileNotFoundError, NotADirectoryError):
            return []

    @abstractmethod
    def rename(self, src: StrPath, dst: StrPath) -> None:
        """POSIX rename: replaces a file at ``dst``; open descriptors of ``src`` stay valid."""

    @abstractmethod
    def unlink(self, path: StrPath, *, missing_ok: bool = False) -> None:
        """Remove a file; open descriptors keep reading it until closed."""

    @abstractmethod
    def rmtree(self, path: StrPath) -> None:
        """Remove a directory and everything in it, ignoring errors (shutil.rmtree's
        ``ignore_errors=True``)."""

    @abstractmethod
    def read_bytes(self, path: StrPath) -> bytes: ...

    def read_text(self, path: StrPath) -> str:
        return self.read_bytes(path).decode("utf-8")

    @abstractmethod
    def write_atomic(self, path: StrPath, data: bytes, *, sync: bool = True) -> None:
        """Replace ``path`` with a file holding ``data``, all or nothing (see the module
        docstring); ``sync=False`` skips both fsyncs (a file whose loss is harmless)."""

    @abstractmethod
    def mtime_ns(self, path: StrPath) -> int: ...

    @abstractmethod
    def utime(self, path: StrPath, mtime_ns: int) -> None:
        """Set the modification time (the access time becomes now)."""

    @abstractmethod
    def disk_space(self, path: StrPath) -> tuple[int, int]:
        """(total, usable) bytes of the storage holding ``path``, as Java's FileStore
        getTotalSpace / getUsableSpace report them."""


class OsFileSystem(FileSystem):
    """The disk. Stateless: one instance (``OS_FS``) serves every log."""

    io: FileIO = os

    def open(self, path: StrPath) -> int:
        return os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)

    def file_size(self, fd: int) -> int:
        return os.fstat(fd).st_size

    def file_mtime_ns(self, fd: int) -> int:
        return os.fstat(fd).st_mtime_ns

    def fsync_file(self, fd: int, path: StrPath) -> None:
        size = os.fstat(fd).st_size if durability.enabled() else 0
        os.fsync(fd)
        durability.record_file(Path(path), size)

    def fsync_path(self, path: StrPath) -> None:
        fd = os.open(path, os.O_RDONLY)
        try:
            self.fsync_file(fd, path)
        finally:
            os.close(fd)

    def fsync_dir(self, directory: StrPath) -> None:
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        durability.record_dir(Path(directory))

    def exists(self, path: StrPath) -> bool:
        return os.path.exists(path)

    def is_dir(self, path: StrPath) -> bool:
        return os.path.isdir(path)

    def is_file(self, path: StrPath) -> bool:
        return os.path.isfile(path)

    def mkdir(self, path: StrPath) -> None:
        Path(path).mkdir(parents=True, exist_ok=True)

    def listdir(self, directory: StrPath) -> list[str]:
        return os.listdir(directory)

    def rename(self, src: StrPath, dst: StrPath) -> None:
        os.rename(src, dst)

    def unlink(self, path: StrPath, *, missing_ok: bool = False) -> None:
        Path(path).unlink(missing_ok=missing_ok)

    def rmtree(self, path: StrPath) -> None:
        shutil.rmtree(path, ignore_errors=True)

    def read_bytes(self, path: StrPath) -> bytes:
        return Path(path).read_bytes()

    def write_atomic(self, path: StrPath, data: bytes, *, sync: bool = True) -> None:
        target = Path(path)
        tmp = target.with_name(target.name + ".tmp")
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            if sync:
                os.fsync(f.fileno())
        os.replace(tmp, target)
        if sync:
            self.fsync_dir(target.parent)

    def mtime_ns(self, path: StrPath) -> int:
        return os.stat(path).st_mtime_ns

    def utime(self, path: StrPath, mtime_ns: int) -> None:
        os.utime(path, ns=(time.time_ns(), mtime_ns))

    def disk_space(self, path: StrPath) -> tuple[int, int]:
        st = os.statvfs(path)
        return min(st.f_blocks * st.f_frsize, MAX_LONG), min(st.f_bavail * st.f_frsize, MAX_LONG)


OS_FS = OsFileSystem()


class _File:
    """An inode: the bytes of a file, whatever names (none, once unlinked) it has."""

    __slots__ = ("data", "mtime_ns")

    def __init__(self, data: bytes = b"") -> None:
        self.data = bytearray(data)
        self.mtime_ns = time.time_ns()


class _Dir:
    __slots__ = ("entries",)

    def __init__(self) -> None:
        self.entries: dict[str, _File | _Dir] = {}


def _oserror(code: int, path: StrPath) -> OSError:
    """The OSError subclass the system call would raise (OSError maps errno to it)."""
    return OSError(code, os.strerror(code), str(path))


class MemoryFileSystem(FileSystem):
    """Files and directories held in memory, with POSIX semantics where the storage layer
    relies on them (see the module docstring); its own ``io``. Relative paths are taken from
    the working directory at the call, as the system calls take them; the tree starts with
    just ``/``. fsync does nothing. Thread-safe: one lock, held for each call."""

    def __init__(self) -> None:
        self.io: FileIO = self
        self._lock = threading.Lock()
        self._root = _Dir()
        self._fds: dict[int, _File] = {}
        # Far from the process's own descriptors: a memory descriptor passed to os by mistake
        # fails (EBADF) instead of reaching a real file.
        self._next_fd = 1 << 30

    # --- Resolving names (under the lock) ---

    @staticmethod
    def _parts(path: StrPath) -> tuple[str, ...]:
        return PurePath(os.path.abspath(path)).parts[1:]

    def _lookup(self, path: StrPath) -> _File | _Dir | None:
        node: _File | _Dir = self._root
        for name in self._parts(path):
            if not isinstance(node, _Dir):
                return None
            found = node.entries.get(name)
            if found is None:
                return None
            node = found
        return node

    def _parent(self, path: StrPath) -> tuple[_Dir, str]:
        """The directory that holds (or would hold) ``path``'s last name, and that name."""
        parts = self._parts(path)
        if not parts:
            raise _oserror(errno.EBUSY, path)  # the root itself
        parent = self._lookup(os.path.dirname(os.path.abspath(path)))
        if parent is None:
            raise _oserror(errno.ENOENT, path)
        if not isinstance(parent, _Dir):
            raise _oserror(errno.ENOTDIR, path)
        return parent, parts[-1]

    def _file(self, path: StrPath) -> _File:
        node = self._lookup(path)
        if node is None:
            raise _oserror(errno.ENOENT, path)
        if isinstance(node, _Dir):
            raise _oserror(errno.EISDIR, path)
        return node

    def _open_file(self, fd: int) -> _File:
        file = self._fds.get(fd)
        if file is None:
            raise OSError(errno.EBADF, os.strerror(errno.EBADF))
        return file

    # --- Descriptors ---

    def open(self, path: StrPath) -> int:
        with self._lock:
            parent, name = self._parent(path)
            node = parent.entries.get(name)
            if isinstance(node, _Dir):
                raise _oserror(errno.EISDIR, path)
            if node is None:
                node = parent.entries[name] = _File()
            fd = self._next_fd
            self._next_fd += 1
            self._fds[fd] = node
            return fd

    def pread(self, fd: int, length: int, offset: int, /) -> bytes:
        with self._lock:
            data = self._open_file(fd).data
            with memoryview(data) as view, view[offset : offset + length] as part:
                return bytes(part)

    def write(self, fd: int, data: bytes | bytearray | memoryview, /) -> int:
        with self._lock:
            file = self._open_file(fd)
            before = len(file.data)
            file.data += data  # O_APPEND: always at the end
            file.mtime_ns = time.time_ns()
            return len(file.data) - before

    def ftruncate(self, fd: int, length: int, /) -> None:
        if length < 0:
            raise OSError(errno.EINVAL, os.strerror(errno.EINVAL))
        with self._lock:
            file = self._open_file(fd)
            data = file.data
            if length < len(data):
                del data[length:]
            else:
                data.extend(bytes(length - len(data)))
            file.mtime_ns = time.time_ns()

    def close(self, fd: int, /) -> None:
        with self._lock:
            if self._fds.pop(fd, None) is None:
                raise OSError(errno.EBADF, os.strerror(errno.EBADF))

    @property
    def open_descriptors(self) -> int:
        """Descriptors open now (tests check that nothing leaks)."""
        return len(self._fds)

    def file_size(self, fd: int) -> int:
        with self._lock:
            return len(self._open_file(fd).data)

    def file_mtime_ns(self, fd: int) -> int:
        with self._lock:
            return self._open_file(fd).mtime_ns

    def fsync_file(self, fd: int, path: StrPath) -> None:
        with self._lock:
            self._open_file(fd)

    def fsync_path(self, path: StrPath) -> None:
        with self._lock:
            self._file(path)

    def fsync_dir(self, directory: StrPath) -> None:
        if not self.is_dir(directory):
            raise _oserror(errno.ENOENT, directory)

    # --- Names ---

    def exists(self, path: StrPath) -> bool:
        with self._lock:
            return self._lookup(path) is not None

    def is_dir(self, path: StrPath) -> bool:
        with self._lock:
            return isinstance(self._lookup(path), _Dir)

    def is_file(self, path: StrPath) -> bool:
        with self._lock:
            return isinstance(self._lookup(path), _File)

    def mkdir(self, path: StrPath) -> None:
        with self._lock:
            node = self._root
            for name in self._parts(path):
                child = node.entries.get(name)
                if child is None:
                    child = node.entries[name] = _Dir()
                elif not isinstance(child, _Dir):
                    raise _oserror(errno.EEXIST, path)
                node = child

    def listdir(self, directory: StrPath) -> list[str]:
        with self._lock:
            node = self._lookup(directory)
            if node is None:
                raise _oserror(errno.ENOENT, directory)
            if not isinstance(node, _Dir):
                raise _oserror(errno.ENOTDIR, directory)
            return list(node.entries)

    def rename(self, src: StrPath, dst: StrPath) -> None:
        with self._lock:
            src_parent, src_name = self._parent(src)
            node = src_parent.entries.get(src_name)
            if node is None:
                raise _oserror(errno.ENOENT, src)
            dst_parent, dst_name = self._parent(dst)
            target = dst_parent.entries.get(dst_name)
            if target is node:
                return
            if isinstance(node, _Dir):
                if isinstance(target, _File):
                    raise _oserror(errno.ENOTDIR, dst)
                if isinstance(target, _Dir) and target.entries:
                    raise _oserror(errno.ENOTEMPTY, dst)
                if self._contains(node, dst_parent):
                    raise _oserror(errno.EINVAL, dst)  # into itself
            elif isinstance(target, _Dir):
                raise _oserror(errno.EISDIR, dst)
            del src_parent.entries[src_name]
            dst_parent.entries[dst_name] = node

    @staticmethod
    def _contains(directory: _Dir, node: _Dir) -> bool:
        """Whether ``node`` is ``directory`` or lies below it."""
        if node is directory:
            return True
        return any(
            isinstance(child, _Dir) and MemoryFileSystem._contains(child, node)
            for child in directory.entries.values()
        )

    def unlink(self, path: StrPath, *, missing_ok: bool = False) -> None:
        with self._lock:
            try:
                parent, name = self._parent(path)
            except FileNotFoundError:
                if missing_ok:
                    return
                raise
            node = parent.entries.get(name)
            if node is None:
                if missing_ok:
                    return
                raise _oserror(errno.ENOENT, path)
            if isinstance(node, _Dir):
                raise _oserror(errno.EISDIR, path)
            del parent.entries[name]

    def rmtree(self, path: StrPath) -> None:
        with self._lock:
            try:
                parent, name = self._parent(path)
            except OSError:
                return
            if isinstance(parent.entries.get(name), _Dir):
                del parent.entries[name]

    def read_bytes(self, path: StrPath) -> bytes:
        with self._lock:
            return bytes(self._file(path).data)

    def write_atomic(self, path: StrPath, data: bytes, *, sync: bool = True) -> None:
        with self._lock:
            parent, name = self._parent(path)
            if isinstance(parent.entries.get(name), _Dir):
                raise _oserror(errno.EISDIR, path)
            parent.entries[name] = _File(data)

    def mtime_ns(self, path: StrPath) -> int:
        with self._lock:
            return self._file(path).mtime_ns

    def utime(self, path: StrPath, mtime_ns: int) -> None:
        with self._lock:
            self._file(path).mtime_ns = mtime_ns

    def disk_space(self, path: StrPath) -> tuple[int, int]:
        """The machine's memory: total, and what is available now."""
        if not self.is_dir(path):
            raise _oserror(errno.ENOENT, path)
        try:
            page = os.sysconf("SC_PAGE_SIZE")
            return page * os.sysconf("SC_PHYS_PAGES"), page * os.sysconf("SC_AVPHYS_PAGES")
        except (ValueError, OSError, AttributeError):  # not on this platform
            return MAX_LONG, MAX_LONG

    def files(self) -> dict[str, int]:
        """Path -> size of every file that has a name (for tests and diagnostics)."""
        with self._lock:
            return dict(self._walk(self._root, "/"))

    def _walk(self, directory: _Dir, prefix: str) -> Iterator[tuple[str, int]]:
        for name, node in directory.entries.items():
            path = os.path.join(prefix, name)
            if isinstance(node, _Dir):
                yield from self._walk(node, path)
            else:
                yield path, len(node.data)
