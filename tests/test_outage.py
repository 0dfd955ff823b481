"""Redis down is a latency event (promises 2 and 3): killed, hung, slowed and restarted
empty under a read load from PostgreSQL, with a naive cache-aside control in each test."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis
import redis.asyncio

from outage import Reads, Source, TaskWorkload, ThreadWorkload, naive_reader
from proxy import SlowProxy
from servers import RedisServer
from veneer import AsyncCache, Cache, SourceOverloaded

TIMEOUT = 0.1
OPTIONS: dict[str, Any] = {
    "ttl": 60,
    "redis_timeout": TIMEOUT,
    "source_concurrency": 4,
    "source_queue_timeout": 5.0,
    "breaker_cooldown": 0.3,
    "max_stale": 30,
}


@pytest.fixture
def source() -> Iterator[Source]:
    src = Source()
    yield src
    src.drop()


def _assert_one_load_per_key_after_the_restart(
    source: Source, restarted: float, back: float, stats: Any
) -> None:
    """Once the cache is back on Redis (its breaker closed after the restart), each key is
    loaded at most once: the refill of an empty Redis, not a stampede. Between the restart
    and that moment Redis is still unreachable to the cache, so a key read there for the
    first time is loaded for that read (kept in L1 within max_stale) and once more when
    it is refilled, since that copy may predate a commit: two loads, never more."""
    after = source.loads_since(back)
    worst = after.most_common(1)[0][0] if after else ""
    detail = [(round(at - restarted, 3), key) for at, key in source.loads if key == worst]
    assert max(after.values(), default=0) <= 1, (after.most_common(3), detail, stats)
    since = source.loads_since(restarted)
    assert max(since.values(), default=0) <= 2, (since.most_common(3), round(back - restarted, 3))


def test_killed_then_restarted_empty_threads(own_redis: RedisServer, source: Source) -> None:
    """SIGKILL mid-load, then a restart with no data: no caller error, the bulkhead holds,
    and after the restart each key is loaded at most once."""
    cache = Cache.from_url(own_redis.url, namespace="kill", **OPTIONS)
    assert cache.ready()
    work = ThreadWorkload(lambda key: cache.get_or_load(key, lambda: source.load(key)))
    time.sleep(1.0)
    own_redis.kill()
    time.sleep(1.0)
    restarted = time.monotonic()
    own_redis.start()
    deadline = restarted + 10
    while cache.stats().breaker_state != "closed" and time.monotonic() < deadline:
        time.sleep(0.01)
    back = time.monotonic()  # the cache reads Redis again from here
    time.sleep(2.5)
    reads = work.stop()
    stats = cache.stats()
    cache.close()
    assert reads.errors() == []
    assert source.peak <= OPTIONS["source_concurrency"]
    _assert_one_load_per_key_after_the_restart(source, restarted, back, stats)
    assert stats.breaker_opened >= 1 and stats.breaker_state == "closed"
    assert stats.cold_restarts == 1

    # Control: naive cache-aside on the same server fails its callers when Redis dies.
    naive = redis.Redis(port=own_redis.port)
    work = ThreadWorkload(naive_reader(naive, source))
    time.sleep(0.3)
    own_redis.kill()
    time.sleep(0.5)
    reads = work.stop()
    naive.close()
    assert len(reads.errors()) > 0


async def test_killed_then_restarted_empty_asyncio(own_redis: RedisServer, source: Source) -> None:
    """The same on the asyncio front, with tasks."""
    await source.open_async(8)
    cache = AsyncCache.from_url(own_redis.url, namespace="kill", **OPTIONS)
    assert await cache.ready()

    async def read(key: str) -> str:
        return await cache.get_or_load(key, lambda: source.aload(key))

    work = TaskWorkload(read)
    await asyncio.sleep(1.0)
    own_redis.kill()
    await asyncio.sleep(1.0)
    restarted = time.monotonic()
    own_redis.start()
    deadline = restarted + 10
    while cache.stats().breaker_state != "closed" and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    back = time.monotonic()  # the cache reads Redis again from here
    await asyncio.sleep(2.5)
    reads = await work.stop()
    stats = cache.stats()
    await cache.close()
    assert reads.errors() == []
    assert source.peak <= OPTIONS["source_concurrency"]
    _assert_one_load_per_key_after_the_restart(source, restarted, back, stats)
    assert stats.breaker_opened >= 1 and stats.breaker_state == "closed"

    naive = redis.asyncio.Redis(port=own_redis.port)

    async def naive_read(key: str) -> str:
        hit = await naive.get(key)
        if hit is not None:
            return str(hit)
        value = await source.aload(key)
        await naive.set(key, value, ex=60)
        return value

    work = TaskWorkload(naive_read)
    await asyncio.sleep(0.3)
    own_redis.kill()
    await asyncio.sleep(0.5)
    reads = await work.stop()
    await naive.aclose()
    await source.close_async()
    assert len(reads.errors()) > 0


def check_latency_event(reads: Reads, source: Source, start: float, end: float) -> float:
    during = reads.between(start, end)
    assert len(during) > 50
    p99 = Reads.p99(during)
    assert p99 <= TIMEOUT + source.p99() + 0.020, (p99, source.p99())
    return p99


def test_hung_redis_costs_at_most_one_deadline(own_redis: RedisServer, source: Source) -> None:
    """SIGSTOP for 2 s: no errors, p99 during the hang within redis_timeout + source p99 +
    20 ms, and the breaker opens, then closes after SIGCONT."""
    cache = Cache.from_url(own_redis.url, namespace="hang", **OPTIONS)
    assert cache.ready()
    work = ThreadWorkload(lambda key: cache.get_or_load(key, lambda: source.load(key)), workers=4)
    time.sleep(1.0)
    own_redis.pause()
    hung = time.monotonic()
    time.sleep(2.0)
    own_redis.resume()
    resumed = time.monotonic()
    deadline = resumed + 10
    while cache.stats().breaker_state != "closed" and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)
    reads = work.stop()
    stats = cache.stats()
    cache.close()
    assert reads.errors() == []
    check_latency_event(reads, source, hung, resumed)
    assert stats.breaker_opened >= 1 and stats.breaker_state == "closed"
    assert stats.breaker_rejections > 0  # while open, nobody waited on Redis

    # Control: redis-py with its defaults waits out the whole hang.
    naive = redis.Redis(port=own_redis.port)
    naive.ping()
    own_redis.pause()
    hung = time.monotonic()
    work = ThreadWorkload(naive_reader(naive, source), workers=4)
    time.sleep(1.0)
    own_redis.resume()
    reads = work.stop()
    naive.close()
    assert Reads.p99(reads.between(hung, hung + 1.0)) > TIMEOUT + source.p99() + 0.020


async def test_hung_redis_asyncio(own_redis: RedisServer, source: Source) -> None:
    """SIGSTOP for 2 s on the asyncio front: no errors, the same latency bound."""
    await source.open_async(8)
    cache = AsyncCache.from_url(own_redis.url, namespace="hang", **OPTIONS)
    assert await cache.ready()

    async def read(key: str) -> str:
        return await cache.get_or_load(key, lambda: source.aload(key))

    work = TaskWorkload(read, workers=4)
    await asyncio.sleep(1.0)
    own_redis.pause()
    hung = time.monotonic()
    await asyncio.sleep(2.0)
    own_redis.resume()
    resumed = time.monotonic()
    await asyncio.sleep(2.0)
    reads = await work.stop()
    stats = cache.stats()
    await cache.close()
    await source.close_async()
    assert reads.errors() == []
    check_latency_event(reads, source, hung, resumed)
    assert stats.breaker_opened >= 1 and stats.breaker_state == "closed"


def test_slow_redis_is_treated_as_down(own_redis: RedisServer, source: Source) -> None:
    """200 ms per reply (a proxy in front of Redis) overruns every deadline: the breaker
    opens on them, reads stay within the bound, and it closes when Redis is fast again."""
    proxy = SlowProxy(own_redis.port)
    cache = Cache.from_url(proxy.url, namespace="slow", **OPTIONS)
    try:
        assert cache.ready()
        work = ThreadWorkload(
            lambda key: cache.get_or_load(key, lambda: source.load(key)), workers=4
        )
        time.sleep(1.0)
        proxy.delay = 0.2
        slow = time.monotonic()
        time.sleep(2.0)
        proxy.delay = 0.0
        fast = time.monotonic()
        deadline = fast + 10
        while cache.stats().breaker_state != "closed" and time.monotonic() < deadline:
            time.sleep(0.05)
        reads = work.stop()
        stats = cache.stats()
        assert reads.errors() == []
        check_latency_event(reads, source, slow, fast)
        assert stats.breaker_opened >= 1 and stats.breaker_state == "closed"

        naive = redis.Redis(port=proxy.port)
        proxy.delay = 0.2
        slow = time.monotonic()
        work = ThreadWorkload(naive_reader(naive, source), workers=4)
        time.sleep(1.0)
        reads = work.stop()
        proxy.delay = 0.0
        naive.close()
        assert Reads.p99(reads.between(slow, slow + 1.0)) > TIMEOUT + source.p99() + 0.020
    finally:
        cache.close()
        proxy.close()


async def test_a_slow_source_is_shed_not_piled_up(redis_server: RedisServer) -> None:
    """Source slower than the request rate: at most source_concurrency loads run, waiters
    are bounded by the queue timeout, and callers get a stale value or SourceOverloaded."""
    source = Source(rows=2000, delay=0.3)
    await source.open_async(40)
    options = {**OPTIONS, "source_concurrency": 3, "source_queue_timeout": 0.2, "ttl": 0.5}
    cache = AsyncCache.from_url(redis_server.url, namespace="shed", **options)
    try:
        await shed_scenario(cache, source, redis_server)
    finally:
        await cache.close()
        await source.close_async()
        source.drop()


async def shed_scenario(cache: AsyncCache, source: Source, redis_server: RedisServer) -> None:
    """40 callers, a 0.3 s source, 3 slots, a 0.2 s queue; stale copies where they exist."""
    assert await cache.ready()
    # Warm three keys, let them go stale, and drop them from Redis.
    warmed = {f"row:{i}": await cache.get_or_load(f"row:{i}", lambda i=i: source.aload(f"row:{i}"))
              for i in range(3)}  # fmt: skip
    await asyncio.sleep(0.6)
    raw = redis.asyncio.Redis(port=redis_server.port)
    await raw.delete(*[f"{{shed:row:{i}}}" for i in range(3)])
    await raw.aclose()

    # With every slot held, a read of a stale key is answered from L1, not queued forever.
    release = asyncio.Event()

    async def blocker(n: int) -> None:
        async def slow() -> str:
            await release.wait()
            return "x"

        await cache.get_or_load(f"blocker:{n}", slow)

    blockers = [asyncio.create_task(blocker(n)) for n in range(3)]
    while cache.stats().source_active < 3:
        await asyncio.sleep(0.01)
    for key, value in warmed.items():
        assert await cache.get_or_load(key, lambda key=key: source.aload(key)) == value
    assert cache.stats().stale_fallbacks == 3
    with pytest.raises(SourceOverloaded, match="source_concurrency=3"):
        await cache.get_or_load("row:1999", lambda: source.aload("row:1999"))
    release.set()
    await asyncio.gather(*blockers)

    # A storm of misses: at most 3 loads at once, the rest shed after 0.2 s.
    outcomes: dict[str, int] = {"value": 0, "overloaded": 0}
    peak_waiting = 0

    async def caller(n: int) -> None:
        nonlocal peak_waiting
        for j in range(5):
            key = f"row:{(3 + n * 5 + j) % 2000}"
            try:
                await cache.get_or_load(key, lambda key=key: source.aload(key))
                outcomes["value"] += 1
            except SourceOverloaded:
                outcomes["overloaded"] += 1
            peak_waiting = max(peak_waiting, cache.stats().source_waiting)

    began = time.monotonic()
    await asyncio.gather(*[caller(n) for n in range(40)])
    took = time.monotonic() - began
    stats = cache.stats()
    assert source.peak <= 3
    assert outcomes["overloaded"] > 0 and outcomes["value"] > 0
    assert stats.source_shed >= outcomes["overloaded"]
    # Every waiter is a caller (a slot just freed may not be retaken yet, so up to all
    # 40 can be waiting at one instant); what bounds the queue is the 0.2 s timeout.
    assert peak_waiting <= 40
    assert took < 5 * (0.3 + 0.2) + 2  # nobody queues for long

    # Control: naive cache-aside lets every caller hit the source at once.
    source.peak = 0
    naive = redis.asyncio.Redis(port=redis_server.port)

    async def naive_caller(n: int) -> None:
        key = f"naive-row:{n}"
        if await naive.get(key) is None:
            await naive.set(key, await source.aload(f"row:{1000 + n}"), ex=60)

    await asyncio.gather(*[naive_caller(n) for n in range(40)])
    await naive.aclose()
    assert source.peak > 3 * 5
