"""ConsumerGroupCoordinator's KIP-848 state machine, driven directly (real object; time given
explicitly to heartbeat and tick)."""

from __future__ import annotations

import uuid
from typing import Any

import anyio
from kio.schema.errors import ErrorCode

from kpy.coordinator.consumer_group import (
    ASSIGNING,
    EMPTY,
    RECONCILING,
    STABLE,
    ConsumerGroupCoordinator,
    HeartbeatResult,
)

T = uuid.UUID(int=1)
TOPICS = {"t": (T, 6)}


def coordinator(**kw: Any) -> ConsumerGroupCoordinator:
    by_id = {tid: name for name, (tid, _) in TOPICS.items()}
    return ConsumerGroupCoordinator(
        partitions_of=lambda n: TOPICS[n][1] if n in TOPICS else None,
        topic_id_of=lambda n: TOPICS[n][0] if n in TOPICS else None,
        topic_name_of=lambda i: by_id.get(i),
        topic_names=lambda: list(TOPICS),
        **kw,
    )


def join(gc: ConsumerGroupCoordinator, member: str, now: float = 0.0, **kw: Any) -> HeartbeatResult:
    args: dict[str, Any] = dict(
        group_id="g",
        member_id=member,
        member_epoch=0,
        rebalance_timeout_ms=30_000,
        subscribed_topic_names=["t"],
        owned=[],
        now=now,
    )
    args.update(kw)
    return gc.heartbeat(**args)


def beat(
    gc: ConsumerGroupCoordinator, member: str, epoch: int, owned: set[int], now: float = 0.0
) -> HeartbeatResult:
    return gc.heartbeat(
        group_id="g", member_id=member, member_epoch=epoch, owned=[(T, sorted(owned))], now=now
    )


def partitions(result: HeartbeatResult) -> set[int]:
    assert result.assignment is not None
    return {p for tid, ps in result.assignment if tid == T for p in ps}


def settle(gc: ConsumerGroupCoordinator, members: dict[str, tuple[int, set[int]]]) -> None:
    """Heartbeat each member with what it owns until nothing changes; the client's part of
    reconciliation: it owns exactly what the last answer gave it."""
    for _ in range(10):
        changed = False
        for member, (epoch, owned) in list(members.items()):
            r = beat(gc, member, epoch, owned)
            assert r.error == ErrorCode.none, r
            new_owned = partitions(r) if r.assignment is not None else owned
            if (r.member_epoch, new_owned) != (epoch, owned):
                members[member] = (r.member_epoch, new_owned)
                changed = True
        if not changed:
            return
    raise AssertionError("did not settle")


def test_a_first_member_gets_every_partition() -> None:
    gc = coordinator()
    r = join(gc, "a")
    assert r.error == ErrorCode.none and r.member_id == "a" and r.member_epoch == 1
    assert partitions(r) == set(range(6)) and r.heartbeat_interval_ms == 5000
    assert gc.group_state("g") == STABLE
    # A heartbeat that changes nothing gets no assignment back.
    assert beat(gc, "a", 1, set(range(6))).assignment is None


def test_two_members_split_after_the_first_revokes() -> None:
    gc = coordinator()
    join(gc, "a")
    rb = join(gc, "b")
    # b's target is three partitions, still held by a: b waits at the new epoch with none.
    assert rb.member_epoch == 2 and partitions(rb) == set()
    assert gc.group_state("g") == RECONCILING
    # a is asked to give up three; it keeps its epoch until it has.
    ra = beat(gc, "a", 1, set(range(6)))
    kept = partitions(ra)
    assert ra.member_epoch == 1 and len(kept) == 3
    # Until a reports it no longer owns them, b gets nothing.
    assert beat(gc, "b", 2, set()).assignment is None
    ra = beat(gc, "a", 1, kept)
    assert ra.member_epoch == 2
    rb = beat(gc, "b", 2, set())
    assert partitions(rb) == set(range(6)) - kept
    assert gc.group_state("g") == STABLE


def test_a_partition_is_never_owned_twice_while_members_come_and_go() -> None:
    gc = coordinator()
    members: dict[str, tuple[int, set[int]]] = {}
    for name in "abc":
        r = join(gc, name)
        members[name] = (r.member_epoch, partitions(r))
        settle(gc, members)
        owned = [o for _, o in members.values()]
        assert sum(len(o) for o in owned) == 6 and set().union(*owned) == set(range(6))
    assert sorted(len(o) for _, o in members.values()) == [2, 2, 2]


def test_leave_frees_the_partitions_for_the_others() -> None:
    gc = coordinator()
    members: dict[str, tuple[int, set[int]]] = {}
    for name in "ab":
        r = join(gc, name)
        members[name] = (r.member_epoch, partitions(r))
    settle(gc, members)
    r = gc.heartbeat(group_id="g", member_id="b", member_epoch=-1)
    assert r.error == ErrorCode.none and r.member_epoch == -1
    del members["b"]
    assert gc.group_state("g") == ASSIGNING
    settle(gc, members)
    assert members["a"][1] == set(range(6))
    r = gc.heartbeat(group_id="g", member_id="a", member_epoch=-1)
    assert gc.group_state("g") == EMPTY and gc.is_empty("g")


def test_an_expired_session_fences_the_member() -> None:
    gc = coordinator(session_timeout_ms=45_000)
    members: dict[str, tuple[int, set[int]]] = {}
    for name in "ab":
        r = join(gc, name)
        members[name] = (r.member_epoch, partitions(r))
    settle(gc, members)
    gc.tick(40.0)
    assert set(gc.groups["g"].members) == {"a", "b"}
    beat(gc, "a", members["a"][0], members["a"][1], now=40.0)
    gc.tick(46.0)  # b's last heartbeat was at 0
    assert set(gc.groups["g"].members) == {"a"}
    r = beat(gc, "b", members["b"][0], members["b"][1], now=46.0)
    assert r.error == ErrorCode.unknown_member_id
    del members["b"]
    settle(gc, members)
    assert members["a"][1] == set(range(6))


def test_a_member_that_does_not_revoke_in_time_is_fenced() -> None:
    gc = coordinator()
    join(gc, "a", rebalance_timeout_ms=1000)
    join(gc, "b")
    beat(gc, "a", 1, set(range(6)), now=0.0)  # asked to revoke three
    beat(gc, "b", 2, set(), now=1.0)
    gc.tick(2.0)
    assert set(gc.groups["g"].members) == {"b"}


def test_epochs_are_fenced() -> None:
    gc = coordinator()
    join(gc, "a")
    assert beat(gc, "a", 5, set()).error == ErrorCode.fenced_member_epoch
    join(gc, "b")
    kept = beat(gc, "a", 1, set(range(6)))  # asked to revoke three
    ra = beat(gc, "a", 1, partitions(kept))
    assert ra.member_epoch == 2
    # The previous epoch with a subset of its partitions: the bumping answer may have been lost.
    assert beat(gc, "a", 1, partitions(kept)).error == ErrorCode.none
    # The previous epoch with partitions it no longer has is fenced.
    assert beat(gc, "a", 1, set(range(6))).error == ErrorCode.fenced_member_epoch
    # An unknown member id.
    assert beat(gc, "z", 1, set()).error == ErrorCode.unknown_member_id
    # Epoch 0 from a known member is a rejoin.
    assert join(gc, "a").error == ErrorCode.none


def test_request_validation() -> None:
    gc = coordinator()
    assert join(gc, "").error == ErrorCode.invalid_request  # v1: the client names itself
    r = join(gc, "", api_version=0)  # v0: the coordinator does
    assert r.error == ErrorCode.none and r.member_id
    assert join(gc, "a", group_id="").error == ErrorCode.invalid_request
    assert join(gc, "a", owned=None).error == ErrorCode.invalid_request
    assert join(gc, "a", subscribed_topic_names=[]).error == ErrorCode.invalid_request
    assert join(gc, "a", rebalance_timeout_ms=-1).error == ErrorCode.invalid_request
    assert join(gc, "a", member_epoch=-3).error == ErrorCode.invalid_request
    assert join(gc, "a", server_assignor="sticky").error == ErrorCode.unsupported_assignor
    r = join(gc, "a", subscribed_topic_names=None, subscribed_topic_regex="(")
    assert r.error == ErrorCode.invalid_regular_expression
    r = gc.heartbeat(group_id="nope", member_id="a", member_epoch=-1)
    assert r.error == ErrorCode.group_id_not_found


def test_regex_subscription() -> None:
    gc = coordinator()
    r = join(gc, "a", subscribed_topic_names=None, subscribed_topic_regex="t.*")
    assert partitions(r) == set(range(6))


def test_range_assignor_gives_consecutive_ranges() -> None:
    gc = coordinator()
    members: dict[str, tuple[int, set[int]]] = {}
    for name in "ab":
        r = join(gc, name, server_assignor="range")
        members[name] = (r.member_epoch, partitions(r))
    settle(gc, members)
    assert members["a"][1] == {0, 1, 2} and members["b"][1] == {3, 4, 5}


def test_static_member_keeps_its_partitions_while_away() -> None:
    gc = coordinator()
    members: dict[str, tuple[int, set[int]]] = {}
    for name in "ab":
        r = join(gc, name, instance_id=f"i-{name}")
        members[name] = (r.member_epoch, partitions(r))
    settle(gc, members)
    b_parts = members["b"][1]
    r = gc.heartbeat(group_id="g", member_id="b", member_epoch=-2, instance_id="i-b")
    assert r.error == ErrorCode.none and r.member_epoch == -2
    # Another process with the same instance id while b is still there: refused.
    assert join(gc, "a2", instance_id="i-a").error == ErrorCode.unreleased_instance_id
    r = join(gc, "b2", instance_id="i-b")
    assert r.error == ErrorCode.none and partitions(r) == b_parts
    assert set(gc.groups["g"].members) == {"a", "b2"}


def test_offset_commit_validation() -> None:
    gc = coordinator()
    assert gc.validate_offset_commit("g", "", -1) == ErrorCode.none
    r = join(gc, "a")
    assert gc.validate_offset_commit("g", "a", r.member_epoch) == ErrorCode.none
    assert gc.validate_offset_commit("g", "a", r.member_epoch + 1) == ErrorCode.stale_member_epoch
    assert gc.validate_offset_commit("g", "x", r.member_epoch) == ErrorCode.unknown_member_id
    assert gc.validate_offset_commit("g", "", -1) == ErrorCode.unknown_member_id
    assert (
        gc.validate_offset_commit("g", "a", r.member_epoch, api_version=8)
        == ErrorCode.unsupported_version
    )


def test_run_expires_sessions_on_the_event_loop() -> None:
    async def main() -> None:
        gc = coordinator(session_timeout_ms=200)
        join(gc, "a", now=anyio.current_time())
        async with anyio.create_task_group() as tg:
            tg.start_soon(gc.run)
            await anyio.sleep(0.5)
            tg.cancel_scope.cancel()
        assert gc.group_state("g") == EMPTY

    anyio.run(main)
