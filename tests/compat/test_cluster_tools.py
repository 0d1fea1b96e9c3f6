"""The stock cluster tools against the broker under test, once per release in ``tools``:
kafka-log-dirs (DescribeCluster, DescribeLogDirs), kafka-leader-election (ElectLeaders),
kafka-reassign-partitions --list (ListPartitionReassignments) and kafka-cluster cluster-id
(DescribeCluster), each checked on its output and its exit code."""

from __future__ import annotations

import json
from pathlib import Path

from kpy_process import KpyProcess

from compat.tools import Tools


def cluster_id(data_dir: Path) -> str:
    for line in (data_dir / "meta.properties").read_text().splitlines():
        if line.startswith("cluster.id="):
            return line.split("=", 1)[1]
    raise AssertionError("no cluster.id in meta.properties")


def segment_bytes(data_dir: Path, topic: str, partition: int) -> int:
    return sum(f.stat().st_size for f in (data_dir / f"{topic}-{partition}").glob("*.log"))


def test_log_dirs_describe(broker: KpyProcess, tools: Tools) -> None:
    b = broker.bootstrap
    tools.ok("kafka-topics", "--bootstrap-server", b, "--create", "--topic", "dirs",
             "--partitions", "2")  # fmt: skip
    tools.ok("kafka-console-producer", "--bootstrap-server", b, "--topic", "dirs",
             stdin="".join(f"line-{i}\n" for i in range(50)))  # fmt: skip
    out = tools.ok("kafka-log-dirs", "--bootstrap-server", b, "--describe",
                   "--topic-list", "dirs")  # fmt: skip
    lines = out.splitlines()
    assert lines[:2] == [
        "Querying brokers for log directories information",
        "Received log directory information from brokers 1",
    ]
    report = json.loads(lines[2])
    assert report["version"] == 1
    (described,) = report["brokers"]
    assert described["broker"] == 1
    (log_dir,) = described["logDirs"]
    assert log_dir["logDir"] == str(broker.data_dir.absolute()) and log_dir["error"] is None
    partitions = {p["partition"]: p for p in log_dir["partitions"]}
    assert set(partitions) == {"dirs-0", "dirs-1"}
    for p in (0, 1):
        entry = partitions[f"dirs-{p}"]
        assert entry["size"] == segment_bytes(broker.data_dir, "dirs", p)
        assert (entry["offsetLag"], entry["isFuture"]) == (0, False)
    assert sum(p["size"] for p in partitions.values()) > 0

    # Without a topic list: every partition, those of the internal offsets topic included when
    # it exists (kpy makes it at start-up, Kafka at the first group request).
    everything = json.loads(
        tools.ok("kafka-log-dirs", "--bootstrap-server", b, "--describe").splitlines()[2]
    )
    names = {p["partition"] for p in everything["brokers"][0]["logDirs"][0]["partitions"]}
    assert {"dirs-0", "dirs-1"} <= names
    assert names - {"dirs-0", "dirs-1"} <= {f"__consumer_offsets-{i}" for i in range(50)}

    # The brokers the tool may ask are the ones DescribeCluster lists.
    other = tools.run("kafka-log-dirs", "--bootstrap-server", b, "--describe",
                      "--broker-list", "2")  # fmt: skip
    assert other.returncode != 0
    assert "The given brokers do not exist from --broker-list: 2. Current existent brokers: 1" in (
        other.stdout + other.stderr
    )


def test_leader_election(broker: KpyProcess, tools: Tools) -> None:
    b = broker.bootstrap
    tools.ok("kafka-topics", "--bootstrap-server", b, "--create", "--topic", "elect",
             "--partitions", "2")  # fmt: skip
    # Every partition already has its preferred leader: nothing to report.
    out = tools.ok("kafka-leader-election", "--bootstrap-server", b, "--election-type",
                   "preferred", "--all-topic-partitions")  # fmt: skip
    assert out.strip() == ""
    out = tools.ok("kafka-leader-election", "--bootstrap-server", b, "--election-type",
                   "preferred", "--topic", "elect", "--partition", "1")  # fmt: skip
    assert out.strip() == "Valid replica already elected for partitions elect-1"
    out = tools.ok("kafka-leader-election", "--bootstrap-server", b, "--election-type",
                   "unclean", "--topic", "elect", "--partition", "0")  # fmt: skip
    assert out.strip() == "Valid replica already elected for partitions elect-0"

    missing = tools.run("kafka-leader-election", "--bootstrap-server", b, "--election-type",
                        "preferred", "--topic", "nope", "--partition", "0")  # fmt: skip
    assert missing.returncode == 1
    assert missing.stdout.strip() == (
        "Error completing leader election (PREFERRED) for partition: nope-0: "
        "org.apache.kafka.common.errors.UnknownTopicOrPartitionException: No such topic as nope"
    )
    assert "1 replica(s) could not be elected" in missing.stderr


def test_reassign_partitions_list(broker: KpyProcess, tools: Tools) -> None:
    b = broker.bootstrap
    tools.ok("kafka-topics", "--bootstrap-server", b, "--create", "--topic", "stay",
             "--partitions", "3")  # fmt: skip
    out = tools.ok("kafka-reassign-partitions", "--bootstrap-server", b, "--list")
    assert out.strip() == "No partition reassignments found."


def test_cluster_id(broker: KpyProcess, tools: Tools) -> None:
    out = tools.ok("kafka-cluster", "cluster-id", "--bootstrap-server", broker.bootstrap)
    assert out.strip() == f"Cluster ID: {cluster_id(broker.data_dir)}"
