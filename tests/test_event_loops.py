"""One AsyncCache used from several event loops, one after another (issue 20, item 4):
``asyncio.run`` called twice, a loop per test, a loop closed without ending its tasks.
Reads never raise, and the broadcast channel is live in each loop again."""

from __future__ import annotations

import asyncio
import gc
from typing import Any

import pytest

from servers import RedisServer
from veneer import AsyncCache


@pytest.fixture(params=["single", "cluster"])
def url(request: pytest.FixtureRequest) -> str:
    """On one Redis and on the 3-shard cluster."""
    if request.param == "cluster":
        return str(request.getfixturevalue("redis_cluster").url)
    return str(request.getfixturevalue("redis_server").url)


async def workload(cache: AsyncCache, round: int) -> list[Any]:
    """Every kind of call, each once; returns what the reads saw."""
    assert await cache.ready(5.0)
    assert cache.stats().broadcast_connected
    seen = [await cache.get_or_load(f"k{round}", lambda: f"v{round}")]
    seen.append(await cache.get(f"k{round}"))
    await cache.set(f"s{round}", round)
    seen.append(await cache.get_many([f"k{round}", f"s{round}"]))
    seen.append(await cache.get_or_load_many(["m1", "m2"], lambda ks: dict.fromkeys(ks, round)))
    assert await cache.invalidate(f"k{round}")
    seen.append(await cache.get_or_load(f"k{round}", lambda: f"again{round}"))
    return seen


def expected(round: int) -> list[Any]:
    first = 0  # get_or_load_many: the first round's values stay cached
    return [
        f"v{round}",
        f"v{round}",
        {f"k{round}": f"v{round}", f"s{round}": round},
        {"m1": first, "m2": first},
        f"again{round}",
    ]


def test_asyncio_run_twice_with_one_cache(url: str, namespace: str) -> None:
    """A cache made outside any loop serves asyncio.run() after asyncio.run(); between
    them it does not claim a broadcast connection that died with the first loop."""
    cache = AsyncCache.from_url(url, namespace=namespace, ttl=60)
    for round in range(3):
        assert asyncio.run(workload(cache, round)) == expected(round)
        assert not cache.stats().broadcast_connected  # its loop is gone
    asyncio.run(cache.close())


def test_a_loop_closed_without_ending_its_tasks(url: str, namespace: str) -> None:
    """A loop closed with the cache's tasks still pending (no asyncio.run to cancel them):
    the next loop gets fresh connections and a new subscriber, and no call raises."""
    cache = AsyncCache.from_url(url, namespace=namespace, ttl=60)
    for round in range(2):
        loop = asyncio.new_event_loop()
        try:
            assert loop.run_until_complete(workload(cache, round)) == expected(round)
        finally:
            loop.close()  # the subscriber and lease keeper tasks are left pending
    asyncio.run(cache.close())
    gc.collect()


async def test_a_cache_from_another_test_loop_works_here(
    redis_server: RedisServer, namespace: str
) -> None:
    """pytest-asyncio gives each test its own loop: a cache built and used in one loop
    (here, a loop run in a thread that then ends) works in this test's loop."""
    cache = AsyncCache.from_url(redis_server.url, namespace=namespace, ttl=60)

    def in_other_loop() -> list[Any]:
        return asyncio.run(workload(cache, 0))

    assert await asyncio.to_thread(in_other_loop) == expected(0)
    assert await workload(cache, 1) == expected(1)
    await cache.close()
