"""Raw DescribeAcls, CreateAcls and DeleteAcls requests (every version; v0 through
kpy.protocol.legacy's layouts), for the ACL tests against kpy and Apache Kafka."""

from __future__ import annotations

from typing import Any

from kio.schema.errors import ErrorCode
from legacy_requests import call
from rawclient import RawClient
from requests_v import build

from kpy.acl import AclOperation, AclPermissionType, PatternType, ResourceType
from kpy.protocol import legacy

Op, Res, Perm, Pat = AclOperation, ResourceType, AclPermissionType, PatternType
ANON = "User:ANONYMOUS"
CLUSTER = "kafka-cluster"
Acl = tuple[ResourceType, str, PatternType, str, str, AclOperation, AclPermissionType]


def acl(
    resource_type: ResourceType,
    name: str,
    operation: AclOperation,
    permission: AclPermissionType = Perm.DENY,
    *,
    pattern: PatternType = Pat.LITERAL,
    principal: str = ANON,
    host: str = "*",
) -> Acl:
    return (resource_type, name, pattern, principal, host, operation, permission)


def create_acls(client: RawClient, *acls: Acl, version: int = 3) -> list[tuple[ErrorCode, Any]]:
    creations = []
    for rt, name, pattern, principal, host, op, perm in acls:
        fields = {"resource_pattern_type": pattern} if version >= 1 else {}
        creations.append(
            dict(
                resource_type=rt,
                resource_name=name,
                principal=principal,
                host=host,
                operation=op,
                permission_type=perm,
                **fields,
            )
        )
    if version == 0:
        request = legacy.CreateAclsRequestV0(
            creations=tuple(legacy.AclCreationV0(**f) for f in creations)
        )
        response = call(client, 30, 0, request)
    else:
        response = client.request(
            build(
                "create_acls",
                version,
                "CreateAclsRequest",
                creations=tuple(
                    build("create_acls", version, "AclCreation", **f) for f in creations
                ),
            )
        )
    return [(r.error_code, r.error_message) for r in response.results]


def deny(client: RawClient, *acls: Acl) -> None:
    assert create_acls(client, *acls) == [(ErrorCode.none, "")] * len(acls)


def deny_on_cluster(client: RawClient, *operations: AclOperation) -> None:
    """DENY these cluster operations to the client, and ALLOW it every other one."""
    deny(
        client,
        acl(Res.CLUSTER, CLUSTER, Op.ALL, Perm.ALLOW),
        *(acl(Res.CLUSTER, CLUSTER, op) for op in operations),
    )


def filter_fields(
    resource_type: ResourceType = Res.ANY,
    name: str | None = None,
    pattern: PatternType = Pat.ANY,
    principal: str | None = None,
    host: str | None = None,
    operation: AclOperation = Op.ANY,
    permission: AclPermissionType = Perm.ANY,
    *,
    version: int = 3,
) -> dict[str, Any]:
    fields: dict[str, Any] = dict(
        resource_type_filter=resource_type,
        resource_name_filter=name,
        principal_filter=principal,
        host_filter=host,
        operation=operation,
        permission_type=permission,
    )
    if version >= 1:
        fields["pattern_type_filter"] = pattern
    return fields


def describe_acls(client: RawClient, version: int = 3, **flt: Any) -> Any:
    fields = filter_fields(version=version, **flt)
    if version == 0:
        return call(client, 29, 0, legacy.DescribeAclsRequestV0(**fields))
    return client.request(build("describe_acls", version, "DescribeAclsRequest", **fields))


def described(response: Any) -> set[tuple[Any, ...]]:
    return {
        (
            r.resource_type,
            r.resource_name,
            getattr(r, "pattern_type", Pat.LITERAL),
            a.principal,
            a.host,
            a.operation,
            a.permission_type,
        )
        for r in response.resources
        for a in r.acls
    }


def delete_acls(client: RawClient, *filters: dict[str, Any], version: int = 3) -> Any:
    if version == 0:
        request = legacy.DeleteAclsRequestV0(
            filters=tuple(legacy.DeleteAclsFilterV0(**f) for f in filters)
        )
        return call(client, 31, 0, request)
    return client.request(
        build(
            "delete_acls",
            version,
            "DeleteAclsRequest",
            filters=tuple(build("delete_acls", version, "DeleteAclsFilter", **f) for f in filters),
        )
    )
