"""Request handlers, one module per API key; importing this package registers them all."""

from kpy.handlers import (  # noqa: F401  (imported for their registrations)
    api_versions,
    create_topics,
    delete_topics,
    fetch,
    init_producer_id,
    list_offsets,
    metadata,
    produce,
)
from kpy.handlers.registry import REGISTRY, Registration

__all__ = ["REGISTRY", "Registration"]
