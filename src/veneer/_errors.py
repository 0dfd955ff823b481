"""veneer's own error hierarchy: third-party errors are translated at the boundary."""

from __future__ import annotations

__all__ = [
    "ConfigurationError",
    "SourceOverloaded",
    "UnencodableValue",
    "ValueTooLarge",
    "VeneerError",
]


class VeneerError(Exception):
    """Root of every error veneer raises on purpose."""


class ConfigurationError(VeneerError, ValueError):
    """A bad option or URL, raised when the object is built; the message says what to change."""


class ValueTooLarge(VeneerError, ValueError):
    """An explicit ``set`` of a value whose encoded size is above ``max_value_bytes``."""

    def __init__(self, key: str, size: int, limit: int) -> None:
        self.key = key
        self.size = size
        self.limit = limit
        super().__init__(
            f"value for key {key!r} is {size} bytes encoded, above max_value_bytes={limit}; "
            "store a smaller value, raise max_value_bytes, or keep it out of the cache"
        )


class UnencodableValue(VeneerError, TypeError):
    """An explicit ``set`` of a value the cache's codec cannot encode."""


class SourceOverloaded(VeneerError):
    """The per-process source bulkhead is full and no stale value exists."""

    def __init__(self, limit: int, waited: float) -> None:
        self.limit = limit
        self.waited = waited
        super().__init__(
            f"source_concurrency={limit} loads already running and the caller waited "
            f"{waited * 1000:.0f} ms (source_queue_timeout); the source is slower than the "
            "request rate: raise source_concurrency or source_queue_timeout, or add stale_ttl"
        )
