"""Bounds on the memory that requests and responses hold: Kafka's queued.max.request.bytes on
the way in, kpy's kpy.queued.max.response.bytes on the way out.

Requests (``RequestPool``). Kafka's network threads read one request per connection at a time
and, with queued.max.request.bytes set, take the buffer for it from a broker-wide memory pool as
soon as its 4-byte size is read; when the pool is exhausted the connection is muted (no more is
read from it) until handled requests give memory back. kpy reads more than one request ahead
(server.py), so it bounds two things instead:

- every connection may hold up to ``ALLOWANCE`` bytes of requests read and not yet handled
  without asking the pool, so ordinary requests (a producer's are at most about 1 MiB) are never
  held up behind large ones, and a client that pipelines while an earlier request waits (a Fetch
  long poll) stops being read at that point;
- a request larger than the allowance is read only once its declared size has been reserved
  from the pool, and gives it back when it has been handled. Reservations are granted in
  arrival order and never exceed the pool (Kafka's pool may overshoot by one request; kpy's
  waits instead, first come first served, so a large request is never starved by smaller
  ones), except that one request is always let in when nothing is reserved.

Reserving the declared size, not the bytes read so far, is what keeps it free of deadlock: a
request let in can always be read to its end, as Kafka's allocate-on-size does. kpy allocates
nothing up front, though: a client that declares 100 MiB and sends nothing more reserves the
pool, not memory, until connections.max.idle.ms closes its connection.

Responses (``ResponseMemory``). Kafka sends fetched records from the log files with sendfile,
so a client that never reads its Fetch responses costs it no heap. kpy reads records into memory;
a response the client does not read stays in the connection's write buffer. The bytes so held,
broker-wide, plus those a Fetch is reading, are counted here; a Fetch gets at most what is left
under kpy.queued.max.response.bytes, and at least one record batch (Kafka's rule for a response
whose first batch exceeds the fetch's limits), so a consumer keeps making progress, more slowly,
while slow readers hold the memory, and every slow reader holds at most one response.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

# Bytes of unhandled requests a connection may hold without a reservation: a little over the
# largest request a producer sends with the clients' defaults (1 MiB: Java's max.request.size,
# librdkafka's message.max.bytes).
ALLOWANCE = (1 << 20) + (64 << 10)


class Reservation:
    """A wait for ``size`` bytes of the pool; ``granted`` is called once they are reserved."""

    __slots__ = ("granted", "size")

    def __init__(self, size: int, granted: Callable[[], None]) -> None:
        self.size = size
        self.granted = granted


class RequestPool:
    """queued.max.request.bytes: reservations for requests larger than ``ALLOWANCE``. A
    ``size`` of 0 or less is no bound (Kafka's -1). Used on the event loop only."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.used = 0
        self._waiting: deque[Reservation] = deque()

    def reserve(self, size: int, granted: Callable[[], None]) -> Reservation | None:
        """Reserve ``size`` bytes now (None), or queue the wait and return it (``cancel`` it if
        the connection goes first)."""
        if not self._waiting and self._fits(size):
            self.used += size
            return None
        waiter = Reservation(size, granted)
        self._waiting.append(waiter)
        return waiter

    def take(self, size: int) -> None:
        """Count ``size`` bytes that arrived whole before they could be reserved (a read larger
        than ``ALLOWANCE``), so that their release balances."""
        self.used += size

    def release(self, size: int) -> None:
        self.used -= size
        while self._waiting and self._fits(self._waiting[0].size):
            waiter = self._waiting.popleft()
            self.used += waiter.size
            waiter.granted()

    def cancel(self, waiter: Reservation) -> None:
        try:
            self._waiting.remove(waiter)
        except ValueError:
            return
        self.release(0)  # the next in line may fit now

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    def _fits(self, size: int) -> bool:
        return self.size <= 0 or self.used == 0 or self.used + size <= self.size


class ResponseMemory:
    """kpy.queued.max.response.bytes: bytes of responses written but not yet taken by the
    kernel, and of records a Fetch holds while it builds its response. A ``size`` of 0 or less
    is no bound. Used on the event loop only."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.used = 0

    def available(self) -> int:
        """What a Fetch may read now (it reads at least one batch even at 0)."""
        if self.size <= 0:
            return 0x7FFFFFFF
        return max(self.size - self.used, 0)

    def hold(self, size: int) -> None:
        self.used += size

    def release(self, size: int) -> None:
        self.used -= size
