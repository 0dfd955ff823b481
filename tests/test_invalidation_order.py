"""Invalidations under partial refusal, and fills racing them into L1 (issue 20, item 6)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from servers import RedisServer
from veneer import Cache
from veneer._codec import MsgpackCodec


def wait_until(condition: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


def test_a_refused_tag_invalidation_does_not_hold_back_key_invalidations(
    own_redis: RedisServer,
) -> None:
    """Out of memory with noeviction: Redis refuses the tag's stamp write but takes the
    key's DEL. The key invalidation is applied at once (not queued behind the tag), another
    process stops serving the old value, and the tag is applied once memory is back."""
    raw = own_redis.client()
    writer = Cache.from_url(own_redis.url, namespace="oom", ttl=60, l1_size=0)
    reader = Cache.from_url(own_redis.url, namespace="oom", ttl=60)
    row = {"k": "old"}
    try:
        assert writer.ready() and reader.ready()
        assert reader.get_or_load("k", lambda: row["k"]) == "old"
        assert raw.exists("{oom:k}")
        raw.config_set("maxmemory", 1)  # every write that needs memory is refused
        assert raw.config_get("maxmemory-policy")["maxmemory-policy"] == "noeviction"
        assert writer.invalidate_tag("t") is False  # refused: queued
        row["k"] = "new"
        assert writer.invalidate("k") is True
        assert not raw.exists("{oom:k}")
        wait_until(lambda: reader.get_or_load("k", lambda: row["k"]) == "new", 2.0)
        assert writer.stats().invalidations_pending == 1  # the tag, still refused
        raw.config_set("maxmemory", 0)
        wait_until(lambda: writer.stats().invalidations_pending == 0, 5.0)
    finally:
        raw.config_set("maxmemory", 0)
        writer.close()
        reader.close()
        raw.close()


class InvalidatingCodec(MsgpackCodec):
    """msgpack, but the next encode first runs ``hook``: an invalidation that lands
    between the cache's check of the invalidation sequence and its L1 put."""

    def __init__(self) -> None:
        super().__init__()
        self.hook: Callable[[], Any] | None = None

    def encode(self, value: Any, /) -> bytes:
        hook, self.hook = self.hook, None
        if hook is not None:
            hook()
        return super().encode(value)


def test_an_outage_load_does_not_enter_l1_after_an_invalidation(own_redis: RedisServer) -> None:
    """Redis is down; a load from the source finishes, then an invalidation of its key
    lands before the copy is put in L1. The copy must not enter L1: the next read loads
    the new value instead of serving the old one for max_stale."""
    codec = InvalidatingCodec()
    cache = Cache.from_url(own_redis.url, namespace="gap", ttl=60, codec=codec)
    row = {"k": "old"}
    try:
        assert cache.ready()
        own_redis.kill()

        def commit() -> None:
            row["k"] = "new"
            cache.invalidate("k")  # queued: Redis is down

        codec.hook = commit
        assert cache.get_or_load("k", lambda: row["k"]) == "old"  # began before the commit
        assert cache.get_or_load("k", lambda: row["k"]) == "new"
    finally:
        cache.close()


class HookedLock:
    """A lock that runs ``hook`` once, just before it is next acquired."""

    def __init__(self, lock: Any) -> None:
        self._lock = lock
        self.hook: Callable[[], Any] | None = None

    def __enter__(self) -> None:
        hook, self.hook = self.hook, None
        if hook is not None:
            hook()
        self._lock.acquire()

    def __exit__(self, *exc: object) -> None:
        self._lock.release()


def test_a_value_read_from_redis_does_not_enter_l1_after_an_invalidation(
    redis_server: RedisServer, namespace: str
) -> None:
    """A reader got the old value from Redis; an invalidation lands right before the
    reader puts it in L1 (after its check of the invalidation sequence). The value is
    returned (the read began first) but not kept: the next read gets the new value."""
    writer = Cache.from_url(redis_server.url, namespace=namespace, ttl=60, l1_size=0)
    reader = Cache.from_url(redis_server.url, namespace=namespace, ttl=60)
    row = {"k": "old"}
    try:
        assert reader.ready()
        writer.get_or_load("k", lambda: row["k"])
        lock = HookedLock(reader._l1._lock)
        reader._l1._lock = lock  # type: ignore[assignment]

        def commit() -> None:
            row["k"] = "new"
            # Another thread of the reader's process invalidates (as the after-commit
            # hook would); running it here puts it exactly inside the window.
            done = threading.Thread(target=reader.invalidate, args=("k",))
            done.start()
            done.join()

        lock.hook = commit
        assert reader.get_or_load("k", lambda: row["k"]) == "old"
        assert lock.hook is None  # the hook ran
        assert reader.get_or_load("k", lambda: row["k"]) == "new"
    finally:
        writer.close()
        reader.close()
