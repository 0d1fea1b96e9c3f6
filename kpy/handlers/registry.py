"""The registry of request handlers: API key -> handler and the versions it serves.

The ApiVersions response is built from this registry, so what kpy advertises cannot drift from
what it implements. Registering a key twice is an error at import time.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from kio.schema.errors import ErrorCode

if TYPE_CHECKING:
    from kpy.broker import RequestContext

Handler = Callable[["RequestContext", Any], Awaitable[Any]]
# Builds the response that carries one error everywhere the request asked about something
# (Kafka's AbstractRequest.getErrorResponse), or None where Kafka answers by closing.
ErrorResponder = Callable[["RequestContext", Any, ErrorCode], Any]


@dataclass(frozen=True)
class Registration:
    api_key: int
    name: str
    min_version: int
    max_version: int
    handler: Handler
    # Versions advertised but not served (Kafka 4 advertises Produce v0 for old librdkafka).
    advertised_min: int
    error_response: ErrorResponder | None = None


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


def error_response(api_key: int) -> Callable[[ErrorResponder], ErrorResponder]:
    """Register how an API answers when its handler fails unexpectedly."""

    def register(fn: ErrorResponder) -> ErrorResponder:
        REGISTRY[api_key] = replace(REGISTRY[api_key], error_response=fn)
        return fn

    return register
