"""FileDeleter: unlinks the files of deleted segments once file.delete.delay.ms has passed.

Kafka deletes a segment in two steps (LocalLog.deleteSegmentFiles): the files are renamed to
``*.deleted`` at once, and a "delete-file" task scheduled file.delete.delay.ms later (default a
minute) unlinks them, so readers that still hold the segment finish first. kpy does the same for
retention: Log.delete_old_segments renames on the event loop and hands back a SegmentDeletion,
which waits here for its topic's file.delete.delay.ms and is then unlinked on a worker thread.
(kpy's readers would not need the delay, they hold the descriptors, but the disk space comes back
when Kafka's would.) A crash before the unlink leaves ``*.deleted`` files, which the next open
removes; a clean shutdown unlinks whatever is still waiting (``delete_all_now``), where Kafka
drops the pending tasks and leaves the files to the next open.

Loop-only, except ``delete_all_now`` (at shutdown, after ``run`` has stopped).
"""

from __future__ import annotations

import heapq
import itertools
import logging

import anyio

from kpy.storage.log import SegmentDeletion

log = logging.getLogger(__name__)


class FileDeleter:
    def __init__(self) -> None:
        # (due, in monotonic anyio time; sequence, for a stable order; the deletion)
        self._pending: list[tuple[float, int, SegmentDeletion]] = []
        self._sequence = itertools.count()
        self._wake = anyio.Event()

    def schedule(self, deletion: SegmentDeletion, delay_ms: int) -> None:
        if not deletion:
            return
        due = anyio.current_time() + delay_ms / 1000
        heapq.heappush(self._pending, (due, next(self._sequence), deletion))
        self._wake.set()

    @property
    def pending(self) -> int:
        return len(self._pending)

    async def run(self) -> None:
        """Unlink each deletion when it falls due, until cancelled."""
        while True:
            # A new event before looking at the queue: a deletion scheduled while the files of
            # others are unlinked sets it, so the wait below returns at once.
            self._wake = anyio.Event()
            now = anyio.current_time()
            due: list[SegmentDeletion] = []
            while self._pending and self._pending[0][0] <= now:
                due.append(heapq.heappop(self._pending)[2])
            if due:
                await anyio.to_thread.run_sync(_delete, due)
            timeout = self._pending[0][0] - anyio.current_time() if self._pending else None
            if timeout is not None and timeout <= 0:
                continue
            with anyio.move_on_after(timeout):
                await self._wake.wait()

    def delete_all_now(self) -> None:
        """Unlink everything still waiting (at shutdown, on a worker thread)."""
        pending, self._pending = self._pending, []
        _delete([deletion for _, _, deletion in pending])


def _delete(deletions: list[SegmentDeletion]) -> None:
    for deletion in deletions:
        try:
            deletion.delete_files()
        except OSError:
            log.exception("deleting the files of %s", deletion.directory)
