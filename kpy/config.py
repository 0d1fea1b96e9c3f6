"""Broker configuration, with Apache Kafka's names and defaults.

``kpy serve --config server.properties --override key=value`` reads the same files and keys as
kafka-server-start. Unknown keys are kept (and logged once) so that a Kafka server.properties
works unchanged; only the keys below change kpy's behaviour.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

log = logging.getLogger(__name__)

# Broker-level defaults, as Apache Kafka 4.x ships them.
DEFAULTS: dict[str, str] = {
    "node.id": "1",
    "listeners": "PLAINTEXT://127.0.0.1:9092",
    "advertised.listeners": "",
    "log.dirs": "./kpy-data",
    "num.partitions": "1",
    "default.replication.factor": "1",
    "auto.create.topics.enable": "true",
    "delete.topic.enable": "true",
    "message.max.bytes": "1048588",
    "socket.request.max.bytes": "104857600",
    "log.segment.bytes": "1073741824",
    "log.roll.ms": "",
    "log.roll.hours": "168",
    "log.index.interval.bytes": "4096",
    "log.index.size.max.bytes": "10485760",
    "log.message.timestamp.type": "CreateTime",
    "log.flush.offset.checkpoint.interval.ms": "60000",
    "log.flush.interval.ms": "",
    "log.flush.interval.messages": "9223372036854775807",
    "replica.fetch.max.bytes": "1048576",
    "producer.id.expiration.ms": "86400000",
    # Group coordinator. Kafka's code default for the initial rebalance delay is 3000 ms; the
    # server.properties it ships sets 0 for development, and so does kpy.
    "group.initial.rebalance.delay.ms": "0",
    "group.min.session.timeout.ms": "6000",
    "group.max.session.timeout.ms": "1800000",
    "group.max.size": "2147483647",
    "group.consumer.heartbeat.interval.ms": "5000",
    "group.consumer.session.timeout.ms": "45000",
    "group.consumer.max.size": "2147483647",
    "offsets.topic.num.partitions": "50",
    "offsets.retention.minutes": "10080",
    "offsets.retention.check.interval.ms": "600000",
    "offset.metadata.max.bytes": "4096",
    # DescribeTopicPartitions pages at most this many partitions.
    "max.request.partition.size.limit": "2000",
}

# Topic config name -> the broker config that supplies its default (Kafka's synonyms).
TOPIC_CONFIG_SYNONYMS: dict[str, str] = {
    "segment.bytes": "log.segment.bytes",
    "segment.ms": "log.roll.ms",
    "segment.index.bytes": "log.index.size.max.bytes",
    "index.interval.bytes": "log.index.interval.bytes",
    "max.message.bytes": "message.max.bytes",
    "message.timestamp.type": "log.message.timestamp.type",
    "flush.ms": "log.flush.interval.ms",
    "flush.messages": "log.flush.interval.messages",
}


class ConfigError(ValueError):
    pass


@dataclass(frozen=True)
class Listener:
    name: str
    host: str
    port: int


def parse_properties(text: str) -> dict[str, str]:
    """Java .properties, the subset server.properties files use: key=value or key: value lines,
    # and ! comments, backslash line continuation."""
    props: dict[str, str] = {}
    lines = iter(text.splitlines())
    for raw in lines:
        line = raw.strip()
        while line.endswith("\\"):
            line = line[:-1] + next(lines, "").strip()
        if not line or line[0] in "#!":
            continue
        sep = min((i for i in (line.find("="), line.find(":")) if i >= 0), default=-1)
        if sep < 0:
            props[line] = ""
            continue
        props[line[:sep].strip()] = line[sep + 1 :].strip()
    return props


def parse_listeners(value: str) -> list[Listener]:
    listeners = []
    for item in filter(None, (v.strip() for v in value.split(","))):
        if "://" not in item:
            raise ConfigError(f"listener {item!r} is not NAME://host:port")
        name, rest = item.split("://", 1)
        parts = urlsplit("//" + rest)
        if parts.port is None:
            raise ConfigError(f"listener {item!r} has no port")
        listeners.append(Listener(name.upper(), parts.hostname or "", parts.port))
    return listeners


@dataclass
class BrokerConfig:
    props: dict[str, str] = field(default_factory=dict)

    @classmethod
    def load(
        cls, path: str | Path | None = None, overrides: dict[str, str] | None = None
    ) -> BrokerConfig:
        props = dict(DEFAULTS)
        if path is not None:
            props.update(parse_properties(Path(path).read_text()))
        props.update(overrides or {})
        cfg = cls(props)
        cfg.validate()
        return cfg

    def validate(self) -> None:
        if not self.listeners:
            raise ConfigError("listeners is empty")
        for key in ("num.partitions", "message.max.bytes", "socket.request.max.bytes", "node.id"):
            self.get_int(key)
        if self.props["log.message.timestamp.type"] not in ("CreateTime", "LogAppendTime"):
            raise ConfigError("log.message.timestamp.type must be CreateTime or LogAppendTime")

    def get(self, key: str) -> str:
        return self.props.get(key, DEFAULTS.get(key, ""))

    def get_int(self, key: str) -> int:
        try:
            return int(self.get(key))
        except ValueError:
            raise ConfigError(f"{key} must be an integer, not {self.get(key)!r}") from None

    def get_bool(self, key: str) -> bool:
        return self.get(key).lower() == "true"

    @property
    def node_id(self) -> int:
        return self.get_int("node.id")

    @property
    def listeners(self) -> list[Listener]:
        return parse_listeners(self.get("listeners"))

    @property
    def advertised_listeners(self) -> list[Listener]:
        """What Metadata tells clients; an unset or 0.0.0.0 host becomes a reachable one."""
        advertised = parse_listeners(self.get("advertised.listeners")) or self.listeners
        out = []
        for lst in advertised:
            host = lst.host
            if host in ("", "0.0.0.0", "::"):
                host = "127.0.0.1"
            out.append(Listener(lst.name, host, lst.port))
        return out

    @property
    def data_dir(self) -> Path:
        dirs = self.get("log.dirs") or self.get("log.dir")
        return Path(dirs.split(",")[0].strip())

    def topic_defaults(self) -> dict[str, str]:
        """Topic configs that the broker's settings supply, by topic config name."""
        out = {}
        for topic_key, broker_key in TOPIC_CONFIG_SYNONYMS.items():
            value = self.get(broker_key)
            if topic_key == "segment.ms" and not value:
                value = str(self.get_int("log.roll.hours") * 3_600_000)
            if value:
                out[topic_key] = value
        return out
