"""The public names are pinned: adding or removing one is a deliberate change."""

from __future__ import annotations

import veneer


def test_public_api() -> None:
    assert sorted(veneer.__all__) == [
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
    for name in veneer.__all__:
        assert getattr(veneer, name).__module__.startswith("veneer")


def test_counters_public_api() -> None:
    import veneer.counters

    assert sorted(veneer.counters.__all__) == [
        "AsyncCounterFlusher",
        "AsyncCounters",
        "CounterFlusher",
        "CounterOverflow",
        "CounterSpec",
        "CounterStats",
        "CounterStoreError",
        "CounterTables",
        "Counters",
        "FlushReport",
        "UnknownCounter",
        "counter_tables",
        "counters_ddl",
        "create_counter_tables",
    ]
    public = {n for n in dir(veneer.counters.Counters) if not n.startswith("_")}
    assert public == {n for n in dir(veneer.counters.AsyncCounters) if not n.startswith("_")}
    assert {"incr", "incr_many", "get", "get_many", "flush", "close"} <= public
    for name in ("CounterOverflow", "CounterStoreError", "UnknownCounter"):
        assert issubclass(getattr(veneer.counters, name), veneer.VeneerError)


def test_errors_share_one_root() -> None:
    for name in (
        "ConfigurationError",
        "SourceOverloaded",
        "SourceTimeout",
        "ValueTooLarge",
        "UnencodableValue",
    ):
        assert issubclass(getattr(veneer, name), veneer.VeneerError)


def test_same_methods_on_both_fronts() -> None:
    public = {n for n in dir(veneer.Cache) if not n.startswith("_")}
    assert public == {n for n in dir(veneer.AsyncCache) if not n.startswith("_")}
    assert {"get", "get_or_load", "get_many", "get_or_load_many", "set", "invalidate"} <= public


def test_ratelimit_public_api() -> None:
    """veneer.ratelimit's names are pinned, and both limiters have the same methods."""
    import veneer.ratelimit as ratelimit

    assert sorted(ratelimit.__all__) == [
        "AsyncRateLimiter",
        "Decision",
        "Limit",
        "LimitState",
        "RateLimitMiddleware",
        "RateLimitStats",
        "RateLimiter",
        "RouteLimit",
        "parse_limits",
        "peer_address",
        "rate_limit_headers",
    ]
    for name in ratelimit.__all__:
        assert getattr(ratelimit, name).__module__.startswith("veneer.ratelimit")
    public = {n for n in dir(ratelimit.RateLimiter) if not n.startswith("_")}
    assert public == {n for n in dir(ratelimit.AsyncRateLimiter) if not n.startswith("_")}
    assert {"hit", "peek", "reset", "stats", "close", "from_url"} <= public


def test_http_public_api() -> None:
    import veneer.http
    import veneer.http.proxy

    assert sorted(veneer.http.__all__) == ["HttpCache", "HttpStats", "tag"]
    assert sorted(veneer.http.proxy.__all__) == [
        "CachedProxy",
        "ReverseProxy",
        "cached_proxy",
        "from_env",
    ]
