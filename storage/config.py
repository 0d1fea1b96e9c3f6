"""LogConfig: the topic-level settings the storage layer honours, under Kafka's names.

``from_properties`` takes Kafka's dotted topic config names ("segment.bytes") as strings, the
way CreateTopics and AlterConfigs carry them. Names Kafka knows but kpy does not enforce are
accepted and kept (so DescribeConfigs can echo them); names Kafka does not know are rejected.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field

from kpy.storage.errors import InvalidConfig

CREATE_TIME = "CreateTime"
LOG_APPEND_TIME = "LogAppendTime"

# Kafka topic config name -> LogConfig field, for the settings kpy enforces or reports.
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
}

# Kafka topic configs accepted and stored but not acted on by kpy.storage.
UNENFORCED_TOPIC_CONFIGS = frozenset(
    {
        "compression.type",
        "delete.retention.ms",
        "file.delete.delay.ms",
        "flush.messages",
        "flush.ms",
        "follower.replication.throttled.replicas",
        "leader.replication.throttled.replicas",
        "local.retention.bytes",
        "local.retention.ms",
        "max.compaction.lag.ms",
        "message.downconversion.enable",
        "message.format.version",
        "message.timestamp.after.max.ms",
        "message.timestamp.before.max.ms",
        "message.timestamp.difference.max.ms",
        "min.cleanable.dirty.ratio",
        "min.compaction.lag.ms",
        "min.insync.replicas",
        "preallocate",
        "remote.storage.enable",
        "segment.jitter.ms",
        "unclean.leader.election.enable",
        "compression.gzip.level",
        "compression.lz4.level",
        "compression.zstd.level",
    }
)

TOPIC_CONFIG_NAMES = frozenset(_FIELDS) | UNENFORCED_TOPIC_CONFIGS


def _parse_int(name: str, value: str, minimum: int) -> int:
    try:
        parsed = int(value.strip())
    except ValueError:
        raise InvalidConfig(f"{name}: {value!r} is not an integer") from None
    if parsed < minimum:
        raise InvalidConfig(f"{name}: {parsed} is below the minimum {minimum}")
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
    retention_ms: int = 604800000  # reported, not enforced yet
    retention_bytes: int = -1  # reported, not enforced yet
    cleanup_policy: str = "delete"  # reported, not enforced yet
    # Accepted Kafka configs kpy stores but does not act on, by Kafka name.
    other: Mapping[str, str] = field(default_factory=dict)

    @property
    def log_append_time(self) -> bool:
        return self.message_timestamp_type == LOG_APPEND_TIME

    @classmethod
    def from_properties(cls, props: Mapping[str, str], base: LogConfig | None = None) -> LogConfig:
        """Apply Kafka-named overrides to ``base`` (Kafka's defaults when None)."""
        config = base if base is not None else cls()
        changes: dict[str, object] = {}
        other = dict(config.other)
        for name, value in props.items():
            attr = _FIELDS.get(name)
            if attr is None:
                if name not in UNENFORCED_TOPIC_CONFIGS:
                    raise InvalidConfig(f"unknown topic config name {name!r}")
                other[name] = value
                continue
            changes[attr] = cls._parse(name, value)
        changes["other"] = other
        return dataclasses.replace(config, **changes)  # type: ignore[arg-type]

    @staticmethod
    def _parse(name: str, value: str) -> object:
        if name == "segment.bytes":
            return _parse_int(name, value, 14)
        if name == "segment.ms":
            return _parse_int(name, value, 1)
        if name == "segment.index.bytes":
            return _parse_int(name, value, 12)
        if name in ("index.interval.bytes", "max.message.bytes"):
            return _parse_int(name, value, 0)
        if name == "retention.ms":
            return _parse_int(name, value, -1)
        if name == "retention.bytes":
            return _parse_int(name, value, -(2**63))
        if name == "message.timestamp.type":
            if value not in (CREATE_TIME, LOG_APPEND_TIME):
                raise InvalidConfig(f"{name}: {value!r} is not CreateTime or LogAppendTime")
            return value
        if name == "cleanup.policy":
            policies = [p.strip() for p in value.split(",") if p.strip()]
            if not policies or any(p not in ("delete", "compact") for p in policies):
                raise InvalidConfig(f"{name}: {value!r} is not delete and/or compact")
            return ",".join(policies)
        raise InvalidConfig(f"unknown topic config name {name!r}")  # pragma: no cover

    def to_properties(self) -> dict[str, str]:
        """All settings by Kafka name, as strings (for DescribeConfigs)."""
        props = {name: str(getattr(self, attr)) for name, attr in _FIELDS.items()}
        props.update(self.other)
        return props
