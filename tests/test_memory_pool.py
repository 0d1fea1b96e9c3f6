"""kpy.memory_pool's rules on their own: reservations granted in arrival order, never past the
pool (but one always when nothing is reserved), waits cancelled with their connection; and what
a Fetch may read under kpy.queued.max.response.bytes. tests/test_memory_bounds.py checks the
same through real sockets."""

from __future__ import annotations

from kpy.memory_pool import RequestPool, ResponseMemory


def test_reservations_are_granted_in_order_within_the_pool() -> None:
    pool = RequestPool(100)
    granted: list[str] = []
    assert pool.reserve(60, lambda: granted.append("a")) is None  # at once
    b = pool.reserve(50, lambda: granted.append("b"))
    c = pool.reserve(10, lambda: granted.append("c"))  # would fit, but waits its turn
    assert b is not None and c is not None and pool.waiting == 2 and pool.used == 60
    pool.release(60)
    assert granted == ["b", "c"] and pool.used == 60 and pool.waiting == 0


def test_a_request_larger_than_the_pool_gets_in_alone() -> None:
    pool = RequestPool(100)
    assert pool.reserve(150, lambda: None) is None
    granted: list[int] = []
    waiter = pool.reserve(1, lambda: granted.append(1))
    assert waiter is not None
    pool.release(150)
    assert granted == [1] and pool.used == 1


def test_a_cancelled_wait_lets_the_next_in() -> None:
    pool = RequestPool(100)
    assert pool.reserve(90, lambda: None) is None
    granted: list[str] = []
    big = pool.reserve(50, lambda: granted.append("big"))
    small = pool.reserve(10, lambda: granted.append("small"))
    assert big is not None and small is not None
    pool.cancel(big)  # its connection went away
    assert granted == ["small"] and pool.used == 100
    pool.cancel(big)  # twice is harmless
    assert pool.used == 100


def test_no_bound() -> None:
    pool = RequestPool(-1)
    for _ in range(3):
        assert pool.reserve(1 << 30, lambda: None) is None
    assert pool.used == 3 << 30


def test_response_memory() -> None:
    memory = ResponseMemory(100)
    assert memory.available() == 100
    memory.hold(70)
    assert memory.available() == 30
    memory.hold(70)
    assert memory.available() == 0
    memory.release(140)
    assert memory.available() == 100
    assert ResponseMemory(0).available() == 0x7FFFFFFF
