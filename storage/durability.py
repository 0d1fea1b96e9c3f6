"""Power-loss simulation: a journal of what each fsync made durable, and a cut that drops the rest.

A process crash (SIGKILL) loses nothing the process handed to the kernel: the page cache
survives it. A power cut loses everything the kernel had not yet written to the device, which
is whatever no fsync covered. Tests of kpy's durability modes need the second and cannot pull
the plug, so the storage layer can run in a test mode (the broker setting
``kpy.test.durability.journal``, which calls ``enable``) in which every fsync it does is also
written down here, and ``cut_power`` later applies the journal to a data directory as the
device would have it after the power went.

What is modelled: the segment files (``.log``, ``.index``, ``.timeindex``), which kpy writes
incrementally and fsyncs by policy. After the cut such a file holds only the bytes the last
fsync of its path covered (its size just before that fsync began), and it exists only if the
last fsync of its directory saw it. Everything else kpy writes (checkpoints, snapshots,
kpy-topics.json) goes through a temporary file that is fsynced before it is renamed into place,
so the cut leaves it as it is; renames and unlinks are taken to be durable at once.

Journal format (text, one event per line, appended under a lock, so lines never interleave):

    F <size> <path>                  fsync of a file: its first <size> bytes are durable
    D <path> <name>/<name>/...       fsync of a directory: these segment files exist in it

Paths are absolute; names cannot contain "/". Changing the format: the journal lives only for
one test run, so change writer and reader together.

Threads: ``record_file`` and ``record_dir`` may be called from any thread.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from pathlib import Path

SEGMENT_SUFFIXES = (".log", ".index", ".timeindex")

__all__ = ["CutReport", "cut_power", "disable", "enable", "enabled", "record_dir", "record_file"]


class _Journal:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)

    def write(self, line: str) -> None:
        data = (line + "\n").encode("utf-8")
        with self._lock:
            os.write(self._fd, data)

    def close(self) -> None:
        with self._lock:
            os.close(self._fd)


_journal: _Journal | None = None


def enable(path: Path | str) -> None:
    """Record every fsync of the storage layer in the journal at ``path`` (appending)."""
    global _journal
    disable()
    _journal = _Journal(Path(path).absolute())


def disable() -> None:
    global _journal
    journal, _journal = _journal, None
    if journal is not None:
        journal.close()


def enabled() -> bool:
    return _journal is not None


def record_file(path: Path, size: int) -> None:
    """An fsync of ``path`` that began when the file held ``size`` bytes has returned."""
    journal = _journal
    if journal is not None:
        journal.write(f"F {size} {Path(path).absolute()}")


def record_dir(directory: Path) -> None:
    """An fsync of ``directory`` has returned: the segment files it holds now are durable."""
    journal = _journal
    if journal is None:
        return
    names = sorted(e.name for e in os.scandir(directory) if e.name.endswith(SEGMENT_SUFFIXES))
    journal.write(f"D {Path(directory).absolute()} {'/'.join(names)}")


@dataclass
class CutReport:
    """What ``cut_power`` did: files removed, and bytes dropped per file truncated."""

    removed: list[Path] = field(default_factory=list)
    truncated: dict[Path, int] = field(default_factory=dict)


def _read_journal(path: Path) -> tuple[dict[Path, int], dict[Path, set[str]]]:
    sizes: dict[Path, int] = {}
    listings: dict[Path, set[str]] = {}
    for line in Path(path).read_text("utf-8").splitlines():
        kind, _, rest = line.partition(" ")
        if kind == "F":
            size, _, name = rest.partition(" ")
            sizes[Path(name)] = int(size)
        elif kind == "D":
            directory, _, names = rest.partition(" ")
            listings[Path(directory)] = set(filter(None, names.split("/")))
    return sizes, listings


def cut_power(data_dir: Path | str, journal: Path | str) -> CutReport:
    """Leave the segment files under ``data_dir`` as a power cut would have left them, by the
    journal: a file no directory fsync saw is removed, the rest are cut to their last fsynced
    size. Run it on a directory no process has open (after the broker was killed)."""
    sizes, listings = _read_journal(Path(journal))
    report = CutReport()
    for directory in sorted(p for p in Path(data_dir).absolute().iterdir() if p.is_dir()):
        durable = listings.get(directory, set())
        for path in sorted(directory.iterdir()):
            if not path.name.endswith(SEGMENT_SUFFIXES):
                continue
            if path.name not in durable:
                path.unlink()
                report.removed.append(path)
                continue
            size = path.stat().st_size
            keep = min(size, sizes.get(path, 0))
            if keep < size:
                os.truncate(path, keep)
                report.truncated[path] = size - keep
    return report
