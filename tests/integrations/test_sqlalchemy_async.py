"""After-commit invalidation with AsyncSession and AsyncCache."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
import redis
import sqlalchemy as sa

# SQLAlchemy's asyncio extension needs greenlet (the `sqlalchemy[asyncio]` extra).
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import Session, sessionmaker

from servers import POSTGRES_URL, free_port
from veneer import AsyncCache, Cache, ConfigurationError
from veneer._txn import open_marks
from veneer.integrations.outbox import create_outbox, outbox_table
from veneer.integrations.sqlalchemy import CacheInvalidator

from .conftest import read_name, unique_name

MakeAsyncCache = Callable[..., Awaitable[AsyncCache]]


def value_key(namespace: str, key: str) -> str:
    return "{" + namespace + ":" + key + "}"


@pytest.fixture
async def async_engine() -> AsyncIterator[AsyncEngine]:
    engine = create_async_engine(POSTGRES_URL, pool_size=2)
    yield engine
    await engine.dispose()


@pytest.fixture
def amaker(async_engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(async_engine, expire_on_commit=False)


@pytest.fixture
async def make_acache(redis_url: str, namespace: str) -> AsyncIterator[MakeAsyncCache]:
    made: list[AsyncCache] = []

    async def make(**options: Any) -> AsyncCache:
        options.setdefault("ttl", 60)
        cache = AsyncCache.from_url(redis_url, namespace=namespace, **options)
        made.append(cache)
        assert await cache.ready(5.0)
        return cache

    yield make
    for cache in made:
        await cache.close()


def committed_loader(pg_engine: sa.Engine, table: sa.Table, uid: int = 1) -> Callable[[], Any]:
    async def load() -> str | None:
        return await asyncio.to_thread(read_name, pg_engine, table, uid)

    return load


async def rename(session: AsyncSession, table: sa.Table, uid: int, name: str) -> None:
    await session.execute(sa.update(table).where(table.c.id == uid).values(name=name))


async def test_async_commit_invalidates_before_commit_returns(
    pg_engine: sa.Engine,
    users: sa.Table,
    make_acache: MakeAsyncCache,
    amaker: async_sessionmaker[AsyncSession],
) -> None:
    """With AsyncSession and AsyncCache the invalidation is applied inside ``await commit()``."""
    cache, other = await make_acache(), await make_acache()
    load = committed_loader(pg_engine, users)
    assert await cache.get_or_load("user:1", load) == "old"
    assert await other.get_or_load("user:1", load) == "old"
    invalidator = CacheInvalidator(cache).install(amaker)
    async with amaker() as session:
        await rename(session, users, 1, "new")
        invalidator.invalidate(session, "user:1")
        await session.commit()
        assert cache.stats().invalidations_sent == 1
    assert await cache.get_or_load("user:1", load) == "new"
    for _ in range(500):
        if await other.get_or_load("user:1", load) == "new":
            break
        await asyncio.sleep(0.01)
    assert await other.get_or_load("user:1", load) == "new"


async def test_async_rollback_sends_no_invalidation(
    users: sa.Table,
    make_acache: MakeAsyncCache,
    amaker: async_sessionmaker[AsyncSession],
) -> None:
    """An AsyncSession rollback invalidates nothing and leaves no mark behind."""
    cache = await make_acache()
    invalidator = CacheInvalidator(cache).install(amaker)
    async with amaker() as session:
        await rename(session, users, 1, "new")
        invalidator.invalidate(session, "user:1")
        invalidator.invalidate_all(session)
        await session.rollback()
    assert cache.stats().invalidations_sent == 0
    assert open_marks.get() == frozenset()


async def test_async_savepoints(
    pg_engine: sa.Engine,
    users: sa.Table,
    make_acache: MakeAsyncCache,
    amaker: async_sessionmaker[AsyncSession],
    raw: redis.Redis,
    namespace: str,
) -> None:
    """A rolled-back savepoint drops its marks; a released one's go with the outer commit."""
    cache = await make_acache()
    for uid in (1, 2):
        await cache.get_or_load(f"user:{uid}", committed_loader(pg_engine, users, uid))
    invalidator = CacheInvalidator(cache).install(amaker)
    async with amaker() as session:
        async with session.begin_nested():
            await rename(session, users, 1, "new")
            invalidator.invalidate(session, "user:1")
        nested = await session.begin_nested()
        invalidator.invalidate(session, "user:2")
        await nested.rollback()
        assert cache.stats().invalidations_sent == 0
        await session.commit()
    assert cache.stats().invalidations_sent == 1
    assert not raw.exists(value_key(namespace, "user:1"))
    assert raw.exists(value_key(namespace, "user:2"))


async def test_async_marked_key_bypasses_the_cache_only_in_its_own_task(
    pg_engine: sa.Engine,
    users: sa.Table,
    make_acache: MakeAsyncCache,
    amaker: async_sessionmaker[AsyncSession],
) -> None:
    """The task with the open transaction reads its own write; another task reads the cache."""
    cache = await make_acache()
    assert await cache.get_or_load("user:1", committed_loader(pg_engine, users)) == "old"
    invalidator = CacheInvalidator(cache).install(amaker)
    go = asyncio.Event()

    async def other_task() -> Any:
        await go.wait()
        return await cache.get_or_load("user:1", committed_loader(pg_engine, users))

    reader = asyncio.create_task(other_task())  # its context is copied before the mark
    async with amaker() as session:
        await rename(session, users, 1, "new")
        invalidator.invalidate(session, "user:1")

        async def own_view() -> str | None:
            result = await session.execute(sa.select(users.c.name).where(users.c.id == 1))
            return result.scalar()

        assert await cache.get_or_load("user:1", own_view) == "new"
        go.set()
        assert await reader == "old"
        await session.commit()
    assert open_marks.get() == frozenset()
    assert await cache.get_or_load("user:1", committed_loader(pg_engine, users)) == "new"


async def test_install_on_an_async_sessionmaker_is_scoped_to_it(
    async_engine: AsyncEngine,
    make_acache: MakeAsyncCache,
    amaker: async_sessionmaker[AsyncSession],
) -> None:
    """Another async_sessionmaker's sessions are not watched."""
    cache = await make_acache()
    invalidator = CacheInvalidator(cache).install(amaker)
    other = async_sessionmaker(async_engine)
    async with other() as session:
        with pytest.raises(ConfigurationError, match="install"):
            invalidator.invalidate(session, "k")
    single = AsyncSession(async_engine)
    invalidator.install(single)
    invalidator.invalidate(single, "k")
    await single.commit()
    await single.close()
    assert cache.stats().invalidations_sent == 1


async def test_an_async_cache_needs_an_async_session(
    pg_engine: sa.Engine, make_acache: MakeAsyncCache
) -> None:
    """An AsyncCache cannot be awaited from a sync Session's commit: refused when marking."""
    cache = await make_acache()
    maker = sessionmaker(pg_engine)
    invalidator = CacheInvalidator(cache).install(maker)
    with maker() as session, pytest.raises(ConfigurationError, match="AsyncSession"):
        invalidator.invalidate(session, "k")


async def test_a_sync_cache_works_with_an_async_session(
    users: sa.Table,
    make_cache: Callable[..., Cache],
    amaker: async_sessionmaker[AsyncSession],
) -> None:
    """A sync Cache may serve an AsyncSession (its calls block the loop for one round trip)."""
    cache = make_cache()
    invalidator = CacheInvalidator(cache).install(amaker)
    async with amaker() as session:
        invalidator.invalidate_tag(session, "users")
        await session.commit()
    assert cache.stats().invalidations_sent == 1


def test_sync_session_class_must_be_specific_for_an_async_session_class() -> None:
    """Installing on an AsyncSession class whose sync class is Session itself is refused."""

    class PlainAsync(AsyncSession):
        pass

    class Specific(Session):
        pass

    class ScopedAsync(AsyncSession):
        sync_session_class = Specific

    invalidator = CacheInvalidator(Cache.from_url("redis://127.0.0.1:1/0", namespace="x"))
    with pytest.raises(ConfigurationError, match="sync_session_class"):
        invalidator.install(PlainAsync)
    invalidator.install(ScopedAsync)
    invalidator.uninstall(ScopedAsync)
    invalidator.cache.close()  # type: ignore[union-attr]


async def test_async_durable_mode(
    pg_engine: sa.Engine,
    make_acache: MakeAsyncCache,
    amaker: async_sessionmaker[AsyncSession],
    namespace: str,
) -> None:
    """With AsyncSession the outbox rows go with the transaction too: a rollback leaves none,
    a commit with Redis up deletes them, a commit with Redis down keeps them."""
    outbox = create_outbox(pg_engine, outbox_table(name=unique_name("voutbox")))
    dead = AsyncCache.from_url(
        f"redis://127.0.0.1:{free_port()}/0", namespace=namespace, broadcast=False
    )
    try:
        cache = await make_acache()
        invalidator = CacheInvalidator(cache, outbox=outbox).install(amaker)
        count = sa.select(sa.func.count()).select_from(outbox)
        async with amaker() as session:
            async with session.begin_nested():
                invalidator.invalidate(session, "user:1")
            assert (await session.execute(count)).scalar() == 1
            await session.rollback()
        async with amaker() as session:
            invalidator.invalidate(session, "user:1")
            await session.commit()
        assert cache.stats().invalidations_sent == 1
        with pg_engine.connect() as conn:
            assert conn.execute(count).scalar() == 0
        down = async_sessionmaker(amaker.kw["bind"])
        invalidator_down = CacheInvalidator(dead, outbox=outbox).install(down)
        async with down() as session:
            invalidator_down.invalidate_tag(session, "users")
            await session.commit()
        with pg_engine.connect() as conn:
            assert conn.execute(count).scalar() == 1
    finally:
        await dead.close()
        with pg_engine.begin() as conn:
            outbox.drop(conn)
