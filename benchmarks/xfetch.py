"""XFetch early refresh: stampede size at expiry, for beta = 1 and beta = 1.5.

    python benchmarks/xfetch.py

1. Simulation in virtual time with veneer's own decision function
   (``veneer._policy.xfetch_due``), *without* any lease: 32 readers, Poisson
   reads, recompute time delta. The stampede of one expiry is every recompute
   started before the first one's result lands. This is XFetch alone.
2. The same measured on a real redis-server with 32 AsyncCache instances (as
   32 processes would be) and veneer's defaults (leases on): loads that overlap.
"""

from __future__ import annotations

import asyncio
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from veneer import AsyncCache
from veneer._policy import xfetch_due
from veneer.demo._embedded import EmbeddedRedis


def simulate(
    beta: float, readers: int = 32, expiries: int = 1000, seed: int = 1
) -> dict[str, float]:
    rng = random.Random(seed)
    ttl, delta, read_gap = 1.0, 0.05, 0.01  # seconds: each reader reads every ~10 ms
    now, expiry = 0.0, ttl
    stampedes: list[int] = []
    hard = 0
    while len(stampedes) < expiries:
        # next read by any reader: merged Poisson process
        now += rng.expovariate(readers / read_gap)
        if now >= expiry or xfetch_due(now, expiry, delta, beta, 1.0 - rng.random()):
            hard += now >= expiry
            first = now
            size = 1
            # every reader arriving before the recompute lands makes the same decision
            t = now
            while True:
                t += rng.expovariate(readers / read_gap)
                if t >= first + delta:
                    break
                if t >= expiry or xfetch_due(t, expiry, delta, beta, 1.0 - rng.random()):
                    size += 1
            stampedes.append(size)
            now = first + delta
            expiry = now + ttl
    return {
        "mean stampede": statistics.mean(stampedes),
        "max stampede": max(stampedes),
        "hard misses": hard / expiries,
    }


async def measured(url: str, beta: float, expiries: int = 1000) -> dict[str, float]:
    caches = [
        AsyncCache.from_url(
            url, namespace=f"xfetch-{beta}", ttl=0.005, jitter=0, xfetch_beta=beta,
            l1_size=0, broadcast=False, stamp_ttl=60, redis_timeout=2.0,
        )
        for _ in range(32)
    ]  # fmt: skip
    loads: list[tuple[float, float]] = []

    async def load() -> float:
        began = time.monotonic()
        await asyncio.sleep(0.001)
        loads.append((began, time.monotonic()))
        return began

    stop = False

    async def read(cache: AsyncCache) -> None:
        while not stop:
            await cache.get_or_load("hot", load)

    tasks = [asyncio.create_task(read(c)) for c in caches]
    while len(loads) < expiries:
        await asyncio.sleep(0.05)
    stop = True
    await asyncio.gather(*tasks)
    early = sum(c.stats().refreshes for c in caches)
    for c in caches:
        await c.close()
    sizes: list[int] = []
    end = -1.0
    for began, finished in sorted(loads):
        if began <= end:
            sizes[-1] += 1
            end = max(end, finished)
        else:
            sizes.append(1)
            end = finished
    return {
        "mean concurrent loads": statistics.mean(sizes),
        "max concurrent loads": max(sizes),
        "early refresh share": early / len(loads),
    }


def main() -> None:
    print("XFetch alone (simulation, no lease), 32 readers, 1,000 expiries")
    for beta in (1.0, 1.5):
        result = simulate(beta)
        print(f"  beta={beta}: " + ", ".join(f"{k} {v:.2f}" for k, v in result.items()))
    print("veneer (XFetch + lease), 32 AsyncCache instances, real Redis, 1,000 expiries")
    with EmbeddedRedis() as server:
        for beta in (1.0, 1.5):
            result = asyncio.run(measured(server.url, beta))
            print(f"  beta={beta}: " + ", ".join(f"{k} {v:.2f}" for k, v in result.items()))


if __name__ == "__main__":
    main()
