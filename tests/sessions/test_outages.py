"""Redis flushed, killed, restarted empty or hung, and the database down, under a
multi-threaded request load: nobody is logged out, no caller error caused by Redis, and a
naive Redis-only store in the same tests loses its sessions."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import sqlalchemy as sa

from outage import Reads, ThreadWorkload
from proxy import SlowProxy
from servers import POSTGRES_URL, RedisServer
from sessions.naive import NaiveRedisSessions
from veneer.sessions import SessionStore, SessionTables, SourceUnavailable

TIMEOUT = 0.1
OPTIONS: dict[str, Any] = {
    "redis_timeout": TIMEOUT,
    "source_concurrency": 4,
    "source_queue_timeout": 5.0,
    "breaker_cooldown": 0.3,
    "max_stale": 30,
}
SESSIONS = 100


class Lost(Exception):
    """A load that found no session for a token that was never revoked."""


def session_reader(store: SessionStore, tokens: list[str]) -> Callable[[str], Any]:
    def read(key: str) -> Any:
        session = store.load(tokens[int(key.split(":")[1]) % len(tokens)])
        if session is None:
            raise Lost(key)
        return session

    return read


def logged_in(store: SessionStore, n: int = SESSIONS) -> list[str]:
    return [store.create(i, {"i": i})[0] for i in range(n)]


def naive_control(server: RedisServer, break_it: Callable[[], None]) -> int:
    """How many of 50 sessions a Redis-only store still finds after ``break_it``."""
    client = server.client()
    try:
        naive = NaiveRedisSessions(client)
        tokens = [naive.create({"i": i}) for i in range(50)]
        assert all(naive.load(t) is not None for t in tokens)
        break_it()
        return sum(1 for t in tokens if naive.load(t) is not None)
    finally:
        client.close()


def test_flushall_loses_no_session(
    own_redis: RedisServer, make_store: Callable[..., SessionStore]
) -> None:
    """FLUSHALL under load (L1 off, so every read goes to Redis): zero sessions lost, zero
    errors; the Redis-only store loses all of its sessions."""
    store = make_store(url=own_redis.url, cache_options={**OPTIONS, "l1_size": 0})
    tokens = logged_in(store)
    work = ThreadWorkload(session_reader(store, tokens), workers=6, keys=SESSIONS)
    time.sleep(0.5)
    client = own_redis.client()
    client.flushall()
    flushed = time.monotonic()
    time.sleep(1.0)
    reads = work.stop()
    assert reads.errors() == []
    assert len(reads.between(flushed, flushed + 1.0)) > 100
    assert all(store.load(t) is not None for t in tokens)
    assert naive_control(own_redis, client.flushall) == 0
    client.close()


def test_killed_and_restarted_empty_loses_nothing(
    own_redis: RedisServer, make_store: Callable[..., SessionStore]
) -> None:
    """SIGKILL, then an empty restart, under load: zero sessions lost, zero caller errors,
    and the store re-checked revocations in the database while Redis was away."""
    store = make_store(url=own_redis.url, cache_options=OPTIONS, revocation_check=0.5)
    tokens = logged_in(store)
    work = ThreadWorkload(session_reader(store, tokens), workers=6, keys=SESSIONS)
    time.sleep(0.5)
    own_redis.kill()
    time.sleep(1.0)
    own_redis.start()
    time.sleep(1.5)
    reads = work.stop()
    assert reads.errors() == []
    assert store.stats().revocation_checks > 0
    assert all(store.load(t) is not None for t in tokens)
    assert naive_control(own_redis, own_redis.restart) == 0


def test_hung_redis_costs_no_error_and_a_bounded_p99(
    own_redis: RedisServer, make_store: Callable[..., SessionStore], engine: sa.Engine
) -> None:
    """SIGSTOP for 2 s under load: zero caller errors, zero lost, and p99 during the hang
    within redis_timeout + the database's p99 + slack."""
    store = make_store(url=own_redis.url, cache_options={**OPTIONS, "l1_ttl": 0.5})
    tokens = logged_in(store)
    db_times: list[float] = []
    for token in tokens[:50]:  # the database's own latency for this read, measured here
        started = time.perf_counter()
        store._read_row(store._digest.id_of(token) or "")
        db_times.append(time.perf_counter() - started)
    work = ThreadWorkload(session_reader(store, tokens), workers=4, keys=SESSIONS)
    time.sleep(1.0)
    own_redis.pause()
    hung = time.monotonic()
    time.sleep(2.0)
    own_redis.resume()
    resumed = time.monotonic()
    time.sleep(0.5)
    reads = work.stop()
    assert reads.errors() == []
    during = reads.between(hung, resumed)
    assert len(during) > 50
    p99 = Reads.p99(during)
    db_p99 = Reads.p99(db_times)
    # Slack: two database reads (the cache's and the store's re-check) and scheduling on
    # a loaded 2-core machine.
    assert p99 <= TIMEOUT + 2 * db_p99 + 0.1, (p99, db_p99)


@pytest.fixture
def db_proxy() -> Iterator[SlowProxy]:
    """PostgreSQL behind a loopback proxy the test can close: a database that goes away."""
    port = sa.make_url(POSTGRES_URL).port or 5432
    proxy = SlowProxy(port)
    yield proxy
    proxy.close()


def test_database_down_keeps_cached_sessions_and_fails_writes_loudly(
    db_proxy: SlowProxy, make_store: Callable[..., SessionStore]
) -> None:
    """With the database gone: sessions already cached keep loading; writes, revocations
    and loads of uncached sessions raise SourceUnavailable saying what did not happen."""
    url = sa.make_url(POSTGRES_URL).set(host="127.0.0.1", port=db_proxy.port)
    engine = sa.create_engine(url, pool_pre_ping=True, connect_args={"connect_timeout": 2})
    try:
        store = make_store(engine=engine)
        cached = logged_in(store, 5)
        uncached, _ = store.create(99, {})
        loaded = [store.load(t) for t in cached]
        assert all(s is not None for s in loaded)
        db_proxy.close()
        engine.dispose()  # pooled connections went through the proxy: they are dead too
        for _ in range(3):
            assert all(store.load(t) is not None for t in cached)
        failing: list[Callable[[], object]] = [
            lambda: store.create(1, {}),
            lambda: store.revoke(cached[0]),
            lambda: store.revoke_user(1),
            lambda: store.rotate(cached[1]),
            lambda: store.load(uncached),
            lambda: store.sessions_of(1),
        ]
        session = loaded[2]
        assert session is not None
        session.data["x"] = 1
        failing.append(lambda: store.save(session))
        for call in failing:
            with pytest.raises(SourceUnavailable, match="database is unavailable"):
                call()
        assert all(store.load(t) is not None for t in cached)
    finally:
        engine.dispose()


async def test_flushall_and_restart_lose_no_session_asyncio(
    own_redis: RedisServer, tables: SessionTables, namespace: str
) -> None:
    """The asyncio store under a task load: FLUSHALL, then SIGKILL and an empty restart:
    zero sessions lost, zero errors."""
    from sqlalchemy.ext.asyncio import create_async_engine

    from outage import TaskWorkload
    from veneer import AsyncCache
    from veneer.sessions import AsyncSessionStore

    engine = create_async_engine(POSTGRES_URL, pool_size=10)
    cache = AsyncCache.from_url(own_redis.url, namespace=namespace, **OPTIONS)
    try:
        assert await cache.ready()
        store = AsyncSessionStore(engine, cache, tables=tables, revocation_check=0.5)
        tokens = [(await store.create(i, {"i": i}))[0] for i in range(SESSIONS)]

        async def read(key: str) -> Any:
            session = await store.load(tokens[int(key.split(":")[1]) % len(tokens)])
            if session is None:
                raise Lost(key)
            return session

        work = TaskWorkload(read, workers=6, keys=SESSIONS)
        await asyncio.sleep(0.5)
        client = own_redis.client()
        client.flushall()
        client.close()
        await asyncio.sleep(0.5)
        own_redis.kill()
        await asyncio.sleep(0.7)
        own_redis.start()
        await asyncio.sleep(1.0)
        reads = await work.stop()
        assert reads.errors() == []
        assert len(reads.records) > 200
        assert all([await store.load(t) is not None for t in tokens])
    finally:
        await cache.close()
        await engine.dispose()
