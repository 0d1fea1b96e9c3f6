"""The registry of request handlers: API key -> handler and the versions it serves.

The ApiVersions response is built from this registry, so what kpy advertises cannot drift from
what it implements. Registering a key twice is an error at import time.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from kpy.broker import RequestContext

Handler = Callable[["RequestContext", Any], Awaitable[Any]]


@dataclass(frozen=True)
class Registration:
    api_key: int
    name: str
    min_version: int
    max_version: int
    handler: Handler
    # Versions advertised but not served (Kafka 4 advertises Produce v0 for old librdkafka).
    advertised_min: int


class CloseConnection(Exception):
    """A handler's answer that Kafka gives by closing the connection (acks=0 produce errors)."""


REGISTRY: dict[int, Registration] = {}


def handles(
    api_key: int,
    name: str,
    min_version: int,
    max_version: int,
    *,
    advertised_min: int | None = None,
) -> Callable[[Handler], Handler]:
    def register(fn: Handler) -> Handler:
        if api_key in REGISTRY:
            raise RuntimeError(f"API key {api_key} registered twice")
        REGISTRY[api_key] = Registration(
            api_key,
            name,
            min_version,
            max_version,
            fn,
            min_version if advertised_min is None else advertised_min,
        )
        return fn

    return register
