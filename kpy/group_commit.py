"""GroupCommit: make appended offsets durable with as few fsyncs as there can be.

Produce waits here before answering when an fsync must come first: with kpy's own
``kpy.flush.before.ack=true`` for every acks=1/-1 produce, and with Kafka's flush.messages once
a log has that many unflushed offsets (Kafka flushes inside the append, before the response).
The flush.ms check (server.py) flushes through here too, so all of them share the rounds.

Per log, at most one flush round runs at a time, on a worker thread (an fsync never blocks the
event loop). A round flushes up to the log end offset as it was when the round started, so
every append made before then is covered by it. A waiter whose offsets a running round covers
waits for that round; a waiter whose offsets came after it waits for the round to end and then
starts the next one (or joins it, if another waiter started it first), which covers everything
appended meanwhile. So with N producers appending while an fsync runs, the next single fsync
answers all N: the classic group commit.

States per log: idle (no entry in ``_rounds``) -> flushing (an entry, target = the log end
offset at its start) -> idle, the entry removed and its event set, whether the fsync succeeded
or failed. A failed round takes the log offline (Log.flush); its waiters get the error, and
later rounds fail at once with LogOffline.

Loop-only, except the flush itself.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import anyio

from kpy.storage.errors import KafkaStorageError, LogClosed
from kpy.storage.log import Log


@dataclass
class _Round:
    target: int  # every offset below it is durable when the round succeeds
    done: anyio.Event = field(default_factory=anyio.Event)
    error: Exception | None = None


class GroupCommit:
    def __init__(self) -> None:
        self._rounds: dict[Log, _Round] = {}
        self.rounds = 0  # flush rounds started, for tests and logs

    async def flushed(self, log: Log, offset: int) -> None:
        """Return once every offset of ``log`` below ``offset`` is fsynced. Raises OSError or
        KafkaStorageError (LogOffline, LogClosed) when that cannot be."""
        while log.recovery_point < offset:
            if log.closed:
                raise LogClosed(f"{log.dir}: the log was closed before its flush")
            current = self._rounds.get(log)
            if current is not None:
                await current.done.wait()
                if current.error is not None and current.target >= offset:
                    raise KafkaStorageError(f"{log.dir}: flush failed") from current.error
                continue
            await self._flush_round(log)

    async def _flush_round(self, log: Log) -> None:
        current = _Round(log.log_end_offset)
        self._rounds[log] = current
        self.rounds += 1
        try:
            # Not cancellable: a cancelled waiter still waits for the thread, so the round
            # ends (and wakes the others) only when the fsync has.
            await anyio.to_thread.run_sync(log.flush, current.target)
        except Exception as e:  # not a cancellation: the flush itself ran to its end
            current.error = e
            raise
        finally:
            del self._rounds[log]
            current.done.set()
