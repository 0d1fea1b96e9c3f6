"""kpy's pytest plugin (pytest11 entry point), run as a user's suite runs it: a separate pytest
process that finds the plugin through the installed package, with real clients."""

from __future__ import annotations

import pytest
from confluent_kafka import Consumer, TopicPartition
from plugin_suite import SUITE

import kpy


def read_mark(bootstrap: str) -> list[bytes]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "mark-reader"})
    consumer.assign([TopicPartition("plugin-suite-mark", 0, 0)])
    got = []
    for _ in range(100):
        msg = consumer.poll(0.1)
        if msg is not None and msg.error() is None:
            got.append(msg.value())
            break
    consumer.close()
    return got


@pytest.mark.parametrize(
    "options",
    [["--kpy-mode", "thread"], ["--kpy-mode", "subprocess"], ["--kpy-in-memory"]],
    ids=["thread", "subprocess", "in-memory"],
)
def test_the_fixtures_with_kpy(pytester: pytest.Pytester, options: list[str]) -> None:
    pytester.makepyfile(test_user_suite=SUITE)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", *options)
    result.assert_outcomes(passed=6)


def test_kafka_bootstrap_runs_the_suite_against_that_broker(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_user_suite=SUITE)
    with kpy.Broker() as external:
        result = pytester.runpytest_subprocess(
            "-p", "no:cacheprovider", "-rs", "--kafka-bootstrap", external.bootstrap_servers
        )
        result.assert_outcomes(passed=5, skipped=1)
        result.stdout.fnmatch_lines(["*needs a broker of its own*--kafka-bootstrap*"])
        assert read_mark(external.bootstrap_servers) == [b"was here"]


def test_an_unreachable_kafka_bootstrap_fails_the_fixture(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_one="def test_one(kafka_bootstrap):\n    assert kafka_bootstrap\n")
    result = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "--kafka-bootstrap", "127.0.0.1:1", "--kafka-wait", "0.5"
    )
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*no broker ready within*"])
