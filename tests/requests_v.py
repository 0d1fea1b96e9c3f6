"""Builders for the raw requests tests send through RawClient (kio types, fixed versions)."""

from __future__ import annotations

import datetime
from typing import Any

from kio.schema.create_topics.v7 import request as ct
from kio.schema.fetch.v11 import request as fr
from kio.schema.init_producer_id.v4 import request as ip
from kio.schema.list_offsets.v7 import request as lo
from kio.schema.metadata.v12 import request as md
from kio.schema.produce.v9 import request as pr
from kio.static.primitive import i8, i16, i32, i64
from rawclient import RawClient


def produce(
    client: RawClient, topic: str, records: bytes, partition: int = 0, acks: int = -1
) -> Any:
    return client.request(
        pr.ProduceRequest(
            transactional_id=None,
            acks=i16(acks),
            timeout=datetime.timedelta(seconds=5),
            topic_data=(
                pr.TopicProduceData(
                    name=topic,
                    partition_data=(
                        pr.PartitionProduceData(index=i32(partition), records=records),
                    ),
                ),
            ),
        )
    )


def produce_result(response: Any) -> tuple[Any, int]:
    part = response.responses[0].partition_responses[0]
    return part.error_code, part.base_offset


def metadata(client: RawClient, *names: str, auto_create: bool = True) -> Any:
    return client.request(
        md.MetadataRequest(
            topics=tuple(md.MetadataRequestTopic(topic_id=None, name=n) for n in names),
            allow_auto_topic_creation=auto_create,
            include_topic_authorized_operations=False,
        )
    )


def create_topic(client: RawClient, name: str, partitions: int = 1, **configs: str) -> Any:
    resp = client.request(
        ct.CreateTopicsRequest(
            topics=(
                ct.CreatableTopic(
                    name=name,
                    num_partitions=i32(partitions),
                    replication_factor=i16(-1),
                    assignments=(),
                    configs=tuple(
                        ct.CreatableTopicConfig(name=k.replace("_", "."), value=v)
                        for k, v in configs.items()
                    ),
                ),
            ),
            timeout=datetime.timedelta(seconds=5),
            validate_only=False,
        )
    )
    return resp.topics[0]


def fetch(
    client: RawClient,
    parts: list[tuple[str, int, int, int]],
    *,
    max_wait_ms: int = 0,
    min_bytes: int = 0,
    max_bytes: int = 50 << 20,
    send_only: bool = False,
) -> Any:
    """parts: (topic, partition, fetch_offset, partition_max_bytes)."""
    topics: dict[str, list[fr.FetchPartition]] = {}
    for topic, partition, offset, limit in parts:
        topics.setdefault(topic, []).append(
            fr.FetchPartition(
                partition=i32(partition),
                current_leader_epoch=i32(-1),
                fetch_offset=i64(offset),
                log_start_offset=i64(-1),
                partition_max_bytes=i32(limit),
            )
        )
    req = fr.FetchRequest(
        replica_id=i32(-1),
        max_wait=datetime.timedelta(milliseconds=max_wait_ms),
        min_bytes=i32(min_bytes),
        max_bytes=i32(max_bytes),
        isolation_level=i8(0),
        session_id=i32(0),
        session_epoch=i32(-1),
        topics=tuple(fr.FetchTopic(topic=t, partitions=tuple(ps)) for t, ps in topics.items()),
        forgotten_topics_data=(),
        rack_id="",
    )
    if send_only:
        client.send(req)
        return None
    return client.request(req)


def list_offsets(client: RawClient, topic: str, partition: int, timestamp: int) -> Any:
    resp = client.request(
        lo.ListOffsetsRequest(
            replica_id=i32(-1),
            isolation_level=i8(0),
            topics=(
                lo.ListOffsetsTopic(
                    name=topic,
                    partitions=(
                        lo.ListOffsetsPartition(
                            partition_index=i32(partition),
                            current_leader_epoch=i32(-1),
                            timestamp=i64(timestamp),
                        ),
                    ),
                ),
            ),
        )
    )
    return resp.topics[0].partitions[0]


def init_producer_id(client: RawClient) -> tuple[int, int]:
    resp = client.request(
        ip.InitProducerIdRequest(
            transactional_id=None,
            transaction_timeout=datetime.timedelta(seconds=60),
            producer_id=-1,
            producer_epoch=i16(-1),
        )
    )
    assert resp.error_code == 0
    return resp.producer_id, resp.producer_epoch
