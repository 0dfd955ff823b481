"""What the hammer's processes run (importable by multiprocessing's spawn): one limit hit
by threads or asyncio tasks as fast as they can, each hit's outcome counted."""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from typing import Any

from veneer.ratelimit import AsyncRateLimiter, RateLimiter

LIMIT = "100/second burst 10"
# A refused caller tries again after this pause: 32 callers still send ~30,000 hits/s at
# a 100/s limit, but do not spin (CPU-bound callers starve Redis on a 2-core machine
# and measure the scheduler, not the limiter).
PAUSE = 0.001


def agreed_start(barrier: Any, start_at: Any) -> float:
    """Once every process is ready, the parent sets one start time for all of them."""
    barrier.wait()
    while start_at.value == 0.0:
        time.sleep(0.001)
    return float(start_at.value)


def hammer(
    front: str, url: str, namespace: str, callers: int, seconds: float, barrier: Any,
    start_at: Any, out: Any,
) -> None:  # fmt: skip
    """Hit one subject from ``callers`` threads or tasks, sending only between the wall
    times ``start_at`` and ``start_at + seconds`` (the same for every process); put the
    outcomes, the send times of the allowed hits and the send times of every hit."""
    # A generous deadline: on a loaded 2-core machine a slow answer is not an outage.
    options: dict[str, Any] = {
        "namespace": namespace, "redis_timeout": 2.0, "connect_timeout": 2.0, "workers": 4,
    }  # fmt: skip
    outcomes: Counter[str] = Counter()
    granted: list[float] = []
    sent: list[float] = []  # list.append is atomic: threads share it
    if front == "threads":
        limiter = RateLimiter.from_url(url, LIMIT, **options)
        limiter.peek("hot")  # connected, script loaded
        lock = threading.Lock()

        def run(begin: float) -> None:
            mine: Counter[str] = Counter()  # one per thread: += on a shared one loses counts
            time.sleep(max(0.0, begin - time.time()))
            end = begin + seconds
            while (now := time.time()) < end:
                sent.append(now)
                decision = limiter.hit("hot")
                mine[f"{decision.allowed}:{decision.decided_by}"] += 1
                if decision.allowed:
                    granted.append(now)
                else:
                    time.sleep(PAUSE)
            with lock:
                outcomes.update(mine)

        begin = agreed_start(barrier, start_at)
        threads = [threading.Thread(target=run, args=(begin,)) for _ in range(callers)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        limiter.close()
    else:

        async def main() -> None:
            async with AsyncRateLimiter.from_url(url, LIMIT, **options) as limiter:
                await limiter.peek("hot")

                async def run(begin: float) -> None:
                    await asyncio.sleep(max(0.0, begin - time.time()))
                    end = begin + seconds
                    while (now := time.time()) < end:
                        sent.append(now)
                        decision = await limiter.hit("hot")
                        outcomes[f"{decision.allowed}:{decision.decided_by}"] += 1
                        if decision.allowed:
                            granted.append(now)
                        else:
                            await asyncio.sleep(PAUSE)

                begin = agreed_start(barrier, start_at)
                await asyncio.gather(*[run(begin) for _ in range(callers)])

        asyncio.run(main())
    out.put({"outcomes": dict(outcomes), "granted": granted, "sent": sent})
