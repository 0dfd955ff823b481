"""veneer: Redis as a performance layer over your database, never its source of truth."""

from __future__ import annotations

from ._async._cache import AsyncCache
from ._async._decorator import AsyncCachedFunction
from ._codec import Codec, JsonCodec, MsgpackCodec, PickleCodec
from ._errors import (
    ConfigurationError,
    RedisUnavailable,
    SourceOverloaded,
    UnencodableValue,
    ValueTooLarge,
    VeneerError,
)
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
    "UncacheableArguments",
    "UnencodableValue",
    "ValueTooLarge",
    "VeneerError",
]
