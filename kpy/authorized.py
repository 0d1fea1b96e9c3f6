"""Authorized-operations bitfields.

Responses that describe a resource (Metadata, DescribeCluster, DescribeTopicPartitions,
DescribeGroups, ConsumerGroupDescribe) carry a 32-bit field with bit N set for each ACL operation
of code N the client may perform (Kafka's AuthHelper.authorizedOperations). The broker's
authorizer computes it: ``ctx.broker.authorizer.authorized_operations(ctx, type, name)``
(kpy.acl). Without an authorizer that is every operation AclEntry.supportedOperations lists for
the type, the constants below. NOT_REQUESTED is the schema default a response keeps when the
request did not ask.
"""

from __future__ import annotations

from kpy.acl import SUPPORTED_OPERATIONS, AclOperation, ResourceType, bitfield

__all__ = ["CLUSTER", "GROUP", "NOT_REQUESTED", "TOPIC", "AclOperation", "bitfield"]

NOT_REQUESTED = -2147483648
TOPIC = bitfield(SUPPORTED_OPERATIONS[ResourceType.TOPIC])
GROUP = bitfield(SUPPORTED_OPERATIONS[ResourceType.GROUP])
CLUSTER = bitfield(SUPPORTED_OPERATIONS[ResourceType.CLUSTER])
