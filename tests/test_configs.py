"""DescribeConfigs, AlterConfigs and IncrementalAlterConfigs as Kafka answers them, and config
changes that take effect on live logs and survive a restart.

Raw requests check fields and error codes; confluent-kafka's AdminClient and producer check that
a real client sees the same and that a change is enforced.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from confluent_kafka import KafkaError, KafkaException, Producer
from confluent_kafka.admin import (
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    ConfigSource,
    NewTopic,
)
from kio.schema.alter_configs.v2 import request as ac
from kio.schema.describe_configs.v4 import request as dc
from kio.schema.errors import ErrorCode
from kio.schema.incremental_alter_configs.v1 import request as iac
from kio.static.primitive import i8
from kpy_process import KpyProcess
from rawclient import RawClient
from requests_v import create_topic

TOPIC, BROKER, BROKER_LOGGER = 2, 4, 8
SET, DELETE, APPEND, SUBTRACT = 0, 1, 2, 3
# ConfigSource ids
TOPIC_CONFIG, DYNAMIC_BROKER, DYNAMIC_DEFAULT, STATIC, DEFAULT = 1, 2, 3, 4, 5


def describe(
    c: RawClient,
    kind: int,
    name: str,
    keys: tuple[str, ...] | None = None,
    synonyms: bool = True,
    docs: bool = False,
) -> object:
    resp = c.request(
        dc.DescribeConfigsRequest(
            resources=(
                dc.DescribeConfigsResource(
                    resource_type=i8(kind), resource_name=name, configuration_keys=keys
                ),
            ),
            include_synonyms=synonyms,
            include_documentation=docs,
        )
    )
    (result,) = resp.results
    return result


def entries(result: object) -> dict[str, object]:
    return {e.name: e for e in result.configs}  # type: ignore[attr-defined]


def incremental(
    c: RawClient,
    *resources: tuple[int, str, list[tuple[str, int, str | None]]],
    validate_only: bool = False,
) -> list[tuple[ErrorCode, str | None]]:
    resp = c.request(
        iac.IncrementalAlterConfigsRequest(
            resources=tuple(
                iac.AlterConfigsResource(
                    resource_type=i8(kind),
                    resource_name=name,
                    configs=tuple(
                        iac.AlterableConfig(name=k, config_operation=i8(op), value=v)
                        for k, op, v in ops
                    ),
                )
                for kind, name, ops in resources
            ),
            validate_only=validate_only,
        )
    )
    return [(r.error_code, r.error_message) for r in resp.responses]


def legacy_alter(
    c: RawClient, kind: int, name: str, items: dict[str, str | None]
) -> tuple[ErrorCode, str | None]:
    resp = c.request(
        ac.AlterConfigsRequest(
            resources=(
                ac.AlterConfigsResource(
                    resource_type=i8(kind),
                    resource_name=name,
                    configs=tuple(ac.AlterableConfig(name=k, value=v) for k, v in items.items()),
                ),
            ),
            validate_only=False,
        )
    )
    (r,) = resp.responses
    return r.error_code, r.error_message


def test_describe_topic_configs(kpy: KpyProcess) -> None:
    with RawClient(kpy.bootstrap) as c:
        create_topic(c, "t", 1, retention_ms="5000")
        result = describe(c, TOPIC, "t", docs=True)
        assert result.error_code == ErrorCode.none
        by_name = entries(result)
        # Kafka 4.1's topic configs, every one of them.
        assert len(by_name) == 33 and "message.format.version" not in by_name
        retention = by_name["retention.ms"]
        assert (retention.value, retention.config_source) == ("5000", TOPIC_CONFIG)
        assert [(s.name, s.value, s.source) for s in retention.synonyms] == [
            ("retention.ms", "5000", TOPIC_CONFIG)
        ]
        assert retention.config_type == 5 and retention.documentation  # LONG, documented
        segment = by_name["segment.bytes"]
        assert (segment.value, segment.config_source, segment.read_only) == (
            "1073741824",
            DEFAULT,
            False,
        )
        assert [(s.name, s.source) for s in segment.synonyms] == [("log.segment.bytes", DEFAULT)]
        assert by_name["cleanup.policy"].config_type == 7  # LIST
        assert by_name["min.cleanable.dirty.ratio"].value == "0.5"

        # Only the keys asked for; no synonyms or documentation unless asked for.
        only = describe(c, TOPIC, "t", keys=("retention.ms", "no.such"), synonyms=False)
        assert [(e.name, e.synonyms, e.documentation) for e in only.configs] == [
            ("retention.ms", (), None)
        ]
        missing = describe(c, TOPIC, "missing")
        assert missing.error_code == ErrorCode.unknown_topic_or_partition
        assert missing.configs == ()
        assert describe(c, TOPIC, "bad/name").error_code == ErrorCode.invalid_topic_exception


def test_describe_broker_configs(kpy_factory: Callable[..., KpyProcess]) -> None:
    kpy = kpy_factory({"log.retention.hours": "2", "some.unknown.key": "x"})
    with RawClient(kpy.bootstrap) as c:
        by_name = entries(describe(c, BROKER, "1"))
        hours = by_name["log.retention.hours"]
        assert (hours.value, hours.config_source, hours.read_only) == ("2", STATIC, True)
        assert [(s.value, s.source) for s in hours.synonyms] == [("2", STATIC), ("168", DEFAULT)]
        seg = by_name["log.segment.bytes"]
        assert (seg.config_source, seg.read_only) == (DEFAULT, False)
        assert by_name["some.unknown.key"].config_source == STATIC
        assert by_name["some.unknown.key"].config_type == 0  # UNKNOWN
        assert by_name["log.roll.ms"].value is None  # no default, as in Kafka
        # The topic default follows the broker: 2 hours, but Kafka lists no synonyms for
        # retention.ms unless log.retention.ms itself is set.
        create_topic(c, "t", 1)
        retention = entries(describe(c, TOPIC, "t"))["retention.ms"]
        assert (retention.value, retention.config_source, retention.synonyms) == (
            "7200000",
            DEFAULT,
            (),
        )

        assert describe(c, BROKER, "").configs == ()  # no cluster defaults set
        other = describe(c, BROKER, "2")
        assert other.error_code == ErrorCode.invalid_request
        assert "expected 1" in other.error_message
        logger_configs = entries(describe(c, BROKER_LOGGER, "1"))
        assert logger_configs["root"].value in ("INFO", "WARN", "DEBUG", "ERROR")
        assert describe(c, 99, "x").error_code == ErrorCode.invalid_request


def test_incremental_alter_topic_checks(kpy: KpyProcess) -> None:
    with RawClient(kpy.bootstrap) as c:
        create_topic(c, "t", 1)
        ok = incremental(
            c,
            (TOPIC, "t", [("cleanup.policy", APPEND, "compact"), ("retention.ms", SET, "1000")]),
        )
        assert ok == [(ErrorCode.none, None)]
        by_name = entries(describe(c, TOPIC, "t"))
        assert by_name["cleanup.policy"].value == "delete,compact"
        assert by_name["retention.ms"].value == "1000"
        assert incremental(c, (TOPIC, "t", [("cleanup.policy", SUBTRACT, "delete")]))[0][0] == 0
        assert entries(describe(c, TOPIC, "t"))["cleanup.policy"].value == "compact"

        def error(*ops: tuple[str, int, str | None], name: str = "t") -> tuple[ErrorCode, str]:
            result = incremental(c, (TOPIC, name, list(ops)))[0]
            return result[0], result[1] or ""

        code, msg = error(("retention.ms", APPEND, "5"))
        assert code == ErrorCode.invalid_config
        assert msg == "Can't APPEND to key retention.ms because its type is not LIST."
        assert error(("segment.bytes", SET, "10")) == (
            ErrorCode.invalid_config,
            "Invalid value 10 for configuration segment.bytes: Value must be at least 1048576",
        )
        assert error(("no.such.config", SET, "1")) == (
            ErrorCode.invalid_config,
            "Unknown topic config name: no.such.config",
        )
        assert error(("retention.ms", SET, None))[0] == ErrorCode.invalid_request
        assert error(("retention.ms", SET, "1"), ("retention.ms", SET, "2")) == (
            ErrorCode.invalid_request,
            "Error due to duplicate config keys",
        )
        assert error(("retention.ms", SET, "1"), name="missing") == (
            ErrorCode.unknown_topic_or_partition,
            "The topic 'missing' does not exist.",
        )
        assert error(("retention.ms", SET, "1"), name="")[0] == ErrorCode.invalid_request
        # Each resource at most once: both copies fail, the other resource is applied.
        results = incremental(
            c,
            (TOPIC, "t", [("retention.ms", SET, "7")]),
            (TOPIC, "t", [("retention.ms", SET, "8")]),
            (BROKER, "1", [("log.retention.ms", SET, "9000")]),
        )
        assert [r[0] for r in results] == [
            ErrorCode.invalid_request,
            ErrorCode.invalid_request,
            ErrorCode.none,
        ]
        # validate_only checks and changes nothing.
        assert incremental(
            c, (TOPIC, "t", [("retention.ms", SET, "4242")]), validate_only=True
        ) == [(ErrorCode.none, None)]
        assert entries(describe(c, TOPIC, "t"))["retention.ms"].value == "1000"
        # DELETE returns a setting to the broker's default.
        assert incremental(c, (TOPIC, "t", [("retention.ms", DELETE, None)]))[0][0] == 0
        retention = entries(describe(c, TOPIC, "t"))["retention.ms"]
        assert (retention.value, retention.config_source) == ("9000", DYNAMIC_BROKER)


def test_incremental_alter_broker_checks(kpy: KpyProcess) -> None:
    with RawClient(kpy.bootstrap) as c:
        code, msg = incremental(c, (BROKER, "1", [("num.partitions", SET, "3")]))[0]
        assert code == ErrorCode.invalid_request
        assert msg == "Cannot update these configs dynamically: Set(num.partitions)"
        code, _ = incremental(c, (BROKER, "1", [("log.segment.bytes", SET, "1000")]))[0]
        assert code == ErrorCode.invalid_request  # KAFKA-13609: broker values are INVALID_REQUEST
        code, msg = incremental(c, (BROKER, "1", [("log.retention.ms", APPEND, "1")]))[0]
        assert (code, msg) == (
            ErrorCode.invalid_config,
            "Config value append is not allowed for config key: log.retention.ms",
        )
        code, msg = incremental(c, (BROKER, "7", [("log.retention.ms", SET, "1")]))[0]
        assert code == ErrorCode.invalid_request and "received 7" in (msg or "")

        assert incremental(c, (BROKER, "", [("log.cleanup.policy", SET, "compact")]))[0][0] == 0
        default = entries(describe(c, BROKER, ""))
        assert list(default) == ["log.cleanup.policy"]
        assert default["log.cleanup.policy"].config_source == DYNAMIC_DEFAULT
        per_broker = entries(describe(c, BROKER, "1"))["log.cleanup.policy"]
        assert (per_broker.value, per_broker.config_source) == ("compact", DYNAMIC_DEFAULT)

        code, msg = incremental(c, (BROKER_LOGGER, "1", [("root", APPEND, "DEBUG")]))[0]
        assert code == ErrorCode.invalid_request
        code, msg = incremental(c, (BROKER_LOGGER, "1", [("no.such.logger", SET, "DEBUG")]))[0]
        assert (code, msg) == (ErrorCode.invalid_config, "Logger no.such.logger does not exist!")
        assert incremental(c, (BROKER_LOGGER, "1", [("kpy.broker", SET, "DEBUG")]))[0][0] == 0
        assert entries(describe(c, BROKER_LOGGER, "1"))["kpy.broker"].value == "DEBUG"


def test_legacy_alter_configs_replaces_everything(kpy: KpyProcess) -> None:
    with RawClient(kpy.bootstrap) as c:
        create_topic(c, "t", 1, retention_ms="5000", max_message_bytes="3000")
        assert legacy_alter(c, TOPIC, "t", {"segment.ms": "60000"}) == (ErrorCode.none, None)
        by_name = entries(describe(c, TOPIC, "t"))
        assert by_name["segment.ms"].config_source == TOPIC_CONFIG
        # The settings left out return to their defaults.
        assert by_name["retention.ms"].config_source == DEFAULT
        assert by_name["max.message.bytes"].value == "1048588"
        assert legacy_alter(c, TOPIC, "t", {"segment.ms": None})[0] == ErrorCode.invalid_request
        assert legacy_alter(c, BROKER_LOGGER, "1", {"root": "INFO"})[0] == ErrorCode.invalid_request


def produce_one(bootstrap: str, topic: str, size: int) -> KafkaError | None:
    producer = Producer({"bootstrap.servers": bootstrap, "message.max.bytes": 10_000_000})
    errors: list[KafkaError | None] = []
    producer.produce(topic, b"x" * size, on_delivery=lambda err, msg: errors.append(err))
    producer.flush(30)
    assert len(errors) == 1
    return errors[0]


def test_changes_take_effect_and_survive_restart(kpy: KpyProcess) -> None:
    admin = AdminClient({"bootstrap.servers": kpy.bootstrap})
    admin.create_topics([NewTopic("small", 1, 1), NewTopic("own", 1, 1)])["small"].result(10)
    assert produce_one(kpy.bootstrap, "small", 5000) is None

    # A topic override: the next batch over it is refused.
    topic = ConfigResource(ConfigResource.Type.TOPIC, "small")
    topic.add_incremental_config(
        ConfigEntry("max.message.bytes", "2000", incremental_operation=AlterConfigOpType.SET)
    )
    admin.incremental_alter_configs([topic])[topic].result(10)
    err = produce_one(kpy.bootstrap, "small", 5000)
    assert err is not None and err.code() == KafkaError.MSG_SIZE_TOO_LARGE

    # A dynamic broker setting: topics without an override follow it.
    broker = ConfigResource(ConfigResource.Type.BROKER, "1")
    broker.add_incremental_config(
        ConfigEntry("message.max.bytes", "3000", incremental_operation=AlterConfigOpType.SET)
    )
    admin.incremental_alter_configs([broker])[broker].result(10)
    err = produce_one(kpy.bootstrap, "own", 5000)
    assert err is not None and err.code() == KafkaError.MSG_SIZE_TOO_LARGE
    assert produce_one(kpy.bootstrap, "own", 2500) is None

    kpy.restart()
    err = produce_one(kpy.bootstrap, "own", 5000)
    assert err is not None and err.code() == KafkaError.MSG_SIZE_TOO_LARGE
    admin = AdminClient({"bootstrap.servers": kpy.bootstrap})
    described = admin.describe_configs([ConfigResource(ConfigResource.Type.BROKER, "1")])
    (configs,) = [f.result(10) for f in described.values()]
    entry = configs["message.max.bytes"]
    assert entry.value == "3000"
    assert entry.source == ConfigSource.DYNAMIC_BROKER_CONFIG.value
    described = admin.describe_configs([ConfigResource(ConfigResource.Type.TOPIC, "small")])
    (configs,) = [f.result(10) for f in described.values()]
    assert configs["max.message.bytes"].value == "2000"
    assert configs["max.message.bytes"].source == ConfigSource.DYNAMIC_TOPIC_CONFIG.value

    # Back to the default: the broker setting is deleted.
    broker = ConfigResource(ConfigResource.Type.BROKER, "1")
    broker.add_incremental_config(
        ConfigEntry("message.max.bytes", None, incremental_operation=AlterConfigOpType.DELETE)
    )
    admin.incremental_alter_configs([broker])[broker].result(10)
    assert produce_one(kpy.bootstrap, "own", 5000) is None


def test_client_errors_surface(kpy: KpyProcess) -> None:
    admin = AdminClient({"bootstrap.servers": kpy.bootstrap})
    missing = ConfigResource(ConfigResource.Type.TOPIC, "missing")
    with pytest.raises(KafkaException) as info:
        admin.describe_configs([missing])[missing].result(10)
    assert info.value.args[0].code() == KafkaError.UNKNOWN_TOPIC_OR_PART
