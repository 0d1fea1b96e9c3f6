"""kpy.acl on its own: Kafka's rules for which ACLs cover a resource and which decide, the
filters of DescribeAcls/DeleteAcls, what CreateAcls refuses, super.users, the no-ACL default,
authorizeByResourceType, and the ACL file (written atomically, read back, refused when corrupt).
The broker-level behaviour (each API's denial code, the tools, the clients) is in
test_acl_protocol.py and tests/compat/test_acls.py."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import anyio
import pytest
from kio.schema.errors import ErrorCode

from kpy.acl import (
    ACL_FILE,
    ANY_ACL,
    NO_AUTHORIZER,
    AclBinding,
    AclBindingFilter,
    AclFileError,
    AclOperation,
    AclPermissionType,
    PatternType,
    ResourceType,
    StandardAuthorizer,
    bitfield,
    creation_error,
    filter_error,
    java_host_address,
    parse_super_users,
)
from kpy.config import BrokerConfig, ConfigError
from kpy.storage.fs import OS_FS, MemoryFileSystem

Op, Res, Perm, Pat = AclOperation, ResourceType, AclPermissionType, PatternType
ALICE = "User:alice"


@dataclass
class Who:
    principal: str = ALICE
    client_host: str = "10.0.0.1"


def acl(
    name: str,
    operation: AclOperation = Op.READ,
    permission: AclPermissionType = Perm.ALLOW,
    *,
    resource_type: ResourceType = Res.TOPIC,
    pattern: PatternType = Pat.LITERAL,
    principal: str = ALICE,
    host: str = "*",
) -> AclBinding:
    return AclBinding(resource_type, name, pattern, principal, host, operation, permission)


def authorizer(*acls: AclBinding, **kw: object) -> StandardAuthorizer:
    auth = StandardAuthorizer(**kw)  # type: ignore[arg-type]
    results = anyio.run(auth.create_acls, list(acls))
    assert all(error is ErrorCode.none for error, _ in results), results
    return auth


def can(auth: StandardAuthorizer, op: AclOperation, name: str, **who: str) -> bool:
    return auth.authorize(Who(**who), op, Res.TOPIC, name)


def test_no_authorizer_allows_everything() -> None:
    who = Who()
    assert NO_AUTHORIZER.enabled is False
    assert NO_AUTHORIZER.authorize(who, Op.WRITE, Res.TOPIC, "t")
    assert NO_AUTHORIZER.authorize_cluster(who, Op.ALTER)
    assert NO_AUTHORIZER.allowed(who, Op.READ, Res.TOPIC, ["a", "b", "a"]) == {"a", "b"}
    assert NO_AUTHORIZER.authorize_by_resource_type(who, Op.WRITE, Res.TOPIC)
    assert NO_AUTHORIZER.authorized_operations(who, Res.GROUP, "g") == bitfield(
        [Op.READ, Op.DESCRIBE, Op.DELETE, Op.DESCRIBE_CONFIGS, Op.ALTER_CONFIGS]
    )


def test_resource_without_acls_answers_the_default() -> None:
    assert not can(authorizer(), Op.READ, "t")
    assert can(authorizer(allow_if_no_acl=True), Op.READ, "t")
    # An ACL on another topic, or on a group of the same name, leaves "t" without ACLs.
    other = authorizer(acl("u"), acl("t", resource_type=Res.GROUP), allow_if_no_acl=True)
    assert can(other, Op.WRITE, "t")


def test_someone_elses_acl_takes_the_default_away() -> None:
    """A resource with ACLs for other principals only is denied, even with
    allow.everyone.if.no.acl.found: the default is for resources with no ACL at all."""
    auth = authorizer(acl("t", principal="User:bob"), allow_if_no_acl=True)
    assert not can(auth, Op.READ, "t")
    assert can(auth, Op.READ, "t", principal="User:bob")


def test_literal_wildcard_and_prefixed_patterns() -> None:
    auth = authorizer(
        acl("orders"),
        acl("pay", Op.WRITE, pattern=Pat.PREFIXED),
        acl("*", Op.DESCRIBE),
    )
    assert can(auth, Op.READ, "orders")
    assert not can(auth, Op.READ, "orders2")  # a LITERAL name is the whole name
    assert not can(auth, Op.READ, "order")
    assert can(auth, Op.WRITE, "payments") and can(auth, Op.WRITE, "pay")
    assert not can(auth, Op.WRITE, "pa") and not can(auth, Op.WRITE, "xpay")
    assert can(auth, Op.DESCRIBE, "anything")
    # "*" is a wildcard only as a LITERAL name; as a prefix it is a character.
    star = authorizer(acl("*", pattern=Pat.PREFIXED))
    assert can(star, Op.READ, "*x") and not can(star, Op.READ, "x")
    # A LITERAL ACL on a prefix of the name does not cover it, but a PREFIXED one still does.
    mixed = authorizer(acl("foo"), acl("f", Op.WRITE, pattern=Pat.PREFIXED))
    assert not can(mixed, Op.READ, "foobar") and can(mixed, Op.WRITE, "foobar")


def test_deny_wins_from_any_pattern() -> None:
    auth = authorizer(
        acl("orders", Op.ALL),
        acl("ord", Op.WRITE, Perm.DENY, pattern=Pat.PREFIXED),
        acl("*", Op.DELETE, Perm.DENY, principal="User:*"),
    )
    assert can(auth, Op.READ, "orders")
    assert not can(auth, Op.WRITE, "orders")
    assert not can(auth, Op.DELETE, "orders")


def test_implied_operations_only_for_allow() -> None:
    auth = authorizer(
        acl("r", Op.READ),
        acl("w", Op.WRITE),
        acl("d", Op.DELETE),
        acl("a", Op.ALTER),
        acl("c", Op.CREATE),
        acl("ac", Op.ALTER_CONFIGS),
    )
    for name in "r", "w", "d", "a":
        assert can(auth, Op.DESCRIBE, name), name
    assert not can(auth, Op.DESCRIBE, "c")  # CREATE implies nothing
    assert not can(auth, Op.READ, "w")  # WRITE does not imply READ
    assert can(auth, Op.DESCRIBE_CONFIGS, "ac") and not can(auth, Op.DESCRIBE, "ac")
    # A DENY of READ does not deny DESCRIBE; a DENY of DESCRIBE does, over an ALLOW of READ.
    deny_read = authorizer(acl("t", Op.READ, Perm.DENY), acl("t", Op.DESCRIBE))
    assert can(deny_read, Op.DESCRIBE, "t") and not can(deny_read, Op.READ, "t")
    deny_describe = authorizer(acl("t", Op.READ), acl("t", Op.DESCRIBE, Perm.DENY))
    assert not can(deny_describe, Op.DESCRIBE, "t") and can(deny_describe, Op.READ, "t")


def test_all_allows_and_denies_every_operation() -> None:
    allow_all = authorizer(acl("t", Op.ALL))
    deny_all = authorizer(acl("t", Op.ALL), acl("t", Op.ALL, Perm.DENY, principal="User:*"))
    for op in Op.READ, Op.WRITE, Op.DESCRIBE, Op.ALTER_CONFIGS, Op.DESCRIBE_CONFIGS:
        assert can(allow_all, op, "t") and not can(deny_all, op, "t")


def test_host_and_principal_matching() -> None:
    auth = authorizer(
        acl("t", host="10.0.0.1"),
        acl("t", Op.WRITE, principal="User:*"),
        acl("t", Op.DELETE, host="0:0:0:0:0:0:0:1"),
    )
    assert can(auth, Op.READ, "t")
    assert not can(auth, Op.READ, "t", client_host="10.0.0.2")
    assert can(auth, Op.WRITE, "t", principal="User:anyone", client_host="10.9.9.9")
    assert not can(auth, Op.READ, "t", principal="User:Alice")  # principals are exact
    # Kafka compares with Java's form of the address: IPv6 uncompressed.
    assert can(auth, Op.DELETE, "t", client_host="::1")
    assert java_host_address("::1") == "0:0:0:0:0:0:0:1"
    assert java_host_address("fe80::a:0:0:1") == "fe80:0:0:0:a:0:0:1"
    assert java_host_address("::ffff:10.0.0.1") == "10.0.0.1"
    assert java_host_address("127.0.0.1") == "127.0.0.1"
    # "User:*" matches every principal, of any type (Kafka always adds it to the principals
    # an ACL may name).
    assert can(auth, Op.WRITE, "t", principal="Group:ops")


def test_super_users_bypass_denials() -> None:
    auth = authorizer(acl("t", Op.ALL, Perm.DENY, principal="User:*"), super_users={"User:admin"})
    assert can(auth, Op.WRITE, "t", principal="User:admin")
    assert not can(auth, Op.WRITE, "t")
    assert parse_super_users(" User:a ;User:b;; ") == {"User:a", "User:b"}
    with pytest.raises(ValueError, match="principalType:principalName"):
        parse_super_users("User:a;admin")


def test_authorized_operations_bitfield() -> None:
    auth = authorizer(acl("t", Op.WRITE), acl("t", Op.ALTER_CONFIGS), acl("t", Op.READ))
    ops = auth.authorized_operations(Who(), Res.TOPIC, "t")
    assert ops == bitfield([Op.READ, Op.WRITE, Op.DESCRIBE, Op.ALTER_CONFIGS, Op.DESCRIBE_CONFIGS])
    assert auth.authorized_operations(Who(), Res.CLUSTER, "kafka-cluster") == 0


def test_authorize_by_resource_type() -> None:
    """Kafka's Authorizer.authorizeByResourceType, which InitProducerId asks for WRITE on any
    topic: an ALLOW of the operation (or ALL) not dominated by a DENY."""
    who = Who()

    def any_write(*acls: AclBinding, **kw: object) -> bool:
        return authorizer(*acls, **kw).authorize_by_resource_type(who, Op.WRITE, Res.TOPIC)

    assert not any_write()
    assert any_write(allow_if_no_acl=True)  # the resource "hardcode" has no ACL
    assert any_write(acl("t", Op.WRITE))
    assert any_write(acl("t", Op.ALL))
    assert not any_write(acl("t", Op.READ))  # nothing implied
    assert not any_write(acl("t", Op.WRITE), acl("t", Op.WRITE, Perm.DENY))
    assert any_write(acl("t", Op.WRITE), acl("u", Op.WRITE, Perm.DENY))
    # A DENY of a prefix dominates an ALLOW of anything it covers.
    assert not any_write(
        acl("team-a", Op.WRITE, pattern=Pat.PREFIXED),
        acl("team", Op.WRITE, Perm.DENY, pattern=Pat.PREFIXED),
    )
    assert any_write(
        acl("team", Op.WRITE, pattern=Pat.PREFIXED),
        acl("team-a", Op.WRITE, Perm.DENY, pattern=Pat.PREFIXED),
    )
    assert not any_write(acl("t", Op.WRITE), acl("*", Op.WRITE, Perm.DENY))
    assert not any_write(acl("t", Op.WRITE, principal="User:bob"))
    assert any_write(acl("t", Op.WRITE), super_users={ALICE})


def f(
    resource_type: ResourceType = Res.ANY,
    name: str | None = None,
    pattern: PatternType = Pat.ANY,
    principal: str | None = None,
    host: str | None = None,
    operation: AclOperation = Op.ANY,
    permission: AclPermissionType = Perm.ANY,
) -> AclBindingFilter:
    return AclBindingFilter(resource_type, name, pattern, principal, host, operation, permission)


def test_filters() -> None:
    lit = acl("orders")
    star = acl("*")
    pre = acl("ord", pattern=Pat.PREFIXED)
    grp = acl("orders", resource_type=Res.GROUP, principal="User:bob", host="1.2.3.4")
    every = [lit, star, pre, grp]

    def matching(flt: AclBindingFilter) -> list[AclBinding]:
        return [a for a in every if flt.matches(a)]

    assert matching(ANY_ACL) == every
    assert matching(f(name="orders")) == [lit, grp]  # ANY: the name exactly, any pattern
    assert matching(f(Res.TOPIC, "orders", Pat.MATCH)) == [lit, star, pre]  # all that cover it
    assert matching(f(Res.TOPIC, "ord", Pat.MATCH)) == [star, pre]
    assert matching(f(Res.TOPIC, None, Pat.MATCH)) == [lit, star, pre]
    assert matching(f(pattern=Pat.PREFIXED)) == [pre]
    assert matching(f(pattern=Pat.LITERAL, name="*")) == [star]  # "*" exactly, no wildcard
    assert matching(f(principal="User:bob")) == [grp]
    assert matching(f(host="1.2.3.4", operation=Op.READ, permission=Perm.ALLOW)) == [grp]
    assert matching(f(operation=Op.WRITE)) == []
    assert matching(f(Res.UNKNOWN)) == []  # a code Kafka does not know matches nothing


def test_creation_and_filter_validation() -> None:
    def error(binding: AclBinding) -> str | None:
        found = creation_error(binding)
        assert found is None or found[0] is ErrorCode.invalid_request
        return None if found is None else found[1]

    assert error(acl("t")) is None
    assert error(acl("kafka-cluster", resource_type=Res.CLUSTER)) is None
    assert error(acl("c", resource_type=Res.CLUSTER)) == (
        "The only valid name for the CLUSTER resource is kafka-cluster"
    )
    assert error(acl("")) == "Invalid empty resource name"
    assert error(acl("t", resource_type=Res.UNKNOWN)) == "Invalid resourceType UNKNOWN"
    assert error(acl("t", pattern=Pat.UNKNOWN)) == "Invalid patternType UNKNOWN"
    assert error(acl("t", Op.UNKNOWN)) == "Invalid operation UNKNOWN"
    assert error(acl("t", permission=Perm.UNKNOWN)) == "Invalid permissionType UNKNOWN"
    assert error(acl("t", principal="alice")) == (
        "Could not parse principal from `alice` (no colon is present separating the principal "
        "type from the principal name)"
    )
    assert filter_error(ANY_ACL) is None
    assert filter_error(f(Res.UNKNOWN)) == (ErrorCode.invalid_request, "Unknown patternFilter.")
    assert filter_error(f(operation=Op.UNKNOWN)) == (
        ErrorCode.invalid_request,
        "Unknown entryFilter.",
    )


def test_create_is_idempotent_and_delete_reports_what_matched(tmp_path: Path) -> None:
    auth = StandardAuthorizer(data_dir=tmp_path, fs=OS_FS)

    async def scenario() -> None:
        created = await auth.create_acls([acl("t"), acl("t"), acl("", Op.WRITE), acl("u")])
        assert [e for e, _ in created] == [
            ErrorCode.none,
            ErrorCode.none,
            ErrorCode.invalid_request,
            ErrorCode.none,
        ]
        assert auth.acls() == [acl("t"), acl("u")]
        deleted = await auth.delete_acls([f(name="t"), f(Res.TOPIC), f(Res.UNKNOWN)])
        assert deleted[0] == (ErrorCode.none, None, [acl("t")])
        assert deleted[1] == (ErrorCode.none, None, [acl("t"), acl("u")])
        assert deleted[2] == (ErrorCode.invalid_request, "Unknown patternFilter.", [])
        assert auth.acls() == []

    anyio.run(scenario)


def test_acls_survive_a_new_authorizer_on_the_same_directory(tmp_path: Path) -> None:
    first = StandardAuthorizer(data_dir=tmp_path, fs=OS_FS)
    kept = [acl("t", Op.WRITE, Perm.DENY, host="10.0.0.1"), acl("p", pattern=Pat.PREFIXED)]
    anyio.run(first.create_acls, kept)
    assert not list(tmp_path.glob("*.tmp"))  # written through a temporary file, renamed
    second = StandardAuthorizer(data_dir=tmp_path, fs=OS_FS)
    assert second.acls() == sorted(first.acls(), key=lambda a: (a.name,))
    assert not can(second, Op.WRITE, "t") and can(second, Op.READ, "p2")


def test_acls_in_memory(tmp_path: Path) -> None:
    fs = MemoryFileSystem()
    fs.mkdir(tmp_path / "mem")
    auth = StandardAuthorizer(data_dir=tmp_path / "mem", fs=fs)
    anyio.run(auth.create_acls, [acl("t")])
    assert fs.exists(tmp_path / "mem" / ACL_FILE) and not (tmp_path / "mem").exists()
    assert StandardAuthorizer(data_dir=tmp_path / "mem", fs=fs).acls() == [acl("t")]


def test_a_corrupt_acl_file_stops_the_start(tmp_path: Path) -> None:
    (tmp_path / ACL_FILE).write_text('{"version": 1, "acls": [{"resourceType": "TOPIC"}]}')
    with pytest.raises(AclFileError, match="cannot read the ACLs"):
        StandardAuthorizer(data_dir=tmp_path, fs=OS_FS)
    (tmp_path / ACL_FILE).write_text("not json")
    with pytest.raises(AclFileError):
        StandardAuthorizer(data_dir=tmp_path, fs=OS_FS)


def test_config() -> None:
    def load(**overrides: str) -> BrokerConfig:
        return BrokerConfig.load(None, {k.replace("_", "."): v for k, v in overrides.items()})

    assert StandardAuthorizer.from_config(load()) is NO_AUTHORIZER
    for name in (
        "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
        "kafka.security.authorizer.AclAuthorizer",
    ):
        auth = StandardAuthorizer.from_config(
            load(
                authorizer_class_name=name,
                super_users="User:admin;User:ops",
                allow_everyone_if_no_acl_found="TRUE",
            )
        )
        assert isinstance(auth, StandardAuthorizer)
        assert auth.super_users == {"User:admin", "User:ops"} and auth.allow_if_no_acl
    assert not StandardAuthorizer.from_config(  # type: ignore[attr-defined]
        load(authorizer_class_name=name)
    ).allow_if_no_acl
    with pytest.raises(ConfigError, match=r"Class com\.example\.MyAuthorizer cannot be found"):
        load(authorizer_class_name="com.example.MyAuthorizer")
    with pytest.raises(ConfigError, match=r"super\.users"):
        load(authorizer_class_name=name, super_users="admin")
