"""kafka-console-producer and kafka-console-consumer scenarios, checked the same against kpy and
against Apache Kafka (``--compat-broker=kafka``), with the tools of every release in ``tools``.

The producer's defaults are Kafka's (idempotent, acks=all); keys, headers and compression are
produced through its ``--property``/``--compression-codec`` options and read back through the
consumer's formatter properties, and the stored batches are checked with kafka-dump-log.
"""

from __future__ import annotations

import re

import pytest

from compat.steps import (
    Broker,
    batch_field,
    consume,
    create_topic,
    produce,
    segment_batches,
)
from compat.tools import Tools

FIRST_SEGMENT = f"{0:020d}.log"


def test_producer_defaults_are_idempotent(broker: Broker, tools: Tools) -> None:
    """Each producer run gets its own producer id; its sequences start at 0."""
    b = broker.bootstrap
    create_topic(tools, b, "idem")
    produce(tools, b, "idem", [f"a{i}" for i in range(3)])
    produce(tools, b, "idem", [f"b{i}" for i in range(2)])

    batches = segment_batches(tools, str(broker.data_dir / "idem-0" / FIRST_SEGMENT))
    ids = [batch_field(batch, "producerId") for batch in batches]
    assert "-1" not in ids and len(set(ids)) == 2, batches
    firsts = [batches[ids.index(pid)] for pid in dict.fromkeys(ids)]
    assert [batch_field(f, "baseSequence") for f in firsts] == ["0", "0"]
    assert [batch_field(f, "producerEpoch") for f in firsts] == ["0", "0"]
    assert all(batch_field(batch, "isTransactional") == "false" for batch in batches)
    assert consume(tools, b, "idem", 5, "--from-beginning") == ["a0", "a1", "a2", "b0", "b1"]


def test_producer_parses_keys(broker: Broker, tools: Tools) -> None:
    b = broker.bootstrap
    create_topic(tools, b, "keyed")
    produce(tools, b, "keyed", ["k1:v1", "k2:v:2", "k1:v3"],
            "--property", "parse.key=true", "--property", "key.separator=:")  # fmt: skip
    out = consume(tools, b, "keyed", 3, "--from-beginning",
                  "--property", "print.key=true", "--property", "key.separator=|")  # fmt: skip
    # Only the first separator splits: the value keeps the rest of the line.
    assert out == ["k1|v1", "k2|v:2", "k1|v3"]


@pytest.mark.parametrize("codec", ["gzip", "snappy", "lz4", "zstd"])
def test_producer_compression_codec(broker: Broker, tools: Tools, codec: str) -> None:
    b = broker.bootstrap
    topic = f"packed-{codec}"
    create_topic(tools, b, topic)
    lines = [f"{codec} record {i} " + "x" * 50 for i in range(50)]
    produce(tools, b, topic, lines, "--compression-codec", codec)

    batches = segment_batches(tools, str(broker.data_dir / f"{topic}-0" / FIRST_SEGMENT))
    assert batches, "no batches stored"
    # The broker keeps the producer's codec (compression.type=producer).
    assert {batch_field(batch, "compresscodec").lower() for batch in batches} == {codec}
    assert all(batch_field(batch, "isvalid") == "true" for batch in batches)
    assert consume(tools, b, topic, 50, "--from-beginning") == lines


def test_consumer_from_beginning_max_messages(broker: Broker, tools: Tools) -> None:
    b = broker.bootstrap
    create_topic(tools, b, "ten")
    produce(tools, b, "ten", [f"m{i}" for i in range(10)])
    assert consume(tools, b, "ten", 3, "--from-beginning") == ["m0", "m1", "m2"]
    assert consume(tools, b, "ten", 10, "--from-beginning") == [f"m{i}" for i in range(10)]


def test_consumer_group_resumes_from_committed_offset(broker: Broker, tools: Tools) -> None:
    """A --group consumer commits what it read on exit; the next one with the group goes on."""
    b = broker.bootstrap
    create_topic(tools, b, "resume")
    produce(tools, b, "resume", [f"first{i}" for i in range(5)])
    first = consume(tools, b, "resume", 5, "--group", "resumers", "--from-beginning")
    assert first == [f"first{i}" for i in range(5)]
    produce(tools, b, "resume", [f"second{i}" for i in range(3)])
    # No --from-beginning, and it would not matter: the group has a committed offset.
    again = consume(tools, b, "resume", 3, "--group", "resumers")
    assert again == [f"second{i}" for i in range(3)]
    # A new group with no committed offset starts at the end (auto.offset.reset=latest) unless
    # told otherwise: --from-beginning reads all eight.
    everything = consume(tools, b, "resume", 8, "--group", "newcomers", "--from-beginning")
    assert everything == [f"first{i}" for i in range(5)] + [f"second{i}" for i in range(3)]


def test_consumer_prints_key_timestamp_headers(broker: Broker, tools: Tools) -> None:
    b = broker.bootstrap
    create_topic(tools, b, "decorated")
    # parse.headers: "k1:v1,k2:v2" then a tab, then the key, a tab and the value.
    produce(tools, b, "decorated",
            ["h1:one,h2:two\tkey-a\tvalue-a", "solo:x\tkey-b\tvalue-b"],
            "--property", "parse.headers=true", "--property", "parse.key=true")  # fmt: skip
    out = consume(tools, b, "decorated", 2, "--from-beginning",
                  "--property", "print.key=true", "--property", "print.timestamp=true",
                  "--property", "print.headers=true")  # fmt: skip
    assert len(out) == 2, out
    fields = [line.split("\t") for line in out]
    for row in fields:
        assert re.fullmatch(r"CreateTime:\d{13}", row[0]), row
    assert [row[1:] for row in fields] == [
        ["h1:one,h2:two", "key-a", "value-a"],
        ["solo:x", "key-b", "value-b"],
    ]
    # A record without headers prints NO_HEADERS.
    produce(tools, b, "decorated", ["plain"])
    out = consume(tools, b, "decorated", 3, "--from-beginning",
                  "--property", "print.headers=true")  # fmt: skip
    assert out[2] == "NO_HEADERS\tplain"


def test_consumer_partition_and_offset(broker: Broker, tools: Tools) -> None:
    b = broker.bootstrap
    create_topic(tools, b, "spread", partitions=3)
    # Keyed records: the client's partitioner (murmur2 of the key) spreads them.
    produce(tools, b, "spread", [f"key{i}\tval{i}" for i in range(30)],
            "--property", "parse.key=true")  # fmt: skip
    placed = consume(tools, b, "spread", 30, "--from-beginning", "--property",
                     "print.partition=true", "--property", "print.offset=true")  # fmt: skip
    by_partition: dict[str, list[tuple[int, str]]] = {}
    for line in placed:
        partition, offset, value = line.split("\t")
        by_partition.setdefault(partition, []).append((int(offset.removeprefix("Offset:")), value))
    assert sorted(by_partition) == ["Partition:0", "Partition:1", "Partition:2"]

    records = sorted(by_partition["Partition:1"])
    assert [offset for offset, _ in records] == list(range(len(records)))
    start = 2
    want = [value for _, value in records[start:]]
    out = consume(tools, b, "spread", len(want), "--partition", "1", "--offset", str(start))
    assert out == want
    # --offset earliest reads the partition from its start.
    out = consume(tools, b, "spread", len(records), "--partition", "1", "--offset", "earliest")
    assert out == [value for _, value in records]
