"""Builders for the raw requests tests send through RawClient (kio types, fixed versions)."""

from __future__ import annotations

import dataclasses
import datetime
import importlib
import types
import typing
import uuid
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


def list_offsets(
    client: RawClient, topic: str, partition: int, timestamp: int, *, current_epoch: int = -1
) -> Any:
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
                            current_leader_epoch=i32(current_epoch),
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


def find_group_coordinator(client: RawClient, group: str = "g") -> Any:
    """FindCoordinator v3 for a group: the first one makes kpy (and Kafka) create
    __consumer_offsets."""
    m = _req("find_coordinator", 3)
    return client.request(m.FindCoordinatorRequest(key=group, key_type=i8(0)))


def _req(api: str, version: int) -> Any:
    """kio's request module of one API version (for the helpers that take a version)."""
    return importlib.import_module(f"kio.schema.{api}.v{version}.request")


def build(api: str, version: int, type_name: str, /, **values: Any) -> Any:
    """kio's type ``type_name`` of one request version (nested types too), with the fields not
    given at a neutral value: None where the field may be null, else 0, "", False, (), 5 s."""
    return fill(getattr(_req(api, version), type_name), **values)


def fill(cls: Any, /, **values: Any) -> Any:
    """An instance of kio-style dataclass ``cls`` (see ``build``)."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if f.name in values:
            out[f.name] = values[f.name]
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            out[f.name] = _neutral(f)
    return cls(**out)


def _neutral(f: dataclasses.Field[Any]) -> Any:
    kind = f.metadata.get("kafka_type", "")
    hint = f.type
    nullable = isinstance(hint, types.UnionType) and type(None) in typing.get_args(hint)
    if nullable:
        return None
    if typing.get_origin(hint) is tuple:
        return ()
    if kind.startswith(("int", "uint")) or kind == "error_code":
        return 0
    if kind == "string":
        return ""
    if kind == "bool":
        return False
    if kind.startswith("timedelta"):
        return datetime.timedelta(seconds=5)
    if kind == "uuid":
        return uuid.UUID(int=0)
    if kind in ("bytes", "records"):
        return b""
    raise TypeError(f"no neutral value for {f.name} ({kind or hint})")


def describe_cluster(
    client: RawClient, version: int = 2, *, operations: bool = False, endpoint_type: int = 1
) -> Any:
    m = _req("describe_cluster", version)
    fields: dict[str, Any] = {"include_cluster_authorized_operations": operations}
    if version >= 1:
        fields["endpoint_type"] = i8(endpoint_type)
    if version >= 2:
        fields["include_fenced_brokers"] = False
    return client.request(m.DescribeClusterRequest(**fields))


def describe_topic_partitions(
    client: RawClient,
    names: list[str],
    *,
    limit: int = 2000,
    cursor: tuple[str, int] | None = None,
) -> Any:
    m = _req("describe_topic_partitions", 0)
    return client.request(
        m.DescribeTopicPartitionsRequest(
            topics=tuple(m.TopicRequest(name=n) for n in names),
            response_partition_limit=i32(limit),
            cursor=None
            if cursor is None
            else m.Cursor(topic_name=cursor[0], partition_index=i32(cursor[1])),
        )
    )


def describe_log_dirs(
    client: RawClient, topics: dict[str, list[int]] | None, version: int = 4
) -> Any:
    m = _req("describe_log_dirs", version)
    return client.request(
        m.DescribeLogDirsRequest(
            topics=None
            if topics is None
            else tuple(
                m.DescribableLogDirTopic(topic=t, partitions=tuple(i32(p) for p in ps))
                for t, ps in topics.items()
            )
        )
    )


def list_partition_reassignments(client: RawClient, topics: dict[str, list[int]] | None) -> Any:
    m = _req("list_partition_reassignments", 0)
    return client.request(
        m.ListPartitionReassignmentsRequest(
            timeout=datetime.timedelta(seconds=5),
            topics=None
            if topics is None
            else tuple(
                m.ListPartitionReassignmentsTopics(
                    name=t, partition_indexes=tuple(i32(p) for p in ps)
                )
                for t, ps in topics.items()
            ),
        )
    )


def elect_leaders(
    client: RawClient,
    topics: dict[str, list[int]] | None,
    *,
    election_type: int = 0,
    version: int = 2,
) -> Any:
    m = _req("elect_leaders", version)
    fields: dict[str, Any] = {}
    if version >= 1:
        fields["election_type"] = i8(election_type)
    return client.request(
        m.ElectLeadersRequest(
            topic_partitions=None
            if topics is None
            else tuple(
                m.TopicPartitions(topic=t, partitions=tuple(i32(p) for p in ps))
                for t, ps in topics.items()
            ),
            timeout=datetime.timedelta(seconds=5),
            **fields,
        )
    )


def offset_for_leader_epoch(
    client: RawClient,
    topic: str,
    partition: int,
    leader_epoch: int,
    *,
    current: int = -1,
    version: int = 4,
) -> Any:
    """One partition's EpochEndOffset."""
    m = _req("offset_for_leader_epoch", version)
    fields: dict[str, Any] = {}
    if version >= 3:
        fields["replica_id"] = i32(-1)  # a consumer
    resp = client.request(
        m.OffsetForLeaderEpochRequest(
            topics=(
                m.OffsetForLeaderTopic(
                    topic=topic,
                    partitions=(
                        m.OffsetForLeaderPartition(
                            partition=i32(partition),
                            current_leader_epoch=i32(current),
                            leader_epoch=i32(leader_epoch),
                        ),
                    ),
                ),
            ),
            **fields,
        )
    )
    return resp.topics[0].partitions[0]


def fetch_with_epoch(
    client: RawClient,
    topic: str,
    partition: int,
    offset: int,
    *,
    last_fetched_epoch: int = -1,
    current_leader_epoch: int = -1,
) -> Any:
    """One partition of a Fetch v12 (the first with last_fetched_epoch)."""
    m = _req("fetch", 12)
    resp = client.request(
        m.FetchRequest(
            replica_id=i32(-1),
            max_wait=datetime.timedelta(milliseconds=0),
            min_bytes=i32(0),
            max_bytes=i32(1 << 20),
            isolation_level=i8(0),
            session_id=i32(0),
            session_epoch=i32(-1),
            topics=(
                m.FetchTopic(
                    topic=topic,
                    partitions=(
                        m.FetchPartition(
                            partition=i32(partition),
                            current_leader_epoch=i32(current_leader_epoch),
                            fetch_offset=i64(offset),
                            last_fetched_epoch=i32(last_fetched_epoch),
                            log_start_offset=i64(-1),
                            partition_max_bytes=i32(1 << 20),
                        ),
                    ),
                ),
            ),
            forgotten_topics_data=(),
            rack_id="",
        )
    )
    return resp.responses[0].partitions[0]
