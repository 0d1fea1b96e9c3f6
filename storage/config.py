"""Topic configs: every setting Apache Kafka 4.1 defines for a topic, and LogConfig, the part the
storage layer acts on.

``TOPIC_CONFIGS`` lists Kafka's topic configs with their types, defaults and valid values, so that
kpy validates what CreateTopics and AlterConfigs carry as Kafka's ``LogConfig.validate`` does (the
same error texts: "Invalid value x for configuration y: ...", "Unknown topic config name: y") and
DescribeConfigs can report every one of them. The documentation strings are kpy's own words.

``LogConfig.from_properties`` takes Kafka's dotted names ("segment.bytes") as strings. Settings
kpy does not act on are validated, kept and reported all the same.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import IntEnum

from kpy.storage.errors import InvalidConfig

CREATE_TIME = "CreateTime"
LOG_APPEND_TIME = "LogAppendTime"
INT_MAX = 2**31 - 1
LONG_MAX = 2**63 - 1


class ConfigType(IntEnum):
    """The config types DescribeConfigs v3+ reports (Kafka's DescribeConfigsResponse.ConfigType)."""

    UNKNOWN = 0
    BOOLEAN = 1
    STRING = 2
    INT = 3
    SHORT = 4
    LONG = 5
    DOUBLE = 6
    LIST = 7
    CLASS = 8
    PASSWORD = 9


Validator = Callable[[object], str | None]  # parsed value -> why it is invalid, or None


def at_least(lo: float, hi: float | None = None) -> Validator:
    def check(value: object) -> str | None:
        assert isinstance(value, int | float)
        if value < lo:
            return f"Value must be at least {_num(lo)}"
        if hi is not None and value > hi:
            return f"Value must be no more than {_num(hi)}"
        return None

    return check


def one_of(*allowed: str) -> Validator:
    def check(value: object) -> str | None:
        if value not in allowed:
            return "String must be one of: " + ", ".join(allowed)
        return None

    return check


def list_of(*allowed: str) -> Validator:
    def check(value: object) -> str | None:
        assert isinstance(value, list)
        for item in value:
            if item not in allowed:
                return "String must be one of: " + ", ".join(allowed)
        return None

    return check


def _gzip_level(value: object) -> str | None:
    if value == -1 or (isinstance(value, int) and 1 <= value <= 9):
        return None
    return "Value must be between 1 and 9 or -1"


def _throttled_replicas(value: object) -> str | None:
    assert isinstance(value, list)
    if value == ["*"]:
        return None
    for item in value:
        left, sep, right = item.partition(":")
        if not sep or not left.strip().isdigit() or not right.strip().isdigit():
            return (
                "Value must be a comma-separated list of [partitionId]:[brokerId] pairs or "
                "the single wildcard '*'"
            )
    return None


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


@dataclass(frozen=True, slots=True)
class ConfigDef:
    """One config: Kafka's name, type and default (as the string DescribeConfigs shows)."""

    name: str
    type: ConfigType
    default: str | None
    doc: str
    validator: Validator | None = None

    def parse(self, raw: str) -> object:
        """The typed value of ``raw`` as Kafka's ConfigDef parses it; InvalidConfig if bad."""
        value = parse_value(self.name, self.type, raw)
        if self.validator is not None and value is not None:
            why = self.validator(value)
            if why is not None:
                raise InvalidConfig(f"Invalid value {raw} for configuration {self.name}: {why}")
        return value

    def canonical(self, raw: str) -> str:
        """``raw`` validated and written as Kafka writes the parsed value back."""
        return format_value(self.type, self.parse(raw))


def parse_value(name: str, kind: ConfigType, raw: str) -> object:
    text = raw.strip()

    def bad(why: str) -> InvalidConfig:
        return InvalidConfig(f"Invalid value {raw} for configuration {name}: {why}")

    if kind in (ConfigType.INT, ConfigType.SHORT, ConfigType.LONG):
        bound = {ConfigType.INT: 2**31, ConfigType.SHORT: 2**15, ConfigType.LONG: 2**63}[kind]
        try:
            number = int(text, 10)
        except ValueError:
            raise bad(f"Not a number of type {kind.name}") from None
        if not -bound <= number < bound:
            raise bad(f"Not a number of type {kind.name}")
        return number
    if kind is ConfigType.DOUBLE:
        try:
            real = float(text)
        except ValueError:
            raise bad("Not a number of type DOUBLE") from None
        if math.isnan(real):
            raise bad("Not a number of type DOUBLE")
        return real
    if kind is ConfigType.BOOLEAN:
        if text.lower() not in ("true", "false"):
            raise bad("Expected value to be either true or false")
        return text.lower() == "true"
    if kind is ConfigType.LIST:
        return [] if not text else [item.strip() for item in text.split(",")]
    return text


def format_value(kind: ConfigType, value: object) -> str:
    """Kafka's ConfigDef.convertToString."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return ",".join(value)
    if kind is ConfigType.DOUBLE and isinstance(value, float | int):
        return _java_double(float(value))
    return str(value)


def _java_double(x: float) -> str:
    if math.isinf(x):
        return "Infinity" if x > 0 else "-Infinity"
    if x != 0 and (abs(x) >= 1e7 or abs(x) < 1e-3):
        mantissa, exponent = repr(x).split("e") if "e" in repr(x) else (f"{x:.16e}", "")
        if not exponent:
            mantissa, exponent = mantissa.split("e")
        mantissa = mantissa.rstrip("0")
        if mantissa.endswith("."):
            mantissa += "0"
        if "." not in mantissa:
            mantissa += ".0"
        return f"{mantissa}E{int(exponent)}"
    return repr(x)


T = ConfigType
# Apache Kafka 4.1's topic configs (LogConfig), by name. Defaults are Kafka's code defaults.
TOPIC_CONFIGS: dict[str, ConfigDef] = {
    d.name: d
    for d in (
        ConfigDef("cleanup.policy", T.LIST, "delete",
                  "What happens to old segments: delete them, compact them to the latest value "
                  "per key, or both.", list_of("compact", "delete")),
        ConfigDef("compression.gzip.level", T.INT, "-1",
                  "Level used when the broker compresses with gzip.", _gzip_level),
        ConfigDef("compression.lz4.level", T.INT, "9",
                  "Level used when the broker compresses with lz4.", at_least(1, 17)),
        ConfigDef("compression.type", T.STRING, "producer",
                  "Codec the broker stores batches with; 'producer' keeps the producer's.",
                  one_of("uncompressed", "zstd", "lz4", "snappy", "gzip", "producer")),
        ConfigDef("compression.zstd.level", T.INT, "3",
                  "Level used when the broker compresses with zstd.", at_least(-131072, 22)),
        ConfigDef("delete.retention.ms", T.LONG, "86400000",
                  "How long tombstones stay readable in a compacted topic.", at_least(0)),
        ConfigDef("file.delete.delay.ms", T.LONG, "60000",
                  "Delay before a deleted segment's files are removed from disk.", at_least(0)),
        ConfigDef("flush.messages", T.LONG, str(LONG_MAX),
                  "Force an fsync after this many messages.", at_least(1)),
        ConfigDef("flush.ms", T.LONG, str(LONG_MAX),
                  "Force an fsync when this long has passed since the last one.", at_least(0)),
        ConfigDef("follower.replication.throttled.replicas", T.LIST, "",
                  "Replicas whose follower-side replication is throttled.", _throttled_replicas),
        ConfigDef("index.interval.bytes", T.INT, "4096",
                  "Bytes of log between two entries of the offset index.", at_least(0)),
        ConfigDef("leader.replication.throttled.replicas", T.LIST, "",
                  "Replicas whose leader-side replication is throttled.", _throttled_replicas),
        ConfigDef("local.retention.bytes", T.LONG, "-2",
                  "Local size limit when tiered storage is on; -2 means retention.bytes.",
                  at_least(-2)),
        ConfigDef("local.retention.ms", T.LONG, "-2",
                  "Local time limit when tiered storage is on; -2 means retention.ms.",
                  at_least(-2)),
        ConfigDef("max.compaction.lag.ms", T.LONG, str(LONG_MAX),
                  "Longest a record may stay uncompacted.", at_least(1)),
        ConfigDef("max.message.bytes", T.INT, "1048588",
                  "Largest record batch the topic accepts.", at_least(0)),
        ConfigDef("message.timestamp.after.max.ms", T.LONG, "3600000",
                  "How far in the future a CreateTime timestamp may be.", at_least(0)),
        ConfigDef("message.timestamp.before.max.ms", T.LONG, str(LONG_MAX),
                  "How far in the past a CreateTime timestamp may be.", at_least(0)),
        ConfigDef("message.timestamp.type", T.STRING, CREATE_TIME,
                  "Whether records keep the producer's timestamp or get the append time.",
                  one_of(CREATE_TIME, LOG_APPEND_TIME)),
        ConfigDef("min.cleanable.dirty.ratio", T.DOUBLE, "0.5",
                  "Share of uncompacted log that makes a partition eligible for cleaning.",
                  at_least(0, 1)),
        ConfigDef("min.compaction.lag.ms", T.LONG, "0",
                  "Shortest time a record stays uncompacted.", at_least(0)),
        ConfigDef("min.insync.replicas", T.INT, "1",
                  "Replicas that must acknowledge an acks=all write.", at_least(1)),
        ConfigDef("preallocate", T.BOOLEAN, "false",
                  "Whether new segment files are preallocated."),
        ConfigDef("remote.log.copy.disable", T.BOOLEAN, "false",
                  "Stop copying segments to tiered storage."),
        ConfigDef("remote.log.delete.on.disable", T.BOOLEAN, "false",
                  "Delete tiered data when tiered storage is turned off."),
        ConfigDef("remote.storage.enable", T.BOOLEAN, "false",
                  "Whether the topic uses tiered storage."),
        ConfigDef("retention.bytes", T.LONG, "-1",
                  "Size a partition may grow to before old segments go; -1 for no limit."),
        ConfigDef("retention.ms", T.LONG, "604800000",
                  "Age after which old segments go; -1 for no limit.", at_least(-1)),
        ConfigDef("segment.bytes", T.INT, "1073741824",
                  "Size at which a new segment file is started.", at_least(1048576)),
        ConfigDef("segment.index.bytes", T.INT, "10485760",
                  "Largest size of a segment's offset and time indexes.", at_least(4)),
        ConfigDef("segment.jitter.ms", T.LONG, "0",
                  "Random amount taken off segment.ms, to spread rolls.", at_least(0)),
        ConfigDef("segment.ms", T.LONG, "604800000",
                  "Age at which a new segment file is started.", at_least(1)),
        ConfigDef("unclean.leader.election.enable", T.BOOLEAN, "false",
                  "Whether an out-of-sync replica may become leader."),
    )
}  # fmt: skip

# Kafka 4.1's internal topic config for tests: when set it replaces segment.bytes, without the
# 1 MiB minimum. DescribeConfigs does not list it.
INTERNAL_SEGMENT_BYTES = "internal.segment.bytes"

TOPIC_CONFIG_NAMES = frozenset(TOPIC_CONFIGS) | {INTERNAL_SEGMENT_BYTES}

# Topic config -> LogConfig field, for the settings kpy.storage acts on.
_FIELDS: dict[str, str] = {
    "segment.bytes": "segment_bytes",
    "segment.ms": "segment_ms",
    "segment.index.bytes": "segment_index_bytes",
    "index.interval.bytes": "index_interval_bytes",
    "max.message.bytes": "max_message_bytes",
    "message.timestamp.type": "message_timestamp_type",
    "retention.ms": "retention_ms",
    "retention.bytes": "retention_bytes",
    "cleanup.policy": "cleanup_policy",
    "flush.messages": "flush_messages",
    "flush.ms": "flush_ms",
    "file.delete.delay.ms": "file_delete_delay_ms",
}


def validate_topic_config(name: str, value: str) -> str:
    """``value`` for topic config ``name``, checked as Kafka checks it, in Kafka's form."""
    if name == INTERNAL_SEGMENT_BYTES:
        return str(_internal_segment_bytes(value))
    definition = TOPIC_CONFIGS.get(name)
    if definition is None:
        raise InvalidConfig(f"Unknown topic config name: {name}")
    return definition.canonical(value)


def _internal_segment_bytes(value: str) -> int:
    parsed = parse_value(INTERNAL_SEGMENT_BYTES, ConfigType.INT, value)
    assert isinstance(parsed, int)
    if parsed < 14:
        raise InvalidConfig(
            f"Invalid value {value} for configuration {INTERNAL_SEGMENT_BYTES}: "
            "Value must be at least 14"
        )
    return parsed


@dataclass(frozen=True, slots=True)
class LogConfig:
    """Per-topic log settings; defaults are Kafka's."""

    segment_bytes: int = 1073741824
    segment_ms: int = 604800000
    segment_index_bytes: int = 10485760
    index_interval_bytes: int = 4096
    max_message_bytes: int = 1048588
    message_timestamp_type: str = CREATE_TIME
    retention_ms: int = 604800000  # -1: no time limit
    retention_bytes: int = -1  # negative: no size limit
    cleanup_policy: str = "delete"  # "delete", "compact" or "compact,delete"
    flush_messages: int = LONG_MAX  # fsync once this many offsets are unflushed
    flush_ms: int = LONG_MAX  # fsync once the last fsync is this old
    file_delete_delay_ms: int = 60000  # a deleted segment's files go this long after
    # Every other topic config that was set, by Kafka name (validated, in Kafka's form).
    other: Mapping[str, str] = field(default_factory=dict)

    @property
    def log_append_time(self) -> bool:
        return self.message_timestamp_type == LOG_APPEND_TIME

    @property
    def delete(self) -> bool:
        """Whether retention deletes old segments (cleanup.policy contains delete)."""
        return "delete" in self.cleanup_policy.split(",")

    @classmethod
    def from_properties(cls, props: Mapping[str, str], base: LogConfig | None = None) -> LogConfig:
        """Apply Kafka-named settings to ``base`` (Kafka's defaults when None); InvalidConfig
        names the first bad one as Kafka words it."""
        config = base if base is not None else cls()
        changes: dict[str, object] = {}
        other = dict(config.other)
        for name, raw in props.items():
            value = validate_topic_config(name, raw)
            attr = _FIELDS.get(name)
            if attr is None or name == "segment.bytes":
                other[name] = value  # segment.bytes too: internal.segment.bytes may replace it
            if attr is not None:
                parsed = TOPIC_CONFIGS[name].parse(value)
                changes[attr] = ",".join(parsed) if isinstance(parsed, list) else parsed
        if INTERNAL_SEGMENT_BYTES in other:
            changes["segment_bytes"] = int(other[INTERNAL_SEGMENT_BYTES])
        lag_min = int(other.get("min.compaction.lag.ms", "0"))
        lag_max = int(other.get("max.compaction.lag.ms", str(LONG_MAX)))
        if lag_min > lag_max:
            raise InvalidConfig(
                "conflict topic config setting min.compaction.lag.ms "
                f"({lag_min}) > max.compaction.lag.ms ({lag_max})"
            )
        if other.get("remote.storage.enable") == "true":
            raise InvalidConfig(
                "Tiered Storage functionality is disabled in the broker. "
                "Topic cannot be configured with remote log storage."
            )
        changes["other"] = other
        return dataclasses.replace(config, **changes)  # type: ignore[arg-type]

    def to_properties(self) -> dict[str, str]:
        """Every topic config by Kafka name with the value in force, as DescribeConfigs shows it
        (internal ones left out)."""
        props = {name: d.default or "" for name, d in TOPIC_CONFIGS.items()}
        for name, attr in _FIELDS.items():
            props[name] = str(getattr(self, attr))
        props.update((k, v) for k, v in self.other.items() if k in TOPIC_CONFIGS)
        if INTERNAL_SEGMENT_BYTES in self.other and "segment.bytes" not in self.other:
            props["segment.bytes"] = TOPIC_CONFIGS["segment.bytes"].default or ""
        return props
