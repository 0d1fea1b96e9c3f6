"""Connection limits as Kafka's ConnectionQuotas applies them: max.connections (broker-wide),
listener.name.<listener>.max.connections, max.connections.per.ip and
max.connections.per.ip.overrides.

Kafka's acceptor thread asks for a slot before it takes a connection off the listening socket:
while the broker's count has reached max.connections, or the listener's its own limit, it waits
and accepts nothing, so new connections queue in the kernel's listen backlog (their TCP
handshake done by the kernel, no request answered) until a connection closes. Once accepted, a
connection counts against its IP address, and one past that address's limit (its override, else
max.connections.per.ip) is closed at once. kpy's accept loops (server.py) do the same with
``wait_for_slot`` and ``inc``; ``dec`` runs when a connection closes.

The limits are read from the broker's config at every accept, so a change through
kafka-configs (max.connections, max.connections.per.ip and the overrides are dynamic in Kafka)
applies to the next connection; a waiting acceptor looks again at least every half second, as
Kafka's does when its limit is raised. Override hosts are resolved once per change of the
setting, on a worker thread (Kafka resolves them with InetAddress.getByName: IPv4 first).

Not done: Kafka exempts its inter-broker listener from max.connections (and then closes the
least recently used connection of another listener); kpy has no inter-broker traffic. Connection
creation rate quotas (max.connection.creation.rate) are not applied.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
from typing import TYPE_CHECKING

import anyio

from kpy.config import listener_max_connections_key

if TYPE_CHECKING:
    from kpy.config import BrokerConfig

log = logging.getLogger("kpy.server")

Address = ipaddress.IPv4Address | ipaddress.IPv6Address | str
_RECHECK_S = 0.5


def ip_key(host: str) -> Address:
    """The address a connection counts against (IPv4-mapped IPv6 as the IPv4 address)."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def resolve(host: str) -> Address:
    """An override's host as an address (a literal, or a name's first IPv4 address, else its
    first address). OSError if the name does not resolve."""
    try:
        return ip_key(host) if _is_literal(host) else _lookup(host)
    except socket.gaierror as e:
        raise OSError(f"max.connections.per.ip.overrides: cannot resolve {host!r}: {e}") from e


def _is_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _lookup(host: str) -> Address:
    infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    ordered = sorted(infos, key=lambda info: info[0] != socket.AF_INET)
    return ip_key(str(ordered[0][4][0]))


class ConnectionQuotas:
    """Counts of open connections by listener and by IP address. Used on the event loop (an
    asyncio one: ``dec`` runs in a transport's callback, outside any task)."""

    def __init__(self, config: BrokerConfig) -> None:
        self._config = config
        self._by_ip: dict[Address, int] = {}
        self._by_listener: dict[str, int] = {}
        self.total = 0
        self._freed = asyncio.Event()
        self._overrides_text: str | None = None
        self._overrides: dict[Address, int] = {}

    async def refresh(self) -> None:
        """Resolve max.connections.per.ip.overrides again if the setting changed; a name that
        does not resolve is logged and the previous overrides stay (OSError at start-up)."""
        text = self._config.get("max.connections.per.ip.overrides")
        if text == self._overrides_text:
            return
        hosts = self._config.max_connections_per_ip_overrides
        first = self._overrides_text is None
        self._overrides_text = text
        try:
            resolved = await anyio.to_thread.run_sync(
                lambda: {resolve(host): count for host, count in hosts.items()}
            )
        except OSError:
            if first:
                raise
            log.exception("max.connections.per.ip.overrides not applied")
            return
        self._overrides = resolved

    def slot_available(self, listener: str) -> bool:
        """Kafka's connectionSlotAvailable: under the listener's limit and the broker's."""
        key = listener_max_connections_key(listener)
        if key in self._config.props and self._by_listener.get(listener, 0) >= self._config.get_int(
            key
        ):
            return False
        return self.total < self._config.get_int("max.connections")

    async def wait_for_slot(self, listener: str) -> None:
        """Return once a connection may be accepted on ``listener``."""
        while not self.slot_available(listener):
            with anyio.move_on_after(_RECHECK_S):  # also notices a raised limit
                await self._freed.wait()

    def limit_for(self, ip: Address) -> int:
        return self._overrides.get(ip, self._config.get_int("max.connections.per.ip"))

    def inc(self, listener: str, ip: Address) -> bool:
        """Count a new connection; False (not counted) if its address is at its limit."""
        count = self._by_ip.get(ip, 0)
        if count >= self.limit_for(ip):
            return False
        self._by_ip[ip] = count + 1
        self._by_listener[listener] = self._by_listener.get(listener, 0) + 1
        self.total += 1
        return True

    def dec(self, listener: str, ip: Address) -> None:
        count = self._by_ip.get(ip, 0)
        if count <= 1:
            self._by_ip.pop(ip, None)
        else:
            self._by_ip[ip] = count - 1
        self._by_listener[listener] = max(self._by_listener.get(listener, 0) - 1, 0)
        self.total = max(self.total - 1, 0)
        freed, self._freed = self._freed, asyncio.Event()
        freed.set()

    def count(self, ip: Address) -> int:
        return self._by_ip.get(ip, 0)
