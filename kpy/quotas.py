"""Client quotas as Kafka keeps them: values per entity, set with AlterClientQuotas
(kafka-configs --alter --entity-type users|clients|ips --add-config producer_byte_rate=...) and
read with DescribeClientQuotas, with the checks of Kafka's ClientQuotaControlManager.

An entity is a user, a client id, a user and a client id, or an IP; a name of None is the
default entity of its type (``--entity-default``). The keys are Kafka's: producer_byte_rate,
consumer_byte_rate (LONG), request_percentage, controller_mutation_rate (DOUBLE) for users and
clients, connection_creation_rate (INT) for IPs. The values are kept in
``kpy-client-quotas.json`` in the data directory (Kafka keeps them in its metadata log).
"""

from __future__ import annotations

import ipaddress
import json
from pathlib import Path

from kpy.storage.fs import FileSystem

QUOTAS_FILE = "kpy-client-quotas.json"
USER, CLIENT_ID, IP = "user", "client-id", "ip"
_USER_KEYS = {
    "producer_byte_rate": "LONG",
    "consumer_byte_rate": "LONG",
    "request_percentage": "DOUBLE",
    "controller_mutation_rate": "DOUBLE",
}
_IP_KEYS = {"connection_creation_rate": "INT"}
_LIMITS = {"LONG": (2**63 - 1, "a LONG"), "INT": (2**31 - 1, "an INT")}

# An entity: its (type, name) pairs, sorted by type (a name of None: the type's default).
Entity = tuple[tuple[str, str | None], ...]


class QuotaError(ValueError):
    """An alteration or filter Kafka refuses with INVALID_REQUEST (the message is Kafka's)."""


def entity_error(entity: Entity) -> str | None:
    """Kafka's validateEntity and configKeysForEntityType, for one entity given as
    (type, name) pairs in request order; the message, or None if it is valid."""
    if not entity:
        return "Invalid empty client quota entity"
    seen: dict[str, str | None] = {}
    for kind, name in entity:
        if kind in seen:
            return f"Invalid client quota entity, duplicate entity entry {kind}"
        if kind not in (USER, CLIENT_ID, IP):
            return f"Unhandled client quota entity type: {kind}"
        if name is not None and name == "":
            return f"Empty {kind} not supported"
        seen[kind] = name
    if IP in seen:
        if USER in seen or CLIENT_ID in seen:
            return (
                "Invalid quota entity combination, IP entity shouldnot be combined with User "
                "or ClientId"
            )
        name = seen[IP]
        if name is not None and not _valid_ip(name):
            return f"{name} is not a valid IP or resolvable host."
    return None


def _valid_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
        return True
    except ValueError:
        return name == "localhost"


def value_error(entity: Entity, key: str, value: float) -> str | None:
    """Kafka's validateQuotaKeyValue."""
    keys = _IP_KEYS if any(kind == IP for kind, _ in entity) else _USER_KEYS
    kind = keys.get(key)
    if kind is None:
        return f"Invalid configuration key {key}"
    if value <= 0.0:
        return f"Quota {key} must be greater than 0"
    if kind == "DOUBLE":
        return None
    limit, name = _LIMITS[kind]
    if value > limit:
        return f"Proposed value for {key} is too large for {name}."
    if abs(value % 1.0) > 1e-6:
        return f"{key} cannot be a fractional value."
    return None


def normalized(entity: Entity) -> Entity:
    return tuple(sorted(entity, key=lambda pair: pair[0]))


class QuotaStore:
    """The quotas of every entity, durable in the data directory (loop-only)."""

    def __init__(self, data_dir: Path, fs: FileSystem) -> None:
        self._path = data_dir / QUOTAS_FILE
        self._fs = fs
        self._quotas: dict[Entity, dict[str, float]] = {}
        if fs.exists(self._path):
            saved = json.loads(fs.read_text(self._path))
            for item in saved.get("entities", []):
                entity = normalized(tuple((e["type"], e["name"]) for e in item["entity"]))
                self._quotas[entity] = {k: float(v) for k, v in item["values"].items()}

    def get(self, entity: Entity) -> dict[str, float]:
        return dict(self._quotas.get(normalized(entity), {}))

    def items(self) -> list[tuple[Entity, dict[str, float]]]:
        return [(e, dict(v)) for e, v in self._quotas.items()]

    def alter(self, changes: list[tuple[Entity, dict[str, float | None]]]) -> None:
        """Set (a value) or remove (None) keys of entities, then save."""
        for entity, ops in changes:
            entity = normalized(entity)
            values = self._quotas.setdefault(entity, {})
            for key, value in ops.items():
                if value is None:
                    values.pop(key, None)
                else:
                    values[key] = value
            if not values:
                del self._quotas[entity]
        data = {
            "version": 1,
            "entities": [
                {
                    "entity": [{"type": t, "name": n} for t, n in entity],
                    "values": values,
                }
                for entity, values in self._quotas.items()
            ],
        }
        self._fs.write_atomic(self._path, json.dumps(data, indent=1).encode())

    def describe(
        self, components: list[tuple[str, int, str | None]], strict: bool
    ) -> list[tuple[Entity, dict[str, float]]]:
        """Kafka's ClientQuotasImage.describe: components are (entity type, match type
        (0 exact, 1 default, 2 any specified), match). QuotaError for a filter Kafka refuses."""
        exact: dict[str, str | None] = {}
        typed: set[str] = set()
        for kind, match_type, match in components:
            if not kind:
                raise QuotaError("Invalid empty entity type.")
            if kind in exact or kind in typed:
                raise QuotaError(f"Entity type {kind} cannot appear more than once in the filter.")
            if kind not in (USER, CLIENT_ID, IP):
                raise UnsupportedEntityType(f"Unsupported entity type {kind}")
            if match_type == 0:
                if match is None:
                    raise QuotaError(
                        "Request specified MATCH_TYPE_EXACT, but set match string to null."
                    )
                exact[kind] = match
            elif match_type == 1:
                if match is not None:
                    raise QuotaError(
                        "Request specified MATCH_TYPE_DEFAULT, but also specified a match string."
                    )
                exact[kind] = None
            elif match_type == 2:
                if match is not None:
                    raise QuotaError(
                        "Request specified MATCH_TYPE_SPECIFIED, but also specified a match string."
                    )
                typed.add(kind)
            else:
                raise QuotaError(f"Unknown match type {match_type}")
        kinds = set(exact) | typed
        if IP in kinds and (USER in kinds or CLIENT_ID in kinds):
            raise QuotaError(
                "Invalid entity filter component combination. IP filter component should not be "
                "used with user or clientId filter component."
            )
        out = []
        for entity, values in self._quotas.items():
            names = dict(entity)
            if strict and len(names) != len(exact) + len(typed):
                continue
            if any(k not in names or names[k] != v for k, v in exact.items()):
                continue
            if any(k not in names for k in typed):
                continue
            out.append((entity, dict(values)))
        return out


class UnsupportedEntityType(QuotaError):
    """An entity type Kafka answers with UNSUPPORTED_VERSION."""
