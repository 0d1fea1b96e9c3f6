"""Broker configuration, with Apache Kafka's names and defaults.

``kpy serve --config server.properties --override key=value`` reads the same files and keys as
kafka-server-start. Unknown keys are kept (and logged once) so that a Kafka server.properties
works unchanged; only the keys below change kpy's behaviour.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from kpy.storage.config import LogConfig
from kpy.storage.errors import InvalidConfig

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
    # Security: listeners' protocols, TLS (PEM stores), SASL (kpy.tls, kpy.sasl).
    "listener.security.protocol.map": (
        "SASL_SSL:SASL_SSL,PLAINTEXT:PLAINTEXT,SSL:SSL,SASL_PLAINTEXT:SASL_PLAINTEXT"
    ),
    "ssl.keystore.type": "JKS",
    "ssl.keystore.location": "",
    "ssl.keystore.key": "",
    "ssl.keystore.certificate.chain": "",
    "ssl.key.password": "",
    "ssl.truststore.type": "JKS",
    "ssl.truststore.location": "",
    "ssl.truststore.certificates": "",
    "ssl.client.auth": "none",
    "ssl.enabled.protocols": "TLSv1.2,TLSv1.3",
    "ssl.cipher.suites": "",
    "ssl.principal.mapping.rules": "DEFAULT",
    "sasl.enabled.mechanisms": "GSSAPI",
    "sasl.server.max.receive.size": "524288",
    "connections.max.reauth.ms": "0",
    "connection.failed.authentication.delay.ms": "100",
    # kpy's own: SCRAM credentials given at start, ";"-separated, each as kafka-storage format
    # --add-scram takes them: SCRAM-SHA-256=[name=alice,password=alice-secret].
    "kpy.add.scram": "",
    # Connection limits and memory bounds (kpy.connection_quotas, kpy.memory_pool, server.py).
    "max.connections": "2147483647",
    "max.connections.per.ip": "2147483647",
    "max.connections.per.ip.overrides": "",
    "connections.max.idle.ms": "600000",
    "socket.send.buffer.bytes": "102400",
    "socket.receive.buffer.bytes": "102400",
    # Kafka's default, -1, leaves queued requests unbounded; kpy's (unset) is a pool of
    # socket.request.max.bytes, the smallest Kafka accepts (see queued_max_request_bytes).
    "queued.max.request.bytes": "",
    "fetch.max.bytes": "57671680",
    # kpy's own: bytes of responses held for clients that do not read them (memory_pool.py).
    "kpy.queued.max.response.bytes": "67108864",
    "log.segment.bytes": "1073741824",
    "log.roll.ms": "",
    "log.roll.hours": "168",
    "log.roll.jitter.ms": "",
    "log.roll.jitter.hours": "0",
    "log.retention.ms": "",
    "log.retention.minutes": "",
    "log.retention.hours": "168",
    "log.retention.bytes": "-1",
    "log.retention.check.interval.ms": "300000",
    # Kafka's "for testing only" delay before the log manager's periodic tasks first run.
    "log.initial.task.delay.ms": "30000",
    "log.cleanup.policy": "delete",
    "log.cleaner.enable": "true",
    "log.cleaner.backoff.ms": "15000",
    "log.cleaner.delete.retention.ms": "86400000",
    "log.cleaner.min.compaction.lag.ms": "0",
    "log.cleaner.max.compaction.lag.ms": "9223372036854775807",
    "log.cleaner.min.cleanable.ratio": "0.5",
    "log.segment.delete.delay.ms": "60000",
    "log.preallocate": "false",
    "log.message.timestamp.after.max.ms": "3600000",
    "log.message.timestamp.before.max.ms": "9223372036854775807",
    "log.local.retention.ms": "-2",
    "log.local.retention.bytes": "-2",
    "compression.type": "producer",
    "compression.gzip.level": "-1",
    "compression.lz4.level": "9",
    "compression.zstd.level": "3",
    "min.insync.replicas": "1",
    "unclean.leader.election.enable": "false",
    "log.index.interval.bytes": "4096",
    "log.index.size.max.bytes": "10485760",
    "log.message.timestamp.type": "CreateTime",
    "log.flush.offset.checkpoint.interval.ms": "60000",
    "log.flush.interval.ms": "",
    "log.flush.scheduler.interval.ms": "9223372036854775807",
    "log.flush.interval.messages": "9223372036854775807",
    "replica.fetch.max.bytes": "1048576",
    # kpy's own: fsync (group commit) before acknowledging a produce with acks 1 or -1.
    "kpy.flush.before.ack": "false",
    # kpy's own, for tests only: journal every fsync here (kpy.storage.durability).
    "kpy.test.durability.journal": "",
    # kpy's own: keep the logs and every other file of log.dirs in memory (kpy.storage.fs
    # MemoryFileSystem): the same semantics, no durability, nothing written to disk. For
    # throwaway brokers (CI suites); ``kpy serve --in-memory`` sets it.
    "kpy.storage.in.memory": "false",
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
    "offsets.topic.segment.bytes": "104857600",
    "offsets.retention.minutes": "10080",
    "offsets.retention.check.interval.ms": "600000",
    "offset.metadata.max.bytes": "4096",
    # Transaction coordinator (Kafka's names and defaults).
    "transaction.state.log.num.partitions": "50",
    "transaction.state.log.segment.bytes": "104857600",
    "transaction.max.timeout.ms": "900000",
    "transaction.abort.timed.out.transaction.cleanup.interval.ms": "10000",
    "transactional.id.expiration.ms": "604800000",
    "transaction.remove.expired.transaction.cleanup.interval.ms": "3600000",
    "transaction.partition.verification.enable": "true",
    # DescribeTopicPartitions pages at most this many partitions.
    "max.request.partition.size.limit": "2000",
    # Authorization (kpy.acl): empty is no authorizer, as Kafka. super.users and
    # allow.everyone.if.no.acl.found are the authorizer's own settings, not KafkaConfig's, so
    # they have no entry here (kpy.acl reads them; DescribeConfigs lists them when set).
    "authorizer.class.name": "",
}

# Topic config -> its broker synonyms, highest priority first, with the factor that turns the
# broker setting into the topic config's unit (Kafka's ServerTopicConfigSynonyms).
_H = 3_600_000
TOPIC_CONFIG_SYNONYMS: dict[str, list[tuple[str, int]]] = {
    "segment.bytes": [("log.segment.bytes", 1)],
    "segment.ms": [("log.roll.ms", 1), ("log.roll.hours", _H)],
    "segment.jitter.ms": [("log.roll.jitter.ms", 1), ("log.roll.jitter.hours", _H)],
    "segment.index.bytes": [("log.index.size.max.bytes", 1)],
    "flush.messages": [("log.flush.interval.messages", 1)],
    "flush.ms": [("log.flush.interval.ms", 1), ("log.flush.scheduler.interval.ms", 1)],
    "retention.bytes": [("log.retention.bytes", 1)],
    "retention.ms": [
        ("log.retention.ms", 1),
        ("log.retention.minutes", 60_000),
        ("log.retention.hours", _H),
    ],
    "max.message.bytes": [("message.max.bytes", 1)],
    "index.interval.bytes": [("log.index.interval.bytes", 1)],
    "delete.retention.ms": [("log.cleaner.delete.retention.ms", 1)],
    "min.compaction.lag.ms": [("log.cleaner.min.compaction.lag.ms", 1)],
    "max.compaction.lag.ms": [("log.cleaner.max.compaction.lag.ms", 1)],
    "file.delete.delay.ms": [("log.segment.delete.delay.ms", 1)],
    "min.cleanable.dirty.ratio": [("log.cleaner.min.cleanable.ratio", 1)],
    "cleanup.policy": [("log.cleanup.policy", 1)],
    "unclean.leader.election.enable": [("unclean.leader.election.enable", 1)],
    "min.insync.replicas": [("min.insync.replicas", 1)],
    "compression.type": [("compression.type", 1)],
    "compression.gzip.level": [("compression.gzip.level", 1)],
    "compression.lz4.level": [("compression.lz4.level", 1)],
    "compression.zstd.level": [("compression.zstd.level", 1)],
    "preallocate": [("log.preallocate", 1)],
    "message.timestamp.type": [("log.message.timestamp.type", 1)],
    "message.timestamp.before.max.ms": [("log.message.timestamp.before.max.ms", 1)],
    "message.timestamp.after.max.ms": [("log.message.timestamp.after.max.ms", 1)],
    "local.retention.ms": [("log.local.retention.ms", 1)],
    "local.retention.bytes": [("log.local.retention.bytes", 1)],
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


def listener_max_connections_key(listener: str) -> str:
    """A listener's own max.connections, under Kafka's listener prefix (lower case name)."""
    return f"listener.name.{listener.lower()}.max.connections"


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
    """The broker's settings in Kafka's layers, highest first: dynamic for this broker, dynamic
    cluster default (both set through AlterConfigs, kept in the data directory), static (the
    properties file and --override), and kpy's defaults."""

    props: dict[str, str] = field(default_factory=dict)  # what is in force, all layers merged
    static: dict[str, str] = field(default_factory=dict)
    dynamic: dict[str, str] = field(default_factory=dict)
    dynamic_default: dict[str, str] = field(default_factory=dict)

    @classmethod
    def load(
        cls, path: str | Path | None = None, overrides: dict[str, str] | None = None
    ) -> BrokerConfig:
        static: dict[str, str] = {}
        if path is not None:
            static.update(parse_properties(Path(path).read_text()))
        static.update(overrides or {})
        cfg = cls(static=static)
        cfg.merge()
        cfg.validate()
        return cfg

    def merge(self) -> None:
        """Recompute ``props`` after a layer changed."""
        self.props = {**DEFAULTS, **self.static, **self.dynamic_default, **self.dynamic}

    def layers(self) -> list[tuple[str, dict[str, str]]]:
        """(source, settings) from the highest layer down, by Kafka's ConfigSource names."""
        return [
            ("DYNAMIC_BROKER_CONFIG", self.dynamic),
            ("DYNAMIC_DEFAULT_BROKER_CONFIG", self.dynamic_default),
            ("STATIC_BROKER_CONFIG", self.static),
            ("DEFAULT_CONFIG", {k: v for k, v in DEFAULTS.items() if v != ""}),
        ]

    def validate(self) -> None:
        if not self.listeners:
            raise ConfigError("listeners is empty")
        for key in ("num.partitions", "message.max.bytes", "socket.request.max.bytes", "node.id"):
            self.get_int(key)
        for key in (
            "log.retention.check.interval.ms",
            "log.flush.scheduler.interval.ms",
            "log.initial.task.delay.ms",
            "log.cleaner.backoff.ms",
        ):
            if self.get_int(key) < 0:
                raise ConfigError(f"{key} must be at least 0")
        if self.get("log.cleaner.enable").lower() not in ("true", "false"):
            raise ConfigError("log.cleaner.enable must be true or false")
        if self.get("kpy.flush.before.ack").lower() not in ("true", "false"):
            raise ConfigError("kpy.flush.before.ack must be true or false")
        if self.get("kpy.storage.in.memory").lower() not in ("true", "false"):
            raise ConfigError("kpy.storage.in.memory must be true or false")
        if self.in_memory and self.get("kpy.test.durability.journal"):
            raise ConfigError(
                "kpy.test.durability.journal needs the disk: not with kpy.storage.in.memory"
            )
        self.validate_socket_server()
        self._validate_authorizer()
        if self.props["log.message.timestamp.type"] not in ("CreateTime", "LogAppendTime"):
            raise ConfigError("log.message.timestamp.type must be CreateTime or LogAppendTime")
        try:
            LogConfig.from_properties(self.topic_defaults())
        except InvalidConfig as e:
            raise ConfigError(f"{e} (as a topic default)") from None
        self._validate_security()

    def _validate_security(self) -> None:
        """Each listener's security protocol, TLS stores and SASL settings load (ConfigError
        where Kafka would refuse to start, or where kpy does not serve what is asked)."""
        from kpy import sasl, scram, tls

        tls.parse_mapping_rules(self.get("ssl.principal.mapping.rules"))
        for item in self.scram_additions:
            try:
                scram.parse_add_scram(item)
            except ValueError as e:
                raise ConfigError(f"kpy.add.scram: {e}") from None
        for key in (
            "sasl.server.max.receive.size",
            "connections.max.reauth.ms",
            "connection.failed.authentication.delay.ms",
        ):
            self.get_int(key)
        for lst in self.listeners:
            protocol = tls.security_protocol(self, lst.name)
            if protocol in tls.SSL_PROTOCOLS:
                tls.server_context(self, lst.name)
            if protocol in tls.SASL_PROTOCOLS:
                sasl.SaslSettings.load(self, lst.name)

    def validate_socket_server(self) -> None:
        """Kafka's checks of the connection limits and request sizes (SocketServerConfigs'
        validators and KafkaConfig's cross-checks), also run on a dynamic change."""
        if self.get_int("socket.request.max.bytes") < 1:
            raise ConfigError("socket.request.max.bytes must be at least 1")
        if self.get_int("fetch.max.bytes") < 1024:
            raise ConfigError("fetch.max.bytes must be at least 1024")
        for key in ("max.connections", "max.connections.per.ip"):
            if self.get_int(key) < 0:
                raise ConfigError(f"{key} must be at least 0")
        for listener in self.listeners:
            key = listener_max_connections_key(listener.name)
            if key in self.props and self.get_int(key) < 0:
                raise ConfigError(f"{key} must be at least 0")
        self.get_int("connections.max.idle.ms")
        self.get_int("socket.send.buffer.bytes")
        self.get_int("socket.receive.buffer.bytes")
        self.get_int("kpy.queued.max.response.bytes")
        overrides = self.max_connections_per_ip_overrides
        if self.get_int("max.connections.per.ip") == 0 and not overrides:
            raise ConfigError(
                "max.connections.per.ip can be set to zero only if "
                "max.connections.per.ip.overrides property is set."
            )
        queued = self.get("queued.max.request.bytes").strip()
        if queued:
            try:
                value = int(queued)
            except ValueError:
                raise ConfigError(
                    f"queued.max.request.bytes must be an integer, not {queued!r}"
                ) from None
            if 0 < value < self.get_int("socket.request.max.bytes"):
                raise ConfigError(
                    "queued.max.request.bytes must be larger or equal to socket.request.max.bytes"
                )

    @property
    def max_connections_per_ip_overrides(self) -> dict[str, int]:
        """max.connections.per.ip.overrides, "host:n,host:n", as Kafka's Csv.parseCsvMap splits
        it (at each comma, then at the last colon, so IPv6 addresses work) and checks it."""
        value = self.get("max.connections.per.ip.overrides").strip()
        out: dict[str, int] = {}
        if not value:
            return out
        for item in re.split(r"\s*,\s*", value):
            host, sep, count = item.rpartition(":")
            host = host.strip()
            try:
                if not sep:
                    raise ValueError(f"{item!r} is not host:count")
                out[host] = int(count.strip())
            except ValueError as e:
                raise ConfigError(
                    f"Error parsing configuration property 'max.connections.per.ip.overrides': {e}"
                ) from None
        invalid = [h for h in out if not re.fullmatch(r"[0-9a-zA-Z\-%._:]*", h)]
        if invalid:
            raise ConfigError(
                "max.connections.per.ip.overrides contains invalid addresses : " + ",".join(invalid)
            )
        return out

    @property
    def queued_max_request_bytes(self) -> int:
        """The bound on the bytes of requests read and not yet handled (memory_pool.py): the
        setting where given (0 or less: no bound, as Kafka's -1), else socket.request.max.bytes,
        the smallest pool Kafka accepts, which lets one request of the largest size in at once."""
        queued = self.get("queued.max.request.bytes").strip()
        if queued:
            return int(queued)
        return self.get_int("socket.request.max.bytes")

    def _validate_authorizer(self) -> None:
        """authorizer.class.name names Kafka's StandardAuthorizer (or the older AclAuthorizer,
        taken as the same) or nothing; Kafka refuses a class it cannot load at start."""
        from kpy import acl

        name = self.get("authorizer.class.name").strip()
        if name and name not in acl.AUTHORIZER_CLASSES:
            raise ConfigError(
                f"Invalid value {name} for configuration authorizer.class.name: Class {name} "
                f"cannot be found. kpy has one authorizer, Kafka's {acl.STANDARD_AUTHORIZER} "
                f"(also accepted as {acl.ACL_AUTHORIZER}); leave it empty for none."
            )
        try:
            acl.parse_super_users(self.get("super.users"))
        except ValueError as e:
            raise ConfigError(f"super.users: {e}") from None

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
    def scram_additions(self) -> list[str]:
        return [s for s in self.get("kpy.add.scram").split(";") if s.strip()]

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
    def in_memory(self) -> bool:
        """kpy.storage.in.memory: log.dirs names a directory in memory, not on disk."""
        return self.get_bool("kpy.storage.in.memory")

    @property
    def data_dir(self) -> Path:
        dirs = self.get("log.dirs") or self.get("log.dir")
        return Path(dirs.split(",")[0].strip())

    def topic_defaults(self) -> dict[str, str]:
        """Topic configs that the broker's settings supply, by topic config name: for each, the
        first of its broker synonyms that has a value (log.roll.ms before log.roll.hours),
        converted to the topic config's unit, as Kafka's KafkaConfig.extractLogConfigMap."""
        out = {}
        for topic_key, synonyms in TOPIC_CONFIG_SYNONYMS.items():
            for broker_key, factor in synonyms:
                value = self.props.get(broker_key, "")
                if value == "":
                    continue
                if factor != 1:
                    try:
                        value = str(int(value.strip()) * factor)
                    except ValueError:
                        raise ConfigError(
                            f"{broker_key} must be an integer, not {value!r}"
                        ) from None
                out[topic_key] = value
                break
        return out
