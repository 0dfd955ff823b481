"""The asyncio store: the same promises as the threaded one, on AsyncCache and AsyncEngine."""

from __future__ import annotations

import asyncio

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine

from servers import POSTGRES_URL
from sessions.conftest import StatementCounter
from veneer import AsyncCache
from veneer.sessions import AsyncSessionStore, SessionDataTooLarge, SessionTables


async def test_async_store_flow(redis_url: str, namespace: str, tables: SessionTables) -> None:
    """create, load, save, rotate, sessions_of, revoke and revoke_user, across two 'processes',
    with 0 database writes for 1,000 read-only loads."""
    engine = create_async_engine(POSTGRES_URL)
    counter = StatementCounter(engine.sync_engine)
    a = AsyncCache.from_url(redis_url, namespace=namespace)
    b = AsyncCache.from_url(redis_url, namespace=namespace)
    try:
        assert await a.ready() and await b.ready()
        one = AsyncSessionStore(engine, a, tables=tables, max_data_bytes=512)
        two = AsyncSessionStore(engine, b, tables=tables)
        token, session = await one.create("u1", {"n": 1})
        loaded = await two.load(token)
        assert loaded is not None and loaded.data == {"n": 1} and loaded.id == session.id
        before = counter.writes
        for _ in range(1000):
            assert await two.load(token) is not None
        assert counter.writes == before
        loaded.data["n"] = 2
        assert await two.save(loaded) is True
        with pytest.raises(SessionDataTooLarge):
            await one.create("u1", {"x": "y" * 600})
        rotated = await one.rotate(token, user_id="u2")
        assert rotated is not None
        new_token, new_session = rotated
        assert new_session.data == {"n": 2} and new_session.user_id == "u2"
        for _ in range(200):  # the other process hears the invalidation within milliseconds
            if await two.load(token) is None:
                break
            await asyncio.sleep(0.005)
        assert await two.load(token) is None
        assert [s.id for s in await two.sessions_of("u2")] == [new_session.id]
        assert await two.revoke(new_token) is True
        assert await one.load(new_token) is None
        third, _ = await one.create("u3", {})
        assert await two.load(third) is not None
        assert await one.revoke_user("u3") == 1
        for _ in range(200):
            if await two.load(third) is None:
                break
            await asyncio.sleep(0.005)
        assert await two.load(third) is None
    finally:
        await a.close()
        await b.close()
        await engine.dispose()


async def test_async_store_refuses_a_sync_cache(tables: SessionTables, redis_url: str) -> None:
    """Building an AsyncSessionStore on a sync Cache fails at once, naming the fix."""
    from veneer import Cache

    engine = create_async_engine(POSTGRES_URL)
    with Cache.from_url(redis_url, namespace="x") as cache, pytest.raises(TypeError, match="Async"):
        AsyncSessionStore(engine, cache, tables=tables)  # type: ignore[arg-type]
    await engine.dispose()
    assert isinstance(tables.sessions, sa.Table)
