"""The worst-case staleness of each failure, as docs/consistency.md states it."""

from __future__ import annotations

import time
from typing import Any

import pytest

from servers import RedisServer
from veneer import Cache


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
    import veneer._sync._cache as sync_cache

    writer = Cache.from_url(redis_server.url, namespace=namespace, ttl=0.4, jitter=0, l1_size=0)
    reader = Cache.from_url(redis_server.url, namespace=namespace, ttl=0.4, jitter=0, l1_size=0)
    try:
        writer.get_or_load("k", lambda: "old")
        monkeypatch.setattr(sync_cache, "_wall", lambda: time.time() - 3600)
        assert reader.get("k") == "old"
        began = time.monotonic()
        wait_until(lambda: reader.get_or_load("k", lambda: "new") == "new", timeout=5)
        assert time.monotonic() - began <= 0.4 + 0.3
    finally:
        writer.close()
        reader.close()
