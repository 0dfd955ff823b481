"""The worst-case staleness of each failure, as docs/consistency.md states it."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest

from proxy import SlowProxy
from servers import RedisServer
from veneer import AsyncCache, Cache


def wait_until(condition: Any, timeout: float) -> float:
    began = time.monotonic()
    while not condition():
        assert time.monotonic() - began < timeout, "bound exceeded"
        time.sleep(0.005)
    return time.monotonic() - began


def test_a_lost_broadcast_is_bounded_by_l1_ttl(redis_server: RedisServer, namespace: str) -> None:
    """A process that misses the invalidation message serves its L1 copy for at most l1_ttl."""
    silent = Cache.from_url(redis_server.url, namespace=namespace, ttl=60, broadcast=False)
    reader = Cache.from_url(redis_server.url, namespace=namespace, ttl=60, l1_ttl=0.5)
    try:
        assert reader.ready()
        silent.get_or_load("k", lambda: "old")
        assert reader.get_or_load("k", lambda: "old") == "old"
        began = time.monotonic()
        silent.invalidate("k")  # deletes in Redis, but no message reaches the reader
        assert reader.get_or_load("k", lambda: "new") == "old"  # the L1 copy, still trusted
        took = wait_until(lambda: reader.get_or_load("k", lambda: "new") == "new", timeout=5)
        assert time.monotonic() - began <= 0.5 + 0.3  # l1_ttl + slack
        assert took > 0
    finally:
        silent.close()
        reader.close()


def test_a_missed_invalidation_is_bounded_by_the_ttl(
    redis_server: RedisServer, namespace: str
) -> None:
    """If the process dies between commit and invalidation (no outbox), the old value
    lives at most its TTL (+ stale_ttl)."""
    cache = Cache.from_url(redis_server.url, namespace=namespace, ttl=0.4, jitter=0)
    try:
        source = {"k": "old"}
        assert cache.get_or_load("k", lambda: source["k"]) == "old"
        began = time.monotonic()
        source["k"] = "new"  # committed, never invalidated
        wait_until(lambda: cache.get_or_load("k", lambda: source["k"]) == "new", timeout=5)
        assert time.monotonic() - began <= 0.4 + 0.3
    finally:
        cache.close()


def test_clock_skew_cannot_extend_an_entry_past_its_redis_ttl(
    redis_server: RedisServer, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A reader whose clock is an hour behind judges entries fresh for longer, but Redis
    expires them on its own clock (PX is relative), so staleness is still bounded by TTL."""
    # Entries are judged in _reads (against its wall clock): skew that clock.
    import veneer._sync._reads as sync_reads

    writer = Cache.from_url(redis_server.url, namespace=namespace, ttl=0.4, jitter=0, l1_size=0)
    reader = Cache.from_url(redis_server.url, namespace=namespace, ttl=0.4, jitter=0, l1_size=0)
    try:
        writer.get_or_load("k", lambda: "old")
        monkeypatch.setattr(sync_reads, "_wall", lambda: time.time() - 3600)
        assert reader.get("k") == "old"
        began = time.monotonic()
        wait_until(lambda: reader.get_or_load("k", lambda: "new") == "new", timeout=5)
        assert time.monotonic() - began <= 0.4 + 0.3
    finally:
        writer.close()
        reader.close()


# ----------------------------------------------------------- outages (issue 18)

SHORT = {
    "ttl": 300,
    "max_stale": 1.0,
    "restart_warmup": 3.0,
    "redis_timeout": 0.1,
    "breaker_cooldown": 0.2,
}
SLACK = 0.3  # scheduling on a loaded 2-core machine


class Timeline:
    """Committed versions of one row with the time each commit returned, and every read."""

    def __init__(self) -> None:
        self.version = 1
        self.commits: list[tuple[int, float]] = [(1, -1e9)]
        self.reads: list[tuple[float, int]] = []

    def commit(self) -> None:
        self.version += 1
        self.commits.append((self.version, time.monotonic()))

    def staleness(self, began: float, version: int) -> float:
        """How long before ``began`` a newer version than ``version`` had been committed."""
        newer = [at for v, at in self.commits if v > version and at < began]
        return began - min(newer) if newer else 0.0

    def worst(self) -> tuple[float, float, int]:
        """(staleness, read time, version) of the stalest read."""
        return max((self.staleness(b, v), b, v) for b, v in self.reads)


def test_an_outage_longer_than_max_stale_then_an_empty_restart(own_redis: RedisServer) -> None:
    """The timeline of issue 18 with short options: a copy loaded from the source while
    Redis is down is served at most max_stale after a newer commit, through the outage
    and through the warm-up after Redis restarts empty."""
    row = Timeline()
    reader = Cache.from_url(own_redis.url, namespace="outage", **SHORT)
    writer = Cache.from_url(own_redis.url, namespace="outage", l1_size=0, **SHORT)

    def read_for(seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            began = time.monotonic()
            row.reads.append((began, reader.get_or_load("k", lambda: row.version)))
            time.sleep(0.01)

    try:
        assert reader.ready() and writer.ready()
        own_redis.kill()
        read_for(0.2)  # loads version 1 from the source, keeps it in L1
        row.commit()
        assert writer.invalidate("k") is False  # queued: Redis is down
        read_for(2.5)  # the outage outlasts max_stale
        own_redis.start()  # empty
        read_for(SHORT["restart_warmup"] + 0.5)
        assert writer.stats().invalidations_pending == 0
    finally:
        reader.close()
        writer.close()
    staleness, _, version = row.worst()
    assert staleness <= SHORT["max_stale"] + SLACK, (staleness, version, row.commits)
    assert row.reads[-1][1] == row.version


async def test_a_replayed_invalidation_reaches_a_process_that_resubscribes_after_it(
    own_redis: RedisServer,
) -> None:
    """Redis dies with an invalidation queued in the writer and restarts empty; the writer
    replays it while the reader is still cut off. Once the reader is subscribed again it
    has dropped its copy: its first read loads the new version instead of serving the
    old one during the warm-up."""
    proxy = SlowProxy(own_redis.port)
    options = {**SHORT, "max_stale": 30.0, "restart_warmup": 30.0}
    reader = AsyncCache.from_url(proxy.url, namespace="replay", **options)
    writer = Cache.from_url(own_redis.url, namespace="replay", l1_size=0, **options)
    row = {"k": 1}

    async def load() -> int:
        return row["k"]

    try:
        assert await reader.ready() and writer.ready()
        assert await reader.get_or_load("k", load) == 1
        proxy.block()  # the reader is cut off from here on
        await wait_for(lambda: not reader.stats().broadcast_connected, 10)
        own_redis.kill()
        row["k"] = 2
        assert writer.invalidate("k") is False  # queued
        own_redis.start()  # empty
        await wait_for(lambda: writer.stats().invalidations_pending == 0, 10)  # replayed
        proxy.unblock()
        assert await reader.ready(10)
        assert await reader.get_or_load("k", load) == 2
        assert reader.stats().invalidations_missed == 1
    finally:
        await reader.close()
        writer.close()
        proxy.close()


async def wait_for(condition: Any, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


def test_a_stalled_subscriber_stops_l1_within_its_health_timeout(
    redis_server: RedisServer, namespace: str
) -> None:
    """A process whose subscriber cannot run (a pause, a starved thread) with an
    invalidation unread stops serving its L1 copy as fresh within max(1 s, 4 x
    redis_timeout) of the last pong, on its own clock: not after l1_ttl."""
    writer = Cache.from_url(redis_server.url, namespace=namespace, ttl=60, l1_size=0)
    reader = Cache.from_url(redis_server.url, namespace=namespace, ttl=60, l1_ttl=30)
    row = {"k": "old"}
    release = threading.Event()
    try:
        assert reader.ready()
        assert reader.get_or_load("k", lambda: row["k"]) == "old"
        subscriber = reader._subscriber
        assert subscriber is not None
        on_message = subscriber._on_message

        def stalled(data: bytes) -> None:
            release.wait(10)  # the subscriber thread is stuck with the message unread
            on_message(data)

        subscriber._on_message = stalled  # type: ignore[method-assign]
        row["k"] = "new"
        committed = time.monotonic()
        assert writer.invalidate("k")
        took = wait_until(lambda: reader.get_or_load("k", lambda: row["k"]) == "new", 5)
        assert time.monotonic() - committed <= 1.0 + 0.25 + SLACK, took  # h + one tick
    finally:
        release.set()
        writer.close()
        reader.close()
