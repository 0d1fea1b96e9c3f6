"""ConsumerGroupCoordinator: the KIP-848 consumer group protocol (ConsumerGroupHeartbeat), as
Apache Kafka's GroupMetadataManager runs it for groups of type "consumer".

The server assigns. A member sends heartbeats carrying what changed since the last one (its
subscription, its server assignor, the partitions it owns); the coordinator answers with the
member's epoch and, when it changed, the partitions the member may own now. Three epochs:

    group epoch         bumped whenever the group's inputs change: a member joins, leaves or is
                        fenced, a subscription or server assignor changes, a subscribed topic
                        appears or changes its partition count.
    assignment epoch    the group epoch the target assignment was computed for; a heartbeat of
                        any member recomputes the target when the group epoch is ahead.
    member epoch        the target assignment epoch a member has reconciled to.

Group states (Kafka's ConsumerGroupState names; computed, never stored):

    Empty        no members
    Assigning    group epoch > assignment epoch: the target must be recomputed
    Reconciling  some member has not reached the target assignment (epoch or partitions)
    Stable       every member owns exactly its target, at the assignment epoch

Member states and transitions (Kafka's CurrentAssignmentBuilder), run on each heartbeat of a
member not yet reconciled to the target:

    stable --new target--> computes: kept = assigned ∩ target, revoke = assigned - kept,
                           wanted = target - kept - (partitions another member still owns)
        revoke not empty and still owned by the client -> unrevoked_partitions (epoch kept,
                           assigned = kept: the client must give up the rest first)
        else -> stable at the target epoch with kept + wanted, or unreleased_partitions when
                           part of the target is still held by another member
    unrevoked_partitions --the client no longer reports the revoked partitions--> recompute at
                           epoch + 1 (as Kafka) towards the latest target
    unreleased_partitions --heartbeat--> recompute: partitions released meanwhile are given

So a partition never has two owners: it is handed to its new member only after its previous
owner has heartbeated without it.

Leaving: member epoch -1 removes the member (its partitions are free at once); -2, for static
members (instance id), keeps the member and its partitions until it rejoins with epoch 0 under
the same instance id or its session expires. Fencing: a heartbeat with an epoch the coordinator
does not expect is FENCED_MEMBER_EPOCH (the member gives up its partitions and rejoins with
epoch 0), except the previous epoch with a subset of the member's partitions (the answer that
bumped it may have been lost). Epoch 0 from a known member is a rejoin and is accepted
(KAFKA-19233).

Timers, checked by ``tick`` from ``run()`` every TICK seconds: the session timeout
(group.consumer.session.timeout.ms; a member that does not heartbeat in time is fenced) and the
rebalance timeout (the member's; a member that does not revoke in time is fenced).

Server assignors: "uniform" (the default, Kafka's first configured) and "range". kpy's uniform
assignor is sticky and balanced (member counts differ by at most one among members subscribed
to the same topics) but is not Kafka's exact algorithm, so the partitions chosen can differ
from Kafka's for the same group; range is Kafka's (consecutive ranges, members sorted by
instance id then member id). Rack-aware assignment is not done.

Differs from Kafka, and why:
- A heartbeat with an epoch above 0 for a group kpy does not know answers UNKNOWN_MEMBER_ID,
  where Kafka answers GROUP_ID_NOT_FOUND: kpy forgets groups across a restart (Kafka replays
  them from __consumer_offsets), and librdkafka treats GROUP_ID_NOT_FOUND as fatal but rejoins
  on UNKNOWN_MEMBER_ID.
- Topic regexes (v1) are Python ``re`` full matches, resolved on every heartbeat (Kafka: RE2J,
  resolved asynchronously); internal topics never match. With ACLs, what they resolve to is
  limited to the topics the member whose heartbeat resolves them may DESCRIBE (``describable``;
  Kafka: the member whose heartbeat triggered the refresh).
- Subscribed topics' metadata is read on every heartbeat (Kafka reacts to metadata images).
- No persistence: nothing is written to __consumer_offsets for these groups.
- No online upgrade from or downgrade to classic groups: a group id a classic group holds with
  members is GROUP_ID_NOT_FOUND, as Kafka answers when it cannot convert; an empty classic group
  is deleted and replaced, as Kafka does.

Everything here runs on the event loop thread.
"""

from __future__ import annotations

import base64
import dataclasses
import logging
import math
import re
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

import anyio
from kio.schema.errors import ErrorCode

log = logging.getLogger("kpy.consumer_groups")

EMPTY, ASSIGNING, RECONCILING, STABLE, DEAD = "Empty", "Assigning", "Reconciling", "Stable", "Dead"
# Member states (Kafka's MemberState)
MEMBER_STABLE = "stable"
UNREVOKED_PARTITIONS = "unrevoked_partitions"
UNRELEASED_PARTITIONS = "unreleased_partitions"

LEAVE_GROUP_MEMBER_EPOCH = -1
LEAVE_GROUP_STATIC_MEMBER_EPOCH = -2
UNIFORM, RANGE = "uniform", "range"
ASSIGNORS = (UNIFORM, RANGE)  # group.consumer.assignors: the first is the default
INTERNAL_TOPICS = frozenset({"__consumer_offsets", "__transaction_state", "__share_group_state"})
TICK = 0.1

# topic id -> partitions
Assignment = dict[uuid.UUID, frozenset[int]]


class ClassicGroups(Protocol):
    """What this coordinator asks of the classic one (kpy.coordinator.group), which shares the
    group id namespace."""

    def group_state(self, group_id: str) -> str | None: ...

    def delete_group(self, group_id: str) -> ErrorCode: ...


@dataclass
class HeartbeatResult:
    error: ErrorCode
    message: str | None = None
    member_id: str | None = None
    member_epoch: int = 0
    heartbeat_interval_ms: int = 0
    # The partitions the member may own, (topic id, sorted partitions); None: unchanged.
    assignment: list[tuple[uuid.UUID, list[int]]] | None = None


@dataclass
class ConsumerMember:
    member_id: str
    instance_id: str | None = None
    rack_id: str | None = None
    client_id: str = ""
    client_host: str = ""
    rebalance_timeout_ms: int = 0
    subscribed_topic_names: tuple[str, ...] = ()
    subscribed_topic_regex: str | None = None
    server_assignor: str | None = None
    member_epoch: int = 0
    previous_member_epoch: int = 0
    state: str = MEMBER_STABLE
    assigned: Assignment = field(default_factory=dict)
    pending_revocation: Assignment = field(default_factory=dict)
    session_deadline: float = 0.0
    rebalance_deadline: float | None = None  # while in unrevoked_partitions

    def is_reconciled_to(self, epoch: int) -> bool:
        return self.state == MEMBER_STABLE and self.member_epoch == epoch

    def set_epoch(self, epoch: int) -> None:
        if epoch != self.member_epoch:
            self.previous_member_epoch = self.member_epoch
            self.member_epoch = epoch


@dataclass
class ConsumerGroup:
    group_id: str
    group_epoch: int = 0
    assignment_epoch: int = 0
    members: dict[str, ConsumerMember] = field(default_factory=dict)
    static_members: dict[str, str] = field(default_factory=dict)  # instance id -> member id
    target: dict[str, Assignment] = field(default_factory=dict)  # member id -> target
    # subscribed topic name -> (topic id, partition count), for the topics that exist
    subscription_metadata: dict[str, tuple[uuid.UUID, int]] = field(default_factory=dict)

    @property
    def state(self) -> str:
        if not self.members:
            return EMPTY
        if self.group_epoch > self.assignment_epoch:
            return ASSIGNING
        if any(not m.is_reconciled_to(self.assignment_epoch) for m in self.members.values()):
            return RECONCILING
        return STABLE

    def preferred_assignor(self) -> str:
        """The server assignor most members ask for (Kafka's computePreferredServerAssignor),
        the default when none does."""
        votes: dict[str, int] = {}
        for m in self.members.values():
            if m.server_assignor is not None:
                votes[m.server_assignor] = votes.get(m.server_assignor, 0) + 1
        if not votes:
            return ASSIGNORS[0]
        return max(sorted(votes), key=lambda name: votes[name])

    def owner_of(self, topic_id: uuid.UUID, partition: int) -> str | None:
        """The member that holds a partition (assigned or not yet revoked), if any: Kafka's
        currentPartitionEpoch != -1."""
        for m in self.members.values():
            if partition in m.assigned.get(topic_id, ()) or partition in m.pending_revocation.get(
                topic_id, ()
            ):
                return m.member_id
        return None


class _RequestError(Exception):
    def __init__(self, error: ErrorCode, message: str | None = None) -> None:
        super().__init__(message)
        self.error = error
        self.message = message


class ConsumerGroupCoordinator:
    def __init__(
        self,
        *,
        partitions_of: Callable[[str], int | None],
        topic_id_of: Callable[[str], uuid.UUID | None],
        topic_name_of: Callable[[uuid.UUID], str | None],
        topic_names: Callable[[], Iterable[str]] | None = None,
        classic: ClassicGroups | None = None,
        heartbeat_interval_ms: int = 5000,
        session_timeout_ms: int = 45000,
        max_group_size: int = 2**31 - 1,
    ) -> None:
        self.groups: dict[str, ConsumerGroup] = {}
        self.partitions_of = partitions_of
        self.topic_id_of = topic_id_of
        self.topic_name_of = topic_name_of
        self.topic_names = topic_names
        self.classic = classic
        self.heartbeat_interval_ms = heartbeat_interval_ms
        self.session_timeout_ms = session_timeout_ms
        self.max_group_size = max_group_size
        # group id -> which topics of a regex's matches the last heartbeat's member may see
        self._describable: dict[str, Callable[[list[str]], set[str]]] = {}

    # --- queries -----------------------------------------------------------------------------

    def group_state(self, group_id: str) -> str | None:
        group = self.groups.get(group_id)
        return group.state if group is not None else None

    def is_empty(self, group_id: str) -> bool:
        group = self.groups.get(group_id)
        return group is None or not group.members

    def validate_offset_commit(
        self,
        group_id: str,
        member_id: str,
        member_epoch: int,
        group_instance_id: str | None = None,
        *,
        api_version: int = 9,
    ) -> ErrorCode:
        """Whether a commit to a consumer group may be stored (Kafka's
        ConsumerGroup.validateOffsetCommit). A negative epoch (the admin client, a consumer
        assigning partitions itself) may commit while the group has no members."""
        group = self.groups.get(group_id)
        if group is None:
            return ErrorCode.none if member_epoch < 0 else ErrorCode.group_id_not_found
        if member_epoch < 0 and not group.members:
            return ErrorCode.none
        member = group.members.get(member_id)
        if member is None:
            return ErrorCode.unknown_member_id
        if api_version < 9:
            # Members of the consumer protocol commit with OffsetCommit v9 or later.
            return ErrorCode.unsupported_version
        if member_epoch != member.member_epoch:
            return ErrorCode.stale_member_epoch
        return ErrorCode.none

    def validate_offset_fetch(
        self, group_id: str, member_id: str | None, member_epoch: int
    ) -> ErrorCode:
        """Kafka's ConsumerGroup.validateOffsetFetch (OffsetFetch v9 carries member id and
        epoch; without them the fetch is accepted)."""
        group = self.groups.get(group_id)
        if group is None or (member_id is None and member_epoch < 0):
            return ErrorCode.none
        member = group.members.get(member_id or "")
        if member is None:
            return ErrorCode.unknown_member_id
        if member_epoch != member.member_epoch:
            return ErrorCode.stale_member_epoch
        return ErrorCode.none

    def describe(self, group_id: str) -> ConsumerGroup | None:
        """The group for ConsumerGroupDescribe (members with their current and target
        assignments); None when there is no consumer group of that id."""
        return self.groups.get(group_id)

    def assignor_name(self, group: ConsumerGroup) -> str:
        return group.preferred_assignor()

    def target_of(self, group: ConsumerGroup, member_id: str) -> Assignment:
        return group.target.get(member_id, {})

    def delete_group(self, group_id: str) -> ErrorCode:
        group = self.groups.get(group_id)
        if group is None:
            return ErrorCode.group_id_not_found
        if group.members:
            return ErrorCode.non_empty_group
        del self.groups[group_id]
        self._describable.pop(group_id, None)
        return ErrorCode.none

    # --- ConsumerGroupHeartbeat --------------------------------------------------------------

    def heartbeat(
        self,
        *,
        group_id: str,
        member_id: str,
        member_epoch: int,
        instance_id: str | None = None,
        rack_id: str | None = None,
        rebalance_timeout_ms: int = -1,
        subscribed_topic_names: Iterable[str] | None = None,
        subscribed_topic_regex: str | None = None,
        server_assignor: str | None = None,
        owned: Iterable[tuple[uuid.UUID, Iterable[int]]] | None = None,
        client_id: str = "",
        client_host: str = "",
        api_version: int = 1,
        now: float | None = None,
        describable: Callable[[list[str]], set[str]] | None = None,
    ) -> HeartbeatResult:
        """``describable``: of the topics a regex matches, those the member may DESCRIBE
        (kpy.acl; None: all)."""
        names = tuple(subscribed_topic_names) if subscribed_topic_names is not None else None
        if describable is not None:
            self._describable[group_id] = describable
        else:
            self._describable.pop(group_id, None)
        owned_list = [(tid, frozenset(ps)) for tid, ps in owned] if owned is not None else None
        try:
            self._validate_request(
                group_id,
                member_id,
                member_epoch,
                instance_id,
                rack_id,
                rebalance_timeout_ms,
                names,
                subscribed_topic_regex,
                server_assignor,
                owned_list,
                api_version,
            )
            if member_epoch in (LEAVE_GROUP_MEMBER_EPOCH, LEAVE_GROUP_STATIC_MEMBER_EPOCH):
                return self._leave(group_id, member_id, member_epoch, instance_id)
            when = anyio.current_time() if now is None else now
            return self._heartbeat(
                group_id,
                member_id,
                member_epoch,
                instance_id,
                rack_id,
                rebalance_timeout_ms,
                names,
                subscribed_topic_regex,
                server_assignor,
                owned_list,
                client_id,
                client_host,
                when,
            )
        except _RequestError as e:
            return HeartbeatResult(e.error, e.message)

    def _validate_request(
        self,
        group_id: str,
        member_id: str,
        member_epoch: int,
        instance_id: str | None,
        rack_id: str | None,
        rebalance_timeout_ms: int,
        names: tuple[str, ...] | None,
        regex: str | None,
        server_assignor: str | None,
        owned: list[tuple[uuid.UUID, frozenset[int]]] | None,
        api_version: int,
    ) -> None:
        """Kafka's throwIfConsumerGroupHeartbeatRequestIsInvalid."""

        def invalid(message: str) -> _RequestError:
            return _RequestError(ErrorCode.invalid_request, message)

        # From v1 the client makes up its member id (KIP-1082); in v0 the coordinator does
        # when a joining member sends none.
        if (
            api_version >= 1 or member_epoch > 0 or member_epoch == LEAVE_GROUP_MEMBER_EPOCH
        ) and not member_id:
            raise invalid("MemberId can't be empty.")
        if not group_id:
            raise invalid("GroupId can't be empty.")
        if instance_id == "":
            raise invalid("InstanceId can't be empty.")
        if rack_id == "":
            raise invalid("RackId can't be empty.")
        if member_epoch == 0:
            if rebalance_timeout_ms == -1:
                raise invalid("RebalanceTimeoutMs must be provided in first request.")
            if owned is None or owned:
                raise invalid("TopicPartitions must be empty when (re-)joining.")
            if not names and not regex:
                raise invalid(
                    "SubscribedTopicNames or SubscribedTopicRegex must be set in first request."
                )
        elif member_epoch == LEAVE_GROUP_STATIC_MEMBER_EPOCH:
            if not member_id:
                raise invalid("MemberId can't be empty.")
            if instance_id is None:
                raise invalid("InstanceId can't be null.")
        elif member_epoch < LEAVE_GROUP_STATIC_MEMBER_EPOCH:
            raise invalid("MemberEpoch is invalid.")
        if server_assignor is not None and server_assignor not in ASSIGNORS:
            raise _RequestError(
                ErrorCode.unsupported_assignor,
                f"ServerAssignor {server_assignor} is not supported. Supported assignors: "
                f"{', '.join(ASSIGNORS)}.",
            )
        if regex:
            try:
                re.compile(regex)
            except re.error as e:
                raise _RequestError(
                    ErrorCode.invalid_regular_expression,
                    f"SubscribedTopicRegex `{regex}` is not a valid regular expression: {e}.",
                ) from None

    def _get_or_create_group(self, group_id: str, create: bool) -> ConsumerGroup:
        group = self.groups.get(group_id)
        if group is not None:
            return group
        if not create:
            # See the module docstring: Kafka answers GROUP_ID_NOT_FOUND.
            raise _RequestError(
                ErrorCode.unknown_member_id, f"Consumer group {group_id} is not known."
            )
        if self.classic is not None:
            state = self.classic.group_state(group_id)
            # An empty classic group gives way; one with members keeps the id.
            if state is not None and (
                state != EMPTY or self.classic.delete_group(group_id) is not ErrorCode.none
            ):
                raise _RequestError(
                    ErrorCode.group_id_not_found, f"Group {group_id} is not a consumer group."
                )
        group = self.groups[group_id] = ConsumerGroup(group_id)
        return group

    def _heartbeat(
        self,
        group_id: str,
        member_id: str,
        member_epoch: int,
        instance_id: str | None,
        rack_id: str | None,
        rebalance_timeout_ms: int,
        names: tuple[str, ...] | None,
        regex: str | None,
        server_assignor: str | None,
        owned: list[tuple[uuid.UUID, frozenset[int]]] | None,
        client_id: str,
        client_host: str,
        now: float,
    ) -> HeartbeatResult:
        joining = member_epoch == 0
        group = self._get_or_create_group(group_id, joining)
        if len(group.members) >= self.max_group_size and (
            not member_id or member_id not in group.members
        ):
            raise _RequestError(
                ErrorCode.group_max_size_reached,
                f"The consumer group has reached its maximum capacity of "
                f"{self.max_group_size} members.",
            )
        if not member_id:
            member_id = _new_member_id()

        # The member as it is now (a fresh one when joining), and the one this heartbeat makes.
        if instance_id is None:
            old = self._dynamic_member(group, member_id, member_epoch, owned, joining)
        else:
            old = self._static_member(group, member_id, member_epoch, instance_id, owned, joining)
        new = _copy_member(old)
        if rack_id is not None:
            new.rack_id = rack_id
        if rebalance_timeout_ms != -1:
            new.rebalance_timeout_ms = rebalance_timeout_ms
        if server_assignor is not None:
            new.server_assignor = server_assignor
        if names is not None:
            new.subscribed_topic_names = tuple(sorted(set(names)))
        if regex is not None:
            new.subscribed_topic_regex = regex or None
        new.client_id, new.client_host = client_id, client_host

        bump = (
            member_id not in group.members
            or new.subscribed_topic_names != old.subscribed_topic_names
            or new.subscribed_topic_regex != old.subscribed_topic_regex
            or new.server_assignor != old.server_assignor
        )
        self._put_member(group, new, replacing=old)
        metadata = self._subscription_metadata(group)
        if metadata != group.subscription_metadata:
            group.subscription_metadata = metadata
            bump = True
        if bump:
            group.group_epoch += 1
            log.info("group %s: epoch %d", group_id, group.group_epoch)

        if group.group_epoch > group.assignment_epoch:
            self._update_target(group)

        self._reconcile(group, new, owned, now)
        new.session_deadline = now + self.session_timeout_ms / 1000

        # The assignment goes back on a full request (a join, or a client resending everything
        # after an error) and whenever it changed.
        full = joining or (rebalance_timeout_ms != -1 and names is not None and owned is not None)
        assignment = None
        if full or new.assigned != old.assigned:
            assignment = _as_list(new.assigned)
        return HeartbeatResult(
            ErrorCode.none,
            None,
            new.member_id,
            new.member_epoch,
            self.heartbeat_interval_ms,
            assignment,
        )

    def _dynamic_member(
        self,
        group: ConsumerGroup,
        member_id: str,
        member_epoch: int,
        owned: list[tuple[uuid.UUID, frozenset[int]]] | None,
        joining: bool,
    ) -> ConsumerMember:
        member = group.members.get(member_id)
        if member is None:
            if not joining:
                raise _RequestError(
                    ErrorCode.unknown_member_id,
                    f"Member {member_id} is not a member of group {group.group_id}.",
                )
            log.info("group %s: member %s joins", group.group_id, member_id)
            return ConsumerMember(member_id)
        _check_epoch(member, member_epoch, owned)
        return member

    def _static_member(
        self,
        group: ConsumerGroup,
        member_id: str,
        member_epoch: int,
        instance_id: str,
        owned: list[tuple[uuid.UUID, frozenset[int]]] | None,
        joining: bool,
    ) -> ConsumerMember:
        existing_id = group.static_members.get(instance_id)
        existing = group.members.get(existing_id) if existing_id is not None else None
        if joining:
            if existing is None:
                log.info(
                    "group %s: static member %s (%s) joins", group.group_id, member_id, instance_id
                )
                return ConsumerMember(member_id, instance_id)
            if existing.member_id == member_id:
                return existing  # a rejoin of the same member (KAFKA-19233)
            if existing.member_epoch != LEAVE_GROUP_STATIC_MEMBER_EPOCH:
                raise _RequestError(
                    ErrorCode.unreleased_instance_id,
                    f"Static member {member_id} with instance id {instance_id} cannot join the "
                    f"group because the instance id is owned by {existing.member_id} member.",
                )
            # The instance comes back under a new member id: it takes over the old member's
            # partitions and target.
            replacement = _copy_member(existing)
            replacement.member_id = member_id
            replacement.member_epoch = replacement.previous_member_epoch = 0
            replacement.state = MEMBER_STABLE
            self._remove_member(group, existing)
            if existing.member_id in group.target:
                group.target[member_id] = group.target.pop(existing.member_id)
            log.info(
                "group %s: static member %s replaces %s (%s)",
                group.group_id,
                member_id,
                existing.member_id,
                instance_id,
            )
            return replacement
        if existing is None:
            raise _RequestError(
                ErrorCode.unknown_member_id, f"Instance id {instance_id} is unknown."
            )
        if existing.member_id != member_id:
            raise _RequestError(
                ErrorCode.fenced_instance_id,
                f"Static member {member_id} with instance id {instance_id} was fenced by member "
                f"{existing.member_id}.",
            )
        _check_epoch(existing, member_epoch, owned)
        return existing

    def _put_member(
        self, group: ConsumerGroup, new: ConsumerMember, replacing: ConsumerMember
    ) -> None:
        if replacing.member_id != new.member_id:
            group.members.pop(replacing.member_id, None)
        group.members[new.member_id] = new
        if new.instance_id is not None:
            group.static_members[new.instance_id] = new.member_id

    def _remove_member(self, group: ConsumerGroup, member: ConsumerMember) -> None:
        group.members.pop(member.member_id, None)
        group.target.pop(member.member_id, None)
        if member.instance_id is not None and group.static_members.get(member.instance_id) == (
            member.member_id
        ):
            del group.static_members[member.instance_id]

    def _subscription_metadata(self, group: ConsumerGroup) -> dict[str, tuple[uuid.UUID, int]]:
        wanted: set[str] = set()
        regexes: set[str] = set()
        for m in group.members.values():
            wanted.update(m.subscribed_topic_names)
            if m.subscribed_topic_regex:
                regexes.add(m.subscribed_topic_regex)
        if regexes and self.topic_names is not None:
            matched = _regex_matches(regexes, self.topic_names())
            describable = self._describable.get(group.group_id)
            wanted.update(matched if describable is None else describable(matched))
        metadata: dict[str, tuple[uuid.UUID, int]] = {}
        for name in sorted(wanted):
            partitions = self.partitions_of(name)
            topic_id = self.topic_id_of(name)
            if partitions is not None and partitions > 0 and topic_id is not None:
                metadata[name] = (topic_id, partitions)
        return metadata

    def _member_topics(self, group: ConsumerGroup, member: ConsumerMember) -> set[uuid.UUID]:
        names = set(member.subscribed_topic_names)
        if member.subscribed_topic_regex:
            names |= set(
                _regex_matches({member.subscribed_topic_regex}, group.subscription_metadata)
            )
        return {
            group.subscription_metadata[n][0] for n in names if n in group.subscription_metadata
        }

    def _update_target(self, group: ConsumerGroup) -> None:
        """Compute the target assignment for the group epoch (Kafka's updateTargetAssignment)."""
        topics = {tid: count for tid, count in group.subscription_metadata.values()}
        members = sorted(group.members.values(), key=_member_order)
        subscriptions = {m.member_id: self._member_topics(group, m) for m in members}
        assignor = group.preferred_assignor()
        if assignor == RANGE:
            target = _assign_range(members, subscriptions, topics)
        else:
            target = _assign_uniform(members, subscriptions, topics, group.target)
        group.target = target
        group.assignment_epoch = group.group_epoch
        log.info(
            "group %s: target assignment for epoch %d with the %s assignor",
            group.group_id,
            group.group_epoch,
            assignor,
        )

    def _reconcile(
        self,
        group: ConsumerGroup,
        member: ConsumerMember,
        owned: list[tuple[uuid.UUID, frozenset[int]]] | None,
        now: float,
    ) -> None:
        """Kafka's CurrentAssignmentBuilder: move the member towards its target, revoking
        before assigning."""
        epoch = group.assignment_epoch
        if member.is_reconciled_to(epoch):
            return
        was = (member.state, member.member_epoch)
        target = group.target.get(member.member_id, {})
        if member.state == MEMBER_STABLE:
            self._next_assignment(group, member, member.member_epoch, target, owned)
        elif member.state == UNREVOKED_PARTITIONS:
            if _owns_any(owned, member.pending_revocation):
                return
            self._next_assignment(group, member, member.member_epoch + 1, target, owned)
        else:  # unreleased partitions
            self._next_assignment(group, member, member.member_epoch, target, owned)
        if member.state == UNREVOKED_PARTITIONS:
            if member.rebalance_deadline is None or was != (member.state, member.member_epoch):
                member.rebalance_deadline = now + member.rebalance_timeout_ms / 1000
        else:
            member.rebalance_deadline = None

    def _next_assignment(
        self,
        group: ConsumerGroup,
        member: ConsumerMember,
        epoch: int,
        target: Assignment,
        owned: list[tuple[uuid.UUID, frozenset[int]]] | None,
    ) -> None:
        target_epoch = group.assignment_epoch
        assigned: Assignment = {}
        revoking: Assignment = {}
        adding: Assignment = {}
        unreleased = False
        for tid in set(target) | set(member.assigned):
            want = target.get(tid, frozenset())
            have = member.assigned.get(tid, frozenset())
            kept = have & want
            revoke = have - kept
            add = set(want - kept)
            for p in sorted(add):
                holder = group.owner_of(tid, p)
                if holder is not None and holder != member.member_id:
                    add.discard(p)
                    unreleased = True
            if kept:
                assigned[tid] = kept
            if revoke:
                revoking[tid] = revoke
            if add:
                adding[tid] = frozenset(add)
        previous_epoch = member.member_epoch
        if revoking and _owns_any(owned, revoking):
            member.state = UNREVOKED_PARTITIONS
            member.set_epoch(epoch)
            member.assigned = assigned
            member.pending_revocation = revoking
            return
        for tid, ps in adding.items():
            assigned[tid] = assigned.get(tid, frozenset()) | ps
        member.state = UNRELEASED_PARTITIONS if unreleased else MEMBER_STABLE
        member.set_epoch(target_epoch)
        member.assigned = assigned
        member.pending_revocation = {}
        if member.member_epoch != previous_epoch:
            log.debug(
                "group %s: member %s at epoch %d (%s)",
                group.group_id,
                member.member_id,
                member.member_epoch,
                member.state,
            )

    def _leave(
        self, group_id: str, member_id: str, member_epoch: int, instance_id: str | None
    ) -> HeartbeatResult:
        group = self.groups.get(group_id)
        if group is None:
            raise _RequestError(ErrorCode.group_id_not_found, f"Group {group_id} not found.")
        if instance_id is None:
            member = group.members.get(member_id)
            if member is None:
                raise _RequestError(
                    ErrorCode.unknown_member_id,
                    f"Member {member_id} is not a member of group {group_id}.",
                )
        else:
            static_id = group.static_members.get(instance_id)
            member = group.members.get(static_id) if static_id is not None else None
            if member is None:
                raise _RequestError(
                    ErrorCode.unknown_member_id, f"Instance id {instance_id} is unknown."
                )
            if member.member_id != member_id:
                raise _RequestError(
                    ErrorCode.fenced_instance_id,
                    f"Static member {member_id} with instance id {instance_id} was fenced by "
                    f"member {member.member_id}.",
                )
            if member_epoch == LEAVE_GROUP_STATIC_MEMBER_EPOCH:
                # Away for a while: it keeps its partitions until it is back or its session
                # expires.
                log.info("group %s: static member %s left for now", group_id, member_id)
                member.member_epoch = LEAVE_GROUP_STATIC_MEMBER_EPOCH
                member.pending_revocation = {}
                member.rebalance_deadline = None
                return HeartbeatResult(ErrorCode.none, None, member_id, member_epoch, 0)
        log.info("group %s: member %s left", group_id, member_id)
        self._fence(group, member)
        return HeartbeatResult(ErrorCode.none, None, member_id, member_epoch, 0)

    def _fence(self, group: ConsumerGroup, member: ConsumerMember) -> None:
        """Remove a member and bump the group epoch (Kafka's consumerGroupFenceMember)."""
        self._remove_member(group, member)
        group.subscription_metadata = self._subscription_metadata(group)
        group.group_epoch += 1

    # --- Timers ------------------------------------------------------------------------------

    async def run(self) -> None:
        """Expire sessions and rebalance timeouts; runs until cancelled."""
        while True:
            await anyio.sleep(TICK)
            self.tick(anyio.current_time())

    def tick(self, now: float) -> None:
        for group in list(self.groups.values()):
            for member in list(group.members.values()):
                if now > member.session_deadline:
                    log.info(
                        "group %s: member %s's session expired", group.group_id, member.member_id
                    )
                    self._fence(group, member)
                elif member.rebalance_deadline is not None and now > member.rebalance_deadline:
                    log.info(
                        "group %s: member %s did not revoke its partitions within %d ms",
                        group.group_id,
                        member.member_id,
                        member.rebalance_timeout_ms,
                    )
                    self._fence(group, member)


# --- helpers -----------------------------------------------------------------------------------


def _new_member_id() -> str:
    """A Kafka Uuid as Uuid.toString() writes it: 22 characters of URL-safe base64."""
    return base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")


def _copy_member(member: ConsumerMember) -> ConsumerMember:
    copy = dataclasses.replace(member)
    copy.assigned = dict(member.assigned)
    copy.pending_revocation = dict(member.pending_revocation)
    return copy


def _check_epoch(
    member: ConsumerMember,
    received: int,
    owned: list[tuple[uuid.UUID, frozenset[int]]] | None,
) -> None:
    """Kafka's throwIfConsumerGroupMemberEpochIsInvalid, with epoch 0 accepted as a rejoin."""
    if received == 0:
        return
    if received > member.member_epoch:
        raise _RequestError(
            ErrorCode.fenced_member_epoch,
            f"The consumer group member has a greater member epoch ({received}) than the one "
            f"known by the group coordinator ({member.member_epoch}). The member must abandon "
            "all its partitions and rejoin.",
        )
    if received < member.member_epoch and (
        received != member.previous_member_epoch or not _is_subset(owned, member.assigned)
    ):
        raise _RequestError(
            ErrorCode.fenced_member_epoch,
            f"The consumer group member has a smaller member epoch ({received}) than the one "
            f"known by the group coordinator ({member.member_epoch}). The member must abandon "
            "all its partitions and rejoin.",
        )


def _is_subset(owned: list[tuple[uuid.UUID, frozenset[int]]] | None, target: Assignment) -> bool:
    if owned is None:
        return False
    return all(ps <= target.get(tid, frozenset()) for tid, ps in owned)


def _owns_any(owned: list[tuple[uuid.UUID, frozenset[int]]] | None, partitions: Assignment) -> bool:
    """Whether the client still reports any of these partitions; not reporting (null) counts as
    still owning them, as in Kafka."""
    if owned is None:
        return True
    return any(ps & partitions.get(tid, frozenset()) for tid, ps in owned)


def _as_list(assignment: Assignment) -> list[tuple[uuid.UUID, list[int]]]:
    return [(tid, sorted(ps)) for tid, ps in sorted(assignment.items(), key=lambda kv: str(kv[0]))]


def _regex_matches(regexes: Iterable[str], names: Iterable[str]) -> list[str]:
    patterns = [re.compile(r) for r in regexes]
    return [n for n in names if n not in INTERNAL_TOPICS and any(p.fullmatch(n) for p in patterns)]


def _member_order(member: ConsumerMember) -> tuple[int, str]:
    """Static members first by instance id, then dynamic ones by member id (Kafka's range
    assignor order)."""
    if member.instance_id is not None:
        return (0, member.instance_id)
    return (1, member.member_id)


def _assign_range(
    members: list[ConsumerMember],
    subscriptions: Mapping[str, set[uuid.UUID]],
    topics: Mapping[uuid.UUID, int],
) -> dict[str, Assignment]:
    """Kafka's RangeAssignor: per topic, consecutive ranges to the subscribed members in order,
    the first (partitions % members) of them getting one more."""
    result: dict[str, dict[uuid.UUID, frozenset[int]]] = {m.member_id: {} for m in members}
    for tid in sorted(topics, key=str):
        subscribed = [m.member_id for m in members if tid in subscriptions[m.member_id]]
        if not subscribed:
            continue
        count = topics[tid]
        quota, extra = divmod(count, len(subscribed))
        start = 0
        for i, member_id in enumerate(subscribed):
            size = quota + (1 if i < extra else 0)
            if size:
                result[member_id][tid] = frozenset(range(start, start + size))
            start += size
    return result


def _assign_uniform(
    members: list[ConsumerMember],
    subscriptions: Mapping[str, set[uuid.UUID]],
    topics: Mapping[uuid.UUID, int],
    previous: Mapping[str, Assignment],
) -> dict[str, Assignment]:
    """A sticky, balanced assignment: each member keeps what it had in the previous target while
    that stays balanced; the rest go to the least loaded subscribed members; then partitions
    move from a member to a subscriber of their topic with at least two fewer, until none can."""
    owner: dict[tuple[uuid.UUID, int], str] = {}
    load: dict[str, int] = {m.member_id: 0 for m in members}
    partitions = [(tid, p) for tid in sorted(topics, key=str) for p in range(topics[tid])]
    subscribers = {
        tid: [m.member_id for m in members if tid in subscriptions[m.member_id]] for tid in topics
    }
    # Each member's fair share, to bound what it keeps from before.
    share: dict[str, float] = {m.member_id: 0.0 for m in members}
    for tid, subs in subscribers.items():
        for member_id in subs:
            share[member_id] += topics[tid] / len(subs)
    for m in members:
        kept = sorted(
            (tid, p)
            for tid, ps in previous.get(m.member_id, {}).items()
            if tid in topics and tid in subscriptions[m.member_id]
            for p in ps
            if p < topics[tid]
        )
        for tp in kept:
            if tp not in owner and load[m.member_id] < math.ceil(share[m.member_id]):
                owner[tp] = m.member_id
                load[m.member_id] += 1
    for tp in partitions:
        if tp in owner:
            continue
        subs = subscribers[tp[0]]
        if not subs:
            continue
        chosen = min(subs, key=lambda mid: load[mid])
        owner[tp] = chosen
        load[chosen] += 1
    # Balance: move partitions from the most loaded holder to a less loaded subscriber.
    moved = True
    while moved:
        moved = False
        for tp in sorted(owner, key=lambda tp: (str(tp[0]), tp[1]), reverse=True):
            holder = owner[tp]
            target = min(subscribers[tp[0]], key=lambda mid: load[mid])
            if load[holder] - load[target] > 1:
                owner[tp] = target
                load[holder] -= 1
                load[target] += 1
                moved = True
    result: dict[str, dict[uuid.UUID, set[int]]] = {m.member_id: {} for m in members}
    for (tid, p), member_id in owner.items():
        result[member_id].setdefault(tid, set()).add(p)
    return {
        mid: {tid: frozenset(ps) for tid, ps in assignment.items()}
        for mid, assignment in result.items()
    }
