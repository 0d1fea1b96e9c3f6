"""The pytest plugin's --kafka-bootstrap and ``kpy wait`` against Apache Kafka: a suite written
against kpy's fixtures passes unchanged on the real broker (tests/plugin_suite.py; against kpy
in tests/test_pytest_plugin.py)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from plugin_suite import SUITE

from compat import kafka_broker


@pytest.fixture
def apache_kafka(shared_kafka: Any) -> Iterator[kafka_broker.KafkaBroker]:
    """Apache Kafka whatever --compat-broker says (the session's shared one, conftest.py)."""
    why = kafka_broker.missing(shared_kafka.version)
    if why is not None:
        pytest.skip(why)
    try:
        yield shared_kafka.get()
    finally:
        shared_kafka.release()


def test_the_plugin_suite_passes_against_apache_kafka(
    pytester: pytest.Pytester, apache_kafka: kafka_broker.KafkaBroker
) -> None:
    pytester.makepyfile(test_user_suite=SUITE)
    result = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "-rs", "--kafka-bootstrap", apache_kafka.bootstrap
    )
    result.assert_outcomes(passed=5, skipped=1)  # skipped: kafka_broker_fresh


def test_kpy_wait_accepts_apache_kafka(apache_kafka: kafka_broker.KafkaBroker) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "kpy", "wait", "--bootstrap", apache_kafka.bootstrap, "-q"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == ""  # -q
