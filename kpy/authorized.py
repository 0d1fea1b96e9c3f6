"""Authorized-operations bitfields, as Kafka answers them when it runs without an authorizer.

Responses that describe a resource (Metadata, DescribeCluster, DescribeTopicPartitions, ...)
carry a 32-bit field with bit N set for each ACL operation of code N the client may perform.
Kafka's AuthHelper.authorizedOperations reports, with no authorizer configured, every operation
AclEntry.supportedOperations lists for the resource type; kpy has no ACLs, so it answers the same.
NOT_REQUESTED is the schema default a response keeps when the request did not ask.
"""

from __future__ import annotations

from enum import IntEnum

NOT_REQUESTED = -2147483648


class AclOperation(IntEnum):
    """Kafka's AclOperation codes (the bit positions)."""

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


def bitfield(*operations: AclOperation) -> int:
    """Kafka's Utils.to32BitField: bit ``code`` set for each operation."""
    value = 0
    for op in operations:
        value |= 1 << op
    return value


Op = AclOperation
TOPIC = bitfield(
    Op.READ,
    Op.WRITE,
    Op.CREATE,
    Op.DESCRIBE,
    Op.DELETE,
    Op.ALTER,
    Op.DESCRIBE_CONFIGS,
    Op.ALTER_CONFIGS,
)
GROUP = bitfield(Op.READ, Op.DESCRIBE, Op.DELETE, Op.DESCRIBE_CONFIGS, Op.ALTER_CONFIGS)
CLUSTER = bitfield(
    Op.CREATE,
    Op.CLUSTER_ACTION,
    Op.DESCRIBE_CONFIGS,
    Op.ALTER_CONFIGS,
    Op.IDEMPOTENT_WRITE,
    Op.ALTER,
    Op.DESCRIBE,
)
