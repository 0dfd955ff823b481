"""Redis that answers but refuses part of the protocol (issue 17, item 5): out of memory
with ``noeviction``, an ACL user without ``EVAL``/``EVALSHA``, one without ``PUBLISH``.

Each case runs on a private redis-server configured that way. The cache keeps doing
what still works, bounds the loads per key, never raises to the caller, reports the
refusal in ``check()`` and ``stats().degraded``, and warns once per interval.
"""

from __future__ import annotations

import asyncio
import logging
import random
import threading
import time
from collections import Counter
from collections.abc import Iterator

import pytest
import redis

from servers import RedisServer
from topologies import LocalCluster
from veneer import AsyncCache, Cache
from veneer.metrics._readings import read_cache

WARM = [f"warm{i}" for i in range(20)]  # in Redis before it refuses anything
NEW = [f"new{i}" for i in range(20)]  # first read while Redis refuses
THREADS = 8
ROUNDS = 5


@pytest.fixture
def server() -> Iterator[RedisServer]:
    server = RedisServer()
    yield server
    server.stop()


# Redis is up in every test here (it refuses, it does not stall): a loaded machine's
# 100-200 ms stall must not read as an outage and add a load.
UP = {"redis_timeout": 1.0, "connect_timeout": 1.0}


def acl_url(server: RedisServer, *denied: str) -> str:
    """A URL for a user allowed every command but ``denied``, on every key and channel
    (commands this server does not have, EVAL_RO before 7.0 say, are left out)."""
    admin = server.client()
    admin.acl_setuser(
        "app",
        enabled=True,
        passwords=["+secret"],
        keys=["*"],
        channels=["*"],
        commands=["+@all"],
    )
    for command in denied:
        try:
            admin.execute_command("ACL", "SETUSER", "app", f"-{command}")
        except redis.ResponseError:
            assert command in ("eval_ro", "evalsha_ro", "spublish"), command  # before 7.0
    admin.close()
    return f"redis://app:secret@127.0.0.1:{server.port}/0"


def warm(url: str, namespace: str) -> None:
    writer = Cache.from_url(url, namespace=namespace, ttl=300, **UP, l1_size=0)
    try:
        for key in WARM:
            assert writer.get_or_load(key, lambda key=key: f"v:{key}") == f"v:{key}"
    finally:
        writer.close()


def refusal_warnings(caplog: pytest.LogCaptureFixture, word: str) -> int:
    return sum(
        1
        for r in caplog.records
        if r.name == "veneer" and r.levelno == logging.WARNING and word in r.getMessage()
    )


def rejected_writes(raw: redis.Redis) -> int:
    """Commands Redis refused for memory (INFO commandstats ``rejected_calls``)."""
    stats = raw.info("commandstats")
    return sum(int(v.get("rejected_calls", 0)) for v in stats.values())


def read_everything_sync(cache: Cache, loads: Counter[str]) -> list[BaseException]:
    """THREADS threads read every key ROUNDS times in a shuffled order, released at once."""
    errors: list[BaseException] = []
    lock = threading.Lock()
    barrier = threading.Barrier(THREADS)

    def loader(key: str) -> str:
        with lock:
            loads[key] += 1
        time.sleep(0.005)  # long enough for the other threads to miss too
        return f"v:{key}"

    def run(seed: int) -> None:
        keys = (WARM + NEW) * ROUNDS
        random.Random(seed).shuffle(keys)
        try:
            barrier.wait(10)
            for key in keys:
                assert cache.get_or_load(key, lambda key=key: loader(key)) == f"v:{key}"
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(seed,)) for seed in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return errors


async def read_everything_async(cache: AsyncCache, loads: Counter[str]) -> None:
    async def loader(key: str) -> str:
        loads[key] += 1
        await asyncio.sleep(0.005)
        return f"v:{key}"

    async def run(seed: int) -> None:
        keys = (WARM + NEW) * ROUNDS
        random.Random(seed).shuffle(keys)
        for key in keys:
            got = await cache.get_or_load(key, lambda key=key: loader(key))
            assert got == f"v:{key}"

    await asyncio.wait_for(asyncio.gather(*(run(seed) for seed in range(THREADS))), 60)


# ------------------------------------------------------------------ out of memory


def test_out_of_memory_serves_what_redis_has_and_loads_each_new_key_once(
    server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    """Out of memory with noeviction: the values in Redis are still served (GET works),
    each new key is loaded once and kept in process, writes are tried about once a second
    (not once per miss), the breaker stays closed, check() and stats() say so, and the
    warning is logged once."""
    caplog.set_level(logging.WARNING, logger="veneer")
    raw = server.client()
    warm(server.url, "oom")
    raw.config_set("maxmemory", 1)
    assert raw.config_get("maxmemory-policy")["maxmemory-policy"] == "noeviction"
    cache = Cache.from_url(server.url, namespace="oom", ttl=300, **UP, l1_ttl=60)
    loads: Counter[str] = Counter()
    try:
        assert cache.ready()
        rejected_before = rejected_writes(raw)
        started = time.monotonic()
        errors = read_everything_sync(cache, loads)
        elapsed = time.monotonic() - started
        assert errors == []
        assert not any(loads[key] for key in WARM), loads  # served from Redis
        assert {key: loads[key] for key in NEW} == dict.fromkeys(NEW, 1)
        reasons = cache.check()
        assert len(reasons) == 1 and "refuses writes" in reasons[0], reasons
        stats = cache.stats()
        assert stats.l2_hits >= len(WARM)
        assert stats.breaker_state == "closed" and stats.breaker_opened == 0
        assert stats.redis_errors == 0 and stats.redis_refusals >= 1
        assert stats.degraded == ("writes",)
        # The callers already in flight when the first refusal came back (one per thread),
        # the stamp, check()'s probe, then about one a second; without the retry window
        # every miss would send its lease-get and its fill.
        rejected = rejected_writes(raw) - rejected_before
        assert rejected <= THREADS + 2 + 2 * elapsed, (rejected, elapsed)
        assert refusal_warnings(caplog, "refuses writes") == 1
        exported = {
            (f.name, tuple(labels.items())): v for f in read_cache(cache) for labels, v in f.samples
        }
        assert exported[("veneer_cache_degraded", (("reason", "writes"),))] == 1
        assert exported[("veneer_cache_degraded", (("reason", "scripts"),))] == 0
        assert cache.check() == reasons  # asked again: still refused, not warned again
        assert refusal_warnings(caplog, "refuses writes") == 1

        raw.config_set("maxmemory", 0)
        assert cache.check() == ()
        assert cache.stats().degraded == ()
        cache.invalidate("new0")
        assert cache.get_or_load("new0", lambda: "again") == "again"
        assert raw.exists("{oom:new0}")  # filled in Redis again
    finally:
        raw.config_set("maxmemory", 0)
        cache.close()
        raw.close()


def test_out_of_memory_batches_serve_what_redis_has_and_load_each_new_key_once(
    server: RedisServer,
) -> None:
    """get_or_load_many out of memory: the cached keys come from Redis, each new key is
    loaded by the first batch only (kept in L1), and get_many then has all of them."""
    raw = server.client()
    warm(server.url, "oombatch")
    raw.config_set("maxmemory", 1)
    cache = Cache.from_url(server.url, namespace="oombatch", ttl=300, **UP, l1_ttl=60)
    loads: Counter[str] = Counter()

    def load_many(keys: list[str]) -> dict[str, str]:
        loads.update(keys)
        return {key: f"v:{key}" for key in keys}

    try:
        assert cache.ready()
        for _ in range(ROUNDS):
            got = cache.get_or_load_many(WARM + NEW, load_many)
            assert got == {key: f"v:{key}" for key in WARM + NEW}
        assert dict(loads) == dict.fromkeys(NEW, 1)
        assert cache.stats().l2_hits >= len(WARM) and cache.stats().degraded == ("writes",)
        assert len(cache.get_many(WARM + NEW)) == len(WARM + NEW)
    finally:
        raw.config_set("maxmemory", 0)
        cache.close()
        raw.close()


async def test_out_of_memory_async(server: RedisServer, caplog: pytest.LogCaptureFixture) -> None:
    """The same on AsyncCache: cached values served, one load per new key, no error, the
    refusal in check() and stats(), one warning."""
    caplog.set_level(logging.WARNING, logger="veneer")
    raw = server.client()
    warm(server.url, "oom")
    raw.config_set("maxmemory", 1)
    cache = AsyncCache.from_url(server.url, namespace="oom", ttl=300, **UP, l1_ttl=60)
    loads: Counter[str] = Counter()
    try:
        assert await cache.ready()
        await read_everything_async(cache, loads)
        assert not any(loads[key] for key in WARM), loads
        assert {key: loads[key] for key in NEW} == dict.fromkeys(NEW, 1)
        reasons = await cache.check()
        assert len(reasons) == 1 and "refuses writes" in reasons[0], reasons
        stats = cache.stats()
        assert stats.l2_hits >= len(WARM)
        assert stats.breaker_opened == 0 and stats.redis_errors == 0
        assert stats.degraded == ("writes",)
        assert refusal_warnings(caplog, "refuses writes") == 1
        raw.config_set("maxmemory", 0)
        assert await cache.check() == ()
    finally:
        raw.config_set("maxmemory", 0)
        await cache.close()
        raw.close()


# ------------------------------------------------------- an ACL user without scripts


def read_everything_two_sync(caches: list[Cache], loads: Counter[str]) -> list[BaseException]:
    """THREADS threads spread over ``caches`` (two processes' worth), as above."""
    errors: list[BaseException] = []
    lock = threading.Lock()
    barrier = threading.Barrier(THREADS)

    def loader(key: str) -> str:
        with lock:
            loads[key] += 1
        time.sleep(0.005)
        return f"v:{key}"

    def run(seed: int) -> None:
        cache = caches[seed % len(caches)]
        keys = (WARM + NEW) * ROUNDS
        random.Random(seed).shuffle(keys)
        try:
            barrier.wait(10)
            for key in keys:
                assert cache.get_or_load(key, lambda key=key: loader(key)) == f"v:{key}"
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(seed,)) for seed in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return errors


async def read_everything_two_async(caches: list[AsyncCache], loads: Counter[str]) -> None:
    """THREADS tasks spread over ``caches`` (two processes' worth), as the sync helper."""

    async def loader(key: str) -> str:
        loads[key] += 1
        await asyncio.sleep(0.005)
        return f"v:{key}"

    async def run(seed: int) -> None:
        cache = caches[seed % len(caches)]
        keys = (WARM + NEW) * ROUNDS
        random.Random(seed).shuffle(keys)
        for key in keys:
            assert await cache.get_or_load(key, lambda key=key: loader(key)) == f"v:{key}"

    await asyncio.wait_for(asyncio.gather(*(run(seed) for seed in range(THREADS))), 60)


def test_without_scripts_leases_still_bound_loads_and_hits_are_served(
    server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    """An ACL user without EVAL/EVALSHA: entries in Redis are hits, and two caches (two
    processes' worth) with 4 threads each load every new key exactly once between them
    (leases by SET NX in the value's slot, fills by WATCH/MULTI/EXEC), with no error;
    check() and stats() name the refusal and each cache warns once."""
    caplog.set_level(logging.WARNING, logger="veneer")
    warm(server.url, "noeval")
    url = acl_url(server, "eval", "evalsha", "eval_ro", "evalsha_ro")
    caches = [Cache.from_url(url, namespace="noeval", ttl=300, **UP, l1_ttl=60) for _ in range(2)]
    raw = server.client()
    loads: Counter[str] = Counter()
    try:
        assert all(cache.ready() for cache in caches)
        reasons = [cache.check() for cache in caches]  # at start-up
        errors = read_everything_two_sync(caches, loads)
        assert errors == []
        assert not any(loads[key] for key in WARM), loads
        assert {key: loads[key] for key in NEW} == dict.fromkeys(NEW, 1)
        for cache in caches:
            stats = cache.stats()
            assert stats.l2_hits >= len(WARM), stats
            assert stats.redis_errors == 0 and stats.breaker_opened == 0
            assert stats.degraded == ("scripts",)
        assert all(raw.exists(f"{{noeval:{key}}}") for key in NEW)  # filled in Redis
        for found in reasons:
            assert len(found) == 1 and "refuses scripts" in found[0], found
        assert refusal_warnings(caplog, "refuses scripts") == len(caches)
    finally:
        for cache in caches:
            cache.close()
        raw.close()


def test_without_scripts_an_invalidation_still_refuses_the_fill_it_races(
    server: RedisServer,
) -> None:
    """The stale-set race without Lua: a fill whose lease an invalidation revoked (while
    its load read the old row) does not land, so the next read loads the new row."""
    url = acl_url(server, "eval", "evalsha", "eval_ro", "evalsha_ro")
    reader = Cache.from_url(url, namespace="race", ttl=300, **UP, l1_size=0)
    writer = Cache.from_url(url, namespace="race", ttl=300, **UP, l1_size=0)
    row = {"v": "old"}
    loading, invalidated = threading.Event(), threading.Event()
    got: list[str] = []

    def slow_old() -> str:
        value = row["v"]
        loading.set()
        assert invalidated.wait(10)
        return value

    try:
        assert reader.check() and writer.check()  # both learn that scripts are refused
        t = threading.Thread(target=lambda: got.append(reader.get_or_load("k", slow_old)))
        t.start()
        assert loading.wait(10)
        row["v"] = "new"
        writer.invalidate("k")
        invalidated.set()
        t.join(10)
        assert got == ["old"]  # its caller gets what it loaded
        assert reader.stats().fills_refused == 1
        assert reader.get_or_load("k", lambda: row["v"]) == "new"
        assert writer.get_or_load("k", lambda: "never loaded") == "new"
    finally:
        reader.close()
        writer.close()


@pytest.fixture(scope="module")
def noeval_cluster() -> Iterator[tuple[LocalCluster, str]]:
    """A private cluster (3 primaries) whose user ``app`` may not run scripts."""
    cluster = LocalCluster(primaries=3, replicas=0)
    try:
        for node in cluster.servers:
            acl_url(node, "eval", "evalsha", "eval_ro", "evalsha_ro")
        nodes = ",".join(f"127.0.0.1:{s.port}" for s in cluster.servers[:2])
        yield cluster, f"redis+cluster://app:secret@{nodes}"
    finally:
        cluster.stop()


def test_without_scripts_on_a_cluster(noeval_cluster: tuple[LocalCluster, str]) -> None:
    """On a cluster (per-node connections, redis-py's cluster transaction for the fills):
    two caches, 8 threads, every new key loaded exactly once, no error."""
    _, url = noeval_cluster
    caches = [Cache.from_url(url, namespace="cl", ttl=300, **UP, l1_ttl=60) for _ in range(2)]
    loads: Counter[str] = Counter()
    try:
        for cache in caches:
            assert cache.ready()
            assert len(cache.check()) == 1
        errors = read_everything_two_sync(caches, loads)
        assert errors == []
        assert dict(loads) == dict.fromkeys(WARM + NEW, 1)  # nothing warm here: all new
        for cache in caches:
            stats = cache.stats()
            assert stats.redis_errors == 0 and stats.degraded == ("scripts",)
        assert sum(cache.stats().l2_hits for cache in caches) > 0
    finally:
        for cache in caches:
            cache.close()


async def test_without_scripts_on_a_cluster_async(
    noeval_cluster: tuple[LocalCluster, str],
) -> None:
    """The same on AsyncCache."""
    _, url = noeval_cluster
    caches = [AsyncCache.from_url(url, namespace="acl", ttl=300, **UP, l1_ttl=60) for _ in range(2)]
    loads: Counter[str] = Counter()

    try:
        for cache in caches:
            assert await cache.ready()
            assert len(await cache.check()) == 1
        await read_everything_two_async(caches, loads)
        assert dict(loads) == dict.fromkeys(WARM + NEW, 1)
        for cache in caches:
            stats = cache.stats()
            assert stats.redis_errors == 0 and stats.degraded == ("scripts",)
    finally:
        for cache in caches:
            await cache.close()


async def test_without_scripts_async(server: RedisServer, caplog: pytest.LogCaptureFixture) -> None:
    """The same on AsyncCache: two caches, cached keys served, each new key loaded once."""
    caplog.set_level(logging.WARNING, logger="veneer")
    warm(server.url, "noeval")
    url = acl_url(server, "eval", "evalsha", "eval_ro", "evalsha_ro")
    caches = [
        AsyncCache.from_url(url, namespace="noeval", ttl=300, **UP, l1_ttl=60) for _ in range(2)
    ]
    loads: Counter[str] = Counter()

    try:
        for cache in caches:
            assert await cache.ready()
        reasons = [await cache.check() for cache in caches]
        await read_everything_two_async(caches, loads)
        assert not any(loads[key] for key in WARM), loads
        assert {key: loads[key] for key in NEW} == dict.fromkeys(NEW, 1)
        for cache in caches:
            stats = cache.stats()
            assert stats.l2_hits >= len(WARM) and stats.redis_errors == 0
            assert stats.degraded == ("scripts",)
        for found in reasons:
            assert len(found) == 1 and "refuses scripts" in found[0], found
        assert refusal_warnings(caplog, "refuses scripts") == len(caches)
    finally:
        for cache in caches:
            await cache.close()


# ------------------------------------------------------- an ACL user without PUBLISH


def test_without_publish_invalidate_reports_the_unheard_broadcast(
    server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    """An ACL user without PUBLISH: invalidate() (and invalidate_tag) apply in Redis but
    return False, as nobody else heard them; a process that learnt the refusal at start-up
    (check()) reads through to Redis instead of trusting L1, so it sees the write at once;
    nothing raises, each cache warns once."""
    caplog.set_level(logging.WARNING, logger="veneer")
    url = acl_url(server, "publish", "spublish")
    writer = Cache.from_url(url, namespace="nopub", ttl=300, **UP, l1_ttl=60)
    reader = Cache.from_url(url, namespace="nopub", ttl=300, **UP, l1_ttl=60)
    row = {"v": "old"}
    try:
        assert writer.ready() and reader.ready()
        reasons = reader.check()  # at start-up
        assert writer.get_or_load("k", lambda: row["v"]) == "old"
        assert reader.get_or_load("k", lambda: row["v"]) == "old"
        row["v"] = "new"
        assert writer.invalidate("k") is False  # applied in Redis, heard by nobody
        assert writer.invalidate_tag("t") is False
        assert writer.stats().invalidations_pending == 0  # not queued: it would be refused
        assert writer.get_or_load("k", lambda: row["v"]) == "new"
        assert reader.get_or_load("k", lambda: row["v"]) == "new"  # not its L1 copy
        assert len(reasons) == 1 and "refuses PUBLISH" in reasons[0], reasons
        for cache in (writer, reader):
            stats = cache.stats()
            assert stats.degraded == ("publish",) and stats.redis_errors == 0
        assert refusal_warnings(caplog, "refuses PUBLISH") == 2
        assert writer.invalidate("k") is False
        assert refusal_warnings(caplog, "refuses PUBLISH") == 2  # rate-limited
    finally:
        writer.close()
        reader.close()


async def test_without_publish_async(server: RedisServer) -> None:
    """The same report on AsyncCache: invalidate() returns False and stats() says why."""
    url = acl_url(server, "publish", "spublish")
    cache = AsyncCache.from_url(url, namespace="nopub", ttl=300, **UP)
    try:
        assert await cache.ready()
        assert await cache.get_or_load("k", lambda: asyncio.sleep(0, "v")) == "v"
        assert await cache.invalidate("k") is False
        assert cache.stats().degraded == ("publish",)
        assert len(await cache.check()) == 1
    finally:
        await cache.close()


# ------------------------------------------------------------- the classification


def test_refusals_are_classified_by_capability_and_retried_once_per_window() -> None:
    """OOM is a write refusal, NOPERM on EVALSHA a script refusal, NOPERM on PUBLISH or a
    channel a publish refusal; other errors are not refusals. A refused capability is let
    through once per window, and a success clears it."""
    from redis.exceptions import (
        ConnectionError,
        NoPermissionError,
        OutOfMemoryError,
        ResponseError,
    )

    from veneer._refusals import Refusals, classify

    oom = OutOfMemoryError("command not allowed when used memory > 'maxmemory'.")
    assert classify(oom) == "writes"
    noeval = NoPermissionError("this user has no permissions to run the 'evalsha' command")
    assert classify(noeval) == "scripts"
    assert (
        classify(NoPermissionError("User u has no permissions to run the 'script|load' command"))
        == "scripts"
    )
    assert (
        classify(NoPermissionError("this user has no permissions to run the 'publish' command"))
        == "publish"
    )
    assert (
        classify(
            NoPermissionError("no permissions to access one of the channels used as arguments")
        )
        == "publish"
    )
    assert (
        classify(NoPermissionError("no permissions to access one of the keys used as arguments"))
        == "writes"
    )
    assert classify(ResponseError("ERR Error running script (call to f_x): oops")) is None
    assert classify(ConnectionError("Connection refused")) is None

    now = [100.0]
    refusals = Refusals(retry_after=1.0, warn_every=10.0, clock=lambda: now[0])
    assert refusals.allows("writes") and refusals.degraded() == ()
    assert refusals.refused("writes", oom) is not None  # warned
    assert refusals.degraded() == ("writes",) and refusals.writes_until == 101.0
    assert not refusals.allows("writes")
    now[0] = 101.5
    assert refusals.allows("writes")  # the first caller past the window tries
    assert not refusals.allows("writes")  # the others do not
    assert refusals.refused("writes", oom) is None  # warned 1.5 s ago: not again
    refusals.accepted("writes")
    assert refusals.degraded() == () and refusals.writes_until == 0.0
