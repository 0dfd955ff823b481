"""Hit-path cost of veneer against raw redis-py and in-process caches, as ratios in one run.

python benchmarks/hit_path.py            # starts a private redis-server
python benchmarks/hit_path.py --redis redis://127.0.0.1:6379/0
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import cachetools
import msgspec
import redis
import redis.asyncio

sys.path.insert(0, str(Path(__file__).parent))
from _timing import AsyncCases, compare, compare_async, report

from veneer import AsyncCache, Cache
from veneer.demo._embedded import EmbeddedRedis

ROW = {"id": 1, "name": "x" * 900, "price": 9.99, "tags": ["a", "b", "c"], "stock": 12}


def sync_benchmarks(url: str, number: int) -> None:
    payload = msgspec.msgpack.encode(ROW)
    raw = redis.Redis.from_url(url)
    raw.set("bench:raw", payload, ex=600)
    decoder = msgspec.msgpack.Decoder()

    with Cache.from_url(url, namespace="bench-l1", ttl=600) as l1cache:
        l1cache.get_or_load("k", lambda: ROW)
        ttl_cache: cachetools.TTLCache[str, Any] = cachetools.TTLCache(maxsize=10_000, ttl=600)
        ttl_cache["k"] = ROW
        plain = {"k": ROW}

        @l1cache.cached(ttl=600)
        def by_id(pid: int) -> dict[str, Any]:
            return ROW

        by_id(7)
        results = compare(
            {
                "dict.get": lambda: plain.get("k"),
                "cachetools.TTLCache.get": lambda: ttl_cache.get("k"),
                "veneer get_or_load, L1 hit": lambda: l1cache.get_or_load("k", dict),
                "veneer @cached(int), L1 hit": lambda: by_id(7),
            },
            number * 20,
        )
        report("L1 hit (sync)", results, "cachetools.TTLCache.get")

    with (
        Cache.from_url(url, namespace="bench-l2", ttl=600, l1_size=0, stamp_ttl=600) as l2cache,
        Cache.from_url(
            url, namespace="bench-l2n", ttl=600, l1_size=0, stamp_ttl=600, leases=False
        ) as plain,
    ):
        l2cache.get_or_load("k", lambda: ROW)
        plain.get_or_load("k", lambda: ROW)
        results = compare(
            {
                "redis-py GET + msgspec decode": lambda: decoder.decode(raw.get("bench:raw")),
                "veneer get_or_load, L2 hit": lambda: l2cache.get_or_load("k", dict),
                "veneer get_or_load, L2 hit, leases=False": lambda: plain.get_or_load("k", dict),
            },
            number,
        )
        report("L2 hit (sync), 1 KiB value", results, "redis-py GET + msgspec decode")

        keys = [f"m{i}" for i in range(100)]
        l2cache.get_or_load_many(keys, lambda ks: dict.fromkeys(ks, ROW))
        raw_keys = [f"bench:raw:{i}" for i in range(100)]
        raw.mset(dict.fromkeys(raw_keys, payload))
        for k in raw_keys:
            raw.expire(k, 600)
        results = compare(
            {
                "redis-py MGET + decode (100 keys)": lambda: [
                    decoder.decode(v) for v in raw.mget(raw_keys)
                ],
                "veneer get_many (100 keys)": lambda: l2cache.get_many(keys),
            },
            max(1, number // 20),
        )
        report("get_many of 100 keys (sync)", results, "redis-py MGET + decode (100 keys)")
    miss_benchmarks(url, number)
    raw.close()


def miss_benchmarks(url: str, number: int) -> None:
    """A miss on a fresh key: raw cache-aside (GET, encode, SET EX) against veneer's
    get_or_load with leases (the default) and without."""
    raw = redis.Redis.from_url(url)
    encoder = msgspec.msgpack.Encoder()
    fresh = iter(range(10**9))

    def raw_miss() -> Any:
        key = f"bench:miss:{next(fresh)}"
        if raw.get(key) is None:
            raw.set(key, encoder.encode(ROW), ex=30)
        return ROW

    with (
        Cache.from_url(url, namespace="bench-ml", ttl=30, l1_size=0, stamp_ttl=600) as leased,
        Cache.from_url(
            url, namespace="bench-mn", ttl=30, l1_size=0, stamp_ttl=600, leases=False
        ) as plain,
    ):
        results = compare(
            {
                "redis-py GET + SET (cache-aside miss)": raw_miss,
                "veneer get_or_load miss, leases": lambda: leased.get_or_load(
                    f"m{next(fresh)}", lambda: ROW
                ),
                "veneer get_or_load miss, leases=False": lambda: plain.get_or_load(
                    f"m{next(fresh)}", lambda: ROW
                ),
            },
            number,
        )
        report("miss (sync), 1 KiB value", results, "redis-py GET + SET (cache-aside miss)")
    raw.close()


def async_benchmarks(url: str, number: int) -> None:
    payload = msgspec.msgpack.encode(ROW)
    decoder = msgspec.msgpack.Decoder()

    async def setup() -> tuple[AsyncCases, Callable[[], Awaitable[None]]]:
        raw = redis.asyncio.Redis.from_url(url)
        await raw.set("bench:araw", payload, ex=600)
        cache = AsyncCache.from_url(url, namespace="bench-al2", ttl=600, l1_size=0, stamp_ttl=600)
        plain = AsyncCache.from_url(
            url, namespace="bench-al2n", ttl=600, l1_size=0, stamp_ttl=600, leases=False
        )
        await cache.get_or_load("k", lambda: ROW)
        await plain.get_or_load("k", lambda: ROW)

        async def plain_get() -> Any:
            return await plain.get_or_load("k", dict)

        async def raw_get() -> Any:
            return decoder.decode(await raw.get("bench:araw"))

        async def veneer_get() -> Any:
            return await cache.get_or_load("k", dict)

        async def cleanup() -> None:
            await cache.close()
            await plain.close()
            await raw.aclose()

        cases: AsyncCases = {
            "redis.asyncio GET + msgspec decode": raw_get,
            "veneer AsyncCache.get_or_load, L2 hit": veneer_get,
            "veneer AsyncCache.get_or_load, L2 hit, leases=False": plain_get,
        }
        return cases, cleanup

    results = compare_async(setup, number)
    report("L2 hit (async), 1 KiB value", results, "redis.asyncio GET + msgspec decode")

    async def setup_miss() -> tuple[AsyncCases, Callable[[], Awaitable[None]]]:
        raw = redis.asyncio.Redis.from_url(url)
        encoder = msgspec.msgpack.Encoder()
        fresh = iter(range(10**9))
        leased = AsyncCache.from_url(url, namespace="bench-aml", ttl=30, l1_size=0, stamp_ttl=600)
        plain = AsyncCache.from_url(
            url, namespace="bench-amn", ttl=30, l1_size=0, stamp_ttl=600, leases=False
        )

        async def raw_miss() -> Any:
            key = f"bench:amiss:{next(fresh)}"
            if await raw.get(key) is None:
                await raw.set(key, encoder.encode(ROW), ex=30)
            return ROW

        async def leased_miss() -> Any:
            return await leased.get_or_load(f"m{next(fresh)}", lambda: ROW)

        async def plain_miss() -> Any:
            return await plain.get_or_load(f"m{next(fresh)}", lambda: ROW)

        async def cleanup() -> None:
            await leased.close()
            await plain.close()
            await raw.aclose()

        cases: AsyncCases = {
            "redis.asyncio GET + SET (cache-aside miss)": raw_miss,
            "veneer get_or_load miss, leases": leased_miss,
            "veneer get_or_load miss, leases=False": plain_miss,
        }
        return cases, cleanup

    results = compare_async(setup_miss, number)
    report("miss (async), 1 KiB value", results, "redis.asyncio GET + SET (cache-aside miss)")


def concurrent_benchmarks(url: str, tasks: int, rounds: int = 5, reads: int = 20_000) -> None:
    """``tasks`` asyncio tasks reading 1,000 cached keys (L1 off) through one AsyncCache,
    against the same tasks on raw redis.asyncio with a pool as large as the task count."""
    payload = msgspec.msgpack.encode(ROW)
    decoder = msgspec.msgpack.Decoder()
    keys = [f"c{i}" for i in range(1000)]

    async def burst(read: Callable[[str], Awaitable[Any]]) -> float:
        per_task = reads // tasks

        async def reader(i: int) -> None:
            for j in range(per_task):
                await read(keys[(i * 7 + j * 13) % len(keys)])

        started = time.perf_counter()
        await asyncio.gather(*[reader(i) for i in range(tasks)])
        return per_task * tasks / (time.perf_counter() - started)

    async def run() -> tuple[list[float], list[float], Any]:
        pool = redis.asyncio.BlockingConnectionPool.from_url(url, max_connections=tasks + 10)
        raw = redis.asyncio.Redis(connection_pool=pool)
        for k in keys:
            await raw.set(f"bench:c:{k}", payload, ex=600)
        cache = AsyncCache.from_url(url, namespace=f"bench-c{tasks}", ttl=600, l1_size=0)
        await cache.get_or_load_many(keys, lambda ks: dict.fromkeys(ks, ROW))

        async def raw_read(key: str) -> Any:
            return decoder.decode(await raw.get(f"bench:c:{key}"))

        async def veneer_read(key: str) -> Any:
            return await cache.get_or_load(key, dict)

        raw_rates: list[float] = []
        veneer_rates: list[float] = []
        await burst(raw_read)
        await burst(veneer_read)
        for _ in range(rounds):
            raw_rates.append(await burst(raw_read))
            veneer_rates.append(await burst(veneer_read))
        stats = cache.stats()
        await cache.close()
        await raw.aclose()
        await pool.disconnect()
        return raw_rates, veneer_rates, stats

    raw_rates, veneer_rates, stats = asyncio.run(run())
    raw_rate, veneer_rate = statistics.median(raw_rates), statistics.median(veneer_rates)
    print(f"\n{tasks} tasks, L2 hits of 1,000 keys (async)  (baseline: raw redis.asyncio)")
    raw_name = f"redis.asyncio GET + decode, pool of {tasks + 10}"
    print(f"  {raw_name:<48} {raw_rate:9.0f} reads/s   1.00x")
    ratio = veneer_rate / raw_rate
    print(f"  {'veneer AsyncCache.get_or_load':<48} {veneer_rate:9.0f} reads/s   {ratio:.2f}x")
    print(
        f"  veneer: {stats.source_loads - 1} source loads after warm-up, "
        f"{stats.redis_errors} Redis errors, breaker {stats.breaker_state}, "
        f"{stats.pool_timeouts} pool timeouts"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--redis", help="Redis URL (default: a private redis-server)")
    parser.add_argument("--number", type=int, default=2000)
    parser.add_argument(
        "--only", choices=["single", "concurrent"], help="run one group of cases only"
    )
    args = parser.parse_args()

    def run(url: str) -> None:
        if args.only != "concurrent":
            sync_benchmarks(url, args.number)
            async_benchmarks(url, args.number)
        if args.only != "single":
            for tasks in (200, 1000):
                concurrent_benchmarks(url, tasks)

    if args.redis:
        run(args.redis)
        return
    with EmbeddedRedis() as server:
        run(server.url)


if __name__ == "__main__":
    main()
