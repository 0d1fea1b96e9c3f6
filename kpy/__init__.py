"""kpy: a single-node Kafka broker in Python that speaks the real Kafka protocol.

``kpy.Broker`` runs one inside a program or a test run (kpy.embedded); it is imported on first
use, so that ``kpy serve`` does not pay for it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["Broker", "BrokerError"]

if TYPE_CHECKING:
    from kpy.embedded import Broker, BrokerError


def __getattr__(name: str) -> Any:
    if name in ("Broker", "BrokerError"):
        from kpy import embedded

        return getattr(embedded, name)
    raise AttributeError(f"module 'kpy' has no attribute {name!r}")
