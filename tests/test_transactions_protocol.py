"""Transactions at the protocol level, against a real kpy over a socket (RawClient): the exact
error codes Kafka answers where real clients seldom go — requests for unknown topics, writes
to partitions outside the transaction, versions before PRODUCER_FENCED, TxnOffsetCommit and
OffsetFetch require_stable, WriteTxnMarkers from the admin side, DescribeProducers, the
read_committed Fetch and ListOffsets around an open transaction, and the coordinator's state
across a restart. The real clients' scenarios are in tests/compat/test_transactions*.py."""

from __future__ import annotations

import datetime
import importlib
import struct
from typing import Any

from kio.schema.errors import ErrorCode
from kio.static.primitive import i8, i16, i32, i64
from kpy_process import KpyProcess
from rawclient import RawClient
from requests_v import create_topic, find_group_coordinator

from kpy.protocol import records as rb

TOPIC = "txt"


def _req(api: str, version: int) -> Any:
    return importlib.import_module(f"kio.schema.{api}.v{version}.request")


def init(c: RawClient, txn_id: str, version: int = 4, timeout_ms: int = 60000) -> Any:
    m = _req("init_producer_id", version)
    return c.request(
        m.InitProducerIdRequest(
            transactional_id=txn_id,
            transaction_timeout=datetime.timedelta(milliseconds=timeout_ms),
            producer_id=i64(-1),
            producer_epoch=i16(-1),
        )
    )


def find_txn_coordinator(c: RawClient, txn_id: str) -> Any:
    m = _req("find_coordinator", 3)
    return c.request(m.FindCoordinatorRequest(key=txn_id, key_type=i8(1)))


def add_partitions(
    c: RawClient, txn_id: str, pid: int, epoch: int, parts: dict[str, list[int]], version: int = 3
) -> dict[tuple[str, int], ErrorCode]:
    m = _req("add_partitions_to_txn", version)
    topics = tuple(
        m.AddPartitionsToTxnTopic(name=t, partitions=tuple(i32(p) for p in ps))
        for t, ps in parts.items()
    )
    resp = c.request(
        m.AddPartitionsToTxnRequest(
            v3_and_below_transactional_id=txn_id,
            v3_and_below_producer_id=i64(pid),
            v3_and_below_producer_epoch=i16(epoch),
            v3_and_below_topics=topics,
        )
    )
    return {
        (t.name, p.partition_index): p.partition_error_code
        for t in resp.results_by_topic_v3_and_below
        for p in t.results_by_partition
    }


def end_txn(c: RawClient, txn_id: str, pid: int, epoch: int, commit: bool, version: int = 3) -> Any:
    m = _req("end_txn", version)
    return c.request(
        m.EndTxnRequest(
            transactional_id=txn_id,
            producer_id=i64(pid),
            producer_epoch=i16(epoch),
            committed=commit,
        )
    ).error_code


def txn_batch(pid: int, epoch: int, seq: int, n: int = 2, tag: bytes = b"v") -> bytes:
    return rb.build_batch(
        [(b"k", tag + b"-%d" % (seq + i)) for i in range(n)],
        producer_id=pid,
        producer_epoch=epoch,
        base_sequence=seq,
        attributes=rb.TRANSACTIONAL_MASK,
        timestamp=1_000,
    )


def produce(
    c: RawClient,
    records: bytes,
    txn_id: str | None,
    partition: int = 0,
    version: int = 9,
    topic: str = TOPIC,
) -> Any:
    m = _req("produce", version)
    resp = c.request(
        m.ProduceRequest(
            transactional_id=txn_id,
            acks=i16(-1),
            timeout=datetime.timedelta(seconds=5),
            topic_data=(
                m.TopicProduceData(
                    name=topic,
                    partition_data=(m.PartitionProduceData(index=i32(partition), records=records),),
                ),
            ),
        )
    )
    return resp.responses[0].partition_responses[0]


def fetch(c: RawClient, offset: int, isolation: int, partition: int = 0) -> Any:
    m = _req("fetch", 11)
    resp = c.request(
        m.FetchRequest(
            replica_id=i32(-1),
            max_wait=datetime.timedelta(milliseconds=0),
            min_bytes=i32(0),
            max_bytes=i32(1 << 20),
            isolation_level=i8(isolation),
            session_id=i32(0),
            session_epoch=i32(-1),
            topics=(
                m.FetchTopic(
                    topic=TOPIC,
                    partitions=(
                        m.FetchPartition(
                            partition=i32(partition),
                            current_leader_epoch=i32(-1),
                            fetch_offset=i64(offset),
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


def latest(c: RawClient, isolation: int) -> int:
    m = _req("list_offsets", 7)
    resp = c.request(
        m.ListOffsetsRequest(
            replica_id=i32(-1),
            isolation_level=i8(isolation),
            topics=(
                m.ListOffsetsTopic(
                    name=TOPIC,
                    partitions=(
                        m.ListOffsetsPartition(
                            partition_index=i32(0),
                            current_leader_epoch=i32(-1),
                            timestamp=i64(-1),
                        ),
                    ),
                ),
            ),
        )
    )
    return int(resp.topics[0].partitions[0].offset)


def values(records: bytes | None) -> list[bytes]:
    out: list[bytes] = []
    for pos, header in rb.iter_headers(records or b""):
        if header.is_control:
            continue
        out += [r.value or b"" for r in rb.decode_records(records[pos : pos + header.size])]  # type: ignore[index]
    return out


def describe_transactions(c: RawClient, *ids: str) -> dict[str, tuple[Any, ...]]:
    """DescribeTransactions v0, its response read by hand: kio's reader refuses the -1 start
    time Kafka (and kpy) answer for an id with no transaction open. id -> (error, state, timeout,
    producer id, epoch, [(topic, partitions)])."""
    dt = _req("describe_transactions", 0)
    c.send(dt.DescribeTransactionsRequest(transactional_ids=ids))
    data = c.recv_frame()
    pos = 4 + 1 + 4  # correlation id, header tagged fields, throttle time

    def uvarint() -> int:
        nonlocal pos
        value = shift = 0
        while True:
            byte = data[pos]
            pos += 1
            value |= (byte & 0x7F) << shift
            if not byte & 0x80:
                return value
            shift += 7

    def text() -> str:
        nonlocal pos
        n = uvarint() - 1
        pos += n
        return data[pos - n : pos].decode()

    def unpack(fmt: str) -> int:
        nonlocal pos
        (value,) = struct.unpack_from(fmt, data, pos)
        pos += struct.calcsize(fmt)
        return int(value)

    out: dict[str, tuple[Any, ...]] = {}
    for _ in range(uvarint() - 1):
        error = ErrorCode(unpack(">h"))
        txn_id, state, timeout = text(), text(), unpack(">i")
        unpack(">q")  # start time
        producer_id, epoch = unpack(">q"), unpack(">h")
        topics = []
        for _ in range(uvarint() - 1):
            topic = text()
            topics.append((topic, sorted(unpack(">i") for _ in range(uvarint() - 1))))
            uvarint()  # tagged fields
        uvarint()
        out[txn_id] = (error, state, timeout, producer_id, epoch, topics)
    return out


def begin(c: RawClient, txn_id: str, partitions: int = 2) -> tuple[int, int]:
    create_topic(c, TOPIC, partitions)
    assert find_txn_coordinator(c, txn_id).error_code == ErrorCode.none
    resp = init(c, txn_id)
    assert resp.error_code == ErrorCode.none
    return int(resp.producer_id), int(resp.producer_epoch)


def test_read_committed_stops_at_an_open_transaction(kpy: KpyProcess) -> None:
    with RawClient(kpy.bootstrap) as c:
        pid, epoch = begin(c, "t1")
        plain = rb.build_batch([(b"k", b"before")], timestamp=1_000)
        assert produce(c, plain, None).error_code == ErrorCode.none
        assert add_partitions(c, "t1", pid, epoch, {TOPIC: [0]}) == {(TOPIC, 0): ErrorCode.none}
        assert produce(c, txn_batch(pid, epoch, 0), "t1").error_code == ErrorCode.none
        after = rb.build_batch([(b"k", b"after")], timestamp=1_000)
        assert produce(c, after, None).error_code == ErrorCode.none
        # Open: read_committed ends at the transaction's first offset (1); the high watermark
        # and read_uncommitted go to the end (4).
        committed = fetch(c, 0, 1)
        assert (committed.high_watermark, committed.last_stable_offset) == (4, 1)
        assert values(committed.records) == [b"before"]
        assert committed.aborted_transactions == ()
        uncommitted = fetch(c, 0, 0)
        assert values(uncommitted.records) == [b"before", b"v-0", b"v-1", b"after"]
        assert uncommitted.aborted_transactions is None
        assert (latest(c, 1), latest(c, 0)) == (1, 4)
        # Abort: the marker at 4 releases the rest; the aborted transaction is listed.
        assert end_txn(c, "t1", pid, epoch, False) == ErrorCode.none
        committed = fetch(c, 0, 1)
        assert (committed.high_watermark, committed.last_stable_offset) == (5, 5)
        assert values(committed.records) == [b"before", b"v-0", b"v-1", b"after"]
        assert [(a.producer_id, a.first_offset) for a in committed.aborted_transactions] == [
            (pid, 1)
        ]
        assert latest(c, 1) == 5
        # A fetch from inside the transaction's span still lists it (its marker is ahead).
        assert [(a.producer_id, a.first_offset) for a in fetch(c, 3, 1).aborted_transactions] == [
            (pid, 1)
        ]
        plain = rb.build_batch([(b"k", b"later")], timestamp=1_000)
        assert produce(c, plain, None).error_code == ErrorCode.none
        # Past it, none.
        late = fetch(c, 5, 1)
        assert values(late.records) == [b"later"]
        assert late.aborted_transactions == ()


def test_writes_outside_the_transaction_are_refused(kpy: KpyProcess) -> None:
    with RawClient(kpy.bootstrap) as c:
        pid, epoch = begin(c, "t2")
        assert add_partitions(c, "t2", pid, epoch, {TOPIC: [0]}) == {(TOPIC, 0): ErrorCode.none}
        # Partition 1 was never added: INVALID_TXN_STATE before Produce v11, TRANSACTION_ABORTABLE
        # from it (KIP-890).
        assert produce(c, txn_batch(pid, epoch, 0), "t2", 1).error_code == (
            ErrorCode.invalid_txn_state
        )
        assert produce(c, txn_batch(pid, epoch, 0), "t2", 1, version=11).error_code == (
            ErrorCode.transaction_abortable
        )
        # Transactional records without a transactional id.
        assert produce(c, txn_batch(pid, epoch, 0), None).error_code == (
            ErrorCode.transactional_id_authorization_failed
        )
        # A stale epoch at the partition: the coordinator's PRODUCER_FENCED as the producer
        # expects it.
        assert produce(c, txn_batch(pid, epoch + 1, 0), "t2").error_code == (
            ErrorCode.invalid_producer_epoch
        )
        assert produce(c, txn_batch(pid, epoch, 0), "t2").error_code == ErrorCode.none
        assert end_txn(c, "t2", pid, epoch, True) == ErrorCode.none
        # After the end the partition is no longer in a transaction.
        assert produce(c, txn_batch(pid, epoch, 2), "t2").error_code == ErrorCode.invalid_txn_state


def test_add_partitions_errors(kpy: KpyProcess) -> None:
    with RawClient(kpy.bootstrap) as c:
        pid, epoch = begin(c, "t3")
        got = add_partitions(c, "t3", pid, epoch, {TOPIC: [0], "missing": [0]})
        assert got == {
            (TOPIC, 0): ErrorCode.operation_not_attempted,
            ("missing", 0): ErrorCode.unknown_topic_or_partition,
        }
        assert add_partitions(c, "t3", pid, epoch + 1, {TOPIC: [0]}) == {
            (TOPIC, 0): ErrorCode.producer_fenced
        }
        # v1 predates PRODUCER_FENCED.
        assert add_partitions(c, "t3", pid, epoch + 1, {TOPIC: [0]}, version=1) == {
            (TOPIC, 0): ErrorCode.invalid_producer_epoch
        }
        assert add_partitions(c, "t3", pid + 1, epoch, {TOPIC: [0]}) == {
            (TOPIC, 0): ErrorCode.invalid_producer_id_mapping
        }
        assert end_txn(c, "t3", pid, epoch, True) == ErrorCode.invalid_txn_state
        assert init(c, "t3", timeout_ms=900001).error_code == (
            ErrorCode.invalid_transaction_timeout
        )


def test_a_new_producer_fences_the_open_transaction(kpy: KpyProcess) -> None:
    with RawClient(kpy.bootstrap) as c:
        pid, epoch = begin(c, "t4")
        add_partitions(c, "t4", pid, epoch, {TOPIC: [0]})
        assert produce(c, txn_batch(pid, epoch, 0), "t4").error_code == ErrorCode.none
        assert init(c, "t4").error_code == ErrorCode.concurrent_transactions
        again = init(c, "t4")
        assert (again.error_code, again.producer_id, again.producer_epoch) == (
            ErrorCode.none,
            pid,
            epoch + 2,
        )
        # The fenced producer: its writes and its end are refused.
        assert produce(c, txn_batch(pid, epoch, 2), "t4").error_code == (
            ErrorCode.invalid_producer_epoch
        )
        assert end_txn(c, "t4", pid, epoch, True) == ErrorCode.producer_fenced
        assert end_txn(c, "t4", pid, epoch, True, version=1) == ErrorCode.invalid_producer_epoch
        # Its records were aborted.
        part = fetch(c, 0, 1)
        assert part.last_stable_offset == part.high_watermark == 3
        assert [(a.producer_id, a.first_offset) for a in part.aborted_transactions] == [(pid, 0)]


def test_txn_offset_commit_and_require_stable(kpy: KpyProcess) -> None:
    with RawClient(kpy.bootstrap) as c:
        pid, epoch = begin(c, "t5")
        assert find_group_coordinator(c, "grp").error_code == ErrorCode.none
        tc = _req("txn_offset_commit", 3)

        def commit(offset: int, version_mod: Any = tc, group: str = "grp") -> ErrorCode:
            resp = c.request(
                version_mod.TxnOffsetCommitRequest(
                    transactional_id="t5",
                    group_id=group,
                    producer_id=i64(pid),
                    producer_epoch=i16(epoch),
                    generation_id=i32(-1),
                    member_id="",
                    group_instance_id=None,
                    topics=(
                        version_mod.TxnOffsetCommitRequestTopic(
                            name=TOPIC,
                            partitions=(
                                version_mod.TxnOffsetCommitRequestPartition(
                                    partition_index=i32(0),
                                    committed_offset=i64(offset),
                                    committed_leader_epoch=i32(-1),
                                    committed_metadata="m",
                                ),
                            ),
                        ),
                    ),
                )
            )
            return ErrorCode(resp.topics[0].partitions[0].error_code)

        # Before AddOffsetsToTxn the group's partition is not in the transaction.
        assert commit(7) == ErrorCode.invalid_txn_state
        ao = _req("add_offsets_to_txn", 3)
        resp = c.request(
            ao.AddOffsetsToTxnRequest(
                transactional_id="t5",
                producer_id=i64(pid),
                producer_epoch=i16(epoch),
                group_id="grp",
            )
        )
        assert resp.error_code == ErrorCode.none
        assert commit(7) == ErrorCode.none

        of = _req("offset_fetch", 7)

        def fetched(stable: bool) -> tuple[ErrorCode, int]:
            resp = c.request(
                of.OffsetFetchRequest(
                    group_id="grp",
                    topics=(of.OffsetFetchRequestTopic(name=TOPIC, partition_indexes=(i32(0),)),),
                    require_stable=stable,
                )
            )
            p = resp.topics[0].partitions[0]
            return ErrorCode(p.error_code), int(p.committed_offset)

        assert fetched(True) == (ErrorCode.unstable_offset_commit, -1)
        assert fetched(False) == (ErrorCode.none, -1)
        assert end_txn(c, "t5", pid, epoch, True) == ErrorCode.none
        assert fetched(True) == (ErrorCode.none, 7)


def test_admin_views_and_write_txn_markers(kpy: KpyProcess) -> None:
    with RawClient(kpy.bootstrap) as c:
        pid, epoch = begin(c, "t6")
        add_partitions(c, "t6", pid, epoch, {TOPIC: [0, 1]})
        produce(c, txn_batch(pid, epoch, 0), "t6", 0)
        by_id = describe_transactions(c, "t6", "nope", "")
        assert by_id["t6"][:5] == (ErrorCode.none, "Ongoing", 60000, pid, epoch)
        assert by_id["t6"][5] == [(TOPIC, [0, 1])]
        # An error leaves the other fields at their defaults, as Kafka's answer does.
        assert by_id["nope"][:5] == (ErrorCode.transactional_id_not_found, "", 0, 0, 0)
        assert by_id[""][0] == ErrorCode.invalid_request
        lt = _req("list_transactions", 1)
        listed = c.request(
            lt.ListTransactionsRequest(
                state_filters=("Ongoing", "Bogus"), producer_id_filters=(), duration_filter=i64(-1)
            )
        )
        assert [(s.transactional_id, s.transaction_state) for s in listed.transaction_states] == [
            ("t6", "Ongoing")
        ]
        assert listed.unknown_state_filters == ("Bogus",)
        dp = _req("describe_producers", 0)
        producers = c.request(
            dp.DescribeProducersRequest(
                topics=(dp.TopicRequest(name=TOPIC, partition_indexes=(i32(0), i32(9))),)
            )
        )
        p0, p9 = producers.topics[0].partitions
        assert p9.error_code == ErrorCode.unknown_topic_or_partition
        (active,) = p0.active_producers
        assert (active.producer_id, active.producer_epoch, active.current_txn_start_offset) == (
            pid,
            epoch,
            0,
        )
        # kafka-transactions abort: an abort marker written through WriteTxnMarkers.
        wm = _req("write_txn_markers", 1)
        written = c.request(
            wm.WriteTxnMarkersRequest(
                markers=(
                    wm.WritableTxnMarker(
                        producer_id=i64(pid),
                        producer_epoch=i16(epoch),
                        transaction_result=False,
                        topics=(
                            wm.WritableTxnMarkerTopic(name=TOPIC, partition_indexes=(i32(0),)),
                            wm.WritableTxnMarkerTopic(name="missing", partition_indexes=(i32(0),)),
                        ),
                        coordinator_epoch=i32(0),
                    ),
                )
            )
        )
        errors = {
            (t.name, p.partition_index): p.error_code
            for t in written.markers[0].topics
            for p in t.partitions
        }
        assert errors == {
            (TOPIC, 0): ErrorCode.none,
            ("missing", 0): ErrorCode.unknown_topic_or_partition,
        }
        part = fetch(c, 0, 1)
        assert part.last_stable_offset == part.high_watermark == 3


def test_coordinator_state_survives_restarts(kpy: KpyProcess) -> None:
    with RawClient(kpy.bootstrap) as c:
        pid, epoch = begin(c, "t7")
        add_partitions(c, "t7", pid, epoch, {TOPIC: [0]})
        assert produce(c, txn_batch(pid, epoch, 0), "t7").error_code == ErrorCode.none
    kpy.kill()
    kpy.restart()
    with RawClient(kpy.bootstrap) as c:
        # Still open after the crash: the LSO holds, and the producer can commit.
        part = fetch(c, 0, 1)
        assert (part.last_stable_offset, part.high_watermark) == (0, 2)
        assert end_txn(c, "t7", pid, epoch, True) == ErrorCode.none
        assert values(fetch(c, 0, 1).records) == [b"v-0", b"v-1"]
    kpy.stop()
    kpy.restart()
    with RawClient(kpy.bootstrap) as c:
        again = init(c, "t7")
        assert (again.error_code, again.producer_id, again.producer_epoch) == (
            ErrorCode.none,
            pid,
            epoch + 1,
        )
        part = fetch(c, 0, 1)
        assert part.last_stable_offset == part.high_watermark == 3
