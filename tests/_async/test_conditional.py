"""Conditional writes (``add``, ``touch``, ``incr``) and ``get_local``, on one Redis and on
a cluster (this file is the source of the sync copy)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import pytest

from servers import RedisServer
from veneer import AsyncCache
from veneer._errors import RedisUnavailable

from .helpers import eventually

Factory = Callable[..., Awaitable[AsyncCache]]
MISSING: Any = object()


@pytest.fixture(params=["single", "cluster"])
def servers(request: pytest.FixtureRequest) -> Any:
    """Every test runs on one Redis and on a 3-shard Redis Cluster."""
    name = "redis_cluster" if request.param == "cluster" else "redis_server"
    return request.getfixturevalue(name)


@pytest.fixture
def redis_url(servers: Any) -> str:
    return str(servers.url)


@pytest.fixture
def pttl(servers: Any) -> Iterator[Callable[[AsyncCache, str], int]]:
    """The Redis expiry (ms) of a cache key, read with a plain client."""
    client = servers.client()

    def read(cache: AsyncCache, key: str) -> int:
        return int(client.pttl("{" + cache.options.namespace + ":" + key + "}"))

    yield read
    client.close()


@pytest.fixture
async def make_cache(redis_url: str, namespace: str) -> AsyncIterator[Factory]:
    made: list[AsyncCache] = []

    async def make(**options: Any) -> AsyncCache:
        options.setdefault("ttl", 30)
        options.setdefault("jitter", 0.0)
        # Redis is up in these tests: a 100 ms stall of a loaded 2-core machine is no
        # outage, and an outage answer (add False, incr RedisUnavailable) would fail them.
        options.setdefault("redis_timeout", 2.0)
        cache = AsyncCache.from_url(redis_url, namespace=namespace, **options)
        made.append(cache)
        assert await cache.ready(5.0)
        return cache

    yield make
    for cache in made:
        await cache.close()


async def test_add_writes_only_when_no_live_entry_is_there(make_cache: Factory) -> None:
    """add writes a missing key once; a second add is refused and the first value stays."""
    cache = await make_cache()
    assert await cache.add("k", "first") is True
    assert await cache.add("k", "second") is False
    assert await cache.get("k") == "first"
    assert await cache.add("none", None) is True
    assert await cache.add("none", 1) is False  # a cached None is an entry


async def test_add_treats_invalidated_entries_as_absent(make_cache: Factory) -> None:
    """After invalidate_all or invalidate_tag the old entry is gone for add too, although
    its bytes are still in Redis."""
    cache = await make_cache()
    other = await make_cache()
    await cache.set("a", 1)
    await cache.set("t", 1, tags=["group"])
    await cache.invalidate_all()
    assert await other.add("a", 2) is True
    assert await cache.get("a") == 2
    await cache.set("t", 1, tags=["group"])
    await cache.invalidate_tag("group")
    assert await other.add("t", 3, tags=["group"]) is True
    assert await cache.get("t") == 3


async def test_add_drops_other_processes_l1_copies(make_cache: Factory) -> None:
    """A process that held the invalidated old value in L1 sees the added one."""
    reader = await make_cache()
    writer = await make_cache()
    await writer.set("k", "old")
    await eventually(lambda: reader.stats().invalidations_received == 1)  # the set's broadcast
    assert await reader.get("k") == "old"
    assert reader.get_local("k") == "old"
    await writer.invalidate_all()
    assert await writer.add("k", "new") is True
    await eventually(lambda: reader.get_local("k", MISSING) is MISSING)
    assert await reader.get("k") == "new"


async def test_touch_gives_a_live_entry_a_new_ttl(make_cache: Factory, pttl: Any) -> None:
    """touch moves both the freshness and the Redis expiry; a missing key is False."""
    cache = await make_cache()
    await cache.set("k", "v", ttl=1)
    assert await cache.touch("k", ttl=60) is True
    peer = await make_cache(l1_size=0)
    assert await peer.get("k") == "v"
    ttl = pttl(cache, "k")
    assert 55_000 < ttl <= 60_000
    assert await cache.touch("k", ttl=0.2) is True
    assert pttl(cache, "k") <= 200
    await eventually(lambda: pttl(cache, "k") < 0)
    assert await peer.get("k", default=MISSING) is MISSING
    assert await cache.touch("k", ttl=5) is False
    assert await cache.touch("never", ttl=5) is False


async def test_incr_adds_atomically_and_keeps_the_expiry(make_cache: Factory, pttl: Any) -> None:
    """incr returns the new value, keeps the TTL, and every process reads the new value."""
    cache = await make_cache()
    peer = await make_cache()
    await cache.set("n", 41, ttl=30)
    await eventually(lambda: peer.stats().invalidations_received == 1)  # the set's broadcast
    assert await peer.get("n") == 41
    assert await cache.incr("n") == 42
    assert await cache.incr("n", -10) == 32
    await eventually(lambda: peer.get_local("n", MISSING) is MISSING)
    assert await peer.get("n") == 32
    assert 25_000 < pttl(cache, "n") <= 30_000
    assert await cache.incr("n", 2**62) == 32 + 2**62


async def test_incr_refuses_what_is_not_a_live_int(make_cache: Factory) -> None:
    """A missing or invalidated key is a KeyError; None, a bool or a str is a TypeError."""
    cache = await make_cache()
    with pytest.raises(KeyError):
        await cache.incr("missing")
    await cache.set("n", 1)
    await cache.invalidate_all()
    with pytest.raises(KeyError):
        await cache.incr("n")
    for value in (None, True, "1", 1.5):
        await cache.set("x", value)
        with pytest.raises(TypeError):
            await cache.incr("x")
    await cache.set("n", 1)
    with pytest.raises(TypeError):
        await cache.incr("n", 1.5)  # type: ignore[arg-type]


async def test_get_local_answers_from_l1_only(make_cache: Factory) -> None:
    """get_local never asks Redis: a value only in Redis is the default until a read
    brings it into this process's L1."""
    writer = await make_cache()
    reader = await make_cache()
    await writer.set("k", {"a": 1})
    await eventually(lambda: reader.stats().invalidations_received == 1)  # the set's broadcast
    assert reader.get_local("k") is None
    assert reader.get_local("k", MISSING) is MISSING
    assert await reader.get("k") == {"a": 1}
    assert reader.get_local("k") == {"a": 1}


async def test_conditional_writes_with_redis_down(namespace: str) -> None:
    """Redis unreachable: add and touch answer False, incr raises RedisUnavailable."""
    server = RedisServer()
    cache = AsyncCache.from_url(server.url, namespace=namespace, ttl=30)
    try:
        await cache.set("n", 1)
        server.kill()
        assert await cache.add("k", 1) is False
        assert await cache.touch("n", ttl=5) is False
        with pytest.raises(RedisUnavailable):
            await cache.incr("n")
    finally:
        await cache.close()
        server.stop()
