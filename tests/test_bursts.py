"""Many tasks on one AsyncCache: load alone never sends reads to the source (issue 17, item 1).

Redis is healthy in every test here, so every source load after the warm-up and
every Redis error is the cache turning concurrency into an outage. The deadlines
get slack (``SLACK``): 1,000 tasks made runnable at once lag their own event loop,
and other jobs load this machine; deadlines measure that lag too.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from veneer import AsyncCache

KEYS = [f"k{i}" for i in range(1000)]
SLACK: dict[str, Any] = {"redis_timeout": 0.5, "connect_timeout": 1.0}


@pytest.fixture(params=["single", "cluster"])
def url(request: pytest.FixtureRequest) -> str:
    """Each burst runs on one Redis and on the 3-shard cluster."""
    if request.param == "cluster":
        return str(request.getfixturevalue("redis_cluster").url)
    return str(request.getfixturevalue("redis_server").url)


class Loads:
    def __init__(self) -> None:
        self.calls = 0

    def __call__(self) -> dict[str, Any]:
        self.calls += 1
        return {"id": self.calls, "name": "x" * 200}


def assert_healthy(cache: AsyncCache) -> None:
    stats = cache.stats()
    assert stats.redis_errors == 0, stats
    assert stats.breaker_opened == 0 and stats.breaker_state == "closed", stats
    assert stats.pool_timeouts == 0, stats


@pytest.mark.parametrize("tasks", [200, 1000])
async def test_many_tasks_reading_cached_keys_never_fall_back_to_the_source(
    url: str, namespace: str, tasks: int
) -> None:
    """N tasks read 1,000 cached keys (L1 off, stamps expiring during the burst):
    0 source loads after warm-up, 0 Redis errors, the breaker stays closed."""
    loads = Loads()
    async with AsyncCache.from_url(
        url, namespace=namespace, ttl=600, l1_size=0, stamp_ttl=0.05, **SLACK
    ) as cache:
        for start in range(0, len(KEYS), 100):
            await cache.get_or_load_many(
                KEYS[start : start + 100], lambda ks: {k: loads() for k in ks}
            )
        warm = loads.calls
        go = asyncio.Event()
        reads_each = 6000 // tasks

        async def reader(i: int) -> int:
            await go.wait()
            served = 0
            for j in range(reads_each):
                value = await cache.get_or_load(KEYS[(i * 7 + j * 13) % len(KEYS)], loads)
                served += value is not None
            return served

        workers = [asyncio.create_task(reader(i)) for i in range(tasks)]
        await asyncio.sleep(0)
        go.set()
        served = sum(await asyncio.gather(*workers))
        assert served == tasks * reads_each
        assert loads.calls - warm == 0
        stats = cache.stats()
        # Every read was served by Redis, alone or shared with a concurrent read of its key.
        assert stats.l2_hits + stats.shared_loads == tasks * reads_each
        assert_healthy(cache)


async def test_a_burst_of_200_cold_misses_caches_every_key(url: str, namespace: str) -> None:
    """200 tasks missing 200 distinct keys at once: one load each, every key cached,
    no Redis error, the breaker stays closed."""
    loads = 0

    async def load() -> int:
        nonlocal loads
        loads += 1
        await asyncio.sleep(0.01)
        return loads

    async with AsyncCache.from_url(url, namespace=namespace, ttl=600, l1_size=0, **SLACK) as cache:
        await asyncio.gather(*[cache.get_or_load(f"cold{i}", load) for i in range(200)])
        assert loads == 200
        cached = await cache.get_many([f"cold{i}" for i in range(200)])
        assert len(cached) == 200
        assert_healthy(cache)


def _stamp_writes(client: Any) -> int:
    """SET calls the server has run (stamp reads are SET NX + GET)."""
    return int(client.info("commandstats").get("cmdstat_set", {}).get("calls", 0))


async def test_readers_whose_stamps_expired_together_share_one_stamp_fetch(
    redis_server: Any, namespace: str
) -> None:
    """200 tasks that all need the namespace stamp at once send one stamp read, not 200."""
    raw = redis_server.client()
    async with AsyncCache.from_url(
        redis_server.url, namespace=namespace, ttl=600, l1_size=0, broadcast=False
    ) as cache:
        keys = [f"s{i}" for i in range(200)]
        await cache.get_or_load_many(keys, lambda ks: dict.fromkeys(ks, 1))
        await asyncio.gather(*[cache.get(key) for key in keys])  # connections open
        cache._stamps.forget()  # as when stamp_ttl runs out
        before = _stamp_writes(raw)
        values = await asyncio.gather(*[cache.get(key) for key in keys])
        assert values == [1] * 200
        assert _stamp_writes(raw) - before == 1
    raw.close()


async def test_concurrent_invalidations_share_one_replica_check(
    redis_server: Any, namespace: str
) -> None:
    """100 invalidations at once ask the server for its replicas once (INFO), not 100 times."""
    raw = redis_server.client()
    async with AsyncCache.from_url(
        redis_server.url, namespace=namespace, ttl=600, broadcast=False
    ) as cache:
        before = int(raw.info("commandstats").get("cmdstat_info", {}).get("calls", 0))
        applied = await asyncio.gather(*[cache.invalidate(f"i{i}") for i in range(100)])
        after = int(raw.info("commandstats").get("cmdstat_info", {}).get("calls", 0))
        assert applied == [True] * 100
        assert after - before == 1 + 1  # veneer's one, and this test's own first INFO
    raw.close()
