"""Code that test subprocesses run (importable by multiprocessing's spawn)."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from typing import Any

from veneer import AsyncCache, Cache


def stampede(
    mode: str, url: str, namespace: str, callers: int, barrier: Any, loads: Any, out: Any
) -> None:
    """``callers`` concurrent misses of one key in this process (threads or tasks)."""

    def load() -> dict[str, int]:
        with loads.get_lock():
            loads.value += 1
        time.sleep(0.05)
        return {"pid": os.getpid()}

    async def aload() -> dict[str, int]:
        with loads.get_lock():
            loads.value += 1
        await asyncio.sleep(0.05)
        return {"pid": os.getpid()}

    if mode == "threads":
        with Cache.from_url(url, namespace=namespace, ttl=60, redis_timeout=2.0) as cache:
            cache.ready()
            start = threading.Barrier(callers)
            results: list[Any] = []

            def call() -> None:
                start.wait()
                results.append(cache.get_or_load("hot", load))

            threads = [threading.Thread(target=call) for _ in range(callers)]
            barrier.wait()
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            out.put(results)
        return

    async def main() -> None:
        async with AsyncCache.from_url(url, namespace=namespace, ttl=60, redis_timeout=2.0) as c:
            await c.ready()
            barrier.wait()
            out.put(await asyncio.gather(*[c.get_or_load("hot", aload) for _ in range(callers)]))

    asyncio.run(main())


def hold_lease_and_hang(url: str, namespace: str, lease_ttl: float, started: Any) -> None:
    """Take the fill lease of "k" and hang in the loader until killed."""

    def load() -> str:
        started.set()
        time.sleep(600)
        return "never"

    cache = Cache.from_url(url, namespace=namespace, ttl=60, lease_ttl=lease_ttl)
    cache.get_or_load("k", load)


def source_value(key: str) -> int:
    """The 'source of truth' of the verify tests: item:N is worth N * 10."""
    return int(key.split(":")[1]) * 10


def reload_raising_for_item_3(key: str) -> int:
    """A reload that fails for one key (item:3) and agrees with the cache elsewhere."""
    if key == "item:3":
        raise RuntimeError("the source is down for item:3")
    return int(key.split(":")[1])
