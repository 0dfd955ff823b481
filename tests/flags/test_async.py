"""The asyncio client (the source the sync one is generated from): writes in an
AsyncSession, propagation between processes' clients, evaluation without await."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, create_async_engine

from servers import POSTGRES_URL, RedisServer
from veneer import AsyncCache, Cache
from veneer.flags import AsyncFlags, Flag, FlagNotFound, FlagTables, Rule


@pytest.fixture
async def apg() -> AsyncIterator[AsyncEngine]:
    engine = create_async_engine(POSTGRES_URL)
    yield engine
    await engine.dispose()


async def until(condition: object, timeout: float = 5.0) -> float:
    assert callable(condition)
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"condition not met within {timeout}s")
        await asyncio.sleep(0.002)
    return time.monotonic() - started


async def test_async_clients_follow_commits_and_ignore_rollbacks(
    apg: AsyncEngine, pg_tables: FlagTables, redis_server: RedisServer, namespace: str
) -> None:
    """A change written in an AsyncSession reaches another asyncio client after the commit
    (published inside ``await session.commit()``); a rolled-back one reaches nobody."""
    caches = [AsyncCache.from_url(redis_server.url, namespace=namespace, ttl=60) for _ in range(2)]
    writer = AsyncFlags(apg, caches[0], tables=pg_tables)
    reader = AsyncFlags(apg, caches[1], tables=pg_tables, defaults={"beta": False})
    try:
        assert await reader.start() and await writer.start()
        assert reader.status().source in ("cache", "database")
        await until(lambda: reader.status().mode == "push")
        async with AsyncSession(apg) as session:
            await writer.set_flag("rolled-back", enabled=True, session=session)
            await session.rollback()
        async with AsyncSession(apg) as session:
            change = await writer.set_flag(
                Flag("beta", enabled=True, rules=[Rule(percentage=50)]), session=session
            )
            await session.commit()
        await until(lambda: reader.snapshot().version == change.version)
        assert reader.snapshot().token == change.token
        assert "rolled-back" not in reader.snapshot().flags
        answers = {reader.enabled("beta", subject=f"u{i}") for i in range(50)}
        assert answers == {True, False}
        assert [c.action for c in await writer.history()] == ["create"]
        with pytest.raises(FlagNotFound):
            await writer.definition("rolled-back")
        await writer.delete_flag("beta", actor="test")
        await until(lambda: "beta" not in reader.snapshot().flags)
        assert reader.enabled("beta") is False and reader.status().unknown == {"beta": 1}
    finally:
        await writer.close()
        await reader.close()
        for cache in caches:
            await cache.close()


async def test_the_async_writer_refuses_a_plain_session(
    apg: AsyncEngine, pg: sa.Engine, pg_tables: FlagTables
) -> None:
    """AsyncFlags publishes inside AsyncSession.commit(): a sync Session is refused up front."""
    from sqlalchemy.orm import Session

    flags = AsyncFlags(apg, tables=pg_tables)
    with (
        Session(pg) as session,
        pytest.raises(Exception, match="takes a session of type AsyncSession"),
    ):
        await flags.set_flag("f", enabled=True, session=session)
    sync_cache = Cache.from_url("redis://127.0.0.1:1/0", namespace="x", ttl=1)
    try:
        with pytest.raises(ValueError, match="AsyncCache"):
            AsyncFlags(apg, sync_cache)  # type: ignore[arg-type]
    finally:
        sync_cache.close()
