"""docker/: the image's command line without Docker, and the container itself where there is a
Docker engine (pytest-docker brings up docker/compose.yml; skipped with the reason otherwise).

Without Docker, the Dockerfile's ENTRYPOINT, ENV, HEALTHCHECK and STOPSIGNAL are read from the
file and run here as the container would run them (the data directory moved to a temporary one,
port 9092 to a free one), so a wrong flag, setting or health check fails here too.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from confluent_kafka import Consumer, Producer, TopicPartition
from plugin_suite import SUITE

from kpy import client
from kpy.cli import config_from_env

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "docker" / "Dockerfile"
COMPOSE = ROOT / "docker" / "compose.yml"


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Dockerfile's final stage, continuation lines joined."""
    text = re.sub(r"\\\n\s*", " ", DOCKERFILE.read_text())
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]
    stages = [i for i, ln in enumerate(lines) if ln.upper().startswith("FROM ")]
    out = []
    for line in lines[stages[-1] :]:
        word, _, rest = line.partition(" ")
        out.append((word.upper(), rest.strip()))
    return out


def one(word: str) -> str:
    (found,) = [rest for w, rest in instructions() if w == word]
    return found


def env_of_image() -> dict[str, str]:
    env = {}
    for word, rest in instructions():
        if word == "ENV":
            for item in shlex.split(rest):
                key, _, value = item.partition("=")
                env[key] = value
    return env


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def round_trip(bootstrap: str, topic: str) -> list[bytes]:
    producer = Producer({"bootstrap.servers": bootstrap})
    producer.produce(topic, b"in a box")
    assert producer.flush(30) == 0
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "docker"})
    consumer.assign([TopicPartition(topic, 0, 0)])
    got = []
    for _ in range(200):
        msg = consumer.poll(0.1)
        if msg is not None and msg.error() is None:
            got.append(msg.value())
            break
    consumer.close()
    return got


def ready_line(proc: subprocess.Popen[str]) -> str:
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith("kpy listening on "):
            return line
    raise AssertionError("kpy exited before it was ready")


def test_the_image_runs_as_a_user_with_a_data_volume() -> None:
    user = one("USER")
    assert user not in ("root", "0", "0:0")
    assert one("VOLUME") == "/var/lib/kpy"
    assert env_of_image()["KAFKA_LOG_DIRS"] == "/var/lib/kpy"
    assert one("EXPOSE") == "9092"
    assert "HEALTHCHECK" in dict(instructions())


def test_the_image_command_line_serves_and_is_healthy(tmp_path: Path) -> None:
    """ENTRYPOINT with the image's ENV, as `docker run` starts it; then its HEALTHCHECK; then
    STOPSIGNAL for a clean stop."""
    port = free_port()
    env = {k: v.replace("9092", str(port)) for k, v in env_of_image().items()}
    env["KAFKA_LOG_DIRS"] = str(tmp_path / "data")
    entrypoint = json.loads(one("ENTRYPOINT"))
    assert entrypoint[0] == "kpy"
    proc = subprocess.Popen(
        [sys.executable, "-m", "kpy", *entrypoint[1:], *json.loads(one("CMD"))],
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        ready = ready_line(proc)
        assert f"0.0.0.0:{port}" in ready, ready  # all interfaces, as a container must
        healthcheck = one("HEALTHCHECK")
        command = json.loads(
            healthcheck[healthcheck.index("CMD ") + 4 :].replace("9092", str(port))
        )
        assert command[0] == "kpy"
        health = subprocess.run(
            [sys.executable, "-m", "kpy", *command[1:]], capture_output=True, timeout=30
        )
        assert health.returncode == 0, health.stderr
        bootstrap = f"localhost:{port}"  # what the image advertises
        assert round_trip(bootstrap, "boxed") == [b"in a box"]
        proc.send_signal(getattr(signal, one("STOPSIGNAL")))
        out, _ = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 0
    assert "stopped cleanly" in out
    assert (tmp_path / "data" / "boxed-0").is_dir()


def test_compose_listeners_serve_both_addresses(tmp_path: Path) -> None:
    """compose.yml's environment: one listener for the Docker host, one for the network."""
    service = yaml.safe_load(COMPOSE.read_text())["services"]["kpy"]
    host_port, docker_port = free_port(), free_port()
    env = {}
    for key, value in service["environment"].items():
        value = str(value).replace(":19092", f":{docker_port}")
        value = value.replace("${KPY_PORT:-9092}", str(host_port))
        env[key] = value.replace(":9092", f":{host_port}")
    env = {k: v.replace("kpy:", "127.0.0.1:") for k, v in env.items()}  # the service's name
    settings = config_from_env(env)
    assert settings["listeners"].count("0.0.0.0") == 2
    assert service["volumes"] == ["kpy-data:/var/lib/kpy"]
    overrides = [arg for k, v in settings.items() for arg in ("--override", f"{k}={v}")]
    proc = subprocess.Popen(
        [sys.executable, "-m", "kpy", "serve", "--data-dir", str(tmp_path), *overrides],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        ready_line(proc)
        assert round_trip(f"localhost:{host_port}", "from-host") == [b"in a box"]
        assert round_trip(f"127.0.0.1:{docker_port}", "from-network") == [b"in a box"]
    finally:
        proc.terminate()
        proc.communicate(timeout=30)


def test_kafka_environment_variables_are_settings() -> None:
    settings = config_from_env(
        {
            "KAFKA_NUM_PARTITIONS": "3",
            "KAFKA_LOG_DIRS": "/d",
            "KAFKA_SOME__UNDERSCORE": "u",
            "KAFKA_SOME___DASH": "d",
            "KAFKA_ADVERTISED_LISTENERS": "A://localhost:9092,B://kpy:19092",
            "KAFKA_HEAP_OPTS": "-Xmx1G",  # the JVM's, not a setting
            "PATH": "/bin",
        }
    )
    assert settings == {
        "num.partitions": "3",
        "log.dirs": "/d",
        "some_underscore": "u",
        "some-dash": "d",
        "advertised.listeners": "A://localhost:9092,B://kpy:19092",
        "listeners": "A://0.0.0.0:9092,B://0.0.0.0:19092",
    }
    assert (
        config_from_env({"KAFKA_LISTENERS": "X://:1", "KAFKA_ADVERTISED_LISTENERS": "X://h:1"})[
            "listeners"
        ]
        == "X://:1"
    )


# --- With a Docker engine ---------------------------------------------------------------


def docker_engine_missing() -> str | None:
    docker = shutil.which("docker")
    if docker is None:
        return "no Docker engine: the docker command is not installed"
    try:
        info = subprocess.run([docker, "info"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"no Docker engine: `docker info` failed ({e})"
    if info.returncode != 0:
        last = (info.stderr.strip().splitlines() or ["no output"])[-1]
        return f"no Docker engine: `docker info` failed ({last})"
    return None


@pytest.fixture(scope="session")
def docker_compose_file() -> str:
    return str(COMPOSE)


@pytest.fixture(scope="session")
def docker_compose_project_name() -> str:
    return f"kpytest{os.getpid()}"


@pytest.fixture(scope="session")
def container(request: pytest.FixtureRequest) -> Iterator[tuple[str, Any]]:
    """(bootstrap, pytest-docker's Services) of kpy's container from docker/compose.yml."""
    why = docker_engine_missing()
    if why is not None:
        pytest.skip(why)
    port = free_port()
    os.environ["KPY_PORT"] = str(port)  # compose.yml publishes and advertises this port
    try:
        services = request.getfixturevalue("docker_services")  # up --build --wait
        bootstrap = f"localhost:{services.port_for('kpy', 9092)}"
        services.wait_until_responsive(check=lambda: _ready(bootstrap), timeout=120.0, pause=0.5)
        yield bootstrap, services
    finally:
        os.environ.pop("KPY_PORT", None)


def _ready(bootstrap: str) -> bool:
    try:
        client.probe(bootstrap, timeout=2.0)
    except (OSError, client.NotReady):
        return False
    return True


def test_container_round_trip_and_data_kept_across_a_restart(container: tuple[str, Any]) -> None:
    bootstrap, services = container
    assert round_trip(bootstrap, "kept") == [b"in a box"]
    services._docker_compose.execute("restart kpy")
    services.wait_until_responsive(check=lambda: _ready(bootstrap), timeout=120.0, pause=0.5)
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "after-restart"})
    consumer.assign([TopicPartition("kept", 0, 0)])
    msg = None
    for _ in range(200):
        msg = consumer.poll(0.1)
        if msg is not None and msg.error() is None:
            break
    consumer.close()
    assert msg is not None and msg.value() == b"in a box"


def test_the_client_suite_against_the_container(
    container: tuple[str, Any], pytester: pytest.Pytester
) -> None:
    """tests/plugin_suite.py (confluent-kafka, kafka-python, admin, groups) with
    --kafka-bootstrap pointing at the container."""
    bootstrap, _ = container
    pytester.makepyfile(test_user_suite=SUITE)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--kafka-bootstrap", bootstrap)
    result.assert_outcomes(passed=5, skipped=1)
