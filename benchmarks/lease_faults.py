"""Leases after a hang and under cancellation (issue 20, items 1 and 5), measured.

    python benchmarks/lease_faults.py

1. Orphan leases: 40 tasks miss fresh keys while a private redis-server is
   SIGSTOPped for 0.3 s; once it resumes, a second cache reads every key they
   tried. The longest of those reads is the longest wait behind a lease nobody
   holds. With ``lease_heartbeat`` (0.5 s) against leases that live ``lease_ttl``
   (5 s, as before heartbeats: ``lease_heartbeat=5``).
2. Cancellation: 1,000 ``asyncio.wait_for(get_or_load(...), 0.001)`` through a
   TCP proxy that delays each reply 0.5 ms, half of them on keys another cache
   holds the leases of. The overshoot is each call's time past its 1 ms deadline.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from proxy import SlowProxy
from servers import RedisServer
from veneer import AsyncCache


async def orphan_wait(heartbeat: float) -> tuple[float, int]:
    """(longest wait of a healthy reader, keys tried) after one SIGSTOP of 0.3 s."""
    server = RedisServer()
    options: dict[str, Any] = {"namespace": "orphans", "ttl": 60, "broadcast": False}
    tried: list[str] = []
    stop = asyncio.Event()

    async def load() -> str:
        await asyncio.sleep(0.002)
        return "old"

    try:
        async with AsyncCache.from_url(
            server.url,
            redis_timeout=0.1,
            breaker_failures=10_000,
            lease_heartbeat=heartbeat,
            **options,
        ) as hung:

            async def miss_forever(worker: int) -> None:
                n = 0
                while not stop.is_set():
                    tried.append(f"w{worker}-{n}")
                    await hung.get_or_load(tried[-1], load)
                    n += 1

            workers = [asyncio.create_task(miss_forever(i)) for i in range(40)]
            await asyncio.sleep(0.3)
            server.pause()
            await asyncio.sleep(0.3)
            server.resume()
            await asyncio.sleep(0.1)
            stop.set()
            await asyncio.gather(*workers)
        async with AsyncCache.from_url(server.url, lease_heartbeat=heartbeat, **options) as healthy:

            async def timed(key: str) -> float:
                started = time.monotonic()
                await healthy.get_or_load(key, lambda: "fresh")
                return time.monotonic() - started

            waits = await asyncio.gather(*[timed(key) for key in tried])
        return max(waits), len(tried)
    finally:
        server.stop()


async def cancellations() -> list[float]:
    server = RedisServer()
    proxy = SlowProxy(server.port)
    options: dict[str, Any] = {"namespace": "cancel", "ttl": 60, "broadcast": False}
    release = asyncio.Event()

    async def held() -> str:
        await release.wait()
        return "held"

    async def slow_load() -> str:
        await asyncio.sleep(0.05)
        return "mine"

    overshoots = []
    try:
        async with (
            AsyncCache.from_url(server.url, **options) as holder,
            AsyncCache.from_url(proxy.url, redis_timeout=0.5, l1_size=0, **options) as victim,
        ):
            holders = [asyncio.create_task(holder.get_or_load(f"h{i}", held)) for i in range(10)]
            await asyncio.sleep(0.2)
            await victim.get_or_load("warm", lambda: "w")
            proxy.delay = 0.0005
            for i in range(1000):
                key = f"h{i % 10}" if i % 2 else f"c{i}"
                started = time.monotonic()
                try:
                    await asyncio.wait_for(victim.get_or_load(key, slow_load), 0.001)
                except TimeoutError:
                    pass
                overshoots.append(time.monotonic() - started - 0.001)
            release.set()
            await asyncio.gather(*holders)
    finally:
        proxy.close()
        server.stop()
    return overshoots


def main() -> None:
    print("longest wait behind an orphan lease after a 0.3 s SIGSTOP (5 runs)")
    for heartbeat, label in ((0.5, "lease_heartbeat=0.5 (default)"), (5.0, "leases of 5 s")):
        runs = [asyncio.run(orphan_wait(heartbeat)) for _ in range(5)]
        waits = [wait * 1000 for wait, _ in runs]
        tried = sum(n for _, n in runs)
        median = statistics.median(waits)
        print(f"  {label:<32} max {max(waits):7.0f} ms   median {median:7.0f} ms   ({tried} keys)")
    overshoots = sorted(asyncio.run(cancellations()))
    print("\n1,000 cancellations at 1 ms, replies delayed 0.5 ms: time past the deadline")
    print(
        f"  p50 {overshoots[500] * 1000:.2f} ms   p99 {overshoots[990] * 1000:.2f} ms   "
        f"max {overshoots[-1] * 1000:.2f} ms"
    )


if __name__ == "__main__":
    main()
