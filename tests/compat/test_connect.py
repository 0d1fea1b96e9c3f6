"""Kafka Connect, the stock runtime from the jars, against the broker under test.

Connect is run as ``bin/connect-standalone.sh`` and ``bin/connect-distributed.sh`` run it
(``compat-tests/kafka-tool connect-*`` with a worker properties file; tests/compat/java_app.py),
with the FileStream source and sink connectors of the release: a file is read into a topic and
the topic written out to another file, so what went through the broker is checked line for line.
What Connect asks of a broker beyond a plain client's:

- standalone: the source's offsets stay in a local file, the sink's are its consumer group's
  (``connect-<connector>``), committed when the worker stops (SIGTERM runs its shutdown hook);
  the source topic is created through the admin API (``topic.creation.default.*``).
- distributed: the worker creates its config, offset and status topics itself (compacted, with
  the partition counts it asks for, checked with DescribeConfigs, as the worker checks them too),
  keeps everything in them (a restarted worker finds its connectors and offsets there), and joins
  a group of protocol type ``connect`` whose leader assigns the work. The REST API stops a
  connector and rewrites its sink offsets (KIP-875), which the worker does with
  AlterConsumerGroupOffsets on the then empty group.
- two workers: each offers the protocols its ``connect.protocol`` allows (sessioned, compatible,
  default), and the broker picks the one every member supports by their votes; a worker that
  leaves (LeaveGroup) starts a rebalance that hands its work to the other.
- exactly-once source support (KIP-618): each source task writes its records and offsets in
  transactions (transactional id ``<group>-<connector>-<task>``), the leader writes the config
  topic transactionally and everyone reads it read_committed; a worker killed (SIGKILL) with a
  transaction open is fenced by its successor's InitProducerId, the open transaction aborted,
  and every line is committed once.

One Connect release runs (the first of KAFKA_TOOL_VERSIONS): the runtime's JVMs are the cost
here, and the broker's side does not change with the client release. Waits poll the files, the
REST API or the broker with a deadline; nothing waits a fixed time.
"""

from __future__ import annotations

import json
import socket
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, ConsumerGroupTopicPartitions, TopicPartition
from confluent_kafka.admin import AdminClient, ConfigResource, ResourceType
from kafka.admin import KafkaAdminClient
from rawclient import RawClient
from requests_v import build

from compat.conftest import VERSIONS
from compat.java_app import JavaApp
from compat.steps import Broker
from compat.tools import Tools, missing
from compat.txn_steps import READ_COMMITTED, READ_UNCOMMITTED, WAIT, read_all, values

pytestmark = pytest.mark.timeout(300)

# The longest a step waits for Connect (a JVM start, a rebalance, a file copied).
CONNECT_WAIT = 90.0

# Connect's INFO log, timed (kafka-tool keeps the JVM at WARN): a failure shows its tail.
INFO_LOG = {
    "KAFKA_OPTS": "-Dorg.slf4j.simpleLogger.defaultLogLevel=info"
    " -Dorg.slf4j.simpleLogger.showDateTime=true"
    " -Dorg.slf4j.simpleLogger.dateTimeFormat=HH:mm:ss.SSS"
}

STRING_CONVERTERS = {
    "key.converter": "org.apache.kafka.connect.storage.StringConverter",
    "value.converter": "org.apache.kafka.connect.storage.StringConverter",
}

# ASCII only: FileStreamSource counts its position in characters and skips that many bytes when it
# resumes, so after a multi-byte character it would read part of a line again.
FIRST = ["one", "two words", "three", "four", "5"]
SECOND = ["six", "seven", "eight"]


@pytest.fixture
def tools() -> Tools:
    """The first release of KAFKA_TOOL_VERSIONS only: each Connect worker is a JVM of its own."""
    why = missing(VERSIONS[0])
    if why is not None:
        pytest.skip(why)
    return Tools(VERSIONS[0])


@pytest.fixture
def apps(broker: Broker) -> Iterator[list[JavaApp]]:
    """Workers started by a test, stopped before the broker is (a Kafka broker's reset cannot
    delete a group that still has members)."""
    started: list[JavaApp] = []
    try:
        yield started
    finally:
        for app in started:
            app.stop()


def write_properties(path: Path, settings: dict[str, str]) -> Path:
    path.write_text("".join(f"{key}={value}\n" for key, value in settings.items()))
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def lines_of(path: Path) -> list[str]:
    """The complete lines of ``path`` (a line the sink is still writing is not one yet)."""
    return path.read_text(encoding="utf-8").split("\n")[:-1] if path.exists() else []


def append_lines(path: Path, lines: list[str]) -> None:
    with path.open("a", encoding="utf-8") as f:
        f.write("".join(f"{line}\n" for line in lines))


def wait_for_lines(app: JavaApp, path: Path, expected: list[str]) -> None:
    """Wait until ``path`` has as many lines as ``expected``, then they must be those: a line read
    twice, lost or out of order shows before the count is reached."""
    app.wait_until(lambda: len(lines_of(path)) >= len(expected), f"{len(expected)} lines in {path}",
                   CONNECT_WAIT)  # fmt: skip
    assert lines_of(path) == expected


def poll(condition: Callable[[], bool], what: str, timeout: float = WAIT) -> None:
    """Poll a broker-side ``condition`` (no JVM to watch) until true."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"no {what} in {timeout} s"
        time.sleep(0.2)


def topic_values(bootstrap: str, topic: str, isolation: str = READ_UNCOMMITTED) -> list[str]:
    """Everything in partition 0 of ``topic``, decoded."""
    return [v.decode() for v in values(read_all(bootstrap, topic, 1, isolation))[0]]


def committed(bootstrap: str, group: str, topic: str) -> int:
    """The offset ``group`` has committed for partition 0 of ``topic`` (-1001: none)."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    request = ConsumerGroupTopicPartitions(group, [TopicPartition(topic, 0)])
    result = admin.list_consumer_group_offsets([request], request_timeout=WAIT)[group].result()
    offset: int = result.topic_partitions[0].offset
    return offset


def partition_counts(bootstrap: str, *topics: str) -> dict[str, int]:
    metadata = AdminClient({"bootstrap.servers": bootstrap}).list_topics(timeout=WAIT)
    return {t: len(metadata.topics[t].partitions) for t in topics if t in metadata.topics}


def cleanup_policies(bootstrap: str, *topics: str) -> dict[str, str]:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    resources = [ConfigResource(ResourceType.TOPIC, t) for t in topics]
    return {
        resource.name: future.result()["cleanup.policy"].value
        for resource, future in admin.describe_configs(resources, request_timeout=WAIT).items()
    }


class Rest:
    """Connect's REST API on ``port`` (JSON in and out)."""

    def __init__(self, port: int) -> None:
        self.base = f"http://127.0.0.1:{port}"

    def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            self.base + path, data=data, method=method, headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(request, timeout=WAIT) as response:
                status, raw = response.status, response.read()
        except urllib.error.HTTPError as e:
            status, raw = e.code, e.read()
        return status, json.loads(raw) if raw else None

    def get(self, path: str) -> Any:
        status, body = self.call("GET", path)
        assert status == 200, (path, status, body)
        return body

    def ready(self) -> bool:
        """The worker has started: its topics made and read, its group joined. GET / answers as
        soon as the REST server runs, before that; GET /health (KIP-1017) answers 200 only once
        the herder runs (it waits for it, then 503 while it is still starting)."""
        try:
            status, body = self.call("GET", "/health")
        except (OSError, ValueError):  # not listening yet, or not JSON (Jetty's own 404 page)
            return False
        return status == 200 and isinstance(body, dict) and body.get("status") == "healthy"

    def send(self, app: JavaApp, method: str, path: str, body: Any = None) -> Any:
        """A request that changes something; asked again while the worker answers that it is
        rebalancing (409, or 503 while it waits for one), as Connect's own docs advise."""
        answer: list[Any] = []

        def done() -> bool:
            status, reply = self.call(method, path, body)
            if status in (409, 503):
                return False
            assert status < 300, (method, path, status, reply)
            answer.append(reply)
            return True

        app.wait_until(done, f"{method} {path} accepted", CONNECT_WAIT)
        return answer[0]

    def states(self, name: str) -> tuple[str, list[str]]:
        status = self.get(f"/connectors/{name}/status")
        return status["connector"]["state"], [task["state"] for task in status["tasks"]]

    def wait_for_state(self, app: JavaApp, name: str, connector: str, tasks: list[str]) -> None:
        def reached() -> bool:
            status, body = self.call("GET", f"/connectors/{name}/status")
            if status != 200:  # 404 until the worker has read the connector's config
                return False
            return (body["connector"]["state"], [t["state"] for t in body["tasks"]]) == (
                connector,
                tasks,
            )

        app.wait_until(reached, f"{name} {connector} with tasks {tasks}", CONNECT_WAIT)


def connect_app(tools: Tools, tool: str, log: Path, *properties: Path) -> JavaApp:
    """A Connect worker (``connect-standalone`` or ``connect-distributed``) logging at INFO."""
    return JavaApp(tools.version, tool, *map(str, properties), log_file=log, env=INFO_LOG)


def test_standalone_file_source_and_sink_resume_after_restart(
    broker: Broker, tools: Tools, apps: list[JavaApp], tmp_path: Path
) -> None:
    b = broker.bootstrap
    source_file, sink_file = tmp_path / "in.txt", tmp_path / "out.txt"
    offsets_file = tmp_path / "standalone.offsets"
    topic = "standalone-lines"
    append_lines(source_file, FIRST)
    worker = write_properties(tmp_path / "worker.properties", {
        "bootstrap.servers": b,
        **STRING_CONVERTERS,
        "offset.storage.file.filename": str(offsets_file),
        "listeners": f"http://127.0.0.1:{free_port()}",
    })  # fmt: skip
    source = write_properties(tmp_path / "source.properties", {
        "name": "file-source",
        "connector.class": "FileStreamSource",
        "file": str(source_file),
        "topic": topic,
        # Connect creates the topic (CreateTopics) before the first record goes out.
        "topic.creation.default.partitions": "1",
        "topic.creation.default.replication.factor": "1",
    })  # fmt: skip
    sink = write_properties(tmp_path / "sink.properties", {
        "name": "file-sink",
        "connector.class": "FileStreamSink",
        "file": str(sink_file),
        "topics": topic,
    })  # fmt: skip

    def worker_app() -> JavaApp:
        app = connect_app(tools, "connect-standalone", tmp_path / "connect.log", worker, source,
                          sink)  # fmt: skip
        apps.append(app)
        return app.start()

    app = worker_app()
    wait_for_lines(app, sink_file, FIRST)
    assert partition_counts(b, topic) == {topic: 1}
    assert topic_values(b, topic) == FIRST
    app.stop()
    # Stopping committed the sink's position to the broker, in the group named after it...
    assert committed(b, "connect-file-sink", topic) == len(FIRST)
    described = tools.ok("kafka-consumer-groups", "--bootstrap-server", b, "--describe",
                         "--group", "connect-file-sink")  # fmt: skip
    rows = [line.split()[:6] for line in described.splitlines() if line.startswith("connect-")]
    assert rows == [["connect-file-sink", topic, "0", "5", "5", "0"]], described
    # ... and the source's to the offsets file.
    assert offsets_file.stat().st_size > 0

    append_lines(source_file, SECOND)
    app = worker_app()
    # Only the new lines: the source resumes after what it had read, the sink after what it had
    # written (a line read again would show as a repeat of "one" before "six").
    wait_for_lines(app, sink_file, FIRST + SECOND)
    assert topic_values(b, topic) == FIRST + SECOND
    app.stop()
    assert committed(b, "connect-file-sink", topic) == len(FIRST + SECOND)


class Worker:
    """One distributed worker of group ``group``: its properties file, REST API and JVM. It makes
    its topics itself, named after the group; ``start`` again after ``stop`` or ``kill`` is a
    restart on the same settings."""

    def __init__(
        self, tools: Tools, apps: list[JavaApp], directory: Path, bootstrap: str, group: str,
        **settings: str,
    ) -> None:  # fmt: skip
        self.tools = tools
        self.apps = apps
        self.directory = directory
        self.port = free_port()
        self.id = f"127.0.0.1:{self.port}"  # the worker id Connect reports in statuses
        self.rest = Rest(self.port)
        directory.mkdir(parents=True, exist_ok=True)
        self.properties = write_properties(directory / "worker.properties", {
            "bootstrap.servers": bootstrap,
            "group.id": group,
            **STRING_CONVERTERS,
            "config.storage.topic": f"{group}-configs",
            "offset.storage.topic": f"{group}-offsets",
            "status.storage.topic": f"{group}-status",
            # One broker: the default replication factor of 3 cannot be met.
            "config.storage.replication.factor": "1",
            "offset.storage.replication.factor": "1",
            "status.storage.replication.factor": "1",
            "listeners": f"http://{self.id}",
            # Source offsets written every second rather than every minute, for GET .../offsets.
            "offset.flush.interval.ms": "1000",
            **settings,
        })  # fmt: skip
        self.app: JavaApp | None = None

    def start(self) -> JavaApp:
        self.app = connect_app(self.tools, "connect-distributed", self.directory / "connect.log",
                               self.properties)  # fmt: skip
        self.apps.append(self.app)
        self.app.start()
        self.app.wait_until(self.rest.ready, "REST API", CONNECT_WAIT)
        return self.app

    @property
    def running(self) -> JavaApp:
        assert self.app is not None
        return self.app

    def send(self, method: str, path: str, body: Any = None) -> Any:
        return self.rest.send(self.running, method, path, body)

    def wait_for_state(self, name: str, connector: str, tasks: list[str]) -> None:
        self.rest.wait_for_state(self.running, name, connector, tasks)


def describe_group(bootstrap: str, group: str) -> Any:
    """DescribeGroups v5 of one group (kio's answer: raw, since kafka-python decodes every
    group's member metadata as the consumer protocol's)."""
    with RawClient(bootstrap) as client:
        request = build("describe_groups", 5, "DescribeGroupsRequest", groups=(group,))
        (described,) = client.request(request).groups
    assert described.error_code == 0, described
    return described


def file_source(path: Path, topic: str, **settings: str) -> dict[str, str]:
    return {
        "connector.class": "FileStreamSource", "file": str(path), "topic": topic,
        # Connect creates the topic (CreateTopics) before the first record goes out.
        "topic.creation.default.partitions": "1", "topic.creation.default.replication.factor": "1",
        **settings,
    }  # fmt: skip


def file_sink(path: Path, topic: str) -> dict[str, str]:
    return {"connector.class": "FileStreamSink", "file": str(path), "topics": topic}


def test_distributed_worker_topics_rest_and_restart(
    broker: Broker, tools: Tools, apps: list[JavaApp], tmp_path: Path
) -> None:
    b = broker.bootstrap
    group = f"connect-{uuid.uuid4().hex[:8]}"
    configs, offsets, status = f"{group}-configs", f"{group}-offsets", f"{group}-status"
    source_file, sink_file = tmp_path / "in.txt", tmp_path / "out.txt"
    topic = f"{group}-lines"
    append_lines(source_file, FIRST)
    worker = Worker(tools, apps, tmp_path / "worker", b, group)

    app = worker.start()
    # The worker made its topics: compacted, with the partitions it asks for by default.
    assert partition_counts(b, configs, offsets, status) == {configs: 1, offsets: 25, status: 5}
    assert cleanup_policies(b, configs, offsets, status) == dict.fromkeys(
        (configs, offsets, status), "compact"
    )

    worker.send("POST", "/connectors", {"name": "file-source",
                                        "config": file_source(source_file, topic)})  # fmt: skip
    worker.send("POST", "/connectors", {"name": "file-sink", "config": file_sink(sink_file, topic)})
    wait_for_lines(app, sink_file, FIRST)
    worker.wait_for_state("file-source", "RUNNING", ["RUNNING"])
    worker.wait_for_state("file-sink", "RUNNING", ["RUNNING"])
    assert sorted(worker.rest.get("/connectors")) == ["file-sink", "file-source"]

    # The workers' group, as the broker describes it: the protocol the worker put first, and its
    # metadata (which carries the worker's URL for the leader).
    described = describe_group(b, group)
    assert (described.group_state, described.protocol_type, described.protocol_data) == (
        "Stable", "connect", "sessioned"
    )  # fmt: skip
    (member,) = described.members
    assert member.client_id == f"connect-{worker.id}"
    assert f"http://{worker.id}/".encode() in member.member_metadata
    admin = KafkaAdminClient(bootstrap_servers=b)
    try:
        listed = {g["group_id"]: g["protocol_type"] for g in admin.list_groups()}
    finally:
        admin.close()
    assert (listed[group], listed["connect-file-sink"]) == ("connect", "consumer"), listed

    # Offsets as the REST API reads them back: the source's from the offset topic (its position
    # in the file), the sink's from its consumer group.
    size = source_file.stat().st_size
    source_offsets = {"offsets": [{"partition": {"filename": str(source_file)},
                                   "offset": {"position": size}}]}  # fmt: skip
    sink_offsets = {"offsets": [{"partition": {"kafka_topic": topic, "kafka_partition": 0},
                                 "offset": {"kafka_offset": len(FIRST)}}]}  # fmt: skip
    app.wait_until(lambda: worker.rest.get("/connectors/file-source/offsets") == source_offsets,
                   "the source's offsets in the offset topic", CONNECT_WAIT)  # fmt: skip
    app.wait_until(lambda: worker.rest.get("/connectors/file-sink/offsets") == sink_offsets,
                   "the sink's committed offsets", CONNECT_WAIT)  # fmt: skip

    # Stop the sink and move its offset back to 2 (AlterConsumerGroupOffsets on the empty
    # group): resumed, it writes the records from offset 2 again.
    worker.send("PUT", "/connectors/file-sink/stop")
    worker.wait_for_state("file-sink", "STOPPED", [])
    worker.send("PATCH", "/connectors/file-sink/offsets", {"offsets": [{
        "partition": {"kafka_topic": topic, "kafka_partition": 0}, "offset": {"kafka_offset": 2},
    }]})  # fmt: skip
    assert committed(b, "connect-file-sink", topic) == 2
    worker.send("PUT", "/connectors/file-sink/resume")
    copied = FIRST + FIRST[2:]
    wait_for_lines(app, sink_file, copied)

    # A restarted worker finds its connectors in the config topic and the source's position in
    # the offset topic: only the new lines come.
    app.stop()
    append_lines(source_file, SECOND)
    app = worker.start()
    assert sorted(worker.rest.get("/connectors")) == ["file-sink", "file-source"]
    wait_for_lines(app, sink_file, copied + SECOND)
    worker.wait_for_state("file-source", "RUNNING", ["RUNNING"])
    worker.wait_for_state("file-sink", "RUNNING", ["RUNNING"])
    assert topic_values(b, topic) == FIRST + SECOND
    app.stop()


def test_two_workers_agree_on_a_protocol_and_share_the_work(
    broker: Broker, tools: Tools, apps: list[JavaApp], tmp_path: Path
) -> None:
    """Worker A offers the protocols sessioned, compatible and default; worker B (an older
    setting) compatible and default: the broker must pick one both support, by their votes
    (compatible), and go back to sessioned when B leaves (LeaveGroup, a rebalance)."""
    b = broker.bootstrap
    group = f"connect-two-{uuid.uuid4().hex[:8]}"
    source_file, sink_file = tmp_path / "in.txt", tmp_path / "out.txt"
    topic = f"{group}-lines"
    append_lines(source_file, FIRST)
    # The work of a worker that left goes to the others after this delay (default 5 minutes).
    delay = {"scheduled.rebalance.max.delay.ms": "1000"}
    a = Worker(tools, apps, tmp_path / "a", b, group, **delay)
    b_worker = Worker(tools, apps, tmp_path / "b", b, group, **delay,
                      **{"connect.protocol": "compatible"})  # fmt: skip

    def group_is(state: str, protocol: str, members: int) -> Callable[[], bool]:
        def check() -> bool:
            d = describe_group(b, group)
            return (d.group_state, d.protocol_data, len(d.members)) == (state, protocol, members)

        return check

    a.start()
    a.running.wait_until(group_is("Stable", "sessioned", 1), "A alone, sessioned", CONNECT_WAIT)
    b_worker.start()
    a.running.wait_until(group_is("Stable", "compatible", 2), "A and B, compatible",
                         CONNECT_WAIT)  # fmt: skip
    described = describe_group(b, group)
    assert sorted(m.client_id for m in described.members) == sorted(
        f"connect-{w.id}" for w in (a, b_worker)
    )

    # Either worker takes requests (a follower forwards them to the leader).
    b_worker.send("POST", "/connectors", {"name": "file-source",
                                          "config": file_source(source_file, topic)})  # fmt: skip
    a.send("POST", "/connectors", {"name": "file-sink", "config": file_sink(sink_file, topic)})
    wait_for_lines(a.running, sink_file, FIRST)
    for name in ("file-source", "file-sink"):
        a.wait_for_state(name, "RUNNING", ["RUNNING"])
    statuses = [a.rest.get(f"/connectors/{n}/status") for n in ("file-source", "file-sink")]
    placed = [s["connector"]["worker_id"] for s in statuses]
    placed += [t["worker_id"] for s in statuses for t in s["tasks"]]
    # Two connectors and two tasks, balanced over the two workers.
    assert sorted(placed) == sorted([a.id, a.id, b_worker.id, b_worker.id]), statuses

    # B leaves: the group is A's alone again, with A's first choice; B's share of the work
    # comes to A after the delay, and resumes where B left it.
    b_worker.running.stop()
    a.running.wait_until(group_is("Stable", "sessioned", 1), "A alone again, sessioned",
                         CONNECT_WAIT)  # fmt: skip
    append_lines(source_file, SECOND)
    wait_for_lines(a.running, sink_file, FIRST + SECOND)
    for name in ("file-source", "file-sink"):
        a.wait_for_state(name, "RUNNING", ["RUNNING"])
        status = a.rest.get(f"/connectors/{name}/status")
        assert [status["connector"]["worker_id"], status["tasks"][0]["worker_id"]] == [a.id, a.id]
    assert topic_values(b, topic) == FIRST + SECOND
    a.running.stop()


def config_topic_keys(bootstrap: str, topic: str) -> list[str]:
    """The keys of the config topic's committed records."""
    consumer = Consumer({
        "bootstrap.servers": bootstrap, "group.id": f"reader-{uuid.uuid4()}",
        "isolation.level": READ_COMMITTED, "enable.auto.commit": False,
        "enable.partition.eof": True, "auto.offset.reset": "earliest",
    })  # fmt: skip
    keys: list[str] = []
    try:
        consumer.assign([TopicPartition(topic, 0, 0)])
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None:
                continue
            if msg.error() is not None:
                break  # the end (or a failure, which the missing keys will show)
            key = msg.key()
            keys.append(key.decode() if key is not None else "")
    finally:
        consumer.close()
    return keys


def test_exactly_once_source_killed_mid_transaction(
    broker: Broker, tools: Tools, apps: list[JavaApp], tmp_path: Path
) -> None:
    """The source task's transaction is held open (a boundary an hour away), the worker killed:
    the broker keeps the records uncommitted until the restarted task's producer, with the same
    transactional id, fences the dead one and its transaction is aborted. Committed, every line
    is in the topic once."""
    b = broker.bootstrap
    group = f"connect-eos-{uuid.uuid4().hex[:8]}"
    source_file = tmp_path / "in.txt"
    topic = f"{group}-lines"
    task_txn = f"{group}-file-source-0"  # the task's transactional id
    append_lines(source_file, FIRST)
    worker = Worker(tools, apps, tmp_path / "worker", b, group, **{
        "exactly.once.source.support": "enabled",
        # A killed worker leaves the group when its session expires: the broker's minimum.
        "session.timeout.ms": "6000", "heartbeat.interval.ms": "1000",
    })  # fmt: skip

    def task_transaction() -> Any:
        admin = KafkaAdminClient(bootstrap_servers=b)
        try:
            return admin.describe_transactions([task_txn])[task_txn]
        finally:
            admin.close()

    app = worker.start()
    held_open = {"transaction.boundary": "interval", "transaction.boundary.interval.ms": "3600000"}
    worker.send("POST", "/connectors", {"name": "file-source", "config": file_source(
        source_file, topic, **{"exactly.once.support": "required"}, **held_open)})  # fmt: skip
    worker.wait_for_state("file-source", "RUNNING", ["RUNNING"])
    app.wait_until(lambda: partition_counts(b, topic) == {topic: 1}, f"topic {topic}",
                   CONNECT_WAIT)  # fmt: skip
    app.wait_until(lambda: topic_values(b, topic) == FIRST, "the lines written", CONNECT_WAIT)
    # Written, not committed: read_committed stops at the open transaction.
    assert topic_values(b, topic, READ_COMMITTED) == []
    # The config topic was written in the leader's transactions: the connector and its task.
    keys = config_topic_keys(b, f"{group}-configs")
    assert {"connector-file-source", "task-file-source-0", "commit-file-source"} <= set(keys), keys
    before = task_transaction()
    assert (before.state, {(tp.topic, tp.partition) for tp in before.topic_partitions}) == (
        "Ongoing", {(topic, 0)}
    ), before  # fmt: skip

    # The crash: no shutdown hook, nothing flushed or committed.
    app.kill()
    append_lines(source_file, SECOND)
    app = worker.start()
    # The restarted task holds a new transaction open again: commit at each poll from now on.
    worker.send("PUT", "/connectors/file-source/config", file_source(
        source_file, topic, **{"exactly.once.support": "required"}))  # fmt: skip
    app.wait_until(lambda: len(topic_values(b, topic, READ_COMMITTED)) >= len(FIRST + SECOND),
                   "the lines committed", CONNECT_WAIT)  # fmt: skip
    assert topic_values(b, topic, READ_COMMITTED) == FIRST + SECOND
    # The dead producer's records are still in the log, aborted: read_uncommitted shows them.
    assert topic_values(b, topic)[: len(FIRST)] == FIRST
    worker.wait_for_state("file-source", "RUNNING", ["RUNNING"])
    # Nothing left open: the last task committed the new lines (CompleteCommit), or found them
    # committed by the task before it, stopped for the new config (Empty, after InitProducerId).
    poll(lambda: task_transaction().state in ("CompleteCommit", "Empty"), f"{task_txn} closed")
    after = task_transaction()
    # A later producer took over the transactional id: the killed one's epoch is fenced.
    assert (after.producer_id, after.producer_epoch) > (before.producer_id, before.producer_epoch)
    app.stop()
