"""Hit-path cost of veneer against raw redis-py and in-process caches, as ratios in one run.

python benchmarks/hit_path.py            # starts a private redis-server
python benchmarks/hit_path.py --redis redis://127.0.0.1:6379/0
python benchmarks/hit_path.py --only metrics   # L1/L2 hits and misses, metrics off and on
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

# benchmarks/http.py would shadow the standard library's http package (prometheus_client's
# server imports it): this folder goes to the end of sys.path, not the front.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
sys.path.append(str(_HERE))

import cachetools  # noqa: E402
import msgspec  # noqa: E402
import redis  # noqa: E402
import redis.asyncio  # noqa: E402
from _timing import AsyncCases, compare, compare_async, per_call, report  # noqa: E402
from opentelemetry.sdk.metrics import MeterProvider  # noqa: E402
from opentelemetry.sdk.metrics.export import InMemoryMetricReader  # noqa: E402
from opentelemetry.sdk.trace import TracerProvider  # noqa: E402
from prometheus_client import CollectorRegistry  # noqa: E402

from veneer import AsyncCache, Cache  # noqa: E402
from veneer.demo._embedded import EmbeddedRedis  # noqa: E402
from veneer.metrics import OtelMetrics, OtelTracing, PrometheusMetrics  # noqa: E402

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


def paired(cases: dict[str, Callable[[], Any]], number: int, rounds: int = 41) -> dict[str, float]:
    """Like ``compare``, for cases whose difference is small against the machine's drift:
    each round times every case back to back (in a rotated order) and keeps its ratio to
    the first case; the result is the first case's median time times each median ratio."""
    names = list(cases)
    for fn in cases.values():
        per_call(fn, number)  # warm up
    base: list[float] = []
    ratios: dict[str, list[float]] = {name: [] for name in names}
    for i in range(rounds):
        order = names[i % len(names) :] + names[: i % len(names)]
        times = {name: per_call(cases[name], number) for name in order}
        base.append(times[names[0]])
        for name in names:
            ratios[name].append(times[name] / times[names[0]])
    median_base = statistics.median(base)
    return {name: median_base * statistics.median(ratios[name]) for name in names}


def _observers() -> dict[str, Any]:
    """The metrics settings compared: off, Prometheus, and OpenTelemetry spans + metrics."""

    # A provider with no span processor still records spans (the SDK's cost), as an
    # application with an exporter would; the reader is never read here.
    otel = [
        OtelTracing(TracerProvider()),
        OtelMetrics(MeterProvider(metric_readers=[InMemoryMetricReader()])),
    ]
    return {
        "metrics off": None,
        "Prometheus": PrometheusMetrics(CollectorRegistry()),
        "OTel spans + metrics": otel,
    }


def metrics_benchmarks(url: str, number: int) -> None:
    """The cost of observer=: L1 hits (never timed), L2 hits (one histogram observation)
    and misses (two observations, and spans with OTel), against the same cache without."""
    observers = _observers()
    caches = {
        name: Cache.from_url(url, namespace=f"bench-m{i}", ttl=600, observer=observer)
        for i, (name, observer) in enumerate(observers.items())
    }
    try:
        for cache in caches.values():
            cache.get_or_load("k", lambda: ROW)
        results = paired(
            {
                f"L1 hit, {name}": (lambda c=cache: c.get_or_load("k", dict))
                for name, cache in caches.items()
            },
            number * 10,
        )
        report("L1 hit (sync), metrics off and on", results, "L1 hit, metrics off")
    finally:
        for cache in caches.values():
            cache.close()

    l2 = {
        name: Cache.from_url(
            url, namespace=f"bench-ml2{i}", ttl=600, l1_size=0, stamp_ttl=600, observer=observer
        )
        for i, (name, observer) in enumerate(observers.items())
    }
    fresh = iter(range(10**9))
    try:
        for cache in l2.values():
            cache.get_or_load("k", lambda: ROW)
        results = paired(
            {
                f"L2 hit, {name}": (lambda c=cache: c.get_or_load("k", dict))
                for name, cache in l2.items()
            },
            max(1, number // 4),
            rounds=21,
        )
        report("L2 hit (sync), metrics off and on", results, "L2 hit, metrics off")
        results = paired(
            {
                f"miss, {name}": (
                    lambda c=cache: c.get_or_load(f"m{next(fresh)}", lambda: ROW, ttl=30)
                )
                for name, cache in l2.items()
            },
            max(1, number // 4),
            rounds=21,
        )
        report("miss (sync), metrics off and on", results, "miss, metrics off")
    finally:
        for cache in l2.values():
            cache.close()

    async def run() -> dict[str, float]:
        acaches = {
            name: AsyncCache.from_url(url, namespace=f"bench-am{i}", ttl=600, observer=observer)
            for i, (name, observer) in enumerate(observers.items())
        }
        try:
            for acache in acaches.values():
                await acache.get_or_load("k", lambda: ROW)
            calls = number * 10
            names = [f"L1 hit, {name}" for name in acaches]
            by_name = dict(zip(names, acaches.values(), strict=True))

            async def timed(acache: AsyncCache) -> float:
                started = time.perf_counter()
                for _ in range(calls):
                    await acache.get_or_load("k", dict)
                return (time.perf_counter() - started) / calls

            for acache in acaches.values():
                await timed(acache)  # warm up
            base: list[float] = []
            ratios: dict[str, list[float]] = {name: [] for name in names}
            for i in range(41):
                order = names[i % len(names) :] + names[: i % len(names)]
                times = {name: await timed(by_name[name]) for name in order}
                base.append(times[names[0]])
                for name in names:
                    ratios[name].append(times[name] / times[names[0]])
            median_base = statistics.median(base)
            return {name: median_base * statistics.median(ratios[name]) for name in names}
        finally:
            for acache in acaches.values():
                await acache.close()

    results = asyncio.run(run())
    report("L1 hit (async), metrics off and on", results, "L1 hit, metrics off")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--redis", help="Redis URL (default: a private redis-server)")
    parser.add_argument("--number", type=int, default=2000)
    parser.add_argument(
        "--only", choices=["single", "concurrent", "metrics"], help="run one group of cases only"
    )
    args = parser.parse_args()

    def run(url: str) -> None:
        if args.only in (None, "metrics"):
            metrics_benchmarks(url, args.number)
        if args.only == "metrics":
            return
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
