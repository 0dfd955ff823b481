"""Behaviour of the cache front, run on both fronts (this file is the source of the sync copy)."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import msgspec
import pytest
import redis
import redis.asyncio.cluster
from redis.crc import key_slot

from servers import RedisServer, free_port
from topologies import LocalCluster
from veneer import (
    AsyncCache,
    ConfigurationError,
    UncacheableArguments,
    UnencodableValue,
    ValueTooLarge,
)
from veneer._txn import open_marks

from .helpers import eventually

Factory = Callable[..., Awaitable[AsyncCache]]


class Counter:
    """A loader that counts its calls."""

    def __init__(self, value: Any = "v") -> None:
        self.calls = 0
        self.value = value

    def __call__(self) -> Any:
        self.calls += 1
        return self.value


@pytest.fixture(params=["single", "cluster"])
def topology(request: pytest.FixtureRequest) -> str:
    """Every behaviour test runs on one Redis and on a 3-shard Redis Cluster."""
    return str(request.param)


@pytest.fixture
def redis_url(topology: str, request: pytest.FixtureRequest) -> str:
    if topology == "cluster":
        return str(request.getfixturevalue("redis_cluster").url)
    return str(request.getfixturevalue("redis_server").url)


@pytest.fixture
def raw(topology: str, request: pytest.FixtureRequest) -> Iterator[Any]:
    """A plain redis-py client to look at what veneer wrote."""
    if topology == "cluster":
        client: Any = request.getfixturevalue("redis_cluster").client()
    else:
        client = request.getfixturevalue("redis_server").client()
    yield client
    client.close()


@pytest.fixture
def probes(topology: str, request: pytest.FixtureRequest) -> Iterator[list[redis.Redis]]:
    """One client per primary, to read command statistics."""
    if topology == "cluster":
        servers = request.getfixturevalue("redis_cluster").primaries()
    else:
        servers = [request.getfixturevalue("redis_server")]
    clients = [server.client() for server in servers]
    yield clients
    for client in clients:
        client.close()


@pytest.fixture
async def make_cache(redis_url: str, namespace: str) -> AsyncIterator[Factory]:
    made: list[AsyncCache] = []

    async def make(**options: Any) -> AsyncCache:
        options.setdefault("ttl", 30)
        # These tests are about behaviour with Redis up: a 100-200 ms stall of a loaded
        # 2-core machine must not read as an outage (tests of outages set their own).
        options.setdefault("redis_timeout", 1.0)
        options.setdefault("connect_timeout", 1.0)
        url = options.pop("url", redis_url)
        ns = options.pop("namespace", namespace)
        cache = AsyncCache.from_url(url, namespace=ns, **options)
        made.append(cache)
        if options.get("broadcast", True) and url == redis_url:
            assert await cache.ready(5.0)
        return cache

    yield make
    for cache in made:
        await cache.close()


@pytest.fixture
async def cache(make_cache: Factory) -> AsyncCache:
    return await make_cache()


def value_key(namespace: str, key: str) -> str:
    return "{" + namespace + ":" + key + "}"


async def test_a_miss_loads_once_then_l1_serves_without_redis(cache: AsyncCache) -> None:
    """A miss calls the loader once; later reads are L1 hits that never reach Redis."""
    loader = Counter({"id": 1})
    assert await cache.get_or_load("user:1", loader) == {"id": 1}
    l2_reads = cache.stats().l2_hits + cache.stats().l2_misses
    for _ in range(5):
        assert await cache.get_or_load("user:1", loader) == {"id": 1}
    stats = cache.stats()
    assert loader.calls == 1
    assert stats.l1_hits == 5
    assert stats.l2_hits + stats.l2_misses == l2_reads


async def test_a_second_process_reads_l2_without_loading(make_cache: Factory) -> None:
    """A value filled by one cache is an L2 hit for another, with no source load."""
    first, second = await make_cache(), await make_cache()
    loader = Counter([1, 2, 3])
    await first.get_or_load("k", loader)
    assert await second.get_or_load("k", loader) == [1, 2, 3]
    assert loader.calls == 1
    assert second.stats().l2_hits == 1


async def test_l1_size_zero_turns_the_in_process_tier_off(make_cache: Factory) -> None:
    """With l1_size=0 every read is an L2 read."""
    cache = await make_cache(l1_size=0)
    loader = Counter()
    for _ in range(3):
        await cache.get_or_load("k", loader)
    stats = cache.stats()
    assert (loader.calls, stats.l1_hits, stats.l2_hits, stats.l1_entries) == (1, 0, 2, 0)


async def test_no_ttl_anywhere_cannot_write(make_cache: Factory) -> None:
    """Without a TTL on the call, the decorator or the cache, nothing is written."""
    cache = await make_cache(ttl=None)
    with pytest.raises(ConfigurationError, match="no TTL"):
        await cache.get_or_load("k", Counter())
    with pytest.raises(ConfigurationError, match="no TTL"):
        await cache.set("k", 1)
    with pytest.raises(ConfigurationError, match="no TTL"):
        cache.cached()
    assert await cache.get_or_load("k", Counter(), ttl=5) == "v"


async def test_every_key_written_has_a_jittered_ttl(
    make_cache: Factory, raw: redis.Redis, namespace: str
) -> None:
    """Values, negative entries and stamps all expire; TTLs spread within +-jitter."""
    cache = await make_cache(ttl=100, jitter=0.1)
    started = time.monotonic()
    for i in range(200):
        await cache.get_or_load(f"k{i}", Counter(i), tags=["t"])
    ttls = [raw.pttl(value_key(namespace, f"k{i}")) for i in range(200)]
    elapsed_ms = (time.monotonic() - started) * 1000
    assert all(90_000 - elapsed_ms <= t <= 110_000 for t in ttls), (min(ttls), max(ttls))
    assert max(ttls) - min(ttls) > 5_000  # spread, not one expiry instant
    await cache.invalidate_tag("t")
    await cache.invalidate_all()
    for key in raw.scan_iter(match=f"*{namespace}*", count=1000):
        assert raw.pttl(key) > 0, key


async def test_loader_returning_none_is_a_negative_entry(
    make_cache: Factory, raw: redis.Redis, namespace: str
) -> None:
    """``None`` is cached with negative_ttl, so a missing row is not reloaded on every read."""
    cache = await make_cache(ttl=300, negative_ttl=5, jitter=0)
    loader = Counter(None)
    assert await cache.get_or_load("missing", loader) is None
    assert await cache.get_or_load("missing", loader) is None
    other = await make_cache(ttl=300, negative_ttl=5, jitter=0)
    assert await other.get_or_load("missing", loader) is None
    assert loader.calls == 1
    assert 0 < raw.pttl(value_key(namespace, "missing")) <= 5_000


async def test_cache_none_false_does_not_cache_none(make_cache: Factory) -> None:
    """With cache_none=False a None result is returned and loaded again next time."""
    cache = await make_cache(cache_none=False)
    loader = Counter(None)
    await cache.get_or_load("k", loader)
    await cache.get_or_load("k", loader)
    assert loader.calls == 2


@pytest.mark.parametrize(
    "garbage",
    [b"", b"\x00", b"not an envelope at all", b"\x09" + b"\x00" * 40, b"\x01\x01" + b"\xff" * 30],
)
async def test_a_corrupt_entry_is_a_counted_miss_and_gets_overwritten(
    make_cache: Factory, raw: redis.Redis, namespace: str, garbage: bytes
) -> None:
    """Unreadable bytes in Redis never raise: the read loads, counts it, and refills."""
    cache = await make_cache(l1_size=0)
    raw.set(value_key(namespace, "k"), garbage, ex=60)
    assert await cache.get("k") is None
    assert await cache.get_or_load("k", Counter("fresh")) == "fresh"
    assert cache.stats().corrupt_entries == 2
    assert await cache.get("k") == "fresh"


async def test_typed_decoding(make_cache: Factory) -> None:
    """``type=`` decodes straight into a typed object (msgspec)."""

    class User(msgspec.Struct):
        id: int
        name: str

    writer, reader = await make_cache(), await make_cache(l1_size=0)
    await writer.get_or_load("u", lambda: User(1, "ada"))
    assert await reader.get("u", type=User) == User(1, "ada")


async def test_json_codec_and_pickle_opt_in(
    make_cache: Factory, raw: redis.Redis, namespace: str
) -> None:
    """JSON is readable in Redis; pickle works only when asked; codecs do not mix."""
    json_cache = await make_cache(codec="json", namespace=namespace + "j")
    await json_cache.get_or_load("k", lambda: {"a": [1, 2]})
    assert b'{"a":[1,2]}' in raw.get(value_key(namespace + "j", "k"))
    pickled = await make_cache(codec="pickle", namespace=namespace + "p", l1_size=0)
    await pickled.get_or_load("k", lambda: {1, 2})  # a set: msgpack would refuse it
    assert await pickled.get("k") == {1, 2}
    safe = await make_cache(namespace=namespace + "p", l1_size=0)
    assert await safe.get("k", default="miss") == "miss"
    assert safe.stats().corrupt_entries == 1


async def test_an_oversize_value_is_returned_but_not_stored(
    make_cache: Factory, raw: redis.Redis, namespace: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Above max_value_bytes the caller still gets the value; stats and a warning say so."""
    cache = await make_cache(max_value_bytes=1000, compression="none")
    big = "x" * 5000
    with caplog.at_level(logging.WARNING, logger="veneer"):
        assert await cache.get_or_load("big", lambda: big) == big
    assert raw.exists(value_key(namespace, "big")) == 0
    assert cache.stats().not_cached_too_large == 1
    assert "max_value_bytes=1000" in caplog.text
    with pytest.raises(ValueTooLarge) as info:
        await cache.set("big", big)
    assert info.value.limit == 1000
    assert info.value.size > 5000


async def test_set_of_an_unencodable_value_raises(cache: AsyncCache) -> None:
    """``set`` refuses what the codec cannot encode; a loader's value is just not cached."""
    with pytest.raises(UnencodableValue, match="msgpack"):
        await cache.set("k", object())
    assert await cache.get_or_load("k2", object) is not None
    assert cache.stats().not_cached_unencodable == 1


async def test_large_values_are_compressed(
    make_cache: Factory, raw: redis.Redis, namespace: str
) -> None:
    """Above compress_above the payload is stored compressed and read back intact."""
    cache = await make_cache(compress_above=1024, l1_size=0)
    rows = [{"id": i, "name": f"row {i}", "text": "lorem ipsum " * 5} for i in range(200)]
    await cache.get_or_load("rows", lambda: rows)
    stored = raw.strlen(value_key(namespace, "rows"))
    assert stored < len(msgspec.msgpack.encode(rows)) / 3
    assert await cache.get("rows") == rows


def commandstats(clients: list[redis.Redis]) -> dict[str, int]:
    """Calls per command, summed over every primary."""
    total: dict[str, int] = {}
    for client in clients:
        for name, v in client.info("commandstats").items():
            total[name] = total.get(name, 0) + int(v["calls"])
    return total


async def test_get_many_is_one_round_trip(
    make_cache: Factory, probes: list[redis.Redis], topology: str
) -> None:
    """get_many reads every missing key with one MGET (one per slot on a cluster, all of a
    shard's in one round trip), never a GET per key."""
    writer, reader = await make_cache(), await make_cache(stamp_ttl=60)
    await writer.get_or_load_many([f"k{i}" for i in range(50)], lambda ks: {k: k for k in ks})
    await reader.get_or_load("warm", Counter())  # the namespace stamp, fetched once per stamp_ttl
    before = commandstats(probes)
    found = await reader.get_many([f"k{i}" for i in range(60)])
    after = commandstats(probes)
    assert found == {f"k{i}": f"k{i}" for i in range(50)}
    slots = {key_slot(value_key(reader.options.namespace, f"k{i}").encode()) for i in range(60)}
    expected = 1 if topology == "single" else len(slots)
    assert after.get("cmdstat_mget", 0) - before.get("cmdstat_mget", 0) == expected
    assert after.get("cmdstat_get", 0) == before.get("cmdstat_get", 0)


async def test_get_or_load_many_loads_only_the_misses(make_cache: Factory) -> None:
    """The batch loader receives only missing keys; results keep the request order."""
    cache = await make_cache()
    await cache.set("b", "B")
    asked: list[list[str]] = []

    def load(keys: list[str]) -> dict[str, str]:
        asked.append(keys)
        return {k: k.upper() for k in keys if k != "gone"}

    result = await cache.get_or_load_many(["c", "b", "a", "gone", "a"], load)
    assert list(result.items()) == [("c", "C"), ("b", "B"), ("a", "A"), ("gone", None)]
    assert asked == [["c", "a", "gone"]]
    again = await cache.get_or_load_many(["a", "gone"], load)
    assert again == {"a": "A", "gone": None}
    assert len(asked) == 1


async def test_invalidate_reaches_redis_and_every_l1(make_cache: Factory) -> None:
    """After invalidate, no process serves the old value: Redis and each L1 drop it."""
    first, second = await make_cache(), await make_cache()
    await first.get_or_load("k", lambda: "old")
    await second.get_or_load("k", lambda: "old")
    assert "k" in second._l1_map
    await first.invalidate("k")
    took = await eventually(lambda: "k" not in second._l1_map, timeout=5.0)
    assert took < 5.0
    assert await second.get_or_load("k", lambda: "new") == "new"
    assert await first.get_or_load("k", lambda: "newer") == "new"


async def test_invalidate_tag_is_one_command_and_reaches_every_l1(
    make_cache: Factory, probes: list[redis.Redis], topology: str
) -> None:
    """A tag invalidation is one SET (plus its broadcast, counted for reconnecting
    subscribers; sharded on a cluster), however many entries carry it."""
    first, second = await make_cache(), await make_cache()
    for i in range(100):
        await first.get_or_load(f"p{i}", Counter(i), tags=["catalog"])
    await first.get_or_load("other", Counter("x"))
    for i in range(100):
        await second.get_or_load(f"p{i}", Counter(-1), tags=["catalog"])
    before = commandstats(probes)
    await first.invalidate_tag("catalog")
    after = commandstats(probes)
    sent = {k: after[k] - before.get(k, 0) for k in after if after[k] != before.get(k, 0)}
    for internal in ("cmdstat_info", "cmdstat_ping", "cmdstat_replconf"):
        sent.pop(internal, None)  # our probes, and replicas talking to their primaries
    # With a replica, WAIT confirms the new stamp reached it (durable across a failover).
    assert sent.pop("cmdstat_wait", 0) <= 1
    publish = "cmdstat_spublish" if topology == "cluster" else "cmdstat_publish"
    assert sent == {
        "cmdstat_set": 1,
        publish: 1,
        "cmdstat_incrby": 1,
        "cmdstat_expire": 1,
    }
    await eventually(lambda: not any(f"p{i}" in second._l1_map for i in range(100)))
    loader = Counter("reloaded")
    assert await second.get_or_load("p7", loader, tags=["catalog"]) == "reloaded"
    assert await first.get_or_load("other", Counter("y")) == "x"
    assert loader.calls == 1


async def test_a_tag_invalidation_reaches_a_reader_with_no_l1(make_cache: Factory) -> None:
    """An L2 entry loaded under an old tag version is a miss once the tag moves."""
    writer, reader = await make_cache(), await make_cache(l1_size=0)
    await writer.get_or_load("p", lambda: 1, tags=["t"])
    assert await reader.get("p") == 1
    await writer.invalidate_tag("t")
    await eventually(lambda: reader.stats().invalidations_received >= 1)
    assert await reader.get("p", default="miss") == "miss"
    assert reader.stats().stale_rejected == 1


async def test_invalidate_all_drops_the_namespace(make_cache: Factory) -> None:
    """invalidate_all makes every entry of the namespace a miss, in one command."""
    first, second = await make_cache(), await make_cache(l1_size=0)
    for i in range(10):
        await first.get_or_load(f"k{i}", Counter(i))
    await first.invalidate_all()
    await eventually(lambda: second.stats().invalidations_received >= 1)
    assert await second.get_many([f"k{i}" for i in range(10)]) == {}
    assert await first.get("k1", default="miss") == "miss"


async def test_redis_down_costs_latency_not_errors(make_cache: Factory) -> None:
    """With no Redis at all every call still answers; a key is loaded once per outage and
    then served from the in-process copy (within max_stale); errors are counted."""
    cache = await make_cache(url=f"redis://127.0.0.1:{free_port()}/0", broadcast=False)
    loader = Counter("v")
    assert await cache.get_or_load("k", loader) == "v"
    assert await cache.get_or_load("k", loader) == "v"
    assert await cache.get("k", default="d") == "v"
    assert await cache.get_many(["a", "b"]) == {}
    assert await cache.get_or_load_many(["a"], lambda ks: {"a": 1}) == {"a": 1}
    await cache.set("k", "w")
    await cache.invalidate("k")
    stats = cache.stats()
    assert loader.calls == 1
    assert stats.stale_fallbacks >= 2
    assert stats.redis_errors + stats.breaker_rejections >= 5  # failed, or not even tried
    assert stats.invalidations_pending == 1  # the set and the invalidate merge into one op


async def test_redis_down_without_max_stale_reads_the_source_every_time(
    make_cache: Factory,
) -> None:
    """max_stale=0: no in-process copy is served past freshness; every read loads."""
    cache = await make_cache(url=f"redis://127.0.0.1:{free_port()}/0", broadcast=False, max_stale=0)
    loader = Counter("v")
    assert await cache.get_or_load("k", loader) == "v"
    assert await cache.get_or_load("k", loader) == "v"
    assert await cache.get("k", default="d") == "d"
    assert loader.calls == 2


async def test_queued_invalidations_apply_when_redis_returns(own_redis: RedisServer) -> None:
    """An invalidation issued while Redis is down is applied once it is back."""
    cache = AsyncCache.from_url(own_redis.url, namespace="q", ttl=60, broadcast=False)
    try:
        await cache.get_or_load("k", lambda: "old")
        own_redis.pause()
        await cache.invalidate("k")
        assert cache.stats().invalidations_pending == 1
        own_redis.resume()
        await cache.invalidate("other")  # any later invalidation drains the queue first
        assert cache.stats().invalidations_pending == 0
        assert await cache.get_or_load("k", lambda: "new") == "new"
    finally:
        own_redis.resume()
        await cache.close()


async def test_cached_decorator_keys_and_invalidation(cache: AsyncCache) -> None:
    """Equal calls share a key whatever their form; the wrapper invalidates its own entry."""
    calls: list[int] = []

    @cache.cached(ttl=30)
    async def double(x: int, scale: int = 2) -> int:
        calls.append(x)
        return x * scale

    assert await double(3) == 6
    assert await double(x=3) == 6
    assert await double(3, scale=2) == 6
    assert calls == [3]
    assert double.key_for(3) == f"{__name__}.{double.__qualname__}:3,2"
    await double.invalidate(3)
    assert await double(3) == 6
    assert calls == [3, 3]


async def test_cached_decorator_with_template_and_tag_template(cache: AsyncCache) -> None:
    """An explicit key template gives a key the app can invalidate by name."""

    @cache.cached(ttl=30, key="user:{uid}", tags=["user:{uid}", "users"])
    async def load_user(uid: int) -> dict[str, int]:
        return {"uid": uid}

    assert await load_user(7) == {"uid": 7}
    assert load_user.key_for(7) == "user:7"
    assert "user:7" in cache._l1_map
    await cache.invalidate_tag("user:7")
    assert "user:7" not in cache._l1_map


async def test_cached_refuses_arguments_without_a_stable_key(cache: AsyncCache) -> None:
    """An argument whose repr differs between processes is refused with a clear error."""

    @cache.cached(ttl=30)
    async def f(x: object) -> int:
        return 1

    with pytest.raises(UncacheableArguments, match="key="):
        await f(object())
    assert await f({"b": 1, "a": [1, 2]}) == 1


async def test_bad_options_fail_at_construction(redis_url: str) -> None:
    """Bad options and URLs fail when the cache is built, saying what to change."""
    with pytest.raises(ConfigurationError, match="unknown option"):
        AsyncCache.from_url(redis_url, namespace="x", tll=5)
    with pytest.raises(ConfigurationError, match="namespace"):
        AsyncCache.from_url(redis_url, namespace="a{b}")
    with pytest.raises(ConfigurationError, match="jitter"):
        AsyncCache.from_url(redis_url, namespace="x", jitter=2)
    with pytest.raises(ConfigurationError, match="ttl"):
        AsyncCache.from_url(redis_url, namespace="x", ttl=-1)
    with pytest.raises(ConfigurationError, match="codec"):
        AsyncCache.from_url(redis_url, namespace="x", codec="yaml")
    with pytest.raises(ConfigurationError, match="scheme"):
        AsyncCache.from_url("http://localhost", namespace="x")
    with pytest.raises(ConfigurationError, match="port"):
        AsyncCache.from_url("redis://localhost:notaport/0", namespace="x")
    with pytest.raises(ConfigurationError) as info:
        AsyncCache.from_url("ftp://user:hunter2@host/0", namespace="x")
    assert "hunter2" not in str(info.value)


async def test_built_from_an_existing_client_leaves_it_alone(
    redis_server: RedisServer, namespace: str
) -> None:
    """A cache built from a client copies its settings and does not change or close it."""
    client = redis.asyncio.Redis(host="127.0.0.1", port=redis_server.port, socket_timeout=7)
    cache = AsyncCache(client, namespace=namespace, ttl=10)
    assert await cache.get_or_load("k", lambda: 1) == 1
    await cache.close()
    assert client.connection_pool.connection_kwargs["socket_timeout"] == 7
    assert await client.ping()
    await client.aclose()


async def test_unix_socket_url(tmp_path: Any) -> None:
    """``unix://`` URLs reach a server on a unix socket."""
    sock = tmp_path / "r.sock"
    server = RedisServer("--unixsocket", str(sock))
    try:
        async with AsyncCache.from_url(f"unix://{sock}", namespace="u", ttl=5) as cache:
            assert await cache.ready()
            assert await cache.get_or_load("k", lambda: 1) == 1
            assert await cache.get("k") == 1
    finally:
        server.stop()


async def test_stats_report_tiers_and_latency(cache: AsyncCache) -> None:
    """stats() reports hits per tier, loads and latency percentiles."""
    await cache.get_or_load("k", Counter())
    await cache.get_or_load("k", Counter())
    stats = cache.stats()
    assert (stats.source_loads, stats.l1_hits, stats.l2_misses) == (1, 1, 1)
    assert stats.broadcast_connected
    assert stats.l2_read_p99_ms > 0
    assert 0 < stats.l1_hit_ratio < 1
    assert stats.as_dict()["l1_entries"] == 1


async def test_keys_marked_by_an_open_transaction_bypass_the_cache(
    cache: AsyncCache, namespace: str
) -> None:
    """A key an open transaction will invalidate is read from the source, and not filled."""
    await cache.get_or_load("k", lambda: "cached")
    token = open_marks.set(frozenset({(namespace, "k", "k")}))
    try:
        assert await cache.get_or_load("k", lambda: "fresh") == "fresh"
        assert await cache.get("k", default="miss") == "miss"
        assert await cache.get_many(["k", "other"]) == {}
        loaded = await cache.get_or_load_many(["k", "j"], lambda ks: dict.fromkeys(ks, "fresh"))
        assert loaded == {"k": "fresh", "j": "fresh"}
    finally:
        open_marks.reset(token)
    assert await cache.get_or_load("k", lambda: "x") == "cached"
    assert await cache.get("j") == "fresh"


async def test_built_from_a_cluster_client_uses_it_and_leaves_it_open(
    redis_cluster: LocalCluster, namespace: str
) -> None:
    """A cache built from a RedisCluster client routes through it and does not close it."""
    client = redis.asyncio.cluster.RedisCluster(
        host="127.0.0.1", port=redis_cluster.servers[0].port
    )
    cache = AsyncCache(client, namespace=namespace, ttl=10)
    assert await cache.get_or_load("k", lambda: 1) == 1
    assert await cache.get_many(["k", "j"]) == {"k": 1}
    await cache.close()
    assert await client.ping()
    await client.aclose()
