"""Counters on real PostgreSQL and the suite's own Redis, on one Redis and on a 3-shard
cluster (this file is the source of the sync copy)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import sqlalchemy as sa

from counter_tables import fresh_tables
from servers import POSTGRES_URL, RedisServer
from veneer import AsyncCache
from veneer._async._concurrency import sleep
from veneer._errors import RedisDown
from veneer.counters import (
    AsyncCounterFlusher,
    AsyncCounters,
    CounterOverflow,
    CounterSpec,
    CounterTables,
    UnknownCounter,
)
from veneer.counters._tables import AsyncEngine, AsyncEngines

from .helpers import eventually

MAX = (1 << 63) - 1
SPECS: dict[str, Any] = {"views": CounterSpec("buffered", shards=4), "credits": "exact"}


class Crash(Exception):
    """Stands for a flusher dying at a hook point (the fault tests use SIGKILL)."""


@pytest.fixture(scope="module")
def sync_engine() -> Iterator[sa.Engine]:
    engine = sa.create_engine(POSTGRES_URL, pool_size=2, max_overflow=2)
    yield engine
    engine.dispose()


@pytest.fixture
def tables(sync_engine: sa.Engine) -> Iterator[CounterTables]:
    """The counter tables of this test, created by the helper, dropped afterwards."""
    with fresh_tables(sync_engine) as made:
        yield made


@pytest.fixture
async def engine() -> AsyncIterator[AsyncEngine]:
    built, _ = AsyncEngines.build(POSTGRES_URL)
    yield built
    await built.dispose()


@pytest.fixture(params=["single", "cluster"])
def url(request: pytest.FixtureRequest) -> str:
    """Every behaviour test runs on one Redis and on a 3-shard Redis Cluster."""
    if request.param == "cluster":
        return str(request.getfixturevalue("redis_cluster").url)
    return str(request.getfixturevalue("redis_server").url)


def durable(engine: sa.Engine, tables: CounterTables, name: str) -> dict[str, int]:
    """What the database holds for ``name``: totals plus journal, read directly."""
    t, j = tables.totals.c, tables.journal.c
    out: dict[str, int] = {}
    with engine.connect() as conn:
        for key, total in conn.execute(sa.select(t.key, t.total).where(t.name == name)):
            out[key] = out.get(key, 0) + total
        for key, delta in conn.execute(sa.select(j.key, j.delta).where(j.name == name)):
            out[key] = out.get(key, 0) + delta
    return out


async def test_exact_increments_are_committed_before_incr_returns(
    url: str, namespace: str, engine: AsyncEngine, tables: CounterTables, sync_engine: sa.Engine
) -> None:
    """An acknowledged exact increment is already in the database: losing Redis loses none."""
    async with AsyncCache.from_url(url, namespace=namespace, ttl=60) as cache:
        counters = AsyncCounters(cache, engine, SPECS, tables=tables)
        try:
            for i in range(1, 21):
                await counters.incr("credits", "acct:1", i)
                assert durable(sync_engine, tables, "credits") == {"acct:1": sum(range(i + 1))}
            assert await counters.get("credits", "acct:1") == 210
            assert await counters.compact() == 20
            assert durable(sync_engine, tables, "credits") == {"acct:1": 210}
            assert await counters.get("credits", "acct:1") == 210
        finally:
            await counters.close()


async def test_an_acknowledged_exact_increment_is_read_by_every_process_at_once(
    url: str, namespace: str, engine: AsyncEngine, tables: CounterTables
) -> None:
    """A commit gives the key a new read version before incr returns, so another process
    whose cache (Redis and its own L1) holds the old total reads the new one right away;
    reads under an unchanged version are served by the cache."""
    async with (
        AsyncCache.from_url(url, namespace=namespace, ttl=60) as cache,
        AsyncCache.from_url(url, namespace=namespace, ttl=60) as other_cache,
    ):
        counters = AsyncCounters(cache, engine, SPECS, tables=tables)
        other = AsyncCounters(other_cache, engine, SPECS, tables=tables)
        try:
            for i in range(1, 6):
                await counters.incr("credits", "acct:7", i)
                assert await other.get("credits", "acct:7") == sum(range(i + 1))
                assert await other.get_many("credits", ["acct:7", "acct:8"]) == {
                    "acct:7": sum(range(i + 1)), "acct:8": 0,
                }  # fmt: skip
            loads = other_cache.stats().source_loads
            assert await other.get("credits", "acct:7") == 15
            assert other_cache.stats().source_loads == loads  # the cached total, no load
        finally:
            await counters.close()
            await other.close()


async def test_a_commit_whose_version_never_reached_redis_is_read_within_read_ttl(
    url: str, namespace: str, engine: AsyncEngine, tables: CounterTables
) -> None:
    """The stated window: a process that dies between its commit and the new read
    version leaves the old total cached under the old version. It is served until the
    key's next commit or read_ttl, whichever comes first, and is never counted twice.
    A bump Redis does not answer drops the counter's cached totals (a tag, retried)."""
    async with AsyncCache.from_url(url, namespace=namespace, ttl=60) as cache:
        counters = AsyncCounters(cache, engine, SPECS, tables=tables, read_ttl=1.0)
        reader = AsyncCounters(cache, engine, SPECS, tables=tables, read_ttl=1.0)
        try:
            await counters.incr("credits", "a", 5)
            await counters.incr("credits", "b", 5)
            filled = time.monotonic()  # the totals below are cached after this
            assert await reader.get_many("credits", ["a", "b"]) == {"a": 5, "b": 5}
            bump = counters._versions.bump

            async def dies_before_the_bump(*args: Any) -> None:
                return None

            counters._versions.bump = dies_before_the_bump  # type: ignore[method-assign]
            await counters.incr("credits", "a", 1)  # committed; the version is not changed
            assert await reader.get("credits", "a") == 5  # the window: the old total
            started = time.monotonic()
            while (seen := await reader.get("credits", "a")) != 6:
                assert seen == 5 and time.monotonic() - started < 10
                await sleep(0.05)
            # Served until read_ttl (1 s, 10% jitter) from when it was cached: measured
            # from the fill, not from this loop (a loaded machine may take most of the
            # window to get here).
            assert time.monotonic() - filled > 0.85
            counters._versions.bump = bump  # type: ignore[method-assign]
            await counters.incr("credits", "a", 1)  # the next commit closes it at once
            assert await reader.get("credits", "a") == 7

            async def unanswered(*args: Any) -> None:
                raise RedisDown("no answer")

            assert await reader.get("credits", "b") == 5
            counters._versions.bump = unanswered  # type: ignore[method-assign]
            await counters.incr("credits", "b", 2)
            assert await reader.get("credits", "b") == 7  # the tag dropped the cached one
        finally:
            await counters.close()
            await reader.close()


async def test_buffered_increments_reach_the_database_once(
    url: str, namespace: str, engine: AsyncEngine, tables: CounterTables, sync_engine: sa.Engine
) -> None:
    """A buffered increment is in Redis when acknowledged and in the database after one
    flush; further flushes apply nothing, and reads count it once throughout."""
    async with AsyncCache.from_url(url, namespace=namespace, ttl=60) as cache:
        counters = AsyncCounters(cache, engine, SPECS, tables=tables)
        try:
            for key in ("p:1", "p:2", "p:3", "p:1"):
                await counters.incr("views", key)
            assert durable(sync_engine, tables, "views") == {}
            assert await counters.get_many("views", ["p:1", "p:2", "p:9"]) == {
                "p:1": 2, "p:2": 1, "p:9": 0}  # fmt: skip
            report = await counters.flush()
            assert report.applied == report.claimed >= 1 and report.increments == 4
            assert durable(sync_engine, tables, "views") == {"p:1": 2, "p:2": 1, "p:3": 1}
            assert (await counters.flush()).applied == 0
            assert durable(sync_engine, tables, "views") == {"p:1": 2, "p:2": 1, "p:3": 1}
            assert await counters.get("views", "p:1") == 2
            await counters.incr("views", "p:1", 5)
            assert await counters.get("views", "p:1") == 7
        finally:
            await counters.close()


async def test_reads_count_a_claimed_buffer_once_at_every_step_of_a_flush(
    url: str, namespace: str, engine: AsyncEngine, tables: CounterTables
) -> None:
    """While a flush is between claim and commit, and between commit and delete, a read
    counts the claimed increments exactly once."""
    seen: list[tuple[str, int]] = []
    async with AsyncCache.from_url(url, namespace=namespace, ttl=60) as cache:
        counters = AsyncCounters(cache, engine, SPECS, tables=tables)
        reader = AsyncCounters(cache, engine, SPECS, tables=tables)
        points: list[str] = []
        flusher = AsyncCounterFlusher(cache, engine, tables=tables, hook=points.append)
        try:
            await counters.incr("views", "k", 3)
            assert await reader.get("views", "k") == 3  # cached durable total 0 + 3 buffered

            async def read_at(point: str) -> None:
                seen.append((point, await reader.get("views", "k")))

            flusher._hook = points.append
            report = await flusher.run_once()
            assert report.applied == 1 and points == ["claimed", "committed"]
            assert await reader.get("views", "k") == 3
            # Replays of each step: a crash at each hook point, then the next pass.
            for point in ("claimed", "committed"):
                await counters.incr("views", "k", 1)

                def crash(at: str, point: str = point) -> None:
                    if at == point:
                        raise Crash(at)

                flusher._hook = crash
                with pytest.raises(Crash):
                    await flusher.run_once()
                await read_at(point)
                flusher._hook = lambda at: None
                report = await flusher.run_once()
                assert report.replays == 1
                assert report.already_applied == (1 if point == "committed" else 0)
                await read_at(point + " replayed")
            assert seen == [("claimed", 4), ("claimed replayed", 4),
                            ("committed", 5), ("committed replayed", 5)]  # fmt: skip
        finally:
            await counters.close()
            await reader.close()
            await flusher.close()


async def test_a_flush_replayed_after_a_crash_applies_nothing_twice(
    url: str, namespace: str, engine: AsyncEngine, tables: CounterTables, sync_engine: sa.Engine
) -> None:
    """A flusher that dies after its commit leaves the claim behind; the next flusher finds
    the flush id in the ledger, applies nothing, and deletes the claimed buffer."""

    def crash_after_commit(point: str) -> None:
        if point == "committed":
            raise Crash(point)

    async with AsyncCache.from_url(url, namespace=namespace, ttl=60) as cache:
        counters = AsyncCounters(cache, engine, SPECS, tables=tables)
        dying = AsyncCounterFlusher(
            cache, engine, tables=tables, hook=crash_after_commit, lease_ttl=0.3
        )
        other = AsyncCounterFlusher(cache, engine, tables=tables, lease_ttl=0.3)
        try:
            await counters.incr_many([("views", f"p:{i}", i) for i in range(1, 30)])
            with pytest.raises(Crash):
                await dying.run_once()
            assert sum(durable(sync_engine, tables, "views").values()) == 435
            busy = await other.run_once()  # the dead flusher's lease still holds
            assert busy.claimed == 0
            await sleep(0.4)
            report = await other.run_once()
            assert report.replays == report.already_applied == report.claimed >= 1
            assert report.applied == 0
            assert sum(durable(sync_engine, tables, "views").values()) == 435
            assert (await other.run_once()).claimed == 0  # the claimed buffers are gone
            got = await counters.get_many("views", [f"p:{i}" for i in range(1, 30)])
            assert got == {f"p:{i}": i for i in range(1, 30)}
        finally:
            await counters.close()
            await dying.close()
            await other.close()


async def test_bad_input_gets_a_clear_error_and_counts_nothing(
    url: str, namespace: str, engine: AsyncEngine, tables: CounterTables, sync_engine: sa.Engine
) -> None:
    """A non-integer n, an n or a total past 63 bits, and an unknown counter name are refused
    with a clear error; the stored count is untouched, in both modes."""
    async with AsyncCache.from_url(url, namespace=namespace, ttl=60) as cache:
        counters = AsyncCounters(cache, engine, SPECS, tables=tables)
        try:
            for name in ("credits", "views"):
                await counters.incr(name, "k", 5)
                for bad in (1.5, "1", True, None):
                    with pytest.raises(TypeError, match="an increment is an int"):
                        await counters.incr(name, "k", bad)  # type: ignore[arg-type]
                with pytest.raises(CounterOverflow, match="signed 64-bit"):
                    await counters.incr(name, "k", 1 << 63)
                with pytest.raises(CounterOverflow, match="past a signed 64-bit"):
                    await counters.incr(name, "k", MAX)  # 5 + MAX does not fit
                with pytest.raises(TypeError, match="counter key must be a str"):
                    await counters.incr(name, 7, 1)  # type: ignore[arg-type]
                with pytest.raises(ValueError, match="counter key"):
                    await counters.incr(name, "x" * 201, 1)
                with pytest.raises(CounterOverflow):  # one bad item refuses the whole batch
                    await counters.incr_many([(name, "other", 1), (name, "k", 1 << 64)])
                assert await counters.get(name, "k") == 5
                assert await counters.get(name, "other") == 0
            with pytest.raises(UnknownCounter, match=r"unknown counter 'likes'.*credits, views"):
                await counters.incr("likes", "k", 1)
            with pytest.raises(UnknownCounter):
                await counters.get("likes", "k")
            # Past 63 bits once the total is durable: the flusher leaves a guard in Redis.
            await counters.incr("views", "big", MAX - 5)
            await counters.flush()
            with pytest.raises(CounterOverflow):
                await counters.incr("views", "big", 6)
            await counters.incr("views", "big", 5)
            with pytest.raises(CounterOverflow):
                await counters.incr("views", "big", 1)
            await counters.flush()
            assert await counters.get("views", "big") == MAX
            assert durable(sync_engine, tables, "views")["big"] == MAX
            assert durable(sync_engine, tables, "credits") == {"k": 5}
        finally:
            await counters.close()


async def test_a_process_declaring_a_counter_differently_is_refused(
    url: str, namespace: str, engine: AsyncEngine, tables: CounterTables
) -> None:
    """Every process must agree on a counter's mode and shards: the database records them."""
    async with AsyncCache.from_url(url, namespace=namespace, ttl=60) as cache:
        first = AsyncCounters(cache, engine, SPECS, tables=tables)
        second = AsyncCounters(cache, engine, {"views": "exact"}, tables=tables)
        try:
            await first.incr("views", "k")
            with pytest.raises(ValueError, match=r"declared .*exact.* database records"):
                await second.incr("views", "k")
        finally:
            await first.close()
            await second.close()


async def test_the_in_process_flusher_moves_buffers_and_stops_on_close(
    url: str, namespace: str, engine: AsyncEngine, tables: CounterTables, sync_engine: sa.Engine
) -> None:
    """flusher=True runs the flusher in this process; close() stops it after its pass."""
    async with AsyncCache.from_url(url, namespace=namespace, ttl=60) as cache:
        counters = AsyncCounters(
            cache, engine, SPECS, tables=tables, flusher=True, flush_interval=0.05
        )
        try:
            await counters.incr_many([("views", "a", 2), ("views", "b", 3)])
            await eventually(
                lambda: durable(sync_engine, tables, "views") == {"a": 2, "b": 3}, timeout=10
            )
        finally:
            await counters.close()
        assert counters._flusher is not None and not counters._flusher._running


async def test_redis_down_buffered_increments_go_to_the_database_and_a_restart_counts_once(
    namespace: str, engine: AsyncEngine, tables: CounterTables, sync_engine: sa.Engine
) -> None:
    """With Redis dead, buffered increments are written straight to the database (none is
    lost); after an empty restart, reads are re-seeded from the database, counted once."""
    server = RedisServer()
    try:
        async with AsyncCache.from_url(
            server.url, namespace=namespace, ttl=60, breaker_cooldown=0.2
        ) as cache:
            counters = AsyncCounters(cache, engine, SPECS, tables=tables)
            try:
                await counters.incr("views", "k", 10)
                await counters.flush()
                await counters.incr("views", "k", 1)  # buffered, lost with Redis below
                server.kill()
                for _ in range(50):
                    await counters.incr("views", "k", 2)
                assert await counters.resolve() == 0 or counters.stats().in_doubt > 0
                stats = counters.stats()
                assert stats.direct_increments + stats.in_doubt == 50
                written = 10 + 2 * stats.direct_increments
                assert durable(sync_engine, tables, "views")["k"] == written
                assert await counters.get("views", "k") == written
                server.start()  # empty
                await eventually(lambda: cache.redis_access("counters").healthy(), timeout=10)
                while await counters.resolve():
                    await sleep(0.05)
                stats = counters.stats()
                assert stats.in_doubt == 0
                # In doubt when Redis died: lost with its data (within the bound), never twice.
                assert stats.direct_increments + stats.in_doubt_lost == 50
                expected = 10 + 2 * stats.direct_increments
                assert await counters.get("views", "k") == expected
                await counters.incr("views", "k", 1)
                await counters.flush()
                assert durable(sync_engine, tables, "views")["k"] == expected + 1
                assert await counters.get("views", "k") == expected + 1
            finally:
                await counters.close()
    finally:
        server.stop()


async def test_increments_in_doubt_during_a_pause_are_counted_exactly_once(
    namespace: str, engine: AsyncEngine, tables: CounterTables, sync_engine: sa.Engine
) -> None:
    """Increments sent to a paused Redis get no answer; Redis applies them on resume or the
    resolver fences and writes them to the database: each counts once."""
    server = RedisServer()
    try:
        async with AsyncCache.from_url(
            server.url, namespace=namespace, ttl=60, redis_timeout=0.1, breaker_cooldown=0.2
        ) as cache:
            counters = AsyncCounters(cache, engine, SPECS, tables=tables)
            try:
                await counters.incr("views", "k", 1)  # learns the shard's epoch
                server.pause()
                try:
                    for _ in range(20):
                        await counters.incr("views", "k", 1)
                    assert counters.stats().in_doubt >= 1
                finally:
                    server.resume()
                while await counters.resolve():
                    await sleep(0.05)
                stats = counters.stats()
                assert stats.in_doubt_lost == 0
                assert stats.in_doubt_applied + stats.in_doubt_written >= 1
                await counters.flush()
                assert durable(sync_engine, tables, "views") == {"k": 21}
                assert await counters.get("views", "k") == 21
            finally:
                await counters.close()
    finally:
        server.stop()
