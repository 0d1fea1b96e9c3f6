"""Authorization: Kafka's ACLs, decided as its StandardAuthorizer (KRaft) decides them.

Settings, with Kafka's names: ``authorizer.class.name`` (empty, the default: no authorizer, and
everything is allowed, as in Kafka; ``org.apache.kafka.metadata.authorizer.StandardAuthorizer``,
or the older ``kafka.security.authorizer.AclAuthorizer``, turns this one on), ``super.users``
(principals separated by ";", allowed everything) and ``allow.everyone.if.no.acl.found`` (what a
resource that has no ACL answers; default false: denied).

The API the rest of kpy uses. ``ctx`` is the RequestContext: its ``principal`` ("User:alice")
and ``client_host`` (the client's IP) are what ACLs match.

    auth = ctx.broker.authorizer          # always set: NO_AUTHORIZER when none is configured
    auth.enabled                          # False: every check below allows, at once
    auth.authorize(ctx, Op.READ, Res.TOPIC, "orders") -> bool
    auth.authorize_cluster(ctx, Op.ALTER) -> bool          # the CLUSTER resource "kafka-cluster"
    auth.allowed(ctx, Op.READ, Res.TOPIC, names) -> set[str]    # Kafka's filterByAuthorized
    auth.authorize_by_resource_type(ctx, Op.WRITE, Res.TOPIC) -> bool
    auth.authorized_operations(ctx, Res.TOPIC, name) -> int     # the bitfield responses carry
    auth.acls(filter) / await auth.create_acls(bindings) / await auth.delete_acls(filters)

``log_denied=False`` keeps a check out of the authorizer log where Kafka keeps it out (a list
being filtered, not a resource the client asked for).

The rules (StandardAuthorizerData.authorize). A super user may do anything. Otherwise the ACLs
that cover a resource are those of its type whose pattern is its name (LITERAL), the wildcard
"*" (LITERAL), or a prefix of its name (PREFIXED). Of those, an ACL applies when its principal is
the request's or "User:*", its host the client's IP (as Java writes it: IPv6 uncompressed) or
"*", and its operation the one asked, or ALL; an ALLOW of READ, WRITE, DELETE or ALTER also
grants DESCRIBE, and an ALLOW of ALTER_CONFIGS grants DESCRIBE_CONFIGS (a DENY implies nothing).
An applying DENY denies, whatever else applies; then an applying ALLOW allows; then a resource
that has ACLs (for anyone) is denied; a resource without any answers
allow.everyone.if.no.acl.found.

Durability: the ACLs are kept in ``kpy-acls.json`` in the data directory (Kafka keeps them in its
metadata log), replaced atomically (kpy.storage.fs write_atomic) before a change is answered,
and read at start; a file that does not parse stops the start, since running without the ACLs
it holds could grant what they deny. With kpy.storage.in.memory the file is in memory too.

    {"version": 1, "acls": [{"resourceType": "TOPIC", "name": "orders",
      "patternType": "LITERAL", "principal": "User:alice", "host": "*",
      "operation": "READ", "permissionType": "ALLOW"}, ...]}

To change that format: (1) bump ``ACL_FILE_VERSION``; (2) keep reading every older version in
``_load``; (3) write only the new one; (4) test a file of each older version.

Written by hand: no Python library implements Kafka's ACL semantics.
"""

from __future__ import annotations

import functools
import ipaddress
import json
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, TypeVar

import anyio
from kio.schema.errors import ErrorCode

if TYPE_CHECKING:
    from kpy.config import BrokerConfig
    from kpy.storage.fs import FileSystem

log = logging.getLogger("kpy.authorizer")

STANDARD_AUTHORIZER = "org.apache.kafka.metadata.authorizer.StandardAuthorizer"
# Kafka 3.x's ZooKeeper-based authorizer: the same ACL semantics, accepted for its configs.
ACL_AUTHORIZER = "kafka.security.authorizer.AclAuthorizer"
AUTHORIZER_CLASSES = frozenset({STANDARD_AUTHORIZER, ACL_AUTHORIZER})
CLUSTER_NAME = "kafka-cluster"  # the one CLUSTER resource's name
WILDCARD = "*"  # a resource name or host matching any
WILDCARD_PRINCIPAL = "User:*"
ACL_FILE = "kpy-acls.json"
# The default messages of the denial errors (Kafka's Errors), which ApiError carries.
DENIED_MESSAGES = {
    ErrorCode.topic_authorization_failed: "Topic authorization failed.",
    ErrorCode.group_authorization_failed: "Group authorization failed.",
    ErrorCode.cluster_authorization_failed: "Cluster authorization failed.",
    ErrorCode.transactional_id_authorization_failed: "Transactional Id authorization failed.",
}
ACL_FILE_VERSION = 1


class ResourceType(IntEnum):
    """Kafka's ResourceType codes."""

    UNKNOWN = 0
    ANY = 1
    TOPIC = 2
    GROUP = 3
    CLUSTER = 4
    TRANSACTIONAL_ID = 5
    DELEGATION_TOKEN = 6
    USER = 7


class PatternType(IntEnum):
    """Kafka's PatternType codes: LITERAL and PREFIXED for ACLs, ANY and MATCH for filters."""

    UNKNOWN = 0
    ANY = 1
    MATCH = 2
    LITERAL = 3
    PREFIXED = 4


class AclOperation(IntEnum):
    """Kafka's AclOperation codes (also the bit positions of authorized-operations fields)."""

    UNKNOWN = 0
    ANY = 1
    ALL = 2
    READ = 3
    WRITE = 4
    CREATE = 5
    DELETE = 6
    ALTER = 7
    DESCRIBE = 8
    CLUSTER_ACTION = 9
    DESCRIBE_CONFIGS = 10
    ALTER_CONFIGS = 11
    IDEMPOTENT_WRITE = 12
    CREATE_TOKENS = 13
    DESCRIBE_TOKENS = 14
    TWO_PHASE_COMMIT = 15


class AclPermissionType(IntEnum):
    UNKNOWN = 0
    ANY = 1
    DENY = 2
    ALLOW = 3


Res, Op, Perm = ResourceType, AclOperation, AclPermissionType
E = TypeVar("E", bound=IntEnum)


def from_code(enum: type[E], code: int) -> E:
    """Kafka's fromCode: a code the enum lacks is its UNKNOWN (0)."""
    try:
        return enum(code)
    except ValueError:
        return enum(0)


# SecurityUtils.resourceTypeName, for log lines.
RESOURCE_TYPE_NAMES = {
    Res.TOPIC: "Topic",
    Res.GROUP: "Group",
    Res.CLUSTER: "Cluster",
    Res.TRANSACTIONAL_ID: "TransactionalId",
    Res.DELEGATION_TOKEN: "DelegationToken",
    Res.USER: "User",
}

# AclEntry.supportedOperations: what an authorized-operations field may report per type.
SUPPORTED_OPERATIONS: dict[ResourceType, tuple[AclOperation, ...]] = {
    Res.TOPIC: (
        Op.READ,
        Op.WRITE,
        Op.CREATE,
        Op.DESCRIBE,
        Op.DELETE,
        Op.ALTER,
        Op.DESCRIBE_CONFIGS,
        Op.ALTER_CONFIGS,
    ),
    Res.GROUP: (Op.READ, Op.DESCRIBE, Op.DELETE, Op.DESCRIBE_CONFIGS, Op.ALTER_CONFIGS),
    Res.CLUSTER: (
        Op.CREATE,
        Op.CLUSTER_ACTION,
        Op.DESCRIBE_CONFIGS,
        Op.ALTER_CONFIGS,
        Op.IDEMPOTENT_WRITE,
        Op.ALTER,
        Op.DESCRIBE,
    ),
    Res.TRANSACTIONAL_ID: (Op.DESCRIBE, Op.WRITE, Op.TWO_PHASE_COMMIT),
    Res.DELEGATION_TOKEN: (Op.DESCRIBE,),
    Res.USER: (Op.CREATE_TOKENS, Op.DESCRIBE_TOKENS),
}

# An ALLOW of these grants DESCRIBE (DESCRIBE_CONFIGS) too.
_IMPLIES_DESCRIBE = frozenset({Op.DESCRIBE, Op.READ, Op.WRITE, Op.DELETE, Op.ALTER})
_IMPLIES_DESCRIBE_CONFIGS = frozenset({Op.DESCRIBE_CONFIGS, Op.ALTER_CONFIGS})


def bitfield(operations: Iterable[AclOperation]) -> int:
    """Kafka's Utils.to32BitField: bit ``code`` set for each operation."""
    value = 0
    for op in operations:
        value |= 1 << op
    return value


class Requester(Protocol):
    """Who asks: what RequestContext gives the authorizer."""

    @property
    def principal(self) -> str: ...

    @property
    def client_host(self) -> str: ...


@dataclass(frozen=True, slots=True)
class AclBinding:
    """One ACL: a resource pattern and an access control entry (Kafka's AclBinding)."""

    resource_type: ResourceType
    name: str
    pattern_type: PatternType
    principal: str
    host: str
    operation: AclOperation
    permission: AclPermissionType

    def to_json(self) -> dict[str, str]:
        return {
            "resourceType": self.resource_type.name,
            "name": self.name,
            "patternType": self.pattern_type.name,
            "principal": self.principal,
            "host": self.host,
            "operation": self.operation.name,
            "permissionType": self.permission.name,
        }

    @classmethod
    def from_json(cls, data: dict[str, str]) -> AclBinding:
        return cls(
            ResourceType[data["resourceType"]],
            str(data["name"]),
            PatternType[data["patternType"]],
            str(data["principal"]),
            str(data["host"]),
            AclOperation[data["operation"]],
            AclPermissionType[data["permissionType"]],
        )

    def __str__(self) -> str:
        return (
            f"(pattern=ResourcePattern(resourceType={self.resource_type.name}, name={self.name}, "
            f"patternType={self.pattern_type.name}), entry=(principal={self.principal}, "
            f"host={self.host}, operation={self.operation.name}, "
            f"permissionType={self.permission.name}))"
        )


@dataclass(frozen=True, slots=True)
class AclBindingFilter:
    """Which ACLs DescribeAcls and DeleteAcls mean (Kafka's AclBindingFilter): None matches any
    name, principal or host; ANY matches any type, operation or permission; pattern type ANY
    matches every pattern with the name given, MATCH every pattern that covers that name."""

    resource_type: ResourceType
    name: str | None
    pattern_type: PatternType
    principal: str | None
    host: str | None
    operation: AclOperation
    permission: AclPermissionType

    def matches(self, acl: AclBinding) -> bool:
        """ResourcePatternFilter.matches and AccessControlEntryFilter.matches."""
        if self.resource_type is not Res.ANY and self.resource_type is not acl.resource_type:
            return False
        pattern = self.pattern_type
        if pattern not in (PatternType.ANY, PatternType.MATCH) and pattern is not acl.pattern_type:
            return False
        if self.name is not None:
            if pattern is PatternType.ANY or pattern is acl.pattern_type:
                if self.name != acl.name:
                    return False
            elif acl.pattern_type is PatternType.LITERAL:  # MATCH
                if self.name != acl.name and acl.name != WILDCARD:
                    return False
            elif not self.name.startswith(acl.name):  # MATCH, a PREFIXED ACL
                return False
        if self.principal is not None and self.principal != acl.principal:
            return False
        if self.host is not None and self.host != acl.host:
            return False
        if self.operation is not Op.ANY and self.operation is not acl.operation:
            return False
        return self.permission is Perm.ANY or self.permission is acl.permission


ANY_ACL = AclBindingFilter(Res.ANY, None, PatternType.ANY, None, None, Op.ANY, Perm.ANY)


def creation_error(acl: AclBinding) -> tuple[ErrorCode, str] | None:
    """Why Kafka refuses to create ``acl`` (AclApis.handleCreateAcls, then the controller's
    AclControlManager.validateNewAcl), or None. Every refusal is INVALID_REQUEST."""
    if acl.resource_type is Res.CLUSTER and acl.name != CLUSTER_NAME:
        return invalid(f"The only valid name for the CLUSTER resource is {CLUSTER_NAME}")
    if not acl.name:
        return invalid("Invalid empty resource name")
    if acl.resource_type in (Res.UNKNOWN, Res.ANY):
        return invalid(f"Invalid resourceType {acl.resource_type.name}")
    if acl.pattern_type not in (PatternType.LITERAL, PatternType.PREFIXED):
        return invalid(f"Invalid patternType {acl.pattern_type.name}")
    if acl.operation in (Op.UNKNOWN, Op.ANY):
        return invalid(f"Invalid operation {acl.operation.name}")
    if acl.permission not in (Perm.DENY, Perm.ALLOW):
        return invalid(f"Invalid permissionType {acl.permission.name}")
    if ":" not in acl.principal:
        return invalid(
            f"Could not parse principal from `{acl.principal}` (no colon is present separating "
            "the principal type from the principal name)"
        )
    return None


def filter_error(acl_filter: AclBindingFilter) -> tuple[ErrorCode, str] | None:
    """Why the controller refuses a DeleteAcls filter (AclControlManager.validateFilter)."""
    if acl_filter.resource_type is Res.UNKNOWN or acl_filter.pattern_type is PatternType.UNKNOWN:
        return invalid("Unknown patternFilter.")
    if acl_filter.operation is Op.UNKNOWN or acl_filter.permission is Perm.UNKNOWN:
        return invalid("Unknown entryFilter.")
    return None


def invalid(message: str) -> tuple[ErrorCode, str]:
    return ErrorCode.invalid_request, message


@functools.lru_cache(maxsize=1024)
def java_host_address(host: str) -> str:
    """The client's IP as Java's InetAddress.getHostAddress writes it, which is what Kafka
    compares an ACL's host with: IPv6 without "::" or leading zeros ("0:0:0:0:0:0:0:1"), an
    IPv4-mapped IPv6 address as the IPv4 one."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        groups = address.exploded.split("%", 1)[0].split(":")
        text = ":".join(f"{int(g, 16):x}" for g in groups)
        return f"{text}%{address.scope_id}" if address.scope_id else text
    return str(address)


def parse_super_users(value: str) -> frozenset[str]:
    """super.users: principals separated by ";" (StandardAuthorizer.getConfiguredSuperUsers);
    ValueError for one without the "type:name" colon, as Kafka refuses it at start."""
    users = set()
    for item in value.split(";"):
        user = item.strip()
        if not user:
            continue
        if ":" not in user:
            raise ValueError(
                "expected a string in format principalType:principalName but got " + user
            )
        users.add(user)
    return frozenset(users)


class Authorizer:
    """No authorizer (authorizer.class.name empty): everything is allowed, as in Kafka."""

    enabled = False

    def authorize(
        self,
        ctx: Requester,
        operation: AclOperation,
        resource_type: ResourceType,
        name: str,
        *,
        log_denied: bool = True,
    ) -> bool:
        return True

    def authorize_cluster(
        self, ctx: Requester, operation: AclOperation, *, log_denied: bool = True
    ) -> bool:
        return self.authorize(ctx, operation, Res.CLUSTER, CLUSTER_NAME, log_denied=log_denied)

    def allowed(
        self,
        ctx: Requester,
        operation: AclOperation,
        resource_type: ResourceType,
        names: Iterable[str],
        *,
        log_denied: bool = True,
    ) -> set[str]:
        """The names in ``names`` the requester may use (Kafka's filterByAuthorized)."""
        return set(names)

    def authorize_by_resource_type(
        self, ctx: Requester, operation: AclOperation, resource_type: ResourceType
    ) -> bool:
        return True

    def authorized_operations(self, ctx: Requester, resource_type: ResourceType, name: str) -> int:
        """The authorized-operations bitfield of a resource (AuthHelper.authorizedOperations):
        without an authorizer every operation the type supports."""
        return bitfield(SUPPORTED_OPERATIONS[resource_type])

    def acls(self, acl_filter: AclBindingFilter = ANY_ACL) -> list[AclBinding]:
        return []

    async def create_acls(
        self, bindings: Sequence[AclBinding]
    ) -> list[tuple[ErrorCode, str | None]]:
        raise RuntimeError("no authorizer: CreateAcls answers SECURITY_DISABLED")

    async def delete_acls(
        self, filters: Sequence[AclBindingFilter]
    ) -> list[tuple[ErrorCode, str | None, list[AclBinding]]]:
        raise RuntimeError("no authorizer: DeleteAcls answers SECURITY_DISABLED")


NO_AUTHORIZER = Authorizer()


@dataclass(frozen=True, slots=True)
class _Index:
    """One resource type's ACLs by how they cover a name."""

    literal: dict[str, list[AclBinding]]  # the wildcard "*" included
    prefixed: dict[str, list[AclBinding]]


class StandardAuthorizer(Authorizer):
    """Kafka's StandardAuthorizer over the ACLs of ``kpy-acls.json`` (see the module docstring).

    Checks run on the event loop and read the index without awaiting, so a check never sees
    half a change; changes are serialized by a lock and swapped in once the file is written.
    """

    enabled = True

    def __init__(
        self,
        super_users: Iterable[str] = (),
        allow_if_no_acl: bool = False,
        *,
        data_dir: Path | None = None,
        fs: FileSystem | None = None,
    ) -> None:
        self.super_users = frozenset(super_users)
        self.allow_if_no_acl = allow_if_no_acl
        self._path = data_dir / ACL_FILE if data_dir is not None else None
        self._fs = fs
        self._lock = anyio.Lock()
        self._acls: frozenset[AclBinding] = frozenset()
        self._index: dict[ResourceType, _Index] = {}
        if self._path is not None and fs is not None and fs.exists(self._path):
            self._swap(_load(fs.read_text(self._path), self._path))

    @classmethod
    def from_config(
        cls, config: BrokerConfig, data_dir: Path | None = None, fs: FileSystem | None = None
    ) -> Authorizer:
        """The authorizer ``config`` asks for (NO_AUTHORIZER for none); its ACLs from
        ``data_dir`` on ``fs``."""
        if not config.get("authorizer.class.name").strip():
            return NO_AUTHORIZER
        authorizer = cls(
            parse_super_users(config.get("super.users")),
            config.get("allow.everyone.if.no.acl.found").strip().lower() == "true",
            data_dir=data_dir,
            fs=fs,
        )
        log.info(
            "authorizer on: %d ACL(s), super.users=%s, allow.everyone.if.no.acl.found=%s",
            len(authorizer._acls),
            ",".join(sorted(authorizer.super_users)),
            str(authorizer.allow_if_no_acl).lower(),
        )
        return authorizer

    # --- checks -----------------------------------------------------------------------------

    def authorize(
        self,
        ctx: Requester,
        operation: AclOperation,
        resource_type: ResourceType,
        name: str,
        *,
        log_denied: bool = True,
    ) -> bool:
        principal = ctx.principal
        if principal in self.super_users:
            return True
        host = java_host_address(ctx.client_host)
        allowed, rule = self._decide(principal, host, operation, resource_type, name)
        if not allowed and log_denied:
            log.info(
                "Principal = %s is Denied operation = %s from host = %s on resource = "
                "%s:LITERAL:%s based on rule %s",
                principal,
                operation.name,
                host,
                RESOURCE_TYPE_NAMES.get(resource_type, resource_type.name),
                name,
                f"MatchingAcl(acl={rule})" if isinstance(rule, AclBinding) else rule,
            )
        return allowed

    def _decide(
        self,
        principal: str,
        host: str,
        operation: AclOperation,
        resource_type: ResourceType,
        name: str,
    ) -> tuple[bool, AclBinding | str]:
        """(allowed, the rule that decided: an ACL, or a default's name)."""
        index = self._index.get(resource_type)
        if index is None:
            return self.allow_if_no_acl, "DefaultAllow" if self.allow_if_no_acl else "DefaultDeny"
        found_any = False
        allow: AclBinding | None = None
        for acl in _covering(index, name):
            found_any = True
            result = _applies(acl, principal, host, operation)
            if result is Perm.DENY:
                return False, acl
            if result is Perm.ALLOW:
                allow = acl
        if allow is not None:
            return True, allow
        if found_any:
            return False, "DefaultDeny"
        return self.allow_if_no_acl, "DefaultAllow" if self.allow_if_no_acl else "DefaultDeny"

    def allowed(
        self,
        ctx: Requester,
        operation: AclOperation,
        resource_type: ResourceType,
        names: Iterable[str],
        *,
        log_denied: bool = True,
    ) -> set[str]:
        return {
            n
            for n in set(names)
            if self.authorize(ctx, operation, resource_type, n, log_denied=log_denied)
        }

    def authorize_by_resource_type(
        self, ctx: Requester, operation: AclOperation, resource_type: ResourceType
    ) -> bool:
        """Whether the requester may do ``operation`` on some resource of the type (Kafka's
        Authorizer.authorizeByResourceType, which InitProducerId uses: WRITE on any topic).
        A resource named "hardcode" is asked first, so that super users, wildcard ALLOWs and
        the no-ACL default count; then an ALLOW (same operation or ALL: nothing implied) that
        no DENY of the same or a shorter prefix, or of the same literal name, dominates."""
        if self.authorize(ctx, operation, resource_type, "hardcode", log_denied=False):
            return True
        principal = ctx.principal
        host = java_host_address(ctx.client_host)
        deny: dict[PatternType, set[str]] = {
            PatternType.LITERAL: set(),
            PatternType.PREFIXED: set(),
        }
        allow: dict[PatternType, set[str]] = {
            PatternType.LITERAL: set(),
            PatternType.PREFIXED: set(),
        }
        wildcard_allow = False
        for acl in self._acls:
            if acl.resource_type is not resource_type:
                continue
            if acl.host not in (host, WILDCARD):
                continue
            if acl.principal not in (principal, WILDCARD_PRINCIPAL):
                continue
            if acl.operation is not operation and acl.operation is not Op.ALL:
                continue
            if acl.permission is Perm.DENY:
                if acl.pattern_type is PatternType.LITERAL and acl.name == WILDCARD:
                    return False
                deny[acl.pattern_type].add(acl.name)
            elif acl.permission is Perm.ALLOW:
                if acl.pattern_type is PatternType.LITERAL and acl.name == WILDCARD:
                    wildcard_allow = True
                else:
                    allow[acl.pattern_type].add(acl.name)
        if wildcard_allow:
            return True
        for pattern_type, names in allow.items():
            for name in names:
                if pattern_type is PatternType.LITERAL and name in deny[PatternType.LITERAL]:
                    continue
                if not any(name[:i] in deny[PatternType.PREFIXED] for i in range(1, len(name) + 1)):
                    return True
        return False

    def authorized_operations(self, ctx: Requester, resource_type: ResourceType, name: str) -> int:
        return bitfield(
            op
            for op in SUPPORTED_OPERATIONS[resource_type]
            if self.authorize(ctx, op, resource_type, name, log_denied=False)
        )

    # --- the ACLs ---------------------------------------------------------------------------

    def acls(self, acl_filter: AclBindingFilter = ANY_ACL) -> list[AclBinding]:
        return sorted((a for a in self._acls if acl_filter.matches(a)), key=_order)

    async def create_acls(
        self, bindings: Sequence[AclBinding]
    ) -> list[tuple[ErrorCode, str | None]]:
        """Add ACLs (an ACL already there is no error, and not added twice); per binding its
        error, INVALID_REQUEST where Kafka refuses it. Durable before it returns."""
        results: list[tuple[ErrorCode, str | None]] = []
        async with self._lock:
            acls = set(self._acls)
            for acl in bindings:
                error = creation_error(acl)
                if error is not None:
                    results.append(error)
                    continue
                acls.add(acl)
                results.append((ErrorCode.none, None))
            if len(acls) != len(self._acls):
                failed = await self._store(frozenset(acls))
                if failed is not None:
                    results = [failed if e is ErrorCode.none else (e, m) for e, m in results]
        return results

    async def delete_acls(
        self, filters: Sequence[AclBindingFilter]
    ) -> list[tuple[ErrorCode, str | None, list[AclBinding]]]:
        """Remove the ACLs each filter matches; per filter its error and the ACLs it matched.
        Durable before it returns."""
        results: list[tuple[ErrorCode, str | None, list[AclBinding]]] = []
        async with self._lock:
            doomed: set[AclBinding] = set()
            for acl_filter in filters:
                error = filter_error(acl_filter)
                if error is not None:
                    results.append((*error, []))
                    continue
                matched = [a for a in sorted(self._acls, key=_order) if acl_filter.matches(a)]
                doomed.update(matched)
                results.append((ErrorCode.none, None, matched))
            if doomed:
                failed = await self._store(self._acls - doomed)
                if failed is not None:
                    results = [
                        (*failed, []) if e is ErrorCode.none else (e, m, a) for e, m, a in results
                    ]
        return results

    async def _store(self, acls: frozenset[AclBinding]) -> tuple[ErrorCode, str | None] | None:
        """Write ``acls`` to the file, then make them the ones in force; the error to answer
        when the write failed (nothing changes then)."""
        if self._path is not None and self._fs is not None:
            data = json.dumps(
                {
                    "version": ACL_FILE_VERSION,
                    "acls": [a.to_json() for a in sorted(acls, key=_order)],
                },
                indent=1,
            ).encode()
            fs, path = self._fs, self._path
            try:
                await anyio.to_thread.run_sync(lambda: fs.write_atomic(path, data))
            except OSError as e:
                log.error("writing the ACLs to %s failed: %s", path, e)
                return ErrorCode.unknown_server_error, None
        self._swap(acls)
        return None

    def _swap(self, acls: frozenset[AclBinding]) -> None:
        index: dict[ResourceType, _Index] = {}
        for acl in sorted(acls, key=_order):
            entry = index.setdefault(acl.resource_type, _Index({}, {}))
            by_name = entry.prefixed if acl.pattern_type is PatternType.PREFIXED else entry.literal
            by_name.setdefault(acl.name, []).append(acl)
        self._acls = acls
        self._index = index


def _covering(index: _Index, name: str) -> Iterable[AclBinding]:
    """The ACLs of one type whose pattern covers ``name``: the same name, the wildcard, a
    prefix."""
    yield from index.literal.get(name, ())
    if name != WILDCARD:
        yield from index.literal.get(WILDCARD, ())
    prefixed = index.prefixed
    if not prefixed:
        return
    if len(prefixed) < len(name):
        for prefix, acls in prefixed.items():
            if name.startswith(prefix):
                yield from acls
    else:
        for end in range(1, len(name) + 1):
            yield from prefixed.get(name[:end], ())


def _applies(
    acl: AclBinding, principal: str, host: str, operation: AclOperation
) -> AclPermissionType | None:
    """StandardAuthorizerData.findResult: the ACL's permission when it applies to this
    principal, host and operation (the resource already matched), else None."""
    if acl.principal != principal and acl.principal != WILDCARD_PRINCIPAL:
        return None
    if acl.host != WILDCARD and acl.host != host:
        return None
    if acl.operation is not Op.ALL and acl.operation is not operation:
        if acl.permission is not Perm.ALLOW:
            return None
        if operation is Op.DESCRIBE:
            if acl.operation not in _IMPLIES_DESCRIBE:
                return None
        elif operation is Op.DESCRIBE_CONFIGS:
            if acl.operation not in _IMPLIES_DESCRIBE_CONFIGS:
                return None
        else:
            return None
    return acl.permission


def _order(acl: AclBinding) -> tuple[int, str, int, int, str, str, int]:
    return (
        acl.resource_type,
        acl.name,
        acl.pattern_type,
        acl.operation,
        acl.principal,
        acl.host,
        acl.permission,
    )


def _load(text: str, path: Path) -> frozenset[AclBinding]:
    try:
        data = json.loads(text)
        if data.get("version") != ACL_FILE_VERSION:
            raise ValueError(f"unknown version {data.get('version')!r}")
        return frozenset(AclBinding.from_json(item) for item in data["acls"])
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise AclFileError(f"cannot read the ACLs in {path}: {e!r}") from None


class AclFileError(Exception):
    """The ACL file does not parse: the broker does not start without its ACLs."""
