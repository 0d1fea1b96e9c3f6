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
