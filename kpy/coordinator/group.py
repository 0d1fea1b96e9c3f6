"""GroupCoordinator: the classic consumer group protocol (JoinGroup, SyncGroup, Heartbeat,
LeaveGroup), as Apache Kafka's coordinator runs it for every group on one broker.

States and transitions (Kafka's GroupState names; a group is created Empty):

    Empty --join--> PreparingRebalance
    PreparingRebalance --all known members rejoined, or the rebalance timeout--> CompletingRebalance
                       (members that did not rejoin are dropped; none left: Empty)
    CompletingRebalance --leader's SyncGroup--> Stable
    CompletingRebalance / Stable --join with new metadata, a new member, a leave, an expired
                       session--> PreparingRebalance
    any --DeleteGroups of an Empty group--> Dead (and forgotten)

A rebalance starts a new generation when it completes. JoinGroup and SyncGroup requests wait
(their handler awaits a ``_Waiter``) until the rebalance step they belong to completes; a member
waiting in JoinGroup or SyncGroup is not expired, as in Kafka. Dynamic members joining with
JoinGroup v4+ first get MEMBER_ID_REQUIRED and an id (KIP-394). Static members
(group.instance.id, KIP-345) keep their partitions across restarts within the session timeout:
a known instance id rejoining a Stable group replaces the old member id and gets the current
assignment back without a rebalance, unless the protocol the group would select changes (new
subscription bytes alone do not rebalance). A returning static leader is named leader with
skip_assignment from JoinGroup v9; before v9 the answer names the previous leader id, so the
client follows and runs no assignor (as Kafka). A request naming an instance id with another
member id is FENCED_INSTANCE_ID.

Heartbeats answer REBALANCE_IN_PROGRESS only in PreparingRebalance: in CompletingRebalance a
member of the new generation may heartbeat before its SyncGroup is answered, and Kafka answers
NONE there.

Timers (session timeouts, rebalance timeouts) are checked by ``run()``, a loop the server
starts, every TICK seconds: Kafka's purgatories fire to the millisecond, kpy within a tick. The
first rebalance of an empty group ends on its own loop timer, as Kafka's does: after
group.initial.rebalance.delay.ms, re-armed while new members keep joining, so that members
starting together (even with a delay of 0) form one generation rather than the first alone and
the others a heartbeat interval later. Everything here runs on the event loop thread.

Not here yet: persistence of group metadata across broker restarts (members rejoin after a
restart, with a new generation; committed offsets are durable, see offsets.py), the KIP-848
consumer protocol, and the administrative APIs.
"""

from __future__ import annotations

import asyncio
import logging
import struct
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import anyio
from kio.schema.errors import ErrorCode

log = logging.getLogger("kpy.groups")

EMPTY, PREPARING, COMPLETING, STABLE, DEAD = (
    "Empty",
    "PreparingRebalance",
    "CompletingRebalance",
    "Stable",
    "Dead",
)
TICK = 0.1


@dataclass
class JoinResult:
    error: ErrorCode
    member_id: str = ""
    generation_id: int = -1
    protocol_type: str | None = None
    protocol_name: str | None = None
    leader: str = ""
    skip_assignment: bool = False
    # (member_id, group_instance_id, metadata): for the leader only
    members: list[tuple[str, str | None, bytes]] = field(default_factory=list)


@dataclass
class SyncResult:
    error: ErrorCode
    protocol_type: str | None = None
    protocol_name: str | None = None
    assignment: bytes = b""


class _Waiter:
    """One pending JoinGroup or SyncGroup answer."""

    def __init__(self) -> None:
        self._event = anyio.Event()
        self.result: Any = None

    def set(self, result: Any) -> None:
        if not self._event.is_set():
            self.result = result
            self._event.set()

    async def wait(self) -> Any:
        await self._event.wait()
        return self.result


@dataclass
class Member:
    member_id: str
    group_instance_id: str | None
    client_id: str
    client_host: str
    session_timeout_ms: int
    rebalance_timeout_ms: int
    protocol_type: str
    protocols: list[tuple[str, bytes]]
    assignment: bytes = b""
    join_waiter: _Waiter | None = None
    sync_waiter: _Waiter | None = None
    last_heartbeat: float = 0.0

    def metadata(self, protocol: str) -> bytes:
        return next(m for name, m in self.protocols if name == protocol)

    def expired(self, now: float) -> bool:
        if self.join_waiter is not None or self.sync_waiter is not None:
            return (
                False  # a member waiting on the coordinator is alive (Kafka: heartbeat satisfied)
            )
        return now > self.last_heartbeat + self.session_timeout_ms / 1000


@dataclass
class Group:
    group_id: str
    state: str = EMPTY
    protocol_type: str | None = None
    protocol_name: str | None = None
    generation_id: int = 0
    leader_id: str | None = None
    members: dict[str, Member] = field(default_factory=dict)
    static_members: dict[str, str] = field(default_factory=dict)  # instance id -> member id
    pending_members: dict[str, float] = field(default_factory=dict)  # member id -> deadline
    rebalance_deadline: float = 0.0
    # The first rebalance of an empty group ends on a timer, not when every member known has
    # joined (Kafka's tryCompleteInitialRebalanceElseSchedule): the timer re-arms while members
    # keep arriving, so members that start together form one generation.
    initial_rebalance: bool = False
    new_member_added: bool = False

    def supports(self, protocol_type: str, protocols: list[tuple[str, bytes]]) -> bool:
        """Kafka's check: a first member needs a type and a protocol; later ones the group's
        type and a protocol every member supports."""
        names = {n for n, _ in protocols}
        if not self.members:
            return bool(protocol_type) and bool(names)
        if protocol_type != self.protocol_type:
            return False
        candidates = set.intersection(*({n for n, _ in m.protocols} for m in self.members.values()))
        return bool(candidates & names)

    def select_protocol(self) -> str:
        members = list(self.members.values())
        candidates = set.intersection(*({n for n, _ in m.protocols} for m in members))
        votes: dict[str, int] = {}
        for m in members:
            choice = next(n for n, _ in m.protocols if n in candidates)
            votes[choice] = votes.get(choice, 0) + 1
        order = [n for n, _ in members[0].protocols if n in candidates]
        return max(order, key=lambda n: (votes.get(n, 0), -order.index(n)))

    def all_members_joined(self) -> bool:
        return not self.pending_members and all(
            m.join_waiter is not None for m in self.members.values()
        )


class GroupCoordinator:
    def __init__(
        self,
        *,
        min_session_timeout_ms: int = 6000,
        max_session_timeout_ms: int = 1_800_000,
        initial_rebalance_delay_ms: int = 0,
        max_group_size: int = 2**31 - 1,
    ) -> None:
        self.groups: dict[str, Group] = {}
        self.min_session_timeout_ms = min_session_timeout_ms
        self.max_session_timeout_ms = max_session_timeout_ms
        self.initial_rebalance_delay_ms = initial_rebalance_delay_ms
        self.max_group_size = max_group_size

    # --- queries -----------------------------------------------------------------------------

    def group_state(self, group_id: str) -> str | None:
        group = self.groups.get(group_id)
        return group.state if group is not None else None

    def subscribed_topics(self, group_id: str) -> set[str] | None:
        """The topics a "consumer" group's members subscribe to, from their protocol metadata
        (Kafka's ClassicGroup.computeSubscribedTopics); None when they cannot be known (another
        protocol type, or metadata that does not parse)."""
        group = self.groups.get(group_id)
        if group is None or not group.members:
            return set()
        if group.protocol_type != "consumer" or group.protocol_name is None:
            return None
        topics: set[str] = set()
        for member in group.members.values():
            parsed = parse_subscription_topics(member.metadata(group.protocol_name))
            if parsed is None:
                return None
            topics |= parsed
        return topics

    def is_empty(self, group_id: str) -> bool:
        group = self.groups.get(group_id)
        return group is None or group.state in (EMPTY, DEAD)

    def validate_offset_commit(
        self,
        group_id: str,
        member_id: str,
        generation_id: int,
        group_instance_id: str | None,
        *,
        transactional: bool = False,
    ) -> ErrorCode:
        """Whether a classic-protocol commit may be stored (Kafka's validateOffsetCommit).

        ``transactional`` (TxnOffsetCommit): the group's state is not enforced, and a request
        naming neither member nor generation (v0-v2) is accepted in any state."""
        group = self.groups.get(group_id)
        if group is None:
            return ErrorCode.none if generation_id < 0 else ErrorCode.illegal_generation
        if group.state == DEAD:
            return ErrorCode.coordinator_not_available
        if group_instance_id is not None:
            known = group.static_members.get(group_instance_id)
            if known is not None and known != member_id:
                return ErrorCode.fenced_instance_id
        if generation_id < 0 and group.state == EMPTY:
            return ErrorCode.none
        if transactional:
            if generation_id < 0 and not member_id and group_instance_id is None:
                return ErrorCode.none
            if member_id not in group.members:
                return ErrorCode.unknown_member_id
            if generation_id != group.generation_id:
                return ErrorCode.illegal_generation
            return ErrorCode.none
        if group.state == COMPLETING:
            return ErrorCode.rebalance_in_progress
        if member_id not in group.members:
            return ErrorCode.unknown_member_id
        if generation_id != group.generation_id:
            return ErrorCode.illegal_generation
        return ErrorCode.none

    # --- JoinGroup ---------------------------------------------------------------------------

    async def join_group(
        self,
        *,
        group_id: str,
        member_id: str,
        group_instance_id: str | None,
        client_id: str,
        client_host: str,
        session_timeout_ms: int,
        rebalance_timeout_ms: int,
        protocol_type: str,
        protocols: list[tuple[str, bytes]],
        require_known_member_id: bool,
        supports_skip_assignment: bool = False,
    ) -> JoinResult:
        """``require_known_member_id``: JoinGroup v4+ (KIP-394); ``supports_skip_assignment``:
        v9+ (KIP-814), which changes what a static leader rejoining a Stable group is told."""
        if not group_id:
            return JoinResult(ErrorCode.invalid_group_id, member_id)
        if not self.min_session_timeout_ms <= session_timeout_ms <= self.max_session_timeout_ms:
            return JoinResult(ErrorCode.invalid_session_timeout, member_id)
        group = self.groups.get(group_id)
        if group is None:
            if member_id:
                return JoinResult(ErrorCode.unknown_member_id, member_id)
            group = self.groups[group_id] = Group(group_id)
        if group.state == DEAD:
            return JoinResult(ErrorCode.coordinator_not_available, member_id)
        if not group.supports(protocol_type, protocols):
            return JoinResult(ErrorCode.inconsistent_group_protocol, member_id)
        log.debug(
            "group %s: JoinGroup from %r (instance %r) in %s generation %d, protocols %s",
            group_id,
            member_id,
            group_instance_id,
            group.state,
            group.generation_id,
            [(n, len(m)) for n, m in protocols],
        )
        now = anyio.current_time()
        if not member_id:
            return await self._join_unknown_member(
                group,
                group_instance_id,
                client_id,
                client_host,
                session_timeout_ms,
                rebalance_timeout_ms,
                protocol_type,
                protocols,
                require_known_member_id,
                supports_skip_assignment,
                now,
            )
        if group_instance_id is not None:
            known = group.static_members.get(group_instance_id)
            if known is not None and known != member_id:
                return JoinResult(ErrorCode.fenced_instance_id, member_id)
        if member_id in group.pending_members:
            del group.pending_members[member_id]
            member = self._add_member(
                group,
                member_id,
                group_instance_id,
                client_id,
                client_host,
                session_timeout_ms,
                rebalance_timeout_ms,
                protocol_type,
                protocols,
                now,
            )
            return await self._await_join(group, member)
        existing = group.members.get(member_id)
        if existing is None:
            return JoinResult(ErrorCode.unknown_member_id, member_id)
        member = existing
        member.last_heartbeat = now
        changed = member.protocols != protocols
        member.protocols = protocols
        member.session_timeout_ms = session_timeout_ms
        member.rebalance_timeout_ms = rebalance_timeout_ms
        if group.state == PREPARING:
            return await self._await_join(group, member)
        if group.state == COMPLETING and not changed:
            # A retried join: answer with the generation being completed.
            return self._join_result(group, member)
        if group.state == STABLE and not changed and member_id != group.leader_id:
            return self._join_result(group, member)
        self._prepare_rebalance(group, f"member {member_id} rejoined with new metadata")
        return await self._await_join(group, member)

    async def _join_unknown_member(
        self,
        group: Group,
        instance_id: str | None,
        client_id: str,
        client_host: str,
        session_timeout_ms: int,
        rebalance_timeout_ms: int,
        protocol_type: str,
        protocols: list[tuple[str, bytes]],
        require_known_member_id: bool,
        supports_skip_assignment: bool,
        now: float,
    ) -> JoinResult:
        new_id = f"{client_id}-{uuid.uuid4()}"
        if instance_id is not None:
            new_id = f"{instance_id}-{uuid.uuid4()}"
            old_id = group.static_members.get(instance_id)
            if old_id is not None and old_id in group.members:
                return await self._replace_static_member(
                    group,
                    old_id,
                    new_id,
                    client_id,
                    client_host,
                    session_timeout_ms,
                    rebalance_timeout_ms,
                    protocols,
                    supports_skip_assignment,
                    now,
                )
        elif require_known_member_id:
            # KIP-394: the member must come back with this id; it counts as pending until then.
            group.pending_members[new_id] = now + session_timeout_ms / 1000
            return JoinResult(ErrorCode.member_id_required, new_id)
        if len(group.members) >= self.max_group_size:
            return JoinResult(ErrorCode.group_max_size_reached, "")
        member = self._add_member(
            group,
            new_id,
            instance_id,
            client_id,
            client_host,
            session_timeout_ms,
            rebalance_timeout_ms,
            protocol_type,
            protocols,
            now,
        )
        return await self._await_join(group, member)

    async def _replace_static_member(
        self,
        group: Group,
        old_id: str,
        new_id: str,
        client_id: str,
        client_host: str,
        session_timeout_ms: int,
        rebalance_timeout_ms: int,
        protocols: list[tuple[str, bytes]],
        supports_skip_assignment: bool,
        now: float,
    ) -> JoinResult:
        """Kafka's updateStaticMemberAndRebalance: the known instance takes a new member id (the
        old one is fenced) and the group's place of the old one: its assignment, its leadership.
        """
        current_leader = group.leader_id
        old = group.members.pop(old_id)
        if old.join_waiter is not None:
            old.join_waiter.set(JoinResult(ErrorCode.fenced_instance_id, old_id))
        if old.sync_waiter is not None:
            old.sync_waiter.set(SyncResult(ErrorCode.fenced_instance_id))
        member = Member(
            new_id,
            old.group_instance_id,
            client_id,
            client_host,
            session_timeout_ms,
            rebalance_timeout_ms,
            old.protocol_type,
            protocols,
            old.assignment,
            last_heartbeat=now,
        )
        group.members[new_id] = member
        assert old.group_instance_id is not None
        group.static_members[old.group_instance_id] = new_id
        if group.leader_id == old_id:
            group.leader_id = new_id
        log.info("group %s: static member %s is now %s", group.group_id, old_id, new_id)
        if group.state == STABLE and group.select_protocol() == group.protocol_name:
            # The same instance came back and the group would choose the same protocol: its
            # partitions, no rebalance for the others. (Kafka compares the selected protocol, not
            # the metadata: a restarted client's subscription may differ in its owned partitions
            # or generation, and that alone does not rebalance.)
            if supports_skip_assignment:
                # v9+: a leader is told it leads (to keep watching metadata) but must not assign.
                is_leader = new_id == group.leader_id
                return self._join_result(group, member, skip_assignment=is_leader)
            # Before v9 the answer names the leader as it was before the replacement, so a
            # returning leader takes itself for a follower and runs no assignor whose result
            # the Stable group would ignore.
            result = self._join_result(group, member)
            result.leader = current_leader or ""
            result.members = []
            return result
        if group.state in (STABLE, COMPLETING):
            # Completing: the leader may have been sent the old member id, so its assignment
            # would miss the new one; rebalance.
            self._prepare_rebalance(group, f"static member {new_id} rejoined with new metadata")
        return await self._await_join(group, member)

    def _add_member(
        self,
        group: Group,
        member_id: str,
        instance_id: str | None,
        client_id: str,
        client_host: str,
        session_timeout_ms: int,
        rebalance_timeout_ms: int,
        protocol_type: str,
        protocols: list[tuple[str, bytes]],
        now: float,
    ) -> Member:
        member = Member(
            member_id,
            instance_id,
            client_id,
            client_host,
            session_timeout_ms,
            rebalance_timeout_ms,
            protocol_type,
            protocols,
            last_heartbeat=now,
        )
        if not group.members:
            group.protocol_type = protocol_type
        group.members[member_id] = member
        if instance_id is not None:
            group.static_members[instance_id] = member_id
        if group.leader_id is None:
            group.leader_id = member_id
        if group.state != PREPARING:
            self._prepare_rebalance(group, f"member {member_id} joined")
        elif group.initial_rebalance:
            group.new_member_added = True
        return member

    async def _await_join(self, group: Group, member: Member) -> JoinResult:
        waiter = member.join_waiter = _Waiter()
        self._maybe_complete_join(group)
        result: JoinResult = await waiter.wait()
        return result

    def _join_result(
        self, group: Group, member: Member, skip_assignment: bool = False
    ) -> JoinResult:
        members = []
        if member.member_id == group.leader_id and group.protocol_name is not None:
            members = [
                (m.member_id, m.group_instance_id, m.metadata(group.protocol_name))
                for m in group.members.values()
            ]
        return JoinResult(
            ErrorCode.none,
            member.member_id,
            group.generation_id,
            group.protocol_type,
            group.protocol_name,
            group.leader_id or "",
            skip_assignment,
            members,
        )

    def _prepare_rebalance(self, group: Group, reason: str) -> None:
        if group.state == COMPLETING:
            # Members waiting for the leader's assignment must rejoin.
            for m in group.members.values():
                if m.sync_waiter is not None:
                    m.sync_waiter.set(SyncResult(ErrorCode.rebalance_in_progress))
                    m.sync_waiter = None
        now = anyio.current_time()
        timeout_ms = max((m.rebalance_timeout_ms for m in group.members.values()), default=0)
        group.rebalance_deadline = now + timeout_ms / 1000
        if group.state == EMPTY:
            delay_ms = self.initial_rebalance_delay_ms
            group.initial_rebalance = True
            group.new_member_added = False
            self._initial_rebalance_after(group, delay_ms, max(timeout_ms - delay_ms, 0))
        group.state = PREPARING
        log.info("group %s: preparing to rebalance (%s)", group.group_id, reason)

    def _initial_rebalance_after(self, group: Group, delay_ms: int, remaining_ms: int) -> None:
        """Arm the initial rebalance's timer: after ``delay_ms``, end the join phase unless a
        member was added meanwhile and time remains; then wait again (Kafka: delay
        min(group.initial.rebalance.delay.ms, remaining), remaining less the delay just spent,
        so with a delay of 0 it ends at the first firing that finds no new member)."""

        def fire() -> None:
            if self.groups.get(group.group_id) is not group or not group.initial_rebalance:
                return
            if group.state != PREPARING:
                group.initial_rebalance = False
                return
            if group.new_member_added and remaining_ms != 0:
                group.new_member_added = False
                next_delay = min(self.initial_rebalance_delay_ms, remaining_ms)
                self._initial_rebalance_after(group, next_delay, max(remaining_ms - delay_ms, 0))
                return
            # Then the usual rule. Kafka ends the join phase here outright; kpy also waits for the
            # members told MEMBER_ID_REQUIRED to come back (at most until their join deadline).
            # Kafka's timer runs as an event behind the JoinGroups already queued, which lets a
            # burst of members in; kpy's loop timer fires sooner, so without this wait a group
            # whose members start together would form with its first member alone and the
            # others would have to rebalance again (a heartbeat interval, 3 s, once stable).
            group.initial_rebalance = False
            self._maybe_complete_join(group)

        asyncio.get_running_loop().call_later(delay_ms / 1000, fire)

    def _maybe_complete_join(self, group: Group, *, deadline_passed: bool = False) -> None:
        if group.state != PREPARING:
            return
        if group.initial_rebalance and not deadline_passed:
            return  # the initial rebalance's timer ends it
        if not deadline_passed and not group.all_members_joined():
            return
        # Dynamic members that did not rejoin in time are dropped; static ones stay.
        for m in list(group.members.values()):
            if m.join_waiter is None and m.group_instance_id is None:
                self._remove_member(group, m)
        group.pending_members.clear()
        group.generation_id += 1
        group.initial_rebalance = False
        joined = [m for m in group.members.values() if m.join_waiter is not None]
        if not joined:
            for m in list(group.members.values()):  # static members that did not come back
                self._remove_member(group, m)
            group.state = EMPTY
            group.protocol_name = None
            group.leader_id = None
            log.info("group %s: generation %d is empty", group.group_id, group.generation_id)
            return
        if (
            group.leader_id not in group.members
            or group.members[group.leader_id].join_waiter is None
        ):
            group.leader_id = joined[0].member_id
        group.protocol_name = group.select_protocol()
        group.state = COMPLETING
        log.info(
            "group %s: generation %d with %d member(s), protocol %s",
            group.group_id,
            group.generation_id,
            len(group.members),
            group.protocol_name,
        )
        now = anyio.current_time()
        for m in joined:
            assert m.join_waiter is not None
            result = self._join_result(group, m)
            log.debug(
                "group %s: JoinGroup answer to %s: generation %d, leader %s, members %s",
                group.group_id,
                m.member_id,
                result.generation_id,
                result.leader,
                [mid for mid, _, _ in result.members],
            )
            m.join_waiter.set(result)
            m.join_waiter = None
            m.last_heartbeat = now

    def _remove_member(self, group: Group, member: Member) -> None:
        group.members.pop(member.member_id, None)
        instance = member.group_instance_id
        if instance is not None and group.static_members.get(instance) == member.member_id:
            del group.static_members[instance]
        if member.join_waiter is not None:
            member.join_waiter.set(JoinResult(ErrorCode.unknown_member_id, member.member_id))
        if member.sync_waiter is not None:
            member.sync_waiter.set(SyncResult(ErrorCode.unknown_member_id))
        if group.leader_id == member.member_id:
            group.leader_id = next(iter(group.members), None)

    def _member_left(self, group: Group, member: Member, reason: str) -> None:
        self._remove_member(group, member)
        if group.state in (STABLE, COMPLETING):
            self._prepare_rebalance(group, reason)
        self._maybe_complete_join(group)

    # --- SyncGroup ---------------------------------------------------------------------------

    async def sync_group(
        self,
        *,
        group_id: str,
        generation_id: int,
        member_id: str,
        group_instance_id: str | None,
        protocol_type: str | None,
        protocol_name: str | None,
        assignments: dict[str, bytes],
    ) -> SyncResult:
        group = self.groups.get(group_id)
        log.debug(
            "group %s: SyncGroup from %r generation %d in %s generation %s, %d assignment(s) %s",
            group_id,
            member_id,
            generation_id,
            group.state if group else None,
            group.generation_id if group else None,
            len(assignments),
            {m: len(a) for m, a in assignments.items()},
        )
        if group is None or group.state == DEAD:
            return SyncResult(ErrorCode.unknown_member_id)
        error = self._check_member(group, member_id, group_instance_id)
        if error is not ErrorCode.none:
            return SyncResult(error)
        if generation_id != group.generation_id:
            return SyncResult(ErrorCode.illegal_generation)
        if (protocol_type is not None and protocol_type != group.protocol_type) or (
            protocol_name is not None and protocol_name != group.protocol_name
        ):
            return SyncResult(ErrorCode.inconsistent_group_protocol)
        member = group.members[member_id]
        member.last_heartbeat = anyio.current_time()
        if group.state == PREPARING:
            return SyncResult(ErrorCode.rebalance_in_progress)
        if group.state == STABLE:
            return SyncResult(
                ErrorCode.none, group.protocol_type, group.protocol_name, member.assignment
            )
        # CompletingRebalance: wait for the leader's assignment.
        waiter = member.sync_waiter = _Waiter()
        if member_id == group.leader_id:
            for m in group.members.values():
                m.assignment = assignments.get(m.member_id, b"")
            group.state = STABLE
            log.info("group %s: generation %d is stable", group.group_id, group.generation_id)
            for m in group.members.values():
                if m.sync_waiter is not None:
                    m.sync_waiter.set(
                        SyncResult(
                            ErrorCode.none, group.protocol_type, group.protocol_name, m.assignment
                        )
                    )
                    m.sync_waiter = None
        result: SyncResult = await waiter.wait()
        return result

    def _check_member(
        self, group: Group, member_id: str, group_instance_id: str | None
    ) -> ErrorCode:
        if group_instance_id is not None:
            known = group.static_members.get(group_instance_id)
            if known is not None and known != member_id:
                return ErrorCode.fenced_instance_id
        if member_id not in group.members:
            return ErrorCode.unknown_member_id
        return ErrorCode.none

    # --- Heartbeat and LeaveGroup ------------------------------------------------------------

    def heartbeat(
        self, *, group_id: str, generation_id: int, member_id: str, group_instance_id: str | None
    ) -> ErrorCode:
        group = self.groups.get(group_id)
        error = self._heartbeat(group, generation_id, member_id, group_instance_id)
        if error is not ErrorCode.none:  # the NONE answers, twice a second a member, are noise
            log.debug(
                "group %s: Heartbeat from %r generation %d in %s generation %s: %s",
                group_id,
                member_id,
                generation_id,
                group.state if group else None,
                group.generation_id if group else None,
                error.name,
            )
        return error

    def _heartbeat(
        self, group: Group | None, generation_id: int, member_id: str, group_instance_id: str | None
    ) -> ErrorCode:
        if group is None or group.state in (DEAD, EMPTY):
            return ErrorCode.unknown_member_id
        error = self._check_member(group, member_id, group_instance_id)
        if error is not ErrorCode.none:
            return error
        if generation_id != group.generation_id:
            return ErrorCode.illegal_generation
        group.members[member_id].last_heartbeat = anyio.current_time()
        if group.state == PREPARING:
            return ErrorCode.rebalance_in_progress
        # Stable, or CompletingRebalance: a member may heartbeat between its JoinGroup answer and
        # its SyncGroup's; that is a heartbeat of the generation being completed, answered NONE
        # as Kafka does (REBALANCE_IN_PROGRESS would send it, maybe the leader, to rejoin).
        return ErrorCode.none

    def leave_group(
        self, group_id: str, members: Iterable[tuple[str, str | None]]
    ) -> tuple[ErrorCode, list[tuple[str, str | None, ErrorCode]]]:
        """Remove members given as (member_id, group_instance_id); per-member errors."""
        group = self.groups.get(group_id)
        if group is None or group.state == DEAD:
            return ErrorCode.unknown_member_id, []
        results: list[tuple[str, str | None, ErrorCode]] = []
        for member_id, instance_id in members:
            log.debug(
                "group %s: LeaveGroup of %r (instance %r) in %s",
                group_id,
                member_id,
                instance_id,
                group.state,
            )
            if instance_id is not None:
                known = group.static_members.get(instance_id)
                if known is None:
                    results.append((member_id, instance_id, ErrorCode.unknown_member_id))
                    continue
                if member_id and member_id != known:
                    results.append((member_id, instance_id, ErrorCode.fenced_instance_id))
                    continue
                member_id = known
            member = group.members.get(member_id)
            if member is None:
                if member_id in group.pending_members:
                    del group.pending_members[member_id]
                    self._maybe_complete_join(group)
                    results.append((member_id, instance_id, ErrorCode.none))
                else:
                    results.append((member_id, instance_id, ErrorCode.unknown_member_id))
                continue
            self._member_left(group, member, f"member {member_id} left")
            results.append((member_id, instance_id, ErrorCode.none))
        return ErrorCode.none, results

    # --- Timers ------------------------------------------------------------------------------

    async def run(self) -> None:
        """Expire sessions and finish rebalances whose time is up; runs until cancelled."""
        while True:
            await anyio.sleep(TICK)
            self.tick(anyio.current_time())

    def tick(self, now: float) -> None:
        for group in list(self.groups.values()):
            for member_id, deadline in list(group.pending_members.items()):
                if now > deadline:
                    del group.pending_members[member_id]
                    self._maybe_complete_join(group)
            for member in list(group.members.values()):
                if member.expired(now):
                    log.info(
                        "group %s: member %s's session expired", group.group_id, member.member_id
                    )
                    self._member_left(group, member, f"member {member.member_id} expired")
            if group.state != PREPARING:
                continue
            if now >= group.rebalance_deadline:
                self._maybe_complete_join(group, deadline_passed=True)

    # --- Administration ----------------------------------------------------------------------

    def delete_group(self, group_id: str) -> ErrorCode:
        group = self.groups.get(group_id)
        if group is None:
            return ErrorCode.group_id_not_found
        if group.state != EMPTY:
            return ErrorCode.non_empty_group
        group.state = DEAD
        del self.groups[group_id]
        return ErrorCode.none


def parse_subscription_topics(metadata: bytes) -> set[str] | None:
    """The topics of a ConsumerProtocolSubscription (any version: each starts with an int16
    version and an array of topic names, in the non-flexible encoding), or None if malformed."""
    try:
        pos = 2
        (count,) = struct.unpack_from(">i", metadata, pos)
        pos += 4
        topics = set()
        for _ in range(max(count, 0)):
            (length,) = struct.unpack_from(">h", metadata, pos)
            pos += 2
            if length < 0 or pos + length > len(metadata):
                return None
            topics.add(metadata[pos : pos + length].decode())
            pos += length
        return topics
    except (struct.error, UnicodeDecodeError):
        return None
