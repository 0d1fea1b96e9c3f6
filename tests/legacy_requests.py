"""Raw requests at the versions Kafka 4 removed (kpy.protocol.legacy's layouts), for tests."""

from __future__ import annotations

import datetime
import io
import struct
from typing import Any

from kio.serial import entity_reader, entity_writer
from kio.static.primitive import i16, i32, i64
from rawclient import RawClient

from kpy.protocol import legacy
from kpy.protocol.messages import response_type


def call(
    client: RawClient, key: int, version: int, request: Any, *, send_only: bool = False
) -> Any:
    buf = io.BytesIO()
    entity_writer(type(request))(buf, request)
    client.send_bytes(client.frame(key, version, buf.getvalue()))
    if send_only:
        return None
    data = client.recv_frame()
    (corr,) = struct.unpack_from(">i", data)
    assert corr == client.correlation_id
    response, _ = entity_reader(response_type(key, version))(data, 4)
    return response


def produce(
    client: RawClient,
    version: int,
    topic: str,
    records: bytes,
    *,
    partition: int = 0,
    acks: int = -1,
    send_only: bool = False,
) -> Any:
    """The partition response of a Produce v0-v2 (None with send_only)."""
    request = legacy.ProduceRequest(
        acks=i16(acks),
        timeout=datetime.timedelta(seconds=5),
        topic_data=(
            legacy.TopicProduceData(
                name=topic,
                partition_data=(
                    legacy.PartitionProduceData(index=i32(partition), records=records),
                ),
            ),
        ),
    )
    response = call(client, 0, version, request, send_only=send_only)
    return None if send_only else response.responses[0].partition_responses[0]


def fetch(
    client: RawClient,
    version: int,
    topic: str,
    offset: int,
    *,
    partition: int = 0,
    partition_max_bytes: int = 1 << 20,
    max_bytes: int = 50 << 20,
    max_wait_ms: int = 0,
    min_bytes: int = 0,
) -> Any:
    """The partition response of a Fetch v0-v3."""
    topics = (
        legacy.FetchTopic(
            topic=topic,
            partitions=(
                legacy.FetchPartition(
                    partition=i32(partition),
                    fetch_offset=i64(offset),
                    partition_max_bytes=i32(partition_max_bytes),
                ),
            ),
        ),
    )
    common: dict[str, Any] = {
        "replica_id": i32(-1),
        "max_wait": datetime.timedelta(milliseconds=max_wait_ms),
        "min_bytes": i32(min_bytes),
        "topics": topics,
    }
    request: Any
    if version == 3:
        request = legacy.FetchRequestV3(max_bytes=i32(max_bytes), **common)
    else:
        request = legacy.FetchRequestV0(**common)
    return call(client, 1, version, request).responses[0].partitions[0]


def list_offsets_v0(
    client: RawClient, topic: str, timestamp: int, max_num_offsets: int = 1, partition: int = 0
) -> Any:
    request = legacy.ListOffsetsRequest(
        replica_id=i32(-1),
        topics=(
            legacy.ListOffsetsTopic(
                name=topic,
                partitions=(
                    legacy.ListOffsetsPartition(
                        partition_index=i32(partition),
                        timestamp=i64(timestamp),
                        max_num_offsets=i32(max_num_offsets),
                    ),
                ),
            ),
        ),
    )
    return call(client, 2, 0, request).topics[0].partitions[0]


def offset_commit(
    client: RawClient,
    version: int,
    group: str,
    topic: str,
    offset: int,
    *,
    partition: int = 0,
    generation: int = -1,
    member_id: str = "",
    commit_timestamp: int = -1,
    metadata: str | None = "",
) -> Any:
    """The partition error of an OffsetCommit v0 or v1."""
    request: Any
    if version == 0:
        request = legacy.OffsetCommitRequestV0(
            group_id=group,
            topics=(
                legacy.OffsetCommitRequestTopicV0(
                    name=topic,
                    partitions=(
                        legacy.OffsetCommitRequestPartitionV0(
                            partition_index=i32(partition),
                            committed_offset=i64(offset),
                            committed_metadata=metadata,
                        ),
                    ),
                ),
            ),
        )
    else:
        request = legacy.OffsetCommitRequestV1(
            group_id=group,
            generation_id_or_member_epoch=i32(generation),
            member_id=member_id,
            topics=(
                legacy.OffsetCommitRequestTopicV1(
                    name=topic,
                    partitions=(
                        legacy.OffsetCommitRequestPartitionV1(
                            partition_index=i32(partition),
                            committed_offset=i64(offset),
                            commit_timestamp=i64(commit_timestamp),
                            committed_metadata=metadata,
                        ),
                    ),
                ),
            ),
        )
    return call(client, 8, version, request).topics[0].partitions[0].error_code


def offset_fetch(
    client: RawClient, version: int, group: str, topic: str, partition: int = 0
) -> Any:
    """The partition answer of an OffsetFetch v0 or v1."""
    from kio.schema.offset_fetch.v1 import request as of1

    request = of1.OffsetFetchRequest(
        group_id=group,
        topics=(of1.OffsetFetchRequestTopic(name=topic, partition_indexes=(i32(partition),)),),
    )
    return call(client, 9, version, request).topics[0].partitions[0]
