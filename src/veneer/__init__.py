"""veneer: Redis as a performance layer over your database, never its source of truth.

The public names load on first use (module ``__getattr__``): ``import veneer``
costs little, and a sync-only program never imports the asyncio front or
``redis.asyncio``. Type checkers see ordinary imports.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ._errors import (
    ConfigurationError,
    RedisUnavailable,
    SourceOverloaded,
    SourceTimeout,
    UnencodableValue,
    ValueTooLarge,
    VeneerError,
)

if TYPE_CHECKING:
    from ._async._cache import AsyncCache
    from ._async._decorator import AsyncCachedFunction
    from ._codec import Codec, JsonCodec, MsgpackCodec, PickleCodec
    from ._keyfunc import UncacheableArguments
    from ._stats import CacheStats
    from ._sync._cache import Cache
    from ._sync._decorator import CachedFunction

__all__ = [
    "AsyncCache",
    "AsyncCachedFunction",
    "Cache",
    "CacheStats",
    "CachedFunction",
    "Codec",
    "ConfigurationError",
    "JsonCodec",
    "MsgpackCodec",
    "PickleCodec",
    "RedisUnavailable",
    "SourceOverloaded",
    "SourceTimeout",
    "UncacheableArguments",
    "UnencodableValue",
    "ValueTooLarge",
    "VeneerError",
]

# name -> the private module that defines it (the errors above are imported eagerly:
# they cost nothing and `except veneer.VeneerError` must not import the cache).
_LAZY: dict[str, str] = {
    "AsyncCache": "._async._cache",
    "AsyncCachedFunction": "._async._decorator",
    "Cache": "._sync._cache",
    "CacheStats": "._stats",
    "CachedFunction": "._sync._decorator",
    "Codec": "._codec",
    "JsonCodec": "._codec",
    "MsgpackCodec": "._codec",
    "PickleCodec": "._codec",
    "UncacheableArguments": "._keyfunc",
}


if not TYPE_CHECKING:  # mypy sees the imports above; a visible __getattr__ would make any
    # misspelt name type-check as Any.

    def __getattr__(name: str) -> Any:
        module = _LAZY.get(name)
        if module is None:
            raise AttributeError(f"module 'veneer' has no attribute {name!r}")
        value = getattr(importlib.import_module(module, __name__), name)
        globals()[name] = value  # later lookups skip __getattr__
        return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
