"""Request and response layouts of the API versions Kafka 4.0 removed, which kio 0.6.5 lacks.

Why hand-written: kio is generated from Kafka 4.x's schemas, which dropped Produce v0-v2, Fetch
v0-v3, ListOffsets v0, OffsetCommit v0-v1, OffsetFetch v0 and DescribeAcls, CreateAcls and
DeleteAcls v0 (KIP-896); pykafka and other old
clients still speak them, and kpy serves them on purpose. The layouts below are transcribed
from the field lists of Kafka 3.9's message schemas (ProduceRequest.json and friends, versions
and field names as there) and declared the way kio declares its own types, so kio's generic
readers and writers encode them and the handlers build them with ``make`` like any other
version. None of these versions is flexible: no tagged fields, no compact encodings.

OffsetFetch v0 has v1's layout and OffsetCommit v0-v1 answer in v2's, so those reuse kio's
types; so does CreateAcls v0's response (v1's layout). The other ACL v0 layouts are v1's without
the pattern type fields (every ACL of v0 is LITERAL). ``request_type``, ``response_type`` and
``response_module`` are consulted by kpy.protocol.messages when kio has no type for a version.
"""

# No ``from __future__ import annotations``: kio reads the field types at run time.
import datetime
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any, ClassVar

from kio.schema.create_acls.v1 import response as create_acls_v1_response
from kio.schema.errors import ErrorCode
from kio.schema.offset_commit.v2 import response as offset_commit_v2
from kio.schema.offset_fetch.v1 import request as offset_fetch_v1_request
from kio.schema.offset_fetch.v1 import response as offset_fetch_v1_response
from kio.static.primitive import Records, TZAware, i8, i16, i32, i32Timedelta, i64

PRODUCE, FETCH, LIST_OFFSETS, OFFSET_COMMIT, OFFSET_FETCH = 0, 1, 2, 8, 9
DESCRIBE_ACLS, CREATE_ACLS, DELETE_ACLS = 29, 30, 31


def _int(kafka_type: str, **kw: Any) -> Any:
    return field(metadata={"kafka_type": kafka_type}, **kw)


class _Legacy:
    """Class attributes kio's serializers look at (only __flexible__ today)."""

    __flexible__: ClassVar[bool] = False


_entity = dataclass(frozen=True, slots=True, kw_only=True)

# --- Produce (key 0) v0-v2 -------------------------------------------------------------------


@_entity
class PartitionProduceData(_Legacy):
    index: i32 = _int("int32")
    records: Records | None = _int("records")


@_entity
class TopicProduceData(_Legacy):
    name: str = _int("string")
    partition_data: tuple[PartitionProduceData, ...]


@_entity
class ProduceRequest(_Legacy):
    """v0-v2: v3 without transactional_id."""

    acks: i16 = _int("int16")
    timeout: i32Timedelta = _int("timedelta_i32")
    topic_data: tuple[TopicProduceData, ...]


@_entity
class PartitionProduceResponseV0(_Legacy):
    index: i32 = _int("int32")
    error_code: ErrorCode = _int("error_code")
    base_offset: i64 = _int("int64")


@_entity
class PartitionProduceResponseV2(_Legacy):
    index: i32 = _int("int32")
    error_code: ErrorCode = _int("error_code")
    base_offset: i64 = _int("int64")
    log_append_time: TZAware | None = _int("datetime_i64", default=None)


@_entity
class TopicProduceResponseV0(_Legacy):
    name: str = _int("string")
    partition_responses: tuple[PartitionProduceResponseV0, ...]


@_entity
class TopicProduceResponseV2(_Legacy):
    name: str = _int("string")
    partition_responses: tuple[PartitionProduceResponseV2, ...]


@_entity
class ProduceResponseV0(_Legacy):
    responses: tuple[TopicProduceResponseV0, ...]


@_entity
class ProduceResponseV1(_Legacy):
    responses: tuple[TopicProduceResponseV0, ...]
    throttle_time: i32Timedelta = _int(
        "timedelta_i32", default=i32Timedelta.parse(datetime.timedelta(0))
    )


@_entity
class ProduceResponseV2(_Legacy):
    responses: tuple[TopicProduceResponseV2, ...]
    throttle_time: i32Timedelta = _int(
        "timedelta_i32", default=i32Timedelta.parse(datetime.timedelta(0))
    )


# --- Fetch (key 1) v0-v3 ---------------------------------------------------------------------


@_entity
class FetchPartition(_Legacy):
    partition: i32 = _int("int32")
    fetch_offset: i64 = _int("int64")
    partition_max_bytes: i32 = _int("int32")


@_entity
class FetchTopic(_Legacy):
    topic: str = _int("string")
    partitions: tuple[FetchPartition, ...]


@_entity
class FetchRequestV0(_Legacy):
    """v0-v2."""

    replica_id: i32 = _int("int32")
    max_wait: i32Timedelta = _int("timedelta_i32")
    min_bytes: i32 = _int("int32")
    topics: tuple[FetchTopic, ...]


@_entity
class FetchRequestV3(_Legacy):
    replica_id: i32 = _int("int32")
    max_wait: i32Timedelta = _int("timedelta_i32")
    min_bytes: i32 = _int("int32")
    max_bytes: i32 = _int("int32")
    topics: tuple[FetchTopic, ...]


@_entity
class PartitionData(_Legacy):
    partition_index: i32 = _int("int32")
    error_code: ErrorCode = _int("error_code")
    high_watermark: i64 = _int("int64")
    records: Records | None = _int("records")


@_entity
class FetchableTopicResponse(_Legacy):
    topic: str = _int("string")
    partitions: tuple[PartitionData, ...]


@_entity
class FetchResponseV0(_Legacy):
    responses: tuple[FetchableTopicResponse, ...]


@_entity
class FetchResponseV1(_Legacy):
    """v1-v3."""

    throttle_time: i32Timedelta = _int("timedelta_i32")
    responses: tuple[FetchableTopicResponse, ...]


# --- ListOffsets (key 2) v0 ------------------------------------------------------------------


@_entity
class ListOffsetsPartition(_Legacy):
    partition_index: i32 = _int("int32")
    timestamp: i64 = _int("int64")
    max_num_offsets: i32 = _int("int32")


@_entity
class ListOffsetsTopic(_Legacy):
    name: str = _int("string")
    partitions: tuple[ListOffsetsPartition, ...]


@_entity
class ListOffsetsRequest(_Legacy):
    replica_id: i32 = _int("int32")
    topics: tuple[ListOffsetsTopic, ...]


@_entity
class ListOffsetsPartitionResponse(_Legacy):
    partition_index: i32 = _int("int32")
    error_code: ErrorCode = _int("error_code")
    old_style_offsets: tuple[i64, ...] = _int("int64")


@_entity
class ListOffsetsTopicResponse(_Legacy):
    name: str = _int("string")
    partitions: tuple[ListOffsetsPartitionResponse, ...]


@_entity
class ListOffsetsResponse(_Legacy):
    topics: tuple[ListOffsetsTopicResponse, ...]


# --- OffsetCommit (key 8) v0-v1 ---------------------------------------------------------------


@_entity
class OffsetCommitRequestPartitionV0(_Legacy):
    partition_index: i32 = _int("int32")
    committed_offset: i64 = _int("int64")
    committed_metadata: str | None = _int("string")


@_entity
class OffsetCommitRequestPartitionV1(_Legacy):
    partition_index: i32 = _int("int32")
    committed_offset: i64 = _int("int64")
    commit_timestamp: i64 = _int("int64")
    committed_metadata: str | None = _int("string")


@_entity
class OffsetCommitRequestTopicV0(_Legacy):
    name: str = _int("string")
    partitions: tuple[OffsetCommitRequestPartitionV0, ...]


@_entity
class OffsetCommitRequestTopicV1(_Legacy):
    name: str = _int("string")
    partitions: tuple[OffsetCommitRequestPartitionV1, ...]


@_entity
class OffsetCommitRequestV0(_Legacy):
    group_id: str = _int("string")
    topics: tuple[OffsetCommitRequestTopicV0, ...]


@_entity
class OffsetCommitRequestV1(_Legacy):
    group_id: str = _int("string")
    generation_id_or_member_epoch: i32 = _int("int32")
    member_id: str = _int("string")
    topics: tuple[OffsetCommitRequestTopicV1, ...]


# --- DescribeAcls (key 29), CreateAcls (key 30), DeleteAcls (key 31) v0 -----------------------


@_entity
class DescribeAclsRequestV0(_Legacy):
    resource_type_filter: i8 = _int("int8")
    resource_name_filter: str | None = _int("string")
    principal_filter: str | None = _int("string")
    host_filter: str | None = _int("string")
    operation: i8 = _int("int8")
    permission_type: i8 = _int("int8")


@_entity
class AclDescription(_Legacy):
    principal: str = _int("string")
    host: str = _int("string")
    operation: i8 = _int("int8")
    permission_type: i8 = _int("int8")


@_entity
class DescribeAclsResourceV0(_Legacy):
    resource_type: i8 = _int("int8")
    resource_name: str = _int("string")
    acls: tuple[AclDescription, ...]


@_entity
class DescribeAclsResponseV0(_Legacy):
    throttle_time: i32Timedelta = _int("timedelta_i32")
    error_code: ErrorCode = _int("error_code")
    error_message: str | None = _int("string")
    resources: tuple[DescribeAclsResourceV0, ...]


@_entity
class AclCreationV0(_Legacy):
    resource_type: i8 = _int("int8")
    resource_name: str = _int("string")
    principal: str = _int("string")
    host: str = _int("string")
    operation: i8 = _int("int8")
    permission_type: i8 = _int("int8")


@_entity
class CreateAclsRequestV0(_Legacy):
    creations: tuple[AclCreationV0, ...]


@_entity
class DeleteAclsFilterV0(_Legacy):
    resource_type_filter: i8 = _int("int8")
    resource_name_filter: str | None = _int("string")
    principal_filter: str | None = _int("string")
    host_filter: str | None = _int("string")
    operation: i8 = _int("int8")
    permission_type: i8 = _int("int8")


@_entity
class DeleteAclsRequestV0(_Legacy):
    filters: tuple[DeleteAclsFilterV0, ...]


@_entity
class DeleteAclsMatchingAclV0(_Legacy):
    error_code: ErrorCode = _int("error_code")
    error_message: str | None = _int("string")
    resource_type: i8 = _int("int8")
    resource_name: str = _int("string")
    principal: str = _int("string")
    host: str = _int("string")
    operation: i8 = _int("int8")
    permission_type: i8 = _int("int8")


@_entity
class DeleteAclsFilterResultV0(_Legacy):
    error_code: ErrorCode = _int("error_code")
    error_message: str | None = _int("string")
    matching_acls: tuple[DeleteAclsMatchingAclV0, ...]


@_entity
class DeleteAclsResponseV0(_Legacy):
    throttle_time: i32Timedelta = _int("timedelta_i32")
    filter_results: tuple[DeleteAclsFilterResultV0, ...]


def _namespace(**types: Any) -> SimpleNamespace:
    return SimpleNamespace(**types)


_PRODUCE_RESPONSE = {
    0: _namespace(
        ProduceResponse=ProduceResponseV0,
        TopicProduceResponse=TopicProduceResponseV0,
        PartitionProduceResponse=PartitionProduceResponseV0,
    ),
    1: _namespace(
        ProduceResponse=ProduceResponseV1,
        TopicProduceResponse=TopicProduceResponseV0,
        PartitionProduceResponse=PartitionProduceResponseV0,
    ),
    2: _namespace(
        ProduceResponse=ProduceResponseV2,
        TopicProduceResponse=TopicProduceResponseV2,
        PartitionProduceResponse=PartitionProduceResponseV2,
    ),
}
_FETCH_RESPONSE = {
    v: _namespace(
        FetchResponse=FetchResponseV0 if v == 0 else FetchResponseV1,
        FetchableTopicResponse=FetchableTopicResponse,
        PartitionData=PartitionData,
    )
    for v in range(4)
}

REQUESTS: dict[tuple[int, int], Any] = {
    **{(PRODUCE, v): ProduceRequest for v in range(3)},
    **{(FETCH, v): FetchRequestV0 for v in range(3)},
    (FETCH, 3): FetchRequestV3,
    (LIST_OFFSETS, 0): ListOffsetsRequest,
    (OFFSET_COMMIT, 0): OffsetCommitRequestV0,
    (OFFSET_COMMIT, 1): OffsetCommitRequestV1,
    (OFFSET_FETCH, 0): offset_fetch_v1_request.OffsetFetchRequest,
    (DESCRIBE_ACLS, 0): DescribeAclsRequestV0,
    (CREATE_ACLS, 0): CreateAclsRequestV0,
    (DELETE_ACLS, 0): DeleteAclsRequestV0,
}

RESPONSE_MODULES: dict[tuple[int, int], Any] = {
    **{(PRODUCE, v): ns for v, ns in _PRODUCE_RESPONSE.items()},
    **{(FETCH, v): ns for v, ns in _FETCH_RESPONSE.items()},
    (LIST_OFFSETS, 0): _namespace(
        ListOffsetsResponse=ListOffsetsResponse,
        ListOffsetsTopicResponse=ListOffsetsTopicResponse,
        ListOffsetsPartitionResponse=ListOffsetsPartitionResponse,
    ),
    (OFFSET_COMMIT, 0): offset_commit_v2,
    (OFFSET_COMMIT, 1): offset_commit_v2,
    (OFFSET_FETCH, 0): offset_fetch_v1_response,
    (DESCRIBE_ACLS, 0): _namespace(
        DescribeAclsResponse=DescribeAclsResponseV0,
        DescribeAclsResource=DescribeAclsResourceV0,
        AclDescription=AclDescription,
    ),
    (CREATE_ACLS, 0): create_acls_v1_response,
    (DELETE_ACLS, 0): _namespace(
        DeleteAclsResponse=DeleteAclsResponseV0,
        DeleteAclsFilterResult=DeleteAclsFilterResultV0,
        DeleteAclsMatchingAcl=DeleteAclsMatchingAclV0,
    ),
}

_RESPONSE_NAMES = {
    PRODUCE: "ProduceResponse",
    FETCH: "FetchResponse",
    LIST_OFFSETS: "ListOffsetsResponse",
    OFFSET_COMMIT: "OffsetCommitResponse",
    OFFSET_FETCH: "OffsetFetchResponse",
    DESCRIBE_ACLS: "DescribeAclsResponse",
    CREATE_ACLS: "CreateAclsResponse",
    DELETE_ACLS: "DeleteAclsResponse",
}


def request_type(api_key: int, version: int) -> Any:
    """The request type of a removed version, or None."""
    return REQUESTS.get((api_key, version))


def response_module(api_key: int, version: int) -> Any:
    """The namespace of a removed version's response types, or None."""
    return RESPONSE_MODULES.get((api_key, version))


def response_type(api_key: int, version: int) -> Any:
    module = response_module(api_key, version)
    return None if module is None else getattr(module, _RESPONSE_NAMES[api_key])
