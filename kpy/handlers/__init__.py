"""Request handlers, one module per API key, each imported on the first request of its API
(registry.py holds the table of APIs, versions and modules)."""

from kpy.handlers.registry import REGISTRY, Registration

__all__ = ["REGISTRY", "Registration"]
