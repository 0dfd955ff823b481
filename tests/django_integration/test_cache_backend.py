"""VeneerCache beyond Django's own suite (tests/django_suite runs that): the async API,
value semantics with a shared L1, the safe codec, clear() without FLUSHDB, TTL
ceilings, a cluster, and what a dead Redis does to each call."""

from __future__ import annotations

import dataclasses
import datetime
import decimal
import pickle
import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest
import redis
from django.core.cache import caches
from django.http import HttpResponse
from django.utils.safestring import SafeString, mark_safe

from servers import RedisServer
from veneer import UnencodableValue
from veneer._codec import HEADER_SIZE
from veneer.integrations.django import UncacheableValue

MISSING: Any = object()


class Point:
    """A plain class: only the pickle codec can store it."""

    def __init__(self, x: int) -> None:
        self.x = x

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Point) and other.x == self.x

    def __hash__(self) -> int:
        return hash(self.x)


@dataclasses.dataclass
class Row:
    """msgspec would write it as a map and read back a dict: refused instead."""

    x: int


def test_safe_codec_round_trips_what_django_projects_cache(django_cache: Any) -> None:
    """Tuples, sets, Decimal, UUID, dates and times, SafeString and bytes come back as
    they went, nested too (msgpack extension types, no pickle)."""
    value = {
        "tuple": (1, "a", (2, 3)),
        "set": {1, 2},
        "frozen": frozenset({"x"}),
        "price": decimal.Decimal("19.90"),
        "id": uuid.UUID("12345678-1234-5678-1234-567812345678"),
        "day": datetime.date(2024, 2, 29),
        "naive": datetime.datetime(2024, 2, 29, 12, 30, 1, 5),
        "aware": datetime.datetime(2024, 2, 29, 12, 30, tzinfo=datetime.UTC),
        "at": datetime.time(23, 59, 58),
        "for": datetime.timedelta(days=2, seconds=3, microseconds=4),
        "html": mark_safe("<b>bold</b>"),
        "raw": b"\x00\xff",
        "list": [1.5, None, True, "s"],
    }
    django_cache.set("v", value)
    back = django_cache.get("v")
    assert back == value
    for name, sent in value.items():
        assert type(back[name]) is type(sent), name
    assert isinstance(back["html"], SafeString)
    django_cache.set("t", (1, 2))
    assert django_cache.get("t") == (1, 2)


def test_cached_responses_are_fresh_objects_with_their_cookies(django_cache: Any) -> None:
    """An HttpResponse (cache_page) is stored without pickle, and every read builds a new
    one: a cookie set on one copy never reaches the next reader."""
    response = HttpResponse(b"<p>hi</p>", status=203, content_type="text/html; charset=utf-8")
    response["X-Thing"] = "1"
    response.set_cookie("theme", "dark", max_age=60, httponly=True)
    django_cache.set("page", response)
    first = django_cache.get("page")
    assert (first.status_code, first.content, first["X-Thing"]) == (203, b"<p>hi</p>", "1")
    assert first.cookies == response.cookies
    first.set_cookie("sessionid", "someone-elses")
    assert "sessionid" not in django_cache.get("page").cookies


def test_reads_are_copies_even_from_l1(django_cache: Any) -> None:
    """Mutating a value read from the cache does not change what the next read gets, also
    when both reads are L1 hits (Django's backends return copies; so does this one)."""
    assert django_cache.veneer.ready()
    django_cache.set("cart", {"items": [1]})
    first = django_cache.get("cart")
    first["items"].append(2)
    assert django_cache.get("cart") == {"items": [1]}
    assert django_cache.veneer.stats().l1_hits >= 1
    made = django_cache.get_or_set("fresh", lambda: {"n": []}, 60)
    made["n"].append(1)
    assert django_cache.get("fresh") == {"n": []}


def test_what_the_safe_codec_cannot_store_is_refused_clearly(django_cache: Any) -> None:
    """Functions, classes and objects are refused before anything is written, with an error
    that is both veneer's UnencodableValue and pickle's PicklingError."""
    django_cache.set("k", "old")
    for value in (len, Point, Point(1), Row(1), {"nested": Row(2)}):
        with pytest.raises(UncacheableValue) as caught:
            django_cache.set("k", value)
        assert isinstance(caught.value, UnencodableValue)
        assert isinstance(caught.value, pickle.PicklingError)
        assert "codec': 'pickle'" in str(caught.value)
    assert django_cache.get("k") == "old"


def test_pickle_is_an_explicit_opt_in(
    redis_server: RedisServer, use_caches: Callable[..., None]
) -> None:
    """With codec='pickle' objects round-trip; scalars stay msgpack, so incr works."""
    use_caches(redis_server.url, codec="pickle")
    cache = caches["default"]
    cache.set("p", Point(3))
    assert cache.get("p") == Point(3)
    cache.set("n", 1)
    assert cache.incr("n") == 2


def test_bytes_that_do_not_decode_are_a_miss(django_cache: Any, redis_server: RedisServer) -> None:
    """A value overwritten in Redis by something else (here a pickle payload, which the safe
    codec never runs) reads as a miss, never as an exception or an unpickled object."""
    django_cache.set("k", {"a": 1})
    ns = django_cache.veneer.options.namespace
    client = redis_server.client()
    try:
        key = "{" + ns + ":" + django_cache.make_key("k") + "}"
        raw = client.get(key)
        assert raw is not None
        evil = pickle.dumps(Point(1))
        client.set(key, raw[:HEADER_SIZE] + evil)  # the header kept, the payload replaced
    finally:
        client.close()
    assert django_cache.get("k", "default") == "default"
    assert django_cache.has_key("k") is False


def test_clear_bumps_the_namespace_and_never_flushes(
    django_cache: Any, redis_server: RedisServer, namespace: str
) -> None:
    """clear() empties every alias of the namespace in one command; other keys in the same
    Redis database stay, and no FLUSHDB or FLUSHALL is ever sent."""
    client = redis_server.client()
    try:
        client.set(f"not-ours:{namespace}", "stays")
        django_cache.set("a", 1)
        django_cache.set("b", 2, version=2)
        client.config_resetstat()
        django_cache.clear()
        assert django_cache.get("a") is None
        assert django_cache.get("b", version=2) is None
        assert django_cache.add("a", 3) is True
        assert client.get(f"not-ours:{namespace}") == b"stays"
        stats = client.info("commandstats")
        assert not {"cmdstat_flushdb", "cmdstat_flushall"} & set(stats)
    finally:
        client.close()


def test_timeout_none_means_max_ttl_and_nothing_lives_longer(
    redis_server: RedisServer, use_caches: Callable[..., None]
) -> None:
    """timeout=None is written with max_ttl; a longer timeout is cut to it; 0 deletes."""
    use_caches(redis_server.url, max_ttl=120)
    cache = caches["default"]
    client = redis_server.client()
    ns = cache.veneer.options.namespace

    def pttl(key: str) -> int:
        return int(client.pttl("{" + ns + ":" + cache.make_key(key) + "}"))

    try:
        cache.set("forever", 1, None)
        cache.set("long", 1, 10**9)
        cache.set("short", 1, 30)
        assert 115_000 < pttl("forever") <= 120_000
        assert 115_000 < pttl("long") <= 120_000
        assert 25_000 < pttl("short") <= 30_000
        assert cache.get_backend_timeout(None) == 120
        cache.set("short", 1, 0)
        assert cache.get("short") is None
    finally:
        client.close()


async def test_async_api_matches_the_sync_one(django_cache: Any) -> None:
    """Every a* method does what its sync twin does, and sync and async code of one
    process read each other's writes at once (one L1)."""
    c = django_cache
    await c.aset("k", {"v": 1})
    assert c.get("k") == {"v": 1}
    assert await c.aget("k") == {"v": 1}
    assert await c.aget("nope", "d") == "d"
    assert await c.ahas_key("k") is True
    assert await c.aadd("k", 2) is False
    assert await c.aadd("n", 10) is True
    assert await c.aincr("n", 5) == 15
    assert await c.adecr("n") == 14
    with pytest.raises(ValueError):
        await c.aincr("missing")
    assert await c.aset_many({"x": 1, "y": (2,)}) == []
    assert await c.aget_many(["x", "y", "z"]) == {"x": 1, "y": (2,)}
    await c.adelete_many(["x"])
    assert await c.aget_many(["x", "y"]) == {"y": (2,)}
    assert await c.atouch("y", 60) is True
    assert await c.adelete("y") is True
    assert await c.adelete("y") is False
    assert await c.aget_or_set("made", lambda: [1], 60) == [1]
    assert await c.aget_or_set("made", lambda: [2], 60) == [1]
    assert await c.aincr_version("made") == 2
    assert await c.aget("made", version=2) == [1]
    c.set("sync", "s")
    assert await c.aget("sync") == "s"
    await c.aclear()
    assert await c.aget("k") is None
    await c.aclose()


def test_conditional_writes_on_a_cluster(
    redis_cluster: Any, use_caches: Callable[..., None]
) -> None:
    """add, incr, touch and get_many work on a 3-shard cluster (one slot per key)."""
    use_caches(redis_cluster.url)
    cache = caches["default"]
    assert cache.add("lock", 1, 30) is True
    assert cache.add("lock", 2, 30) is False
    cache.set_many({f"k{i}": i for i in range(20)})
    assert cache.get_many([f"k{i}" for i in range(20)]) == {f"k{i}": i for i in range(20)}
    assert cache.incr("k3", 10) == 13
    assert cache.touch("k4", 60) is True
    cache.clear()
    assert cache.get_many(["k1", "k2"]) == {}


def test_redis_down_is_a_miss_never_an_error(
    namespace: str, use_caches: Callable[..., None]
) -> None:
    """With Redis killed no call raises a Redis error: reads miss, writes are skipped, add
    is False, incr is Django's ValueError; once the breaker is open no call waits."""
    server = RedisServer()
    try:
        use_caches(server.url, breaker_cooldown=30)
        cache = caches["default"]
        cache.set("k", 1)
        server.kill()
        assert cache.get("k", "d") in (1, "d")  # L1 may still hold it (max_stale)
        cache.set("j", 2)
        assert cache.add("a", 1) is False
        with pytest.raises(ValueError):
            cache.incr("k")
        assert cache.get_or_set("computed", lambda: 5, 60) == 5
        cache.delete("k")
        cache.clear()
        slowest = 0.0
        for i in range(50):
            started = time.perf_counter()
            cache.get(f"x{i}")
            cache.set(f"x{i}", i)
            slowest = max(slowest, time.perf_counter() - started)
        # Open, or half-open while a probe is out (a reply the invalidation channel heard
        # just before the kill makes the first probe due at once; it is refused).
        assert cache.veneer.stats().breaker_state in ("open", "half-open")
        assert slowest < 0.1  # no call waits out a socket timeout once the breaker is open
    finally:
        server.stop()


def test_a_value_too_large_is_not_stored_and_not_raised(
    redis_server: RedisServer, use_caches: Callable[..., None]
) -> None:
    """As Django's memcached backend: set drops the key instead of raising, set_many names
    the keys it could not store."""
    use_caches(redis_server.url, max_value_bytes=1000)
    cache = caches["default"]
    cache.set("big", "small")
    cache.set("big", "x" * 5000)
    assert cache.get("big") is None
    assert cache.set_many({"a": 1, "b": "y" * 5000}) == ["b"]
    assert cache.add("c", "z" * 5000) is False


def test_control_django_rediscache_raises_when_redis_is_down(
    namespace: str, use_caches: Callable[..., None]
) -> None:
    """The control: Django's own RedisCache raises redis errors for the same calls."""
    server = RedisServer()
    try:
        use_caches(server.url)
        server.kill()
        with pytest.raises(redis.RedisError):
            caches["control"].get("k")
    finally:
        server.stop()


def test_copy_on_read_false_shares_values_but_never_responses(
    redis_server: RedisServer, use_caches: Callable[..., None]
) -> None:
    """With copy_on_read=False an L1 hit returns the object of the first read (no decode),
    while a cached HttpResponse is still a new object for each reader."""
    use_caches(redis_server.url, copy_on_read=False)
    cache = caches["default"]
    assert cache.veneer.ready()  # L1 fills once invalidations can be heard
    cache.set("row", {"a": [1]})
    first = cache.get("row")
    assert cache.get("row") is first
    cache.set("page", HttpResponse(b"x"))
    assert cache.get("page") is not cache.get("page")
