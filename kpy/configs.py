"""Config resources as DescribeConfigs, AlterConfigs and IncrementalAlterConfigs see them.

Topics: every topic config (kpy.storage.config.TOPIC_CONFIGS) with the value in force, where it
comes from (the topic's override, a broker setting, or the default) and its synonyms, built the way
Kafka's ConfigHelper builds them, quirks included (a synonym list is cut before the topic config's
first broker synonym, so log.retention.hours alone shows no synonyms for retention.ms).

Brokers: the settings kpy knows (kpy.config.DEFAULTS) plus any other key of the properties file,
in Kafka's layers. ``BROKER_CONFIGS`` says which can change at run time: those that supply topic
defaults, as in Kafka; others are read-only and AlterConfigs refuses them as Kafka does. Dynamic
settings are kept in ``kpy-broker-configs.json`` in the data directory (Kafka keeps them in its
metadata log) and applied to every partition log whose topic does not override them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path

from kpy.config import DEFAULTS, TOPIC_CONFIG_SYNONYMS, BrokerConfig
from kpy.storage.config import TOPIC_CONFIGS, ConfigDef, ConfigType, at_least, one_of
from kpy.storage.errors import InvalidConfig
from kpy.storage.fs import OS_FS, FileSystem

BROKER_CONFIGS_FILE = "kpy-broker-configs.json"

TOPIC = 2
BROKER = 4
BROKER_LOGGER = 8


class ConfigSource(IntEnum):
    UNKNOWN = 0
    TOPIC_CONFIG = 1
    DYNAMIC_BROKER_CONFIG = 2
    DYNAMIC_DEFAULT_BROKER_CONFIG = 3
    STATIC_BROKER_CONFIG = 4
    DEFAULT_CONFIG = 5
    DYNAMIC_BROKER_LOGGER_CONFIG = 6


@dataclass(frozen=True, slots=True)
class Synonym:
    name: str
    value: str | None
    source: ConfigSource


@dataclass(frozen=True, slots=True)
class Entry:
    """One config of a resource, as a DescribeConfigs result carries it."""

    name: str
    value: str | None
    source: ConfigSource
    read_only: bool
    sensitive: bool
    synonyms: tuple[Synonym, ...]
    type: ConfigType
    doc: str | None


T = ConfigType
_INT, _LONG, _STR, _BOOL = T.INT, T.LONG, T.STRING, T.BOOLEAN
_LIST, _PASSWORD = T.LIST, T.PASSWORD


def _topic_default_def(topic_name: str) -> tuple[ConfigType, str]:
    d = TOPIC_CONFIGS[topic_name]
    return d.type, f"Default of the topic config {topic_name}: {d.doc[0].lower()}{d.doc[1:]}"


# Broker settings: name -> (type, changeable at run time, what it does). The settings that
# supply topic defaults are changeable, as in Kafka; kpy applies them to live logs.
_BROKER: dict[str, tuple[ConfigType, bool, str]] = {
    "node.id": (_INT, False, "This broker's id."),
    "listeners": (_STR, False, "Addresses the broker listens on, NAME://host:port."),
    "advertised.listeners": (_STR, False, "Addresses given to clients, when not listeners."),
    "log.dirs": (_STR, False, "The data directory."),
    "num.partitions": (_INT, False, "Partitions of a topic created without a count."),
    "default.replication.factor": (
        _INT,
        False,
        "Replication factor of topics created without one.",
    ),
    "auto.create.topics.enable": (_BOOL, False, "Create unknown topics on Metadata requests."),
    "delete.topic.enable": (_BOOL, False, "Whether DeleteTopics may delete topics."),
    "socket.request.max.bytes": (_INT, False, "Largest request the broker reads."),
    "max.connections": (_INT, True, "Most connections the broker serves at once."),
    "max.connections.per.ip": (_INT, True, "Most connections from one IP address."),
    "max.connections.per.ip.overrides": (
        _STR,
        True,
        "Per-IP or hostname limits in place of max.connections.per.ip, host:n,host:n.",
    ),
    "connections.max.idle.ms": (_LONG, False, "Connections idle this long are closed."),
    "socket.send.buffer.bytes": (_INT, False, "SO_SNDBUF of connections; -1: the OS default."),
    "socket.receive.buffer.bytes": (
        _INT,
        False,
        "SO_RCVBUF of connections; -1: the OS default.",
    ),
    "queued.max.request.bytes": (
        _LONG,
        False,
        "Bytes of requests read and not yet handled before no more are read.",
    ),
    "fetch.max.bytes": (_INT, False, "Most bytes a Fetch response carries."),
    "kpy.queued.max.response.bytes": (
        _LONG,
        False,
        "kpy's own: bytes of unsent responses beyond which fetches return one batch.",
    ),
    "log.roll.hours": (_INT, False, "segment.ms default in hours, when log.roll.ms is unset."),
    "log.roll.jitter.hours": (_INT, False, "segment.jitter.ms default in hours."),
    "log.retention.hours": (_INT, False, "retention.ms default in hours."),
    "log.retention.minutes": (_INT, False, "retention.ms default in minutes."),
    "log.retention.check.interval.ms": (_LONG, False, "How often retention is checked."),
    "log.initial.task.delay.ms": (
        _LONG,
        False,
        "Delay before the first retention and flush checks (for tests).",
    ),
    "kpy.flush.before.ack": (
        _BOOL,
        False,
        "kpy's own: fsync before acknowledging a produce with acks 1 or -1 (group commit).",
    ),
    "kpy.test.durability.journal": (
        _STR,
        False,
        "kpy's own, for tests: journal every fsync here to simulate a power cut.",
    ),
    "kpy.storage.in.memory": (
        _BOOL,
        False,
        "kpy's own: keep the logs and all other files in memory (no durability, no disk).",
    ),
    "log.flush.offset.checkpoint.interval.ms": (
        _INT,
        False,
        "How often recovery points are saved.",
    ),
    "log.flush.scheduler.interval.ms": (
        _LONG,
        False,
        "flush.ms default when log.flush.interval.ms is unset.",
    ),
    "replica.fetch.max.bytes": (_INT, False, "Bytes per partition a replica fetch may return."),
    "producer.id.expiration.ms": (_INT, True, "How long an idle producer id is remembered."),
    "group.initial.rebalance.delay.ms": (
        _INT,
        False,
        "Wait before the first rebalance of a new group.",
    ),
    "group.min.session.timeout.ms": (_INT, False, "Smallest session timeout a member may ask for."),
    "group.max.session.timeout.ms": (_INT, False, "Largest session timeout a member may ask for."),
    "group.max.size": (_INT, False, "Most members of a classic group."),
    "group.consumer.heartbeat.interval.ms": (_INT, False, "Heartbeat interval of consumer groups."),
    "group.consumer.session.timeout.ms": (_INT, False, "Session timeout of consumer groups."),
    "group.consumer.max.size": (_INT, False, "Most members of a consumer group."),
    "offsets.topic.num.partitions": (_INT, False, "Partitions of __consumer_offsets."),
    "offsets.retention.minutes": (_INT, False, "How long offsets of an empty group are kept."),
    "offsets.retention.check.interval.ms": (_LONG, False, "How often expired offsets are removed."),
    "offset.metadata.max.bytes": (_INT, False, "Largest metadata string of a committed offset."),
    "transaction.state.log.num.partitions": (_INT, False, "Partitions of __transaction_state."),
    "transaction.state.log.segment.bytes": (
        _INT,
        False,
        "segment.bytes of __transaction_state.",
    ),
    "transaction.max.timeout.ms": (_INT, False, "Largest transaction timeout a producer may ask."),
    "transaction.abort.timed.out.transaction.cleanup.interval.ms": (
        _INT,
        False,
        "How often transactions past their timeout are aborted.",
    ),
    "transactional.id.expiration.ms": (
        _INT,
        False,
        "How long an idle transactional id is remembered.",
    ),
    "transaction.remove.expired.transaction.cleanup.interval.ms": (
        _INT,
        False,
        "How often idle transactional ids are expired.",
    ),
    "transaction.partition.verification.enable": (
        _BOOL,
        True,
        "Check that a transactional write goes to a partition of its transaction.",
    ),
    "listener.security.protocol.map": (_STR, False, "Each listener's security protocol."),
    "ssl.keystore.type": (_STR, False, "The keystore's format (kpy reads PEM)."),
    "ssl.keystore.location": (_STR, False, "PEM file with the private key and certificates."),
    "ssl.keystore.key": (_PASSWORD, False, "The private key, PEM, in the setting itself."),
    "ssl.keystore.certificate.chain": (_PASSWORD, False, "The certificate chain, PEM."),
    "ssl.key.password": (_PASSWORD, False, "The password of an encrypted private key."),
    "ssl.truststore.type": (_STR, False, "The truststore's format (kpy reads PEM)."),
    "ssl.truststore.location": (_STR, False, "PEM file of the trusted CA certificates."),
    "ssl.truststore.certificates": (_PASSWORD, False, "The trusted certificates, PEM."),
    "ssl.client.auth": (_STR, False, "none, requested or required: client certificates."),
    "ssl.enabled.protocols": (_LIST, False, "TLS versions served."),
    "ssl.cipher.suites": (_LIST, False, "Cipher suites served (empty: the defaults)."),
    "ssl.principal.mapping.rules": (_STR, False, "Client certificate name -> principal."),
    "sasl.enabled.mechanisms": (_LIST, False, "SASL mechanisms served."),
    "sasl.server.max.receive.size": (_INT, False, "Largest frame before authentication."),
    "connections.max.reauth.ms": (_LONG, False, "SASL session lifetime (0: unlimited)."),
    "kpy.add.scram": (
        _PASSWORD,
        False,
        "kpy's own: SCRAM credentials given at start (kpy serve --add-scram).",
    ),
    "connection.failed.authentication.delay.ms": (
        _INT,
        False,
        "Delay before closing a connection whose authentication failed.",
    ),
    "authorizer.class.name": (
        T.CLASS,
        False,
        "The authorizer: empty for none, or Kafka's StandardAuthorizer (kpy.acl).",
    ),
}
for _topic_name, _synonyms in TOPIC_CONFIG_SYNONYMS.items():
    for _broker_name, _ in _synonyms:
        if _broker_name not in _BROKER:
            _kind, _doc = _topic_default_def(_topic_name)
            _BROKER[_broker_name] = (_kind, True, _doc)

_VALIDATORS = {
    "num.partitions": at_least(1),
    "socket.request.max.bytes": at_least(1),
    "max.connections": at_least(0),
    "max.connections.per.ip": at_least(0),
    "fetch.max.bytes": at_least(1024),
    "log.segment.bytes": at_least(1048576),
    "log.message.timestamp.type": one_of("CreateTime", "LogAppendTime"),
}

BROKER_CONFIGS: dict[str, ConfigDef] = {
    name: ConfigDef(name, kind, DEFAULTS.get(name) or None, doc, _VALIDATORS.get(name))
    for name, (kind, _, doc) in _BROKER.items()
}
DYNAMIC_BROKER_CONFIGS = frozenset(name for name, (_, dynamic, _) in _BROKER.items() if dynamic)

# Broker settings that are one setting under several names (Kafka's brokerConfigSynonyms).
_BROKER_SYNONYM_GROUPS = (
    ("log.roll.ms", "log.roll.hours"),
    ("log.roll.jitter.ms", "log.roll.jitter.hours"),
    ("log.flush.interval.ms", "log.flush.scheduler.interval.ms"),
    ("log.retention.ms", "log.retention.minutes", "log.retention.hours"),
)


def broker_synonyms(name: str) -> list[str]:
    for group in _BROKER_SYNONYM_GROUPS:
        # log.flush.scheduler.interval.ms is only a fallback of log.flush.interval.ms
        if name in group and not (group[0] == "log.flush.interval.ms" and name != group[0]):
            return list(group)
    return [name]


def _config_synonyms(config: BrokerConfig, name: str, names: list[str]) -> list[Synonym]:
    """Kafka's ConfigHelper.configSynonyms: each layer, highest first, each synonym in order;
    then everything before the first entry for ``name`` itself is dropped."""
    found = [
        Synonym(n, layer[n], ConfigSource[source])
        for source, layer in config.layers()
        for n in names
        if n in layer
    ]
    for i, syn in enumerate(found):
        if syn.name == name:
            return found[i:]
    return []


def describe_topic(
    config: BrokerConfig, overrides: Mapping[str, str], effective: Mapping[str, str]
) -> list[Entry]:
    """Every topic config of a topic with ``overrides`` whose values in force are ``effective``
    (LogConfig.to_properties)."""
    entries = []
    for name, definition in TOPIC_CONFIGS.items():
        value = effective.get(name, definition.default)
        synonyms: list[Synonym] = []
        broker = TOPIC_CONFIG_SYNONYMS.get(name)
        if broker:
            primary = broker[0][0]
            synonyms = _config_synonyms(config, primary, broker_synonyms(primary))
        if name in overrides:
            synonyms.insert(0, Synonym(name, value, ConfigSource.TOPIC_CONFIG))
        source = synonyms[0].source if synonyms else ConfigSource.DEFAULT_CONFIG
        entries.append(
            Entry(
                name, value, source, False, False, tuple(synonyms), definition.type, definition.doc
            )
        )
    return entries


# Settings whose values are secrets (Kafka's PASSWORD type), also under a listener's prefix.
_SECRET_SUFFIXES = (
    "password",
    "sasl.jaas.config",
    "ssl.keystore.key",
    "ssl.keystore.certificate.chain",
    "ssl.truststore.certificates",
    "kpy.add.scram",
)


def is_sensitive(name: str) -> bool:
    """Whether DescribeConfigs hides ``name``'s value, as Kafka hides PASSWORD settings. A
    listener-prefixed setting (listener.name.<l>.<key>, or .<mechanism>.<key> for SASL) is
    judged by its key, as Kafka types it; one whose key kpy does not know is hidden, as Kafka
    hides settings whose type it cannot tell."""
    if name.endswith(_SECRET_SUFFIXES):
        return True
    definition = BROKER_CONFIGS.get(name)
    if definition is not None:
        return definition.type is ConfigType.PASSWORD
    if name.startswith("listener.name."):
        parts = name.split(".")[3:]  # after listener.name.<listener>
        return not any(".".join(parts[i:]) in BROKER_CONFIGS for i in range(len(parts)))
    return False


def describe_broker(config: BrokerConfig, per_broker: bool) -> list[Entry]:
    """The broker's settings (``per_broker``) or the dynamic cluster defaults (resource name "")."""
    if per_broker:
        names = list(
            dict.fromkeys([*DEFAULTS, *config.static, *config.dynamic_default, *config.dynamic])
        )
        values = config.props
    else:
        names = list(config.dynamic_default)
        values = config.dynamic_default
    entries = []
    for name in names:
        definition = BROKER_CONFIGS.get(name)
        synonyms = _config_synonyms(config, name, broker_synonyms(name))
        if not per_broker:
            synonyms = [
                s for s in synonyms if s.source is ConfigSource.DYNAMIC_DEFAULT_BROKER_CONFIG
            ]
        value = values.get(name)
        sensitive = is_sensitive(name)
        if sensitive:
            value = None
            synonyms = [Synonym(s.name, None, s.source) for s in synonyms]
        entries.append(
            Entry(
                name,
                value if value != "" else None,
                synonyms[0].source if synonyms else ConfigSource.DEFAULT_CONFIG,
                name not in DYNAMIC_BROKER_CONFIGS,
                sensitive,
                tuple(synonyms),
                definition.type if definition else ConfigType.UNKNOWN,
                definition.doc if definition else None,
            )
        )
    return entries


def validate_broker_change(props: Mapping[str, str], per_broker: bool) -> None:
    """Kafka's DynamicBrokerConfig.validateConfigs for the settings a change leaves in a
    dynamic layer; ValueError carries Kafka's message (sent as INVALID_REQUEST)."""
    fixed = sorted(n for n in props if n in BROKER_CONFIGS and n not in DYNAMIC_BROKER_CONFIGS)
    if fixed:
        raise ValueError(f"Cannot update these configs dynamically: Set({', '.join(fixed)})")
    for name, value in props.items():
        definition = BROKER_CONFIGS.get(name)
        if definition is not None:
            try:
                definition.parse(value)
            except InvalidConfig as e:
                raise ValueError(str(e)) from None


def load_dynamic(config: BrokerConfig, data_dir: Path, fs: FileSystem = OS_FS) -> None:
    """Put the dynamic layers saved in ``data_dir`` (on ``fs``) into ``config``."""
    path = data_dir / BROKER_CONFIGS_FILE
    if not fs.exists(path):
        return
    saved = json.loads(fs.read_text(path))
    config.dynamic = {str(k): str(v) for k, v in saved.get("broker", {}).items()}
    config.dynamic_default = {str(k): str(v) for k, v in saved.get("default", {}).items()}
    config.merge()


def save_dynamic(config: BrokerConfig, data_dir: Path, fs: FileSystem = OS_FS) -> None:
    data = {"version": 1, "broker": config.dynamic, "default": config.dynamic_default}
    fs.write_atomic(data_dir / BROKER_CONFIGS_FILE, json.dumps(data, indent=1).encode())
