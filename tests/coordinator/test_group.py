"""GroupCoordinator's classic protocol state machine, driven directly (real object, real clock
via anyio; timers advanced with tick())."""

from __future__ import annotations

from typing import Any

import anyio
from kio.schema.errors import ErrorCode

from kpy.coordinator.group import COMPLETING, EMPTY, PREPARING, STABLE, GroupCoordinator

PROTOCOLS = [("range", b"meta-r"), ("roundrobin", b"meta-rr")]


def join_args(**kw: Any) -> dict[str, Any]:
    args: dict[str, Any] = dict(
        group_id="g",
        member_id="",
        group_instance_id=None,
        client_id="c",
        client_host="/127.0.0.1",
        session_timeout_ms=10_000,
        rebalance_timeout_ms=10_000,
        protocol_type="consumer",
        protocols=PROTOCOLS,
        require_known_member_id=True,
    )
    args.update(kw)
    return args


async def join_known(gc: GroupCoordinator, **kw: Any) -> Any:
    first = await gc.join_group(**join_args(**kw))
    assert first.error == ErrorCode.member_id_required and first.member_id
    return first.member_id


def test_two_members_form_a_group() -> None:
    async def main() -> None:
        gc = GroupCoordinator()
        results: dict[str, Any] = {}
        a = await join_known(gc)
        b = await join_known(gc)

        async def join(member: str) -> None:
            results[member] = await gc.join_group(**join_args(member_id=member))

        async with anyio.create_task_group() as tg:
            tg.start_soon(join, a)
            tg.start_soon(join, b)
        ra, rb = results[a], results[b]
        assert ra.error == rb.error == ErrorCode.none
        assert ra.generation_id == rb.generation_id == 1
        assert ra.protocol_name == "range" and ra.leader == rb.leader
        leader = ra if ra.leader == a else rb
        other = rb if leader is ra else ra
        assert sorted(m[0] for m in leader.members) == sorted([a, b]) and other.members == []
        assert gc.group_state("g") == COMPLETING

        syncs: dict[str, Any] = {}

        async def sync(member: str, assignments: dict[str, bytes]) -> None:
            syncs[member] = await gc.sync_group(
                group_id="g",
                generation_id=1,
                member_id=member,
                group_instance_id=None,
                protocol_type="consumer",
                protocol_name="range",
                assignments=assignments,
            )

        async with anyio.create_task_group() as tg:
            tg.start_soon(sync, other.member_id, {})
            await anyio.sleep(0.01)
            tg.start_soon(sync, leader.member_id, {a: b"A", b: b"B"})
        assert syncs[a].assignment == b"A" and syncs[b].assignment == b"B"
        assert gc.group_state("g") == STABLE
        hb = gc.heartbeat(group_id="g", generation_id=1, member_id=a, group_instance_id=None)
        assert hb == ErrorCode.none
        assert gc.heartbeat(group_id="g", generation_id=0, member_id=a, group_instance_id=None) == (
            ErrorCode.illegal_generation
        )
        assert gc.validate_offset_commit("g", a, 1, None) == ErrorCode.none
        assert gc.validate_offset_commit("g", "nobody", 1, None) == ErrorCode.unknown_member_id

        # b leaves: a is told to rejoin, and alone makes generation 2.
        assert gc.leave_group("g", [(b, None)])[1] == [(b, None, ErrorCode.none)]
        assert gc.group_state("g") == PREPARING
        hb = gc.heartbeat(group_id="g", generation_id=1, member_id=a, group_instance_id=None)
        assert hb == ErrorCode.rebalance_in_progress
        again = await gc.join_group(**join_args(member_id=a))
        assert (again.error, again.generation_id, again.leader) == (ErrorCode.none, 2, a)

    anyio.run(main)


def test_expired_session_removes_the_member() -> None:
    async def main() -> None:
        gc = GroupCoordinator()
        a = await join_known(gc, session_timeout_ms=6000)
        r = await gc.join_group(**join_args(member_id=a, session_timeout_ms=6000))
        await gc.sync_group(
            group_id="g",
            generation_id=r.generation_id,
            member_id=a,
            group_instance_id=None,
            protocol_type=None,
            protocol_name=None,
            assignments={a: b"x"},
        )
        now = anyio.current_time()
        gc.tick(now + 5)
        assert gc.group_state("g") == STABLE
        gc.tick(now + 7)
        # The only member expired: the rebalance completes at once with nobody left.
        assert gc.group_state("g") == EMPTY
        assert gc.heartbeat(group_id="g", generation_id=1, member_id=a, group_instance_id=None) == (
            ErrorCode.unknown_member_id
        )

    anyio.run(main)


def test_static_member_rejoins_without_rebalance_and_fences_the_old_id() -> None:
    async def main() -> None:
        gc = GroupCoordinator()
        r = await gc.join_group(**join_args(group_instance_id="i1"))
        assert r.error == ErrorCode.none  # static members skip MEMBER_ID_REQUIRED
        await gc.sync_group(
            group_id="g",
            generation_id=r.generation_id,
            member_id=r.member_id,
            group_instance_id="i1",
            protocol_type=None,
            protocol_name=None,
            assignments={r.member_id: b"parts"},
        )
        again = await gc.join_group(**join_args(group_instance_id="i1"))
        assert again.error == ErrorCode.none and again.member_id != r.member_id
        assert again.generation_id == r.generation_id and gc.group_state("g") == STABLE
        s = await gc.sync_group(
            group_id="g",
            generation_id=again.generation_id,
            member_id=again.member_id,
            group_instance_id="i1",
            protocol_type=None,
            protocol_name=None,
            assignments={},
        )
        assert s.assignment == b"parts"
        old = gc.heartbeat(
            group_id="g",
            generation_id=r.generation_id,
            member_id=r.member_id,
            group_instance_id="i1",
        )
        assert old == ErrorCode.fenced_instance_id

    anyio.run(main)


def test_join_checks() -> None:
    async def main() -> None:
        gc = GroupCoordinator()
        assert (await gc.join_group(**join_args(group_id=""))).error == ErrorCode.invalid_group_id
        bad = await gc.join_group(**join_args(session_timeout_ms=10))
        assert bad.error == ErrorCode.invalid_session_timeout
        unknown = await gc.join_group(**join_args(member_id="ghost"))
        assert unknown.error == ErrorCode.unknown_member_id
        a = await join_known(gc)
        async with anyio.create_task_group() as tg:
            tg.start_soon(lambda: gc.join_group(**join_args(member_id=a)))
        other = await gc.join_group(**join_args(protocols=[("sticky", b"")], member_id=""))
        assert other.error == ErrorCode.inconsistent_group_protocol

    anyio.run(main)


async def stable_pair(gc: GroupCoordinator, *, static_leader: bool) -> tuple[Any, Any]:
    """A Stable generation of two members, the first (the leader) static if asked; returns the
    leader's and the follower's JoinGroup results."""
    instance = "i1" if static_leader else None
    if static_leader:
        first = await gc.join_group(**join_args(group_instance_id=instance))
        leader_id = first.member_id
    else:
        leader_id = await join_known(gc)
        first = await gc.join_group(**join_args(member_id=leader_id))
    assert first.leader == leader_id and gc.group_state("g") == COMPLETING
    await gc.sync_group(
        group_id="g",
        generation_id=first.generation_id,
        member_id=leader_id,
        group_instance_id=instance,
        protocol_type=None,
        protocol_name=None,
        assignments={leader_id: b"all"},
    )
    follower_id = await join_known(gc)
    results: dict[str, Any] = {}

    async def join(member: str, **kw: Any) -> None:
        results[member] = await gc.join_group(**join_args(member_id=member, **kw))

    async with anyio.create_task_group() as tg:
        tg.start_soon(lambda: join(leader_id, group_instance_id=instance))
        tg.start_soon(lambda: join(follower_id))
    gen = results[leader_id].generation_id
    assert results[leader_id].leader == leader_id

    async def sync(member: str, assignments: dict[str, bytes], **kw: Any) -> None:
        await gc.sync_group(
            group_id="g",
            generation_id=gen,
            member_id=member,
            group_instance_id=kw.get("group_instance_id"),
            protocol_type=None,
            protocol_name=None,
            assignments=assignments,
        )

    async with anyio.create_task_group() as tg:
        tg.start_soon(lambda: sync(follower_id, {}))
        tg.start_soon(
            lambda: sync(
                leader_id, {leader_id: b"left", follower_id: b"right"}, group_instance_id=instance
            )
        )
    assert gc.group_state("g") == STABLE
    return results[leader_id], results[follower_id]


def test_heartbeat_while_completing_the_rebalance_is_not_told_to_rejoin() -> None:
    """Kafka answers NONE to a heartbeat of the generation being completed (a member may
    heartbeat between its JoinGroup and SyncGroup answers): REBALANCE_IN_PROGRESS there sent
    the member back to JoinGroup after its sync, and a leader's rejoin rebalanced the group."""

    async def main() -> None:
        gc = GroupCoordinator()
        a = await join_known(gc)
        r = await gc.join_group(**join_args(member_id=a))
        assert gc.group_state("g") == COMPLETING
        hb = dict(group_id="g", member_id=a, group_instance_id=None)
        assert gc.heartbeat(generation_id=r.generation_id, **hb) == ErrorCode.none
        assert gc.heartbeat(generation_id=r.generation_id - 1, **hb) == (
            ErrorCode.illegal_generation
        )
        b = await join_known(gc)
        async with anyio.create_task_group() as tg:
            tg.start_soon(lambda: gc.join_group(**join_args(member_id=b)))
            await anyio.sleep(0.01)
            assert gc.group_state("g") == PREPARING
            assert gc.heartbeat(generation_id=r.generation_id, **hb) == (
                ErrorCode.rebalance_in_progress
            )
            await gc.join_group(**join_args(member_id=a))

    anyio.run(main)


def test_static_leader_rejoining_a_stable_group_before_v9_is_told_it_follows() -> None:
    """Kafka (JoinGroup < v9): the answer names the leader as it was before the replacement and
    no members, so the returning leader runs no assignor; v9+ says it leads, with the members
    and skip_assignment. Either way the group stays Stable in its generation."""

    async def main() -> None:
        for v9 in (False, True):
            gc = GroupCoordinator()
            leader, follower = await stable_pair(gc, static_leader=True)
            back = await gc.join_group(
                **join_args(group_instance_id="i1", supports_skip_assignment=v9)
            )
            assert back.error == ErrorCode.none and back.member_id != leader.member_id
            assert back.generation_id == leader.generation_id and gc.group_state("g") == STABLE
            if v9:
                assert back.leader == back.member_id and back.skip_assignment
                assert sorted(m[0] for m in back.members) == sorted(
                    [back.member_id, follower.member_id]
                )
            else:
                assert back.leader == leader.member_id and not back.skip_assignment
                assert back.members == []
            s = await gc.sync_group(
                group_id="g",
                generation_id=back.generation_id,
                member_id=back.member_id,
                group_instance_id="i1",
                protocol_type=None,
                protocol_name=None,
                assignments={},
            )
            assert s.assignment == b"left"
            assert (
                gc.heartbeat(
                    group_id="g",
                    generation_id=follower.generation_id,
                    member_id=follower.member_id,
                    group_instance_id=None,
                )
                == ErrorCode.none
            )

    anyio.run(main)


def test_static_member_rejoining_with_other_metadata_keeps_the_generation() -> None:
    """Kafka rebalances a Stable group on a static member's return only if the protocol the
    group would select changes; new subscription bytes for the same protocol do not."""

    async def main() -> None:
        gc = GroupCoordinator()
        leader, _ = await stable_pair(gc, static_leader=True)
        changed = [("range", b"meta-r, generation -1"), ("roundrobin", b"meta-rr2")]
        back = await gc.join_group(**join_args(group_instance_id="i1", protocols=changed))
        assert back.error == ErrorCode.none and gc.group_state("g") == STABLE
        assert back.generation_id == leader.generation_id
        # A protocol the group would not choose any more does rebalance.
        async with anyio.create_task_group() as tg:
            tg.start_soon(
                lambda: gc.join_group(
                    **join_args(group_instance_id="i1", protocols=[("roundrobin", b"x")])
                )
            )
            await anyio.sleep(0.01)
            assert gc.group_state("g") == PREPARING
            tg.cancel_scope.cancel()

    anyio.run(main)


def test_subscribed_topics_come_from_consumer_protocol_metadata() -> None:
    import struct

    from kpy.coordinator.group import parse_subscription_topics

    def subscription(*topics: str) -> bytes:
        body = struct.pack(">hi", 1, len(topics))
        for t in topics:
            body += struct.pack(">h", len(t)) + t.encode()
        return body + struct.pack(">i", -1)  # no user data

    assert parse_subscription_topics(subscription("a", "b")) == {"a", "b"}
    assert parse_subscription_topics(b"\x00") is None

    async def main() -> None:
        gc = GroupCoordinator()
        assert gc.subscribed_topics("g") == set()
        r = await gc.join_group(
            **join_args(group_instance_id="i", protocols=[("range", subscription("t1", "t2"))])
        )
        assert r.error == ErrorCode.none
        assert gc.subscribed_topics("g") == {"t1", "t2"}

    anyio.run(main)


def test_initial_rebalance_waits_while_members_keep_arriving() -> None:
    """Kafka's initial delay: the first rebalance of an empty group ends on a timer that is
    re-armed (by min(delay, what remains of the rebalance timeout)) whenever a member joined
    since it was set. With a delay of 300 ms and members arriving at 0, 200 and 450 ms, the
    timer fires at 300 (b is new: again), 600 (c is new: again) and 900 ms (no one new: done),
    so all three make generation 1, and at 750 ms the group is still preparing it."""

    async def main() -> None:
        gc = GroupCoordinator(initial_rebalance_delay_ms=300)
        results: dict[str, Any] = {}

        async def join(member: str) -> None:
            results[member] = await gc.join_group(**join_args(member_id=member))

        start = anyio.current_time()

        async def until(at: float) -> None:
            await anyio.sleep(max(0.0, start + at - anyio.current_time()))

        async with anyio.create_task_group() as tg:
            members = []
            for at in (0.0, 0.2, 0.45):
                await until(at)
                member = await join_known(gc)
                members.append(member)
                tg.start_soon(join, member)
            await until(0.75)
            assert gc.group_state("g") == PREPARING  # the 600 ms firing found c and waited
        assert {results[m].generation_id for m in members} == {1}
        leader = next(r for r in results.values() if r.members)
        assert sorted(m[0] for m in leader.members) == sorted(members)

    anyio.run(main)
