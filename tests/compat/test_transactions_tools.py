"""Transactions through the stock Java tools (the jars of every release in ``tools``), checked the
same against kpy and against Apache Kafka (``--compat-broker=kafka``):

- kafka-producer-perf-test --transactional-id --transaction-duration-ms, read back with
  kafka-console-consumer --isolation-level read_committed, and its segment with kafka-dump-log;
- org.apache.kafka.tools.TransactionalMessageCopier (the copier of Kafka's system tests, with its
  random aborts), whose output must equal its input;
- kafka-transactions (TransactionsCommand): list, describe, describe-producers on an open and on a
  committed transaction, and find-hanging and abort on a hanging one;
- kafka-dump-log on a partition's .txnindex (the aborted transactions) and on __transaction_state
  with --transaction-log-decoder (the coordinator's records of a transactional id).

kafka-console-producer has no transactional mode in 4.1 or 3.9 (no such option in its --help, and
a transactional.id given through --producer-property fails: it never calls init_transactions), so
it is not tested here. kafka-get-offsets cannot ask for the read_committed end either (no
isolation option, and its Admin.listOffsets call uses the default READ_UNCOMMITTED):
test_transactions.py checks ListOffsets at read_committed with librdkafka.

The Java producer of 4.x uses transaction protocol version 2 against a Kafka 4.x broker
(KIP-890): every commit or abort bumps the producer epoch, so the epochs of its transactional ids
depend on how many transactions ran and are not pinned here; librdkafka's epoch stays 0.

Tables are kafka-transactions' tab-separated output, read by column name.
"""

from __future__ import annotations

import datetime
import json
import re
import time
import uuid
from pathlib import Path

from kio.schema.find_coordinator.v4 import request as find_coordinator_v4
from kio.schema.init_producer_id.v4 import request as init_producer_id
from kio.schema.produce.v9 import request as produce_v9
from kio.static.primitive import i8, i16, i32
from rawclient import RawClient

from compat.steps import Broker, consume, create_topic, produce
from compat.tools import Tools
from compat.txn_steps import (
    READ_COMMITTED,
    READ_UNCOMMITTED,
    WAIT,
    create_topics,
    end_offsets,
    plain_producer,
    read_all,
    send,
    txn_producer,
    values,
)
from kpy.protocol.records import build_batch

FIRST = f"{0:020d}"
TRANSACTIONAL = 0x10  # record batch attribute bit 4
# TransactionState codes in __transaction_state values (TransactionState.java), as 4.x prints them.
STATES = {0: "Empty", 1: "Ongoing", 2: "PrepareCommit", 3: "PrepareAbort", 4: "CompleteCommit",
          5: "CompleteAbort", 6: "Dead", 7: "PrepareEpochFence"}  # fmt: skip


def unique(name: str) -> str:
    """A transactional id of its own: the coordinator keeps ids across the tests that share a
    Kafka broker (and a used id's next InitProducerId bumps its epoch)."""
    return f"{name}-{uuid.uuid4().hex[:8]}"


def transactions(tools: Tools, bootstrap: str, *args: str) -> str:
    return tools.ok("kafka-transactions", "--bootstrap-server", bootstrap, *args)


def table(out: str) -> list[dict[str, str]]:
    """The rows of a kafka-transactions table (a header line, then rows; tab-separated, padded)."""
    lines = [line for line in out.splitlines() if line.strip()]
    assert lines, out
    header = [cell.strip() for cell in lines[0].rstrip("\t").split("\t")]
    rows = [[cell.strip() for cell in line.rstrip("\t").split("\t")] for line in lines[1:]]
    for row in rows:
        row += [""] * (len(header) - len(row))  # an empty last column leaves no cell
    return [dict(zip(header, row, strict=True)) for row in rows]


def java_string_hash(text: str) -> int:
    h = 0
    for ch in text:
        h = (31 * h + ord(ch)) & 0xFFFFFFFF
    return h - (1 << 32) if h >= 1 << 31 else h


def txn_state_partition(transactional_id: str) -> int:
    """Kafka's __transaction_state partition of a transactional id: abs(hashCode) % 50."""
    return abs(java_string_hash(transactional_id)) % 50


def test_perf_test_transactions_read_committed(broker: Broker, tools: Tools) -> None:
    """kafka-producer-perf-test in transactions: every record is committed, so the
    read_committed console consumer reads all of them; each transaction leaves one COMMIT marker,
    so the high watermark (= the LSO, nothing open) is the records plus the markers, and every
    batch in the segment is transactional."""
    b = broker.bootstrap
    txn_id = unique("perf-txn-id")
    create_topic(tools, b, "perf-txn")
    out = tools.ok("kafka-producer-perf-test", "--topic", "perf-txn", "--num-records", "600",
                   "--record-size", "16", "--throughput", "-1",
                   "--producer-props", f"bootstrap.servers={b}",
                   "--transactional-id", txn_id,
                   "--transaction-duration-ms", "50")  # fmt: skip
    assert re.search(r"^600 records sent", out, re.M), out

    lines = consume(tools, b, "perf-txn", 600, "--from-beginning",
                    "--isolation-level", "read_committed")  # fmt: skip
    assert len(lines) == 600 and all(re.fullmatch(r"[A-Z]{16}", line) for line in lines)

    (high,) = end_offsets(b, "perf-txn", 1, READ_UNCOMMITTED)
    assert end_offsets(b, "perf-txn", 1, READ_COMMITTED) == [high]
    markers = high - 600
    assert markers >= 1
    assert len(read_all(b, "perf-txn", 1, READ_COMMITTED)[0]) == 600

    dump = tools.ok("kafka-dump-log", "--files",
                    str(broker.data_dir / "perf-txn-0" / f"{FIRST}.log"),
                    "--print-data-log")  # fmt: skip
    batches = [line for line in dump.splitlines() if line.startswith("baseOffset: ")]
    assert all("isTransactional: true" in batch for batch in batches), batches
    assert len([batch for batch in batches if "isControl: true" in batch]) == markers
    assert len(re.findall(r"endTxnMarker: COMMIT coordinatorEpoch: \d+", dump)) == markers
    assert "endTxnMarker: ABORT" not in dump

    rows = table(transactions(tools, b, "describe", "--transactional-id", txn_id))
    assert len(rows) == 1
    assert rows[0]["TransactionState"] == "CompleteCommit"
    assert rows[0]["TopicPartitions"] == ""


def test_transactional_message_copier(broker: Broker, tools: Tools) -> None:
    """TransactionalMessageCopier, aborting transactions at random, copies 500 records exactly:
    the read_committed output is the input in order, and the group's committed offset is the
    input's end."""
    b = broker.bootstrap
    txn_id = unique("java-copier-txn")
    create_topic(tools, b, "copier-in")
    create_topic(tools, b, "copier-out")
    lines = [f"line-{i}" for i in range(500)]
    produce(tools, b, "copier-in", lines)

    out = tools.ok("kafka-transactional-message-copier", "--broker-list", b,
                   "--input-topic", "copier-in", "--input-partition", "0",
                   "--output-topic", "copier-out", "--consumer-group", "java-copier",
                   "--transactional-id", txn_id, "--transaction-size", "50",
                   "--max-messages", "-1", "--enable-random-aborts",
                   "--use-group-metadata")  # fmt: skip
    last = json.loads(out.splitlines()[-1])
    assert last["stage"] == "ShutdownComplete", out
    assert (last["totalProcessed"], last["remaining"]) == (500, 0), out

    assert consume(tools, b, "copier-out", 500, "--from-beginning",
                   "--isolation-level", "read_committed") == lines  # fmt: skip
    assert values(read_all(b, "copier-out", 1, READ_COMMITTED)) == {
        0: [line.encode() for line in lines]
    }
    described = tools.ok("kafka-consumer-groups", "--bootstrap-server", b, "--describe",
                         "--group", "java-copier")  # fmt: skip
    rows = [line.split() for line in described.splitlines() if line.startswith("java-copier ")]
    assert [row[1:5] for row in rows] == [["copier-in", "0", "500", "500"]], described


def test_transactions_command_open_then_committed(broker: Broker, tools: Tools) -> None:
    """kafka-transactions on a librdkafka transaction that committed once (to partition 0) and is
    open again (2 records in partition 1): list and describe say Ongoing with only partition 1,
    describe-producers gives the open transaction's start offset in partition 1 and none in
    partition 0, find-hanging finds nothing (the coordinator knows the transaction); after the
    commit, CompleteCommit with no partitions and no open transaction anywhere."""
    b = broker.bootstrap
    txn_id = unique("described-txn")
    create_topics(b, "described", partitions=2)
    producer = txn_producer(b, txn_id)
    producer.begin_transaction()
    send(producer, "described", [b"c0"], 0)
    producer.commit_transaction(WAIT)
    producer.begin_transaction()
    send(producer, "described", [b"o0", b"o1"], 1)

    listed = [r for r in table(transactions(tools, b, "list")) if r["TransactionalId"] == txn_id]
    assert len(listed) == 1, listed
    pid = listed[0]["ProducerId"]
    assert re.fullmatch(r"\d+", pid)
    assert (listed[0]["Coordinator"], listed[0]["TransactionState"]) == ("1", "Ongoing")

    (desc,) = table(transactions(tools, b, "describe", "--transactional-id", txn_id))
    assert {k: desc[k] for k in ("CoordinatorId", "TransactionalId", "ProducerId",
                                 "ProducerEpoch", "TransactionState", "TransactionTimeoutMs",
                                 "TopicPartitions")} == {
        "CoordinatorId": "1", "TransactionalId": txn_id, "ProducerId": pid,
        "ProducerEpoch": "0", "TransactionState": "Ongoing",
        "TransactionTimeoutMs": "60000",  # librdkafka's default transaction.timeout.ms
        "TopicPartitions": "described-1",
    }  # fmt: skip
    assert re.fullmatch(r"\d{13}", desc["CurrentTransactionStartTimeMs"]), desc
    assert re.fullmatch(r"\d+", desc["TransactionDurationMs"]), desc

    def producers(partition: int) -> list[dict[str, str]]:
        return table(transactions(tools, b, "describe-producers", "--topic", "described",
                                  "--partition", str(partition)))  # fmt: skip

    (open_part,) = producers(1)
    assert {k: open_part[k] for k in ("ProducerId", "ProducerEpoch", "LatestCoordinatorEpoch",
                                      "LastSequence", "CurrentTransactionStartOffset")} == {
        "ProducerId": pid, "ProducerEpoch": "0", "LatestCoordinatorEpoch": "-1",
        "LastSequence": "1", "CurrentTransactionStartOffset": "0",
    }  # fmt: skip
    (done_part,) = producers(0)
    assert (done_part["ProducerId"], done_part["LastSequence"]) == (pid, "0")
    assert done_part["CurrentTransactionStartOffset"] == "None"
    assert re.fullmatch(r"\d+", done_part["LatestCoordinatorEpoch"]), done_part

    hanging = transactions(tools, b, "find-hanging", "--topic", "described",
                           "--max-transaction-timeout", "0")  # fmt: skip
    assert table(hanging) == [], hanging

    producer.commit_transaction(WAIT)
    deadline = time.monotonic() + WAIT
    while True:  # the coordinator completes the commit after EndTxn has returned
        (desc,) = table(transactions(tools, b, "describe", "--transactional-id", txn_id))
        if desc["TransactionState"] != "PrepareCommit":
            break
        assert time.monotonic() < deadline, desc
    assert (desc["TransactionState"], desc["TopicPartitions"]) == ("CompleteCommit", "")
    assert desc["ProducerId"] == pid and desc["ProducerEpoch"] == "0"
    (open_part,) = producers(1)
    assert open_part["CurrentTransactionStartOffset"] == "None"
    assert re.fullmatch(r"\d+", open_part["LatestCoordinatorEpoch"]), open_part

    missing = tools.run("kafka-transactions", "--bootstrap-server", b, "describe",
                        "--transactional-id", "no-such-txn")  # fmt: skip
    assert missing.returncode == 1
    assert "Failed to describe transaction state of transactional-id `no-such-txn`" in (
        missing.stdout + missing.stderr
    )
    assert "the ID could not be found" in missing.stdout + missing.stderr


# Answers to FindCoordinator and InitProducerId that say "ask again": the coordinator is being
# made or loaded (__transaction_state is created by the first request for it), or is finishing
# the transactional id's previous transaction.
RETRY = {14, 15, 16, 51}


def raw_init_producer_id(client: RawClient, transactional_id: str) -> tuple[int, int]:
    """FindCoordinator (key type 1, transaction), then InitProducerId for ``transactional_id``,
    each asked again while the answer is one of RETRY: the producer id and epoch."""
    deadline = time.monotonic() + WAIT
    while True:
        found = client.request(
            find_coordinator_v4.FindCoordinatorRequest(
                key_type=i8(1), coordinator_keys=(transactional_id,)
            )
        )
        if found.coordinators[0].error_code == 0:
            break
        assert found.coordinators[0].error_code in RETRY and time.monotonic() < deadline, found
        time.sleep(0.2)
    while True:
        init = client.request(
            init_producer_id.InitProducerIdRequest(
                transactional_id=transactional_id,
                transaction_timeout=datetime.timedelta(minutes=1),
                producer_id=-1,
                producer_epoch=i16(-1),
            )
        )
        if init.error_code == 0:
            return init.producer_id, init.producer_epoch
        assert init.error_code in RETRY and time.monotonic() < deadline, init
        time.sleep(0.2)


def raw_transactional_produce(bootstrap: str, transactional_id: str, topic: str) -> tuple[int, int]:
    """InitProducerId for ``transactional_id``, then a Produce (v9) of a transactional batch of two
    records to ``topic``-0 without AddPartitionsToTxn: what a buggy client or a lost
    AddPartitionsToTxn leaves. The producer id and the partition's error code."""
    with RawClient(bootstrap) as client:
        producer_id, epoch = raw_init_producer_id(client, transactional_id)
        batch = build_batch(
            [(None, b"hung0"), (None, b"hung1")],
            timestamp=int(time.time() * 1000),
            producer_id=producer_id,
            producer_epoch=epoch,
            base_sequence=0,
            attributes=TRANSACTIONAL,
        )
        data = produce_v9.PartitionProduceData(index=i32(0), records=batch)
        response = client.request(
            produce_v9.ProduceRequest(
                transactional_id=transactional_id,
                acks=i16(-1),
                timeout=datetime.timedelta(seconds=10),
                topic_data=(produce_v9.TopicProduceData(name=topic, partition_data=(data,)),),
            )
        )
        return producer_id, response.responses[0].partition_responses[0].error_code


def test_find_hanging_and_abort(broker: Broker, tools: Tools) -> None:
    """A transactional write to a partition never added to the transaction is refused
    (INVALID_TXN_STATE, 48: the broker verifies it with the coordinator, KIP-890) unless
    transaction.partition.verification.enable is false; written then, it is a hanging
    transaction: the partition has it open, the coordinator does not know it (Empty), so it never
    times out and holds the LSO. find-hanging lists it once older than --max-transaction-timeout
    (minutes); abort --start-offset writes the ABORT marker and frees the LSO."""
    b = broker.bootstrap
    txn_id = unique("hung-txn")
    create_topics(b, "hung")
    _, error = raw_transactional_produce(b, unique("refused"), "hung")
    assert error == 48

    def verification(*change: str) -> None:
        tools.ok("kafka-configs", "--bootstrap-server", b, "--alter", "--entity-type", "brokers",
                 "--entity-default", *change)  # fmt: skip

    verification("--add-config", "transaction.partition.verification.enable=false")
    try:
        pid, error = raw_transactional_produce(b, txn_id, "hung")
    finally:
        verification("--delete-config", "transaction.partition.verification.enable")
    assert error == 0
    send(plain_producer(b), "hung", [b"after"])  # offset 2
    assert end_offsets(b, "hung", 1, READ_COMMITTED) == [0]

    (desc,) = table(transactions(tools, b, "describe", "--transactional-id", txn_id))
    assert (desc["ProducerId"], desc["TransactionState"]) == (str(pid), "Empty")
    assert desc["TopicPartitions"] == ""

    # The default --max-transaction-timeout (15 minutes): too young to be suspect.
    assert table(transactions(tools, b, "find-hanging", "--topic", "hung")) == []
    found = table(transactions(tools, b, "find-hanging", "--topic", "hung",
                               "--max-transaction-timeout", "0"))  # fmt: skip
    assert len(found) == 1, found
    assert {k: found[0][k] for k in ("Topic", "Partition", "ProducerId", "ProducerEpoch",
                                     "CoordinatorEpoch", "StartOffset", "Duration(min)")} == {
        "Topic": "hung", "Partition": "0", "ProducerId": str(pid), "ProducerEpoch": "0",
        "CoordinatorEpoch": "-1", "StartOffset": "0", "Duration(min)": "0",
    }  # fmt: skip
    assert re.fullmatch(r"\d{13}", found[0]["LastTimestamp"]), found

    out = transactions(tools, b, "abort", "--topic", "hung", "--partition", "0",
                       "--start-offset", "0")  # fmt: skip
    assert out == ""
    assert end_offsets(b, "hung", 1, READ_COMMITTED) == [4]  # the ABORT marker at 3
    assert read_all(b, "hung", 1, READ_COMMITTED) == {0: [(2, b"after")]}
    assert table(transactions(tools, b, "find-hanging", "--topic", "hung",
                              "--max-transaction-timeout", "0")) == []  # fmt: skip
    # Two producers wrote to the partition: the hanging one and the idempotent one; none is open.
    states = table(transactions(tools, b, "describe-producers", "--topic", "hung",
                                "--partition", "0"))  # fmt: skip
    assert len(states) == 2 and str(pid) in {state["ProducerId"] for state in states}, states
    assert {state["CurrentTransactionStartOffset"] for state in states} == {"None"}, states

    dump = tools.ok(
        "kafka-dump-log", "--files", str(broker.data_dir / "hung-0" / f"{FIRST}.txnindex")
    )
    assert dump.splitlines()[1:] == [
        f"version: 0 producerId: {pid} firstOffset: 0 lastOffset: 3 lastStableOffset: 4"
    ], dump


def decoded_txn_records(tools: Tools, segment: Path, transactional_id: str) -> list[dict[str, str]]:
    """The records of ``transactional_id`` in a __transaction_state segment, as kafka-dump-log
    --transaction-log-decoder prints them (JSON in 4.x, key=value text in 3.x): producerId,
    producerEpoch, state and partitions of each."""
    dump = tools.ok("kafka-dump-log", "--files", str(segment), "--transaction-log-decoder")
    found = []
    for line in dump.splitlines():
        if not line.startswith("| offset: "):
            continue
        if tools.major >= 4:
            key = json.loads(line.split(" key: ", 1)[1].split(" payload: ", 1)[0])
            if key["data"]["transactionalId"] != transactional_id:
                continue
            value = json.loads(line.split(" payload: ", 1)[1])["data"]
            parts = [f"{t['topic']}-{p}" for t in value["transactionPartitions"] or []
                     for p in t["partitionIds"]]  # fmt: skip
            found.append({"producerId": str(value["producerId"]),
                          "producerEpoch": str(value["producerEpoch"]),
                          "state": STATES[value["transactionStatus"]],
                          "partitions": ",".join(parts)})  # fmt: skip
        else:
            if f"key: transaction_metadata::transactionalId={transactional_id} " not in line:
                continue
            m = re.search(r"payload: producerId:(\d+),producerEpoch:(\d+),state=(\w+),"
                          r"partitions=\[([^\]]*)\]", line)  # fmt: skip
            assert m, line
            found.append({"producerId": m[1], "producerEpoch": m[2], "state": m[3],
                          "partitions": m[4].replace(" ", "")})  # fmt: skip
    return found


def test_dump_log_txnindex_and_transaction_state(broker: Broker, tools: Tools) -> None:
    """After commit, abort, commit by librdkafka: the partition's .txnindex holds the aborted
    transaction only (producer id, first offset, the marker's offset, the LSO after it); the
    segment holds COMMIT, ABORT, COMMIT markers; __transaction_state (partition abs(hash) % 50 of
    the transactional id) holds the coordinator's records of each step, in order:
    Empty, then per transaction Ongoing (with the partition), PrepareCommit/PrepareAbort,
    CompleteCommit/CompleteAbort (with no partitions), all with the same producer id, epoch 0."""
    b = broker.bootstrap
    txn_id = unique("dumped-txn")
    create_topics(b, "dumped")
    producer = txn_producer(b, txn_id)
    for i, (records, commit) in enumerate([(2, True), (2, False), (1, True)]):
        producer.begin_transaction()
        send(producer, "dumped", [f"d{i}-{r}".encode() for r in range(records)])
        (producer.commit_transaction if commit else producer.abort_transaction)(WAIT)
    # 0, 1 COMMIT@2; 3, 4 ABORT@5; 6 COMMIT@7.
    assert read_all(b, "dumped", 1, READ_COMMITTED) == {
        0: [(0, b"d0-0"), (1, b"d0-1"), (6, b"d2-0")]
    }

    partition_dir = broker.data_dir / "dumped-0"
    index = tools.ok("kafka-dump-log", "--files", str(partition_dir / f"{FIRST}.txnindex"))
    lines = index.splitlines()
    assert lines[0] == f"Dumping {partition_dir / f'{FIRST}.txnindex'}"
    m = re.fullmatch(r"version: 0 producerId: (\d+) firstOffset: 3 lastOffset: 5 "
                     r"lastStableOffset: 6", lines[1])  # fmt: skip
    assert m and len(lines) == 2, index
    pid = m[1]

    data = tools.ok("kafka-dump-log", "--files", str(partition_dir / f"{FIRST}.log"),
                    "--print-data-log")  # fmt: skip
    markers = re.findall(r"\| offset: (\d+) .* endTxnMarker: (\w+) coordinatorEpoch: \d+", data)
    assert markers == [("2", "COMMIT"), ("5", "ABORT"), ("7", "COMMIT")], data

    segment = broker.data_dir / f"__transaction_state-{txn_state_partition(txn_id)}"
    segment /= f"{FIRST}.log"
    part = "dumped-0"
    want = [("Empty", "")]
    for end in ("Commit", "Abort", "Commit"):
        want += [("Ongoing", part), (f"Prepare{end}", part), (f"Complete{end}", "")]
    deadline = time.monotonic() + WAIT
    while True:  # the last CompleteCommit is written after EndTxn has returned
        found = decoded_txn_records(tools, segment, txn_id)
        if len(found) >= len(want) or time.monotonic() > deadline:
            break
    assert [(r["state"], r["partitions"]) for r in found] == want, found
    assert {(r["producerId"], r["producerEpoch"]) for r in found} == {(pid, "0")}
