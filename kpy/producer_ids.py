"""ProducerIdManager: hands out producer ids that are never reused, even across a crash.

Ids are reserved in blocks: the end of the current block is written (atomically, fsynced) to
``producer-ids.json`` in the data directory before any id of the block is handed out, so after a
crash the next block starts above every id that may have been given to a producer. Kafka's
controller does the same with its producer id blocks.
"""

from __future__ import annotations

import json
from pathlib import Path

from kpy.storage.fs import OS_FS, FileSystem

BLOCK_SIZE = 1000
FILE_NAME = "producer-ids.json"


class ProducerIdManager:
    def __init__(self, data_dir: Path, fs: FileSystem = OS_FS) -> None:
        self._fs = fs
        self._path = data_dir / FILE_NAME
        try:
            self._next = int(json.loads(fs.read_text(self._path))["next_block_start"])
        except FileNotFoundError:
            self._next = 0
        self._block_end = self._next

    def generate(self) -> int:
        if self._next >= self._block_end:
            self._block_end = self._next + BLOCK_SIZE
            data = json.dumps({"next_block_start": self._block_end}).encode()
            self._fs.write_atomic(self._path, data)
        pid = self._next
        self._next += 1
        return pid
