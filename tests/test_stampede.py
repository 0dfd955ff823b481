"""One load per key: single-flight in process, leases across processes (promise 3)."""

from __future__ import annotations

import asyncio
import multiprocessing
import threading
import time
from typing import Any

import pytest

import workers
from servers import RedisServer
from veneer import AsyncCache, Cache


class Boom(Exception):
    pass


def test_concurrent_misses_in_threads_share_one_load(
    redis_server: RedisServer, namespace: str
) -> None:
    """50 threads missing one key at once cause one load; all get its value."""
    loads = 0
    lock = threading.Lock()

    def load() -> str:
        nonlocal loads
        with lock:
            loads += 1
        time.sleep(0.05)
        return "v"

    with Cache.from_url(redis_server.url, namespace=namespace, ttl=30) as cache:
        assert cache.ready()
        start = threading.Barrier(50)
        results: list[str] = []

        def call() -> None:
            start.wait()
            results.append(cache.get_or_load("k", load))

        threads = [threading.Thread(target=call) for _ in range(50)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(10)
        assert results == ["v"] * 50
        assert loads == 1
        assert cache.stats().shared_loads + cache.stats().l1_hits + 1 >= 50


def test_a_failing_load_fails_every_waiter_and_the_next_call_retries(
    redis_server: RedisServer, namespace: str
) -> None:
    """If the shared load raises, each waiter gets that error; nothing is cached."""
    calls = 0
    entered = threading.Event()
    release = threading.Event()

    def failing() -> str:
        nonlocal calls
        calls += 1
        entered.set()
        release.wait(5)
        raise Boom("source down")

    with Cache.from_url(redis_server.url, namespace=namespace, ttl=30) as cache:
        # Subscribed first: a (re)connection counts as a possible missed invalidation,
        # after which new callers do not join an older load.
        assert cache.ready()
        errors: list[BaseException] = []

        def call() -> None:
            try:
                cache.get_or_load("k", failing)
            except Boom as exc:
                errors.append(exc)

        leader = threading.Thread(target=call)
        leader.start()
        assert entered.wait(5)
        waiters = [threading.Thread(target=call) for _ in range(10)]
        for t in waiters:
            t.start()
        time.sleep(0.1)  # let the waiters reach the flight (they cannot finish before release)
        release.set()
        for t in [leader, *waiters]:
            t.join(10)
        assert len(errors) == 11 and calls == 1
        began = time.monotonic()
        assert cache.get_or_load("k", lambda: "ok") == "ok"
        # The failed leader released its lease: the retry does not wait out lease_ttl (5 s).
        assert time.monotonic() - began < 2.0
        assert cache.stats().lease_waits == 0


async def test_concurrent_misses_in_tasks_share_one_load(
    redis_server: RedisServer, namespace: str
) -> None:
    """200 tasks missing one key at once cause one load."""
    loads = 0

    async def load() -> str:
        nonlocal loads
        loads += 1
        await asyncio.sleep(0.05)
        return "v"

    async with AsyncCache.from_url(redis_server.url, namespace=namespace, ttl=30) as cache:
        assert await cache.ready()
        results = await asyncio.gather(*[cache.get_or_load("k", load) for _ in range(200)])
    assert results == ["v"] * 200
    assert loads == 1


async def test_a_cancelled_leader_does_not_strand_its_waiters(
    redis_server: RedisServer, namespace: str
) -> None:
    """Cancelling the task doing the shared load lets a waiter take over; nobody hangs."""
    started = asyncio.Event()
    calls = 0

    async def slow() -> str:
        nonlocal calls
        calls += 1
        started.set()
        await asyncio.sleep(0.2 if calls == 1 else 0)
        return f"load {calls}"

    async with AsyncCache.from_url(redis_server.url, namespace=namespace, ttl=30) as cache:
        assert await cache.ready()
        leader = asyncio.create_task(cache.get_or_load("k", slow))
        await started.wait()
        waiters = [asyncio.create_task(cache.get_or_load("k", slow)) for _ in range(5)]
        await asyncio.sleep(0.01)
        leader.cancel()
        results = await asyncio.wait_for(asyncio.gather(*waiters), timeout=10)
    assert results == ["load 2"] * 5
    with pytest.raises(asyncio.CancelledError):
        await leader


async def test_a_failing_async_load_fails_every_waiter(
    redis_server: RedisServer, namespace: str
) -> None:
    async def failing() -> str:
        await asyncio.sleep(0.05)
        raise Boom("no")

    async with AsyncCache.from_url(redis_server.url, namespace=namespace, ttl=30) as cache:
        assert await cache.ready()
        results = await asyncio.gather(
            *[cache.get_or_load("k", failing) for _ in range(20)], return_exceptions=True
        )
        assert all(isinstance(r, Boom) for r in results)
        assert cache.stats().source_loads == 1
        began = time.monotonic()
        assert await cache.get_or_load("k", lambda: "ok") == "ok"
        assert time.monotonic() - began < 2.0  # the lease was released, not left to expire


def test_200_misses_from_4_processes_cause_exactly_one_load(
    redis_server: RedisServer, namespace: str
) -> None:
    """4 processes (2 threaded, 2 asyncio) x 50 concurrent misses, 50 ms loader: 1 load."""
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(4)
    loads = ctx.Value("i", 0)
    out: Any = ctx.Queue()
    procs = [
        ctx.Process(
            target=workers.stampede,
            args=(mode, redis_server.url, namespace, 50, barrier, loads, out),
        )
        for mode in ("threads", "asyncio", "threads", "asyncio")
    ]
    for p in procs:
        p.start()
    results = [out.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(30)
        assert p.exitcode == 0
    values = [v for batch in results for v in batch]
    assert len(values) == 200
    assert loads.value == 1
    assert len({v["pid"] for v in values}) == 1  # everyone got the one loaded value


def test_a_killed_lease_holder_blocks_others_at_most_lease_ttl(
    redis_server: RedisServer, namespace: str
) -> None:
    """SIGKILL the process holding the lease: others get the value within lease TTL + one load."""
    ctx = multiprocessing.get_context("spawn")
    started = ctx.Event()
    holder = ctx.Process(
        target=workers.hold_lease_and_hang, args=(redis_server.url, namespace, 1.5, started)
    )
    holder.start()
    try:
        assert started.wait(30)
        with Cache.from_url(redis_server.url, namespace=namespace, ttl=30, lease_ttl=1.5) as cache:
            holder.kill()
            holder.join(10)
            began = time.monotonic()
            value = cache.get_or_load("k", lambda: (time.sleep(0.1), "loaded")[1])
            waited = time.monotonic() - began
        assert value == "loaded"
        assert waited <= 1.5 + 0.1 + 1.0  # lease TTL + one load + slack
        assert cache.stats().lease_waits == 1
    finally:
        holder.kill()
