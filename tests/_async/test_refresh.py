"""TTLs decided by the loaded value, and ``refresh`` (this file is the source of the sync copy)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import pytest
import redis

from servers import RedisServer
from veneer import AsyncCache

from .helpers import eventually

Factory = Callable[..., Awaitable[AsyncCache]]


@pytest.fixture
async def make_cache(redis_server: RedisServer, namespace: str) -> AsyncIterator[Factory]:
    made: list[AsyncCache] = []

    async def make(**options: Any) -> AsyncCache:
        options.setdefault("ttl", 30)
        options.setdefault("jitter", 0)
        cache = AsyncCache.from_url(redis_server.url, namespace=namespace, **options)
        made.append(cache)
        assert await cache.ready(5.0)
        return cache

    yield make
    for cache in made:
        await cache.close()


@pytest.fixture
def raw(redis_server: RedisServer) -> Iterator[redis.Redis]:
    client = redis_server.client()
    yield client
    client.close()


def value_key(namespace: str, key: str) -> str:
    return "{" + namespace + ":" + key + "}"


async def test_a_ttl_function_sets_each_values_lifetime(
    make_cache: Factory, raw: redis.Redis, namespace: str
) -> None:
    """``ttl=f`` stores each loaded value for ``f(value)`` seconds."""
    cache = await make_cache()
    assert await cache.get_or_load("a", lambda: {"ttl": 7}, ttl=lambda v: v["ttl"]) == {"ttl": 7}
    assert 6_000 < raw.pttl(value_key(namespace, "a")) <= 7_000
    other = await make_cache()
    calls = []
    assert await other.get_or_load("a", lambda: calls.append(1), ttl=lambda v: 1) == {"ttl": 7}
    assert calls == []


async def test_a_ttl_function_returning_none_stores_nothing(
    make_cache: Factory, raw: redis.Redis, namespace: str
) -> None:
    """``f(value) is None`` (or <= 0): the value is returned and not stored, its lease freed."""
    cache = await make_cache()
    calls: list[int] = []

    def load() -> str:
        calls.append(1)
        return "private"

    for chosen in (None, 0, -3):
        assert await cache.get_or_load("p", load, ttl=lambda v, c=chosen: c) == "private"
    assert calls == [1, 1, 1]
    assert raw.exists(value_key(namespace, "p")) == 0
    assert list(raw.scan_iter(match=f"*{namespace}:p*")) == []  # no lease left behind


async def test_a_ttl_function_is_capped_at_max_ttl(
    make_cache: Factory, raw: redis.Redis, namespace: str
) -> None:
    """A TTL function cannot store a value for longer than ``max_ttl``."""
    cache = await make_cache(max_ttl=50)
    await cache.get_or_load("k", lambda: 1, ttl=lambda v: 10**9)
    assert 0 < raw.pttl(value_key(namespace, "k")) <= 50_000


async def test_refresh_replaces_the_entry_and_readers_keep_the_old_one_meanwhile(
    make_cache: Factory,
) -> None:
    """While ``refresh`` loads, other processes read the old entry; then the new one."""
    writer, reader = await make_cache(), await make_cache(l1_size=0)
    await writer.set("k", "old")
    seen: list[Any] = []

    async def load() -> str:
        seen.append(await reader.get("k"))
        return "new"

    assert await writer.refresh("k", load) == "new"
    assert seen == ["old"]
    assert await reader.get("k") == "new"
    assert writer.stats().refreshes == 1


async def test_refresh_returns_default_while_another_caller_holds_the_lease(
    make_cache: Factory,
) -> None:
    """A refresh started while another process is loading the key does not load again."""
    first, second = await make_cache(), await make_cache()
    await first.set("k", "old")
    inner: list[Any] = []

    async def slow() -> str:
        inner.append(await second.refresh("k", lambda: "second", default="busy"))
        return "first"

    assert await first.refresh("k", slow) == "first"
    assert inner == ["busy"]
    assert await second.get("k") == "first"


async def test_an_invalidation_during_a_refresh_refuses_its_fill(make_cache: Factory) -> None:
    """A refresh that loaded before an invalidation cannot store its (maybe old) value."""
    cache, other = await make_cache(), await make_cache()
    await cache.set("k", "v1", tags=["t"])

    async def racing() -> str:
        await other.invalidate_tag("t")
        await other.invalidate("k")
        return "loaded-before-the-write"

    assert await cache.refresh("k", racing, tags=["t"]) == "loaded-before-the-write"
    assert await other.get("k", default="gone") == "gone"
    assert await cache.get("k", default="gone") == "gone"


async def test_refresh_with_a_ttl_function_that_declines_keeps_the_old_entry(
    make_cache: Factory,
) -> None:
    """A refresh whose value is not to be stored leaves the current entry in place."""
    cache = await make_cache()
    await cache.set("k", "old")
    assert await cache.refresh("k", lambda: "uncacheable", ttl=lambda v: None) == "uncacheable"
    assert await cache.get("k") == "old"
    assert await cache.refresh("k", lambda: "next") == "next"  # the lease was freed


async def test_refresh_with_redis_down_returns_the_sources_answer(
    own_redis: RedisServer, namespace: str
) -> None:
    """With Redis unreachable, ``refresh`` still loads and returns the value (stores nothing)."""
    cache = AsyncCache.from_url(own_redis.url, namespace=namespace, ttl=30, redis_timeout=0.05)
    try:
        await cache.set("k", "old")
        own_redis.kill()
        assert await cache.refresh("k", lambda: "fresh") == "fresh"
    finally:
        await cache.close()


async def test_refresh_replaces_this_processs_l1_copy_even_when_another_write_races_it(
    make_cache: Factory,
) -> None:
    """After ``refresh`` this process reads the new value, not its old L1 copy, even when
    an unrelated write during the load stopped the new value from entering L1."""
    cache = await make_cache()
    await cache.set("k", "old")
    assert await cache.get("k") == "old"  # now in L1

    async def load() -> str:
        await cache.set("unrelated", 1)  # bumps the invalidation sequence mid-load
        return "new"

    assert await cache.refresh("k", load) == "new"
    assert await cache.get("k") == "new"


async def test_refresh_drops_the_old_copy_in_other_processes(make_cache: Factory) -> None:
    """Another process that held the old value in L1 reads the refreshed one."""
    writer, reader = await make_cache(), await make_cache()
    await writer.set("k", "old")
    assert await reader.get("k") == "old"
    assert await reader.get("k") == "old"  # an L1 hit in the reader
    heard = reader.stats().invalidations_received
    await writer.refresh("k", lambda: "new")
    await eventually(lambda: reader.stats().invalidations_received > heard)
    assert await reader.get("k") == "new"
