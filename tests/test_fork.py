"""Fork safety (issue 17, item 3; gunicorn --preload, multiprocessing): a cache in use by
threads, inherited by forked children, works in every child with correct values."""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from servers import RedisServer
from veneer import AsyncCache, Cache

CHILDREN = 20
CHILD_SECONDS = 15.0  # a child that takes longer is hung: killed, and the test fails


@pytest.fixture
def server() -> Iterator[RedisServer]:
    s = RedisServer()
    yield s
    s.stop()


def fork_children(work: Callable[[], bool], n: int) -> list[int]:
    """Fork ``n`` children that run ``work`` (True: correct); their exit codes, with -9
    for a child still running after CHILD_SECONDS (then killed)."""
    pids = []
    with warnings.catch_warnings():
        # Python 3.12+ warns about fork() in a process with threads: that is the point.
        warnings.simplefilter("ignore", DeprecationWarning)
        for _ in range(n):
            pid = os.fork()
            if pid == 0:  # the child: never return into pytest
                code = 3
                try:
                    code = 0 if work() else 1
                except BaseException:
                    import traceback

                    traceback.print_exc()
                    code = 2
                finally:
                    os._exit(code)
            pids.append(pid)
    codes = {}
    deadline = time.monotonic() + CHILD_SECONDS
    while len(codes) < len(pids) and time.monotonic() < deadline:
        for pid in pids:
            if pid not in codes:
                done, status = os.waitpid(pid, os.WNOHANG)
                if done:
                    codes[pid] = os.waitstatus_to_exitcode(status)
        time.sleep(0.02)
    for pid in pids:
        if pid not in codes:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            codes[pid] = -9
    return [codes[pid] for pid in pids]


def test_children_forked_mid_load_finish_with_correct_values(server: RedisServer) -> None:
    """Parent threads are inside loads (their flights open, every bulkhead slot taken,
    the subscriber running, an invalidation queued, internal locks held) when 20
    children fork: each child loads the same keys and others, hears invalidations and
    sends its own, and exits within the bound with the right values."""
    cache = Cache.from_url(
        server.url,
        namespace="fork",
        ttl=60,
        source_concurrency=2,
        source_queue_timeout=2.0,
        lease_wait=0.3,  # the parent holds the leases of hot:*: children load themselves
        # The test holds the parent's breaker locks while the children run, which stops
        # the parent's lease renewals too: its leases must outlive that on their own.
        lease_heartbeat=5.0,
    )
    assert cache.ready()
    release = threading.Event()
    inside = threading.Barrier(3)

    def blocked_load(key: str) -> Callable[[], str]:
        def load() -> str:
            inside.wait(5)
            release.wait(30)
            return f"parent:{key}"

        return load

    loaders = [
        threading.Thread(target=cache.get_or_load, args=(key, blocked_load(key)))
        for key in ("hot:0", "hot:1")
    ]
    for t in loaders:
        t.start()
    inside.wait(5)  # both parent loads hold their flight and a bulkhead slot
    cache._invalidations.queue(("k", "never-sent-by-a-child"))  # parent's own retry queue
    # The worst moment to fork: a parent thread holds the cache's internal locks.
    held = [cache._l1._lock, *(b._lock for b in cache._l2.breakers())]
    for lock in held:
        lock.acquire()

    def child() -> bool:
        ok = cache.ready(5)
        values = [cache.get_or_load(f"hot:{i}", lambda i=i: f"child:hot:{i}") for i in (0, 1)]
        values += [cache.get_or_load(f"k:{i}", lambda i=i: f"v{i}") for i in range(20)]
        expected = [f"child:hot:{i}" for i in (0, 1)] + [f"v{i}" for i in range(20)]
        # Its own invalidation applies now (the parent's queue is not the child's).
        ok = ok and cache.invalidate(f"mine:{os.getpid()}")
        ok = ok and cache.stats().invalidations_pending == 0
        cache.close()
        return ok and values == expected

    try:
        codes = fork_children(child, CHILDREN)
    finally:
        for lock in held:
            lock.release()
        release.set()
        for t in loaders:
            t.join(10)
    parent_values = [cache.get_or_load(f"hot:{i}", lambda: "?") for i in (0, 1)]
    cache.close()
    assert codes == [0] * CHILDREN, codes
    # The parent's own loads were not disturbed: children waited lease_wait for its
    # leases, loaded for themselves without filling, and the parent's fills landed.
    assert parent_values == ["parent:hot:0", "parent:hot:1"]


def test_async_children_forked_mid_load_finish_with_correct_values(
    server: RedisServer,
) -> None:
    """The same for AsyncCache: its loop runs in a parent thread with tasks inside loads;
    each child runs its own loop and gets the right values within the bound."""
    cache = AsyncCache.from_url(
        server.url,
        namespace="afork",
        ttl=60,
        source_concurrency=2,
        source_queue_timeout=2.0,
        lease_wait=0.3,
    )
    loop = asyncio.new_event_loop()
    started: list[str] = []
    release = asyncio.Event()

    async def blocked(key: str) -> str:
        started.append(key)
        await release.wait()
        return f"parent:{key}"

    async def parent_main() -> Any:
        assert await cache.ready()
        return await asyncio.gather(
            *[cache.get_or_load(k, lambda k=k: blocked(k)) for k in ("hot:0", "hot:1")]
        )

    result: list[Any] = []
    runner = threading.Thread(target=lambda: result.append(loop.run_until_complete(parent_main())))
    runner.start()
    deadline = time.monotonic() + 5
    while len(started) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(started) == 2  # both parent loads hold their flight and a bulkhead slot

    def child() -> bool:
        async def main() -> bool:
            ok = await cache.ready(5)
            values = [
                await cache.get_or_load(f"hot:{i}", lambda i=i: f"child:hot:{i}") for i in (0, 1)
            ]
            values += [await cache.get_or_load(f"k:{i}", lambda i=i: f"v{i}") for i in range(20)]
            ok = ok and await cache.invalidate(f"mine:{os.getpid()}")
            await cache.close()
            expected = [f"child:hot:{i}" for i in (0, 1)] + [f"v{i}" for i in range(20)]
            return ok and values == expected

        return asyncio.run(main())

    try:
        codes = fork_children(child, 5)
    finally:
        loop.call_soon_threadsafe(release.set)
        runner.join(10)

    async def finish() -> None:
        await cache.close()

    loop.run_until_complete(finish())
    loop.close()
    assert codes == [0] * 5, codes
    assert result and len(result[0]) == 2
