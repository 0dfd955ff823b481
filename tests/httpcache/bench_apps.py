"""The FastAPI apps ``benchmarks/http.py`` serves (``uvicorn --factory
httpcache.bench_apps:app``), one JSON route read from PostgreSQL, cached three ways.

Environment: ``BENCH_KIND`` (``uncached``, ``veneer`` or ``fastapi-cache2``),
``BENCH_REDIS`` (URL) and ``BENCH_TABLE`` (a table of id, name, price, description).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator
from typing import Any

import psycopg
from fastapi import FastAPI, Response
from fastapi.responses import JSONResponse

from servers import POSTGRES_URL

DSN = POSTGRES_URL.replace("postgresql+psycopg://", "postgresql://")


def app() -> Any:
    kind = os.environ["BENCH_KIND"]
    table = os.environ["BENCH_TABLE"]
    redis_url = os.environ["BENCH_REDIS"]
    pool: asyncio.Queue[psycopg.AsyncConnection[Any]] = asyncio.Queue()

    async def product_row(pid: int) -> dict[str, Any]:
        conn = await pool.get()
        try:
            cursor = await conn.execute(
                f"SELECT id, name, price, description FROM {table} WHERE id = %s", (pid,)
            )
            row = await cursor.fetchone()
        finally:
            pool.put_nowait(conn)
        assert row is not None
        return {"id": row[0], "name": row[1], "price": float(row[2]), "description": row[3]}

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        for _ in range(4):
            pool.put_nowait(await psycopg.AsyncConnection.connect(DSN, autocommit=True))
        if kind == "fastapi-cache2":
            import redis.asyncio
            from fastapi_cache import FastAPICache
            from fastapi_cache.backends.redis import RedisBackend

            FastAPICache.init(RedisBackend(redis.asyncio.from_url(redis_url)), prefix="fc")
        yield
        while not pool.empty():
            await pool.get_nowait().close()

    api = FastAPI(lifespan=lifespan)

    if kind == "fastapi-cache2":
        from fastapi_cache.decorator import cache

        @api.get("/products/{pid}")
        @cache(expire=60)
        async def cached_product(pid: int) -> dict[str, Any]:
            return await product_row(pid)

    else:

        @api.get("/products/{pid}")
        async def product(pid: int) -> Response:
            return JSONResponse(await product_row(pid), headers={"cache-control": "max-age=60"})

    if kind != "veneer":
        return api
    from veneer import AsyncCache
    from veneer.http import HttpCache

    return HttpCache(api, AsyncCache.from_url(redis_url, namespace="bench"))
