"""Kafka Streams against the broker under test, at at_least_once and at exactly_once_v2.

Streams is a client library, but it leans on the broker as little else does: it creates its
internal topics itself (a repartition topic, compacted changelogs, a compact,delete changelog for
a windowed store) with the configs it needs, deletes the records of its repartition topics once
consumed (DeleteRecords), restores a state store by reading its changelog from the start, and at
exactly_once_v2 runs every commit as a transaction (one producer per stream thread, offsets sent
to the transaction, read_committed reads of its own topics, fencing of a crashed instance).

Two applications run unmodified from the jars (kafka-streams of the release under test):
- Kafka's WordCount demo (kafka-streams-examples: ``kafka-run-class
  org.apache.kafka.streams.examples.wordcount.WordCountDemo streams.properties``, as Kafka's
  quickstart runs it);
- compat-tests/streams/dev/kpy/compat/PageViewStats.java, ours, compiled here with javac: a
  KTable count per user (a state store), and a count per page in 10-second windows (records
  re-keyed through a repartition topic into a windowed store).

Every output is checked exactly. The stores' caches are off (statestore.cache.max.bytes=0), so
each input record gives one update downstream: the updates of every key are the counts 1, 2, ...,
n in order, n the number of its input records, whatever order the input partitions were read in.
A duplicate (a record processed twice) or a loss breaks that sequence. The outputs are read to
their end offsets with read_committed consumers after the application has stopped (the end is
what ListOffsets answers, never a pause: see txn_steps).

One tools release runs these (the first of KAFKA_TOOL_VERSIONS): every run here is a JVM that
takes seconds to start.
"""

from __future__ import annotations

import random
import shutil
import subprocess
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, ConfigResource

from compat.conftest import VERSIONS
from compat.java_app import JavaApp
from compat.steps import Broker
from compat.tools import ROOT, Tools, libs, missing
from compat.txn_steps import (
    READ_COMMITTED,
    READ_UNCOMMITTED,
    WAIT,
    create_topics,
    read_all_keyed,
)

pytestmark = pytest.mark.timeout(300)

GUARANTEES = ["at_least_once", "exactly_once_v2"]
WORDCOUNT = "org.apache.kafka.streams.examples.wordcount.WordCountDemo"
PAGE_VIEW_STATS = "dev.kpy.compat.PageViewStats"
PAGE_VIEW_SOURCE = (
    ROOT / "compat-tests" / "streams" / "dev" / "kpy" / "compat" / "PageViewStats.java"
)
PARTITIONS = 2
# How long an application may take to produce what its input calls for.
PROCESSING = 120.0
WINDOW_MS = 10_000


@pytest.fixture(scope="module")
def version() -> str:
    """One release's Streams (the first of KAFKA_TOOL_VERSIONS): each run is a JVM."""
    version = VERSIONS[0]
    why = missing(version)
    if why is None and not list(libs(version).glob("kafka-streams-examples-*.jar")):
        why = f"Kafka Streams jars missing: run compat-tests/fetch-jars {version}"
    if why is not None:
        pytest.skip(why)
    return version


@pytest.fixture(scope="module")
def page_view_classes(version: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """PageViewStats compiled against the release's own jars."""
    javac = shutil.which("javac")
    if javac is None:
        pytest.skip("javac (a JDK) is not installed: PageViewStats.java cannot be compiled")
    out = tmp_path_factory.mktemp("streams-classes")
    subprocess.run(
        [javac, "-cp", f"{libs(version)}/*", "-d", str(out), str(PAGE_VIEW_SOURCE)],
        check=True,
        capture_output=True,
        timeout=120,
    )
    return out


class StreamsApp:
    """A Streams application's JVM with its properties file and state directory."""

    def __init__(
        self,
        version: str,
        main: str,
        directory: Path,
        settings: dict[str, str],
        classpath: Path | None = None,
    ) -> None:
        self.settings = settings
        self.state_dir = directory / "state"
        config = directory / "streams.properties"
        config.write_text("".join(f"{k}={v}\n" for k, v in settings.items()))
        self.jvm = JavaApp(
            version,
            "kafka-run-class",
            main,
            str(config),
            log_file=directory / "streams.log",
            classpath=str(classpath) if classpath else None,
        )

    @property
    def application_id(self) -> str:
        return self.settings["application.id"]


def streams_settings(
    broker: Broker, application_id: str, guarantee: str, directory: Path
) -> dict[str, str]:
    return {
        "application.id": application_id,
        "bootstrap.servers": broker.bootstrap,
        "processing.guarantee": guarantee,
        "state.dir": str(directory / "state"),
        # Every update goes downstream (no cache), commits come often (the default at
        # at_least_once is 30 s) and a consumed repartition record is deleted at each commit.
        "statestore.cache.max.bytes": "0",
        "commit.interval.ms": "200",
        "repartition.purge.interval.ms": "0",
        "auto.offset.reset": "earliest",
        # Streams does not leave its group on close: a restarted instance waits for the old
        # member's session to expire (45 s by default; 6 s is the brokers' minimum).
        "session.timeout.ms": "6000",
        "heartbeat.interval.ms": "1000",
    }


@pytest.fixture
def apps(broker: Broker) -> Iterator[list[StreamsApp]]:
    """The applications a test starts: stopped at its end. Against the session's shared Kafka,
    also wait until their groups are empty, or its reset could not delete them."""
    started: list[StreamsApp] = []
    yield started
    for app in started:
        app.jvm.stop()
    if broker.kind == "kafka":
        for app in started:
            wait_group_empty(broker.bootstrap, app.application_id)


def wait_group_empty(bootstrap: str, group: str) -> None:
    """Until the group has no members (a stopped instance's session has expired)."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    deadline = time.monotonic() + 30
    while True:
        (described,) = admin.describe_consumer_groups([group]).values()
        members = described.result().members
        if not members:
            return
        assert time.monotonic() < deadline, f"{group} still has members: {members}"
        time.sleep(0.5)


def produce(bootstrap: str, topic: str, records: list[tuple[str | None, str, int | None]]) -> None:
    """(key, value, timestamp ms) records, acknowledged. Null keys spread over the partitions."""
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True})
    for key, value, timestamp in records:
        producer.produce(topic, value.encode(), key.encode() if key is not None else None,
                         timestamp=timestamp or 0)  # fmt: skip
    left = producer.flush(WAIT)
    assert left == 0, f"{left} records not acknowledged"


class OutputWatch:
    """A consumer of an output topic from its start, to see how far an application has got."""

    def __init__(self, bootstrap: str, topic: str, isolation: str = READ_COMMITTED) -> None:
        self.consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": "watch",
                "isolation.level": isolation,
                "enable.auto.commit": False,
            }
        )
        self.consumer.assign([TopicPartition(topic, p, 0) for p in range(PARTITIONS)])
        self.count = 0

    def seen(self) -> int:
        """Records read so far (polling for more first)."""
        for msg in self.consumer.consume(10_000, 0.2):
            if msg.error() is not None:
                raise KafkaException(msg.error())
            self.count += 1
        return self.count

    def reaches(self, total: int) -> Callable[[], bool]:
        return lambda: self.seen() >= total

    def close(self) -> None:
        self.consumer.close()


def run_until(app: StreamsApp, bootstrap: str, totals: dict[str, int]) -> None:
    """Start the application, wait until each topic holds its total of committed records, stop
    it (SIGTERM: Streams closes, committing what it has processed)."""
    app.jvm.start()
    wait_outputs(app, bootstrap, totals)
    code = app.jvm.stop()
    assert code != -9, f"{app.application_id} did not close in time:\n{app.jvm.tail()}"


def wait_outputs(app: StreamsApp, bootstrap: str, totals: dict[str, int]) -> None:
    """Wait until each topic of ``totals`` holds that many committed records."""
    for topic, total in totals.items():
        watch = OutputWatch(bootstrap, topic)
        try:
            app.jvm.wait_until(watch.reaches(total), f"{total} in {topic}", PROCESSING)
        finally:
            watch.close()


def updates(bootstrap: str, topic: str) -> dict[str, list[int]]:
    """The output's updates per key, in offset order: key -> the counts it was given."""
    got: dict[str, list[int]] = defaultdict(list)
    partition_of: dict[str, int] = {}
    for partition, records in read_all_keyed(bootstrap, topic, PARTITIONS, READ_COMMITTED).items():
        for key, value in records:
            assert key is not None, f"{topic}: a record without a key"
            word = key.decode()
            # One key, one partition (the producer's partitioner): else its order means nothing.
            assert partition_of.setdefault(word, partition) == partition, word
            got[word].append(int.from_bytes(value, "big", signed=True))
    return dict(got)


def running_counts(counts: Counter[str]) -> dict[str, list[int]]:
    """What a count of each key emits, update by update, without a cache: 1, 2, ..., n."""
    return {key: list(range(1, n + 1)) for key, n in counts.items()}


# --- WordCount ---------------------------------------------------------------------------------

WORDS = ["kafka", "streams", "count", "every", "word", "in", "each", "line", "of", "text"]


def lines(rng: random.Random, n: int) -> list[str]:
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 8))) for _ in range(n)]


@pytest.mark.parametrize("guarantee", GUARANTEES)
def test_wordcount_demo_counts_and_restores_its_store_from_the_changelog(
    broker: Broker, version: str, tmp_path: Path, apps: list[StreamsApp], guarantee: str
) -> None:
    """Kafka's WordCount demo counts each word exactly; stopped, its local state deleted, and
    restarted on more input, it restores its counts from the changelog topic and goes on from
    them (the input read from the offsets it committed)."""
    bootstrap = broker.bootstrap
    app_id = f"wordcount-{guarantee.replace('_', '-')}"
    create_topics(bootstrap, "streams-plaintext-input", "streams-wordcount-output",
                  partitions=PARTITIONS)  # fmt: skip
    settings = streams_settings(broker, app_id, guarantee, tmp_path)
    app = StreamsApp(version, WORDCOUNT, tmp_path, settings)
    apps.append(app)
    rng = random.Random(f"wordcount-{guarantee}")

    first = lines(rng, 120)
    produce(bootstrap, "streams-plaintext-input", [(None, line, None) for line in first])
    words = Counter(w for line in first for w in line.split())
    run_until(app, bootstrap, {"streams-wordcount-output": words.total()})

    # The store must come back from the changelog (on the broker), not from the local RocksDB.
    shutil.rmtree(app.state_dir)
    second = lines(rng, 120)
    produce(bootstrap, "streams-plaintext-input", [(None, line, None) for line in second])
    words.update(w for line in second for w in line.split())
    run_until(app, bootstrap, {"streams-wordcount-output": words.total()})

    # Counts that started again from 1 after the restart would show here.
    assert updates(bootstrap, "streams-wordcount-output") == running_counts(words)


def test_application_reset_tool_reprocesses_the_input(
    broker: Broker, version: str, tmp_path: Path, apps: list[StreamsApp]
) -> None:
    """kafka-streams-application-reset (StreamsResetter) on a stopped application: its input
    offsets back to the start and its internal topics deleted; run again on a clean local state,
    WordCount counts the whole input anew, after what it wrote the first time."""
    bootstrap = broker.bootstrap
    app_id = "wordcount-reset"
    create_topics(bootstrap, "streams-plaintext-input", "streams-wordcount-output",
                  partitions=PARTITIONS)  # fmt: skip
    app = StreamsApp(version, WORDCOUNT, tmp_path,
                     streams_settings(broker, app_id, "at_least_once", tmp_path))  # fmt: skip
    apps.append(app)
    text = lines(random.Random(app_id), 60)
    produce(bootstrap, "streams-plaintext-input", [(None, line, None) for line in text])
    words = Counter(w for line in text for w in line.split())
    run_until(app, bootstrap, {"streams-wordcount-output": words.total()})

    # The tool refuses while the group has members; Streams' do not leave on close.
    wait_group_empty(bootstrap, app_id)
    internal = {f"{app_id}-KSTREAM-AGGREGATE-STATE-STORE-0000000003-{kind}"
                for kind in ("changelog", "repartition")}  # fmt: skip
    assert internal <= topics(bootstrap)
    out = Tools(version).ok("kafka-streams-application-reset", "--bootstrap-server", bootstrap,
                            "--application-id", app_id,
                            "--input-topics", "streams-plaintext-input")  # fmt: skip
    assert "Topic: streams-plaintext-input Partition: 1 Offset: 0" in out, out
    assert not internal & topics(bootstrap)

    shutil.rmtree(app.state_dir)
    run_until(app, bootstrap, {"streams-wordcount-output": 2 * words.total()})
    again = running_counts(words)
    assert updates(bootstrap, "streams-wordcount-output") == {
        word: counts + counts for word, counts in again.items()
    }


def topics(bootstrap: str) -> set[str]:
    return set(AdminClient({"bootstrap.servers": bootstrap}).list_topics(timeout=WAIT).topics)


# --- PageViewStats ----------------------------------------------------------------------------

USERS = [f"user{i}" for i in range(12)]
PAGES = ["/", "/docs", "/pricing", "/blog", "/login"]


def page_views(rng: random.Random, n: int, start_ms: int) -> list[tuple[str, str, int]]:
    """``n`` views (user, page, timestamp) 100 ms apart from ``start_ms``."""
    return [(rng.choice(USERS), rng.choice(PAGES), start_ms + 100 * i) for i in range(n)]


def page_view_counts(views: list[tuple[str, str, int]]) -> dict[str, Counter[str]]:
    """What PageViewStats counts of ``views``, per output topic: per user, per page and window."""
    return {
        "views-per-user": Counter(user for user, _, _ in views),
        "views-per-page-window": Counter(f"{page}@{ts - ts % WINDOW_MS}" for _, page, ts in views),
    }


def check_page_view_outputs(bootstrap: str, counts: dict[str, Counter[str]]) -> None:
    for topic, expected in counts.items():
        assert updates(bootstrap, topic) == running_counts(expected), topic


def create_page_view_topics(bootstrap: str) -> None:
    create_topics(bootstrap, "pageviews", "views-per-user", "views-per-page-window",
                  partitions=PARTITIONS)  # fmt: skip


def window_start_now() -> int:
    """A window boundary a little in the past: the views' timestamps are recent, so no retention
    (the topics' 7 days, the windowed store's) takes them before they are counted."""
    now = int(time.time() * 1000) - 60_000
    return now - now % WINDOW_MS


def topic_configs(bootstrap: str, topic: str) -> dict[str, str]:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    (future,) = admin.describe_configs([ConfigResource(ConfigResource.Type.TOPIC, topic)]).values()
    return {name: entry.value for name, entry in future.result(WAIT).items()}


def low_watermarks(bootstrap: str, topic: str) -> list[int]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "watermarks"})
    try:
        return [
            consumer.get_watermark_offsets(TopicPartition(topic, p), WAIT)[0]
            for p in range(PARTITIONS)
        ]
    finally:
        consumer.close()


@pytest.mark.parametrize("guarantee", GUARANTEES)
def test_page_view_stats_state_store_repartition_and_windows(
    broker: Broker,
    version: str,
    page_view_classes: Path,
    tmp_path: Path,
    apps: list[StreamsApp],
    guarantee: str,
) -> None:
    """Our topology: a count per user (a state store), a count per page in 10-second windows
    (re-keyed through a repartition topic into a windowed store). Every update is exact, the
    internal topics have the configs Streams gives them, and the repartition topic's consumed
    records are deleted (DeleteRecords) as Streams commits."""
    bootstrap = broker.bootstrap
    app_id = f"page-view-stats-{guarantee.replace('_', '-')}"
    create_page_view_topics(bootstrap)
    settings = streams_settings(broker, app_id, guarantee, tmp_path)
    app = StreamsApp(version, PAGE_VIEW_STATS, tmp_path, settings, page_view_classes)
    apps.append(app)

    views = page_views(random.Random(app_id), 400, window_start_now())
    produce(bootstrap, "pageviews", views)
    counts = page_view_counts(views)
    app.jvm.start()
    wait_outputs(app, bootstrap, {topic: c.total() for topic, c in counts.items()})
    # Streams deletes what it has consumed of its repartition topic after its commits.
    repartition = f"{app_id}-by-page-repartition"
    app.jvm.wait_until(
        lambda: all(low > 0 for low in low_watermarks(bootstrap, repartition)),
        f"the consumed records of {repartition} deleted",
        PROCESSING,
    )
    assert app.jvm.stop() != -9, app.jvm.tail()
    check_page_view_outputs(bootstrap, counts)

    # The internal topics as Streams created them (InternalTopicManager's configs).
    configs = topic_configs(bootstrap, repartition)
    assert (configs["cleanup.policy"], configs["retention.ms"]) == ("delete", "-1")
    assert topic_configs(bootstrap, f"{app_id}-views-per-user-changelog")["cleanup.policy"] == (
        "compact"
    )
    windowed = topic_configs(bootstrap, f"{app_id}-views-per-page-window-changelog")
    # The store keeps windows for size + grace (310 s); its changelog a day longer
    # (windowstore.changelog.additional.retention.ms).
    assert (windowed["cleanup.policy"], windowed["retention.ms"]) == (
        "compact,delete",
        str(310_000 + 86_400_000),
    )


def test_exactly_once_v2_survives_a_killed_instance(
    broker: Broker,
    version: str,
    page_view_classes: Path,
    tmp_path: Path,
    apps: list[StreamsApp],
) -> None:
    """At exactly_once_v2, an instance killed (SIGKILL) while it processes leaves an open
    transaction; the restarted instance (same state directory, so the same process id and
    transactional ids) fences it, its transaction is aborted, and the outputs a read_committed
    consumer sees hold each input's effect exactly once."""
    bootstrap = broker.bootstrap
    app_id = "page-view-stats-killed"
    create_page_view_topics(bootstrap)
    settings = streams_settings(broker, app_id, "exactly_once_v2", tmp_path)
    app = StreamsApp(version, PAGE_VIEW_STATS, tmp_path, settings, page_view_classes)
    apps.append(app)

    views = page_views(random.Random(app_id), 3000, window_start_now())
    produce(bootstrap, "pageviews", views)
    counts = page_view_counts(views)

    # Kill it once it has written some output (uncommitted: a transaction is open).
    uncommitted = OutputWatch(bootstrap, "views-per-user", READ_UNCOMMITTED)
    try:
        app.jvm.start()
        app.jvm.wait_until(uncommitted.reaches(1), "a first output", PROCESSING)
    finally:
        uncommitted.close()
    app.jvm.kill()

    run_until(app, bootstrap, {topic: c.total() for topic, c in counts.items()})
    check_page_view_outputs(bootstrap, counts)
