"""Apps that test subprocesses serve with ``uvicorn --factory httpcache.apps:NAME``.

Configured from the environment: ``VENEER_TEST_REDIS`` (URL), ``VENEER_TEST_NAMESPACE``
and, for the product app, ``VENEER_TEST_TABLE`` (a PostgreSQL table of id, name).
"""

from __future__ import annotations

import os
from typing import Any

import psycopg
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from servers import POSTGRES_URL
from veneer import AsyncCache
from veneer.http import HttpCache, tag

DSN = POSTGRES_URL.replace("postgresql+psycopg://", "postgresql://")


def product_app() -> Any:
    """Products read from PostgreSQL (the source of truth), tagged ``product:<id>``."""
    table = os.environ["VENEER_TEST_TABLE"]
    calls = {"n": 0}

    async def product(request: Request) -> Response:
        pid = int(request.path_params["pid"])
        calls["n"] += 1
        tag(f"product:{pid}")
        async with await psycopg.AsyncConnection.connect(DSN) as conn:
            cursor = await conn.execute(f"SELECT name FROM {table} WHERE id = %s", (pid,))
            row = await cursor.fetchone()
        name = row[0] if row else "missing"
        return JSONResponse(
            {"id": pid, "name": name, "pid": os.getpid()}, headers={"cache-control": "max-age=300"}
        )

    async def origin_calls(request: Request) -> Response:
        return JSONResponse(calls, headers={"cache-control": "no-store"})

    app = Starlette(routes=[Route("/product/{pid:int}", product), Route("/calls", origin_calls)])
    cache = AsyncCache.from_url(
        os.environ["VENEER_TEST_REDIS"],
        namespace=os.environ["VENEER_TEST_NAMESPACE"],
        redis_timeout=1.0,
    )
    return HttpCache(app, cache)
